"""Temperature intervals from the lower convex hull of a sweep's (S, E) points (THEORY §10, paper 002).

Run ``i`` of a learning-rate sweep minimises ``Φ_T(j) = E_j − T S_j`` over the runs ``j``
for ``T`` between the slopes of the hull edges on either side of it (see
:mod:`thermonet.analysis.free_energy` for the whole argument and a worked example).
:func:`hull_temperatures` returns those intervals (:class:`HullTemperatures`);
:func:`lower_hull` the hull itself. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from thermonet.errors import InputError

__all__ = ["HullTemperatures", "RunTemperature", "STATUS_INTERVAL", "STATUS_LOWER_OPEN", "STATUS_NO_POSITIVE",
           "STATUS_OFF_HULL", "STATUS_UPPER_OPEN", "hull_temperatures", "json_number", "lower_hull"]

#: Run statuses.
STATUS_INTERVAL = "interval"  # 0 < T_low <= T_high < inf
STATUS_LOWER_OPEN = "(0, T_high]"  # smallest-entropy run: any small T down to 0
STATUS_UPPER_OPEN = "[T_low, inf)"  # largest-entropy run
STATUS_OFF_HULL = "off-hull"
STATUS_NO_POSITIVE = "no-positive-T"


# ---------------------------------------------------------------------- results
@attrs.frozen
class RunTemperature:
    """One run of the sweep and its admissible temperature interval.

    ``E`` is the energy coordinate of the potential (``U`` or ``U + P V``); ``U`` the mean
    loss. ``T_low``/``T_high`` are NaN when the run has no interval (``off-hull``,
    ``no-positive-T``); ``T_low = 0`` and ``T_high = inf`` mark the open ends. ``T`` is the
    point estimate: ``sqrt(T_low T_high)`` when both bounds are finite and positive, else
    the one finite positive bound, else NaN.
    """

    lr: float
    U: float
    S: float
    E: float
    T_low: float
    T_high: float
    on_hull: bool
    status: str
    T: float
    index: int

    @property
    def bounded(self) -> bool:
        """Both bounds finite and positive (the runs the power law uses)."""
        return self.status == STATUS_INTERVAL

    def contains(self, temperature: float, rtol: float = 0.0) -> bool:
        """``temperature`` inside ``[T_low, T_high]`` (widened by ``rtol`` relative)."""
        if not self.on_hull or self.status == STATUS_NO_POSITIVE:
            return False
        return self.T_low * (1 - rtol) <= temperature <= self.T_high * (1 + rtol)

    def to_dict(self) -> dict[str, Any]:
        return {k: json_number(v) if isinstance(v, float) else v for k, v in attrs.asdict(self).items()}


@attrs.frozen
class HullTemperatures:
    """The temperature intervals of a sweep, runs in increasing learning-rate order.

    ``hull`` lists the indices (into ``runs``) of the hull vertices in increasing entropy;
    ``slopes`` the slopes of the hull edges between them (increasing).
    """

    runs: tuple[RunTemperature, ...]
    hull: tuple[int, ...]
    slopes: tuple[float, ...]
    energy: str = "U"

    def __len__(self) -> int:
        return len(self.runs)

    def column(self, name: str) -> np.ndarray:
        """One field of every run as an array (``"lr"``, ``"T_low"``, ``"on_hull"``, ...)."""
        return np.array([getattr(r, name) for r in self.runs])

    @property
    def lr(self) -> np.ndarray:
        return self.column("lr")

    @property
    def T(self) -> np.ndarray:
        return self.column("T")

    @property
    def bounded(self) -> np.ndarray:
        return np.array([r.bounded for r in self.runs])

    @property
    def off_hull(self) -> list[RunTemperature]:
        return [r for r in self.runs if not r.on_hull]

    def free_energy(self, temperature: float | Sequence[float]) -> np.ndarray:
        """``E_j − T S_j`` for each temperature (rows) and run (columns, LR order)."""
        t = np.atleast_1d(np.asarray(temperature, dtype=float))
        return self.column("E")[None, :] - t[:, None] * self.column("S")[None, :]

    def minimiser(self, temperature: float) -> RunTemperature:
        """The run that minimises ``E − T S`` at ``temperature``."""
        return self.runs[int(np.argmin(self.free_energy(temperature)[0]))]

    def to_dict(self) -> dict[str, Any]:
        return {"energy": self.energy, "runs": [r.to_dict() for r in self.runs], "hull": list(self.hull),
                "slopes": [json_number(s) for s in self.slopes]}


# ---------------------------------------------------------------------- the hull
def _validated_points(lr, U, S, E) -> tuple[np.ndarray, ...]:
    arrays = []
    for name, value in (("lr", lr), ("U", U), ("S", S), ("E", E)):
        a = np.asarray(value, dtype=float).ravel()
        arrays.append(a)
    n = arrays[0].size
    if any(a.size != n for a in arrays):
        raise InputError(f"lr, U, S (and E) must have the same length; got {', '.join(str(a.size) for a in arrays)}")
    if n < 2:
        raise InputError(f"a temperature interval needs at least 2 runs in the sweep, got {n}")
    for name, a in zip(("lr", "U", "S", "E"), arrays):
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            where = ", ".join(f"lr={arrays[0][i]:g}" if np.isfinite(arrays[0][i]) else f"#{i}" for i in bad[:5])
            raise InputError(f"{name} is not finite for {bad.size} run(s) ({where}); drop those runs first")
    if np.any(arrays[0] <= 0):
        raise InputError("every learning rate must be > 0")
    order = np.argsort(arrays[0], kind="stable")
    s_sorted = np.sort(arrays[2])
    scale = max(np.max(np.abs(s_sorted)), 1e-300)
    dup = np.flatnonzero(np.diff(s_sorted) <= 1e-12 * scale)
    if dup.size:
        value = s_sorted[dup[0]]
        runs = arrays[0][np.isclose(arrays[2], value, rtol=1e-12, atol=0)]
        raise InputError(
            f"runs at lr={', '.join(f'{v:g}' for v in runs)} have the same entropy S={value:.6g}: the hull slope "
            "between them is undefined (average or drop duplicates)"
        )
    return tuple(a[order] for a in arrays) + (order,)


def lower_hull(S: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Indices of the vertices of the lower convex hull of ``(S, E)``, in increasing ``S``.

    Andrew's monotone chain; points on a hull edge (collinear) are not vertices. ``S``
    must be finite and free of duplicates.
    """
    S = np.asarray(S, dtype=float)
    E = np.asarray(E, dtype=float)
    order = np.argsort(S, kind="stable")
    hull: list[int] = []
    for i in order:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # cross > 0: a -> b -> i turns left (convex from below); <= 0: b is above or on chord a-i.
            cross = (S[b] - S[a]) * (E[i] - E[a]) - (E[b] - E[a]) * (S[i] - S[a])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(int(i))
    return np.asarray(hull, dtype=int)


def hull_temperatures(lr: Sequence[float], U: Sequence[float], S: Sequence[float],
                      E: Sequence[float] | None = None, *, energy: str = "U",
                      collinear_rtol: float = 1e-9) -> HullTemperatures:
    """Admissible temperature interval of every run of a learning-rate sweep.

    Parameters
    ----------
    lr, U, S:
        Learning rate, mean loss and entropy of each run (any order; the result is in
        increasing LR).
    E:
        Energy coordinate of the potential (default ``U``; ``U + P V`` for the Gibbs
        potential at fixed pressure). ``energy`` names it in the output.
    collinear_rtol:
        A run within this fraction of the energy range above a hull edge counts as on the
        edge (a degenerate interval at the edge's slope) rather than off the hull.

    Raises
    ------
    InputError
        Fewer than 2 runs, lengths differ, a non-finite value, a learning rate <= 0 or two
        runs with the same entropy.
    """
    E = U if E is None else E
    lr_, U_, S_, E_, _ = _validated_points(lr, U, S, E)
    n = lr_.size
    hull = lower_hull(S_, E_)
    slopes = np.diff(E_[hull]) / np.diff(S_[hull])
    t_low = np.full(n, np.nan)
    t_high = np.full(n, np.nan)
    on_hull = np.zeros(n, dtype=bool)
    for k, i in enumerate(hull):
        on_hull[i] = True
        t_low[i] = -np.inf if k == 0 else slopes[k - 1]
        t_high[i] = np.inf if k == len(hull) - 1 else slopes[k]
    # Runs on a hull edge (collinear within tolerance): a single temperature, the edge slope.
    tol = collinear_rtol * max(float(np.ptp(E_)), float(np.max(np.abs(E_))) * 1e-3, 1e-300)
    for i in np.flatnonzero(~on_hull):
        k = int(np.searchsorted(S_[hull], S_[i])) - 1
        if 0 <= k < len(hull) - 1:
            a, b = hull[k], hull[k + 1]
            line = E_[a] + slopes[k] * (S_[i] - S_[a])
            if E_[i] - line <= tol:
                on_hull[i] = True
                t_low[i] = t_high[i] = slopes[k]

    runs = []
    for i in range(n):
        lo, hi = t_low[i], t_high[i]
        if not on_hull[i]:
            status, lo, hi = STATUS_OFF_HULL, math.nan, math.nan
        elif hi <= 0:
            status, lo, hi = STATUS_NO_POSITIVE, math.nan, math.nan
        else:
            lo = max(lo, 0.0)  # the hull has >= 2 vertices, so at most one end is open
            if lo == 0:
                status = STATUS_LOWER_OPEN
            elif math.isinf(hi):
                status = STATUS_UPPER_OPEN
            else:
                status = STATUS_INTERVAL
        finite = [v for v in (lo, hi) if math.isfinite(v) and v > 0]
        point = math.sqrt(finite[0] * finite[1]) if len(finite) == 2 else (finite[0] if finite else math.nan)
        runs.append(RunTemperature(lr=float(lr_[i]), U=float(U_[i]), S=float(S_[i]), E=float(E_[i]),
                                   T_low=float(lo), T_high=float(hi), on_hull=bool(on_hull[i]), status=status,
                                   T=float(point), index=i))
    return HullTemperatures(runs=tuple(runs), hull=tuple(int(h) for h in hull),
                            slopes=tuple(float(s) for s in slopes), energy=energy)


def json_number(value: float) -> float | str | None:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


