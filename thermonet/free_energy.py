"""Temperature from free-energy minimisation over a learning-rate sweep (THEORY §10, paper 002).

A sweep of learning rates (one protocol, the other hyperparameter fixed) gives one
stationary state per run, ``(E_j, S_j)``, with ``E`` the energy coordinate of the potential
the protocol minimises (below). If run ``i`` is the state that minimises the potential at
temperature ``T``,

    Φ_T(j) = E_j − T S_j      (minimised over the runs j of the sweep at j = i),

then ``T`` lies in an interval fixed by the neighbours of run ``i`` on the **lower convex
hull** of the points ``(S_j, E_j)`` (entropy on the horizontal axis):

* a line ``E = T S + c`` of slope ``T`` touches the point set from below at the run that
  minimises ``c = E − T S``; sweeping ``T`` from 0 upwards, the touching point moves along
  the lower hull from small to large entropy;
* run ``i`` is the minimiser exactly for ``T`` between the slope of the hull edge on its
  left and the slope of the edge on its right, ``T_low = (E_i − E_l)/(S_i − S_l)`` and
  ``T_high = (E_r − E_i)/(S_r − S_i)`` (``l``, ``r`` its hull neighbours; the slopes increase
  along the lower hull, so ``T_low ≤ T_high``);
* the run with the smallest entropy has no left edge: ``(−∞, T_high]``, clipped to
  ``(0, T_high]`` because a temperature is positive; the run with the largest entropy has
  ``[T_low, ∞)``; an interval that ends at or below 0 is empty (``no-positive-T``);
* a run above the hull never minimises ``Φ_T`` for any ``T``: it is ``off-hull`` and has
  no interval; a run exactly on a hull edge (collinear) minimises it at a single ``T``.

Worked example (``E = exp(S)``, ``S = 0, 1, 2``): the hull edges have slopes
``e − 1 = 1.72`` and ``e² − e = 4.67``; the middle run gets ``[1.72, 4.67]``, which contains
``dE/dS = e = 2.72``; at ``T = e`` the values ``E − T S`` are ``1, 0, 1.95``, minimal at the
middle run.

Which potential (``potential=``):

* ``"helmholtz"``: ``E = U`` against the full entropy ``S`` (``F = U − T S``, the paper's
  statement); right when the volume is fixed (the fixed sphere);
* ``"gibbs"``: ``E = H = U + P V`` against ``S`` (``G = U + P V − T S``); right for a sweep at
  fixed pressure (fixed LR, fixed ELR at fixed weight decay), where the radius and hence
  the ``(D−1) ln ρ`` part of ``S`` change with the learning rate. With ``E = U`` there the
  slopes are ``dU/dS = T C/(C + N_R) < T`` (about ``T/2`` for the isotropic model);
* ``"sphere"``: ``E = U`` against the direction entropy ``S_sphere`` (``S₁``): ``dU = T dS₁`` in
  any stationary Gibbs state on the sphere, whatever the radius does;
* ``"auto"`` (default): ``gibbs`` for protocols with a set pressure, ``helmholtz`` for the
  fixed sphere.

Power law: :func:`fit_power_law` fits ``T = A · LR^α`` by weighted least squares in log
space to the runs whose interval is bounded on both sides (``0 < T_low ≤ T_high < ∞``),
with the point estimate ``sqrt(T_low T_high)`` and a log-space standard deviation of
``ln(T_high/T_low)/√12`` (the true ``ln T`` taken uniform in its interval).

Everything here is pure numpy; :func:`sweep_temperatures` reads a run store and
:func:`plot_sweep` draws the figure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from thermonet.errors import InputError

__all__ = [
    "POTENTIALS",
    "HullTemperatures",
    "PowerLawFit",
    "RunTemperature",
    "SweepTemperatures",
    "fit_power_law",
    "hull_temperatures",
    "lower_hull",
    "parse_at",
    "plot_sweep",
    "sweep_temperatures",
]

#: Values of ``potential=``.
POTENTIALS = ("auto", "gibbs", "helmholtz", "sphere")

#: Run statuses.
STATUS_INTERVAL = "interval"  # 0 < T_low <= T_high < inf
STATUS_LOWER_OPEN = "(0, T_high]"  # smallest-entropy run: any small T down to 0
STATUS_UPPER_OPEN = "[T_low, inf)"  # largest-entropy run
STATUS_OFF_HULL = "off-hull"
STATUS_NO_POSITIVE = "no-positive-T"

_SQRT12 = math.sqrt(12.0)
#: Floor of the log-space standard deviation of a point (a degenerate, collinear interval).
_MIN_LOG_SD = 1e-3


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
        return {k: _json_number(v) if isinstance(v, float) else v for k, v in attrs.asdict(self).items()}


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
                "slopes": [_json_number(s) for s in self.slopes]}


@attrs.frozen
class PowerLawFit:
    """``T = prefactor · LR^alpha`` fitted in log space.

    ``alpha_err``/``prefactor_err``: standard errors with each point's log-space standard
    deviation ``ln(T_high/T_low)/√12`` (the bracket resolution; conservative because
    neighbouring intervals share their ends). ``alpha_err_scatter``: standard error from
    the scatter of the points about the line (NaN with fewer than 3 points).
    ``T_ref ± T_ref_err`` is the fitted T at ``lr_ref`` (geometric mean of the fitted LRs),
    where the prefactor and the exponent are uncorrelated.
    """

    alpha: float
    alpha_err: float
    alpha_err_scatter: float
    prefactor: float
    prefactor_err: float
    lr_ref: float
    T_ref: float
    T_ref_err: float
    chi2_red: float
    n: int
    lr_used: tuple[float, ...]

    def __call__(self, lr: np.ndarray | float) -> np.ndarray:
        return self.prefactor * np.asarray(lr, dtype=float) ** self.alpha

    def describe(self, lr_name: str = "LR") -> str:
        scatter = "" if not math.isfinite(self.alpha_err_scatter) else f", ± {self.alpha_err_scatter:.2g} (scatter)"
        return (f"T = {self.prefactor:.4g} * {lr_name}^{self.alpha:.4f}   alpha = {self.alpha:.4f} ± "
                f"{self.alpha_err:.2g} (intervals){scatter}; T({lr_name}={self.lr_ref:.3g}) = {self.T_ref:.4g} ± "
                f"{self.T_ref_err:.2g}; {self.n} runs, chi2/dof = {_fmt(self.chi2_red)}")

    def to_dict(self) -> dict[str, Any]:
        out = {k: _json_number(v) if isinstance(v, float) else v for k, v in attrs.asdict(self).items()}
        out["lr_used"] = [float(v) for v in self.lr_used]
        return out


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


# ---------------------------------------------------------------------- the power law
def fit_power_law(result: HullTemperatures | None = None, *, lr: Sequence[float] | None = None,
                  T_low: Sequence[float] | None = None, T_high: Sequence[float] | None = None) -> PowerLawFit:
    """Weighted least-squares fit of ``ln T = ln A + α ln LR`` to the bounded intervals.

    Give a :class:`HullTemperatures` or the arrays ``lr``, ``T_low``, ``T_high``. Only runs
    with ``0 < T_low <= T_high < ∞`` are used. Raises :class:`InputError` with fewer than
    2 such runs or fewer than 2 distinct learning rates.
    """
    if result is not None:
        lr_a, lo, hi = result.lr, result.column("T_low"), result.column("T_high")
        use = result.bounded
    else:
        if lr is None or T_low is None or T_high is None:
            raise InputError("fit_power_law needs a HullTemperatures or lr, T_low and T_high")
        lr_a, lo, hi = (np.asarray(v, dtype=float).ravel() for v in (lr, T_low, T_high))
        if not lr_a.size == lo.size == hi.size:
            raise InputError("lr, T_low and T_high must have the same length")
        with np.errstate(invalid="ignore"):
            use = np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi >= lo) & np.isfinite(lr_a) & (lr_a > 0)
    x = np.log(lr_a[use])
    if x.size < 2 or np.unique(x).size < 2:
        raise InputError(
            f"a power-law fit needs at least 2 runs with a bounded temperature interval at different learning "
            f"rates; this sweep has {int(np.sum(use))}"
        )
    y = 0.5 * (np.log(lo[use]) + np.log(hi[use]))
    sd = np.maximum((np.log(hi[use]) - np.log(lo[use])) / _SQRT12, _MIN_LOG_SD)
    w = 1.0 / sd**2
    x_ref = float(np.sum(w * x) / np.sum(w))
    xc = x - x_ref
    sxx = float(np.sum(w * xc**2))
    alpha = float(np.sum(w * xc * y) / sxx)
    intercept_ref = float(np.sum(w * y) / np.sum(w))  # ln T at x_ref
    var_alpha = 1.0 / sxx
    var_ref = 1.0 / float(np.sum(w))
    resid = y - (intercept_ref + alpha * xc)
    dof = x.size - 2
    chi2_red = float(np.sum(w * resid**2) / dof) if dof > 0 else math.nan
    alpha_err_scatter = math.sqrt(var_alpha * chi2_red) if dof > 0 else math.nan
    # Plain prefactor T(lr = 1): ln A = intercept_ref − α x_ref (uncorrelated pieces).
    ln_a = intercept_ref - alpha * x_ref
    var_ln_a = var_ref + x_ref**2 * var_alpha
    lr_ref = math.exp(float(np.mean(x)))
    t_ref = math.exp(intercept_ref + alpha * (math.log(lr_ref) - x_ref))
    var_t_ref = var_ref + (math.log(lr_ref) - x_ref) ** 2 * var_alpha
    return PowerLawFit(
        alpha=alpha,
        alpha_err=math.sqrt(var_alpha),
        alpha_err_scatter=alpha_err_scatter,
        prefactor=math.exp(ln_a),
        prefactor_err=math.exp(ln_a) * math.sqrt(var_ln_a),
        lr_ref=lr_ref,
        T_ref=t_ref,
        T_ref_err=t_ref * math.sqrt(var_t_ref),
        chi2_red=chi2_red,
        n=int(x.size),
        lr_used=tuple(float(v) for v in np.exp(x)),
    )


# ---------------------------------------------------------------------- run stores
@attrs.frozen
class SweepTemperatures:
    """The temperature analysis of one learning-rate sweep of a run store.

    ``selection`` holds the value of the other hyperparameter (``{"wd": 0.01}``);
    ``T_protocol`` the protocol's temperature ``η_eff σ²/2`` from the measured radius and
    noise, per run in LR order (NaN where unknown); ``skipped`` the learning rates left out
    (non-finite seed-mean values) with the reason; ``fit`` is None when fewer than two
    runs have bounded intervals (``fit_error`` says why).
    """

    lr_name: str
    selection: dict[str, float | str]
    potential: str
    intervals: HullTemperatures
    T_protocol: np.ndarray
    fit: PowerLawFit | None
    fit_error: str | None = None
    skipped: tuple[tuple[float, str], ...] = ()

    @property
    def label(self) -> str:
        return ", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v}"
                         for k, v in self.selection.items()) or "all runs"

    def to_dict(self) -> dict[str, Any]:
        runs = self.intervals.to_dict()["runs"]
        for run, t in zip(runs, self.T_protocol):
            run["T_protocol"] = _json_number(float(t))
        return {
            "lr_name": self.lr_name,
            "selection": {k: float(v) if isinstance(v, (int, float)) else str(v) for k, v in self.selection.items()},
            "potential": self.potential,
            "energy": self.intervals.energy,
            "runs": runs,
            "hull": list(self.intervals.hull),
            "fit": None if self.fit is None else self.fit.to_dict(),
            "fit_error": self.fit_error,
            "skipped": [{"lr": float(v), "reason": why} for v, why in self.skipped],
        }


def _resolve_potential(potential: str, protocol) -> str:
    if potential not in POTENTIALS:
        raise InputError(f"unknown potential {potential!r}; choose one of {', '.join(POTENTIALS)}")
    if potential != "auto":
        return potential
    return "helmholtz" if protocol.pressure_expr() is None else "gibbs"


def energy_label(potential: str) -> str:
    """Name of the energy coordinate of a (resolved) potential."""
    return "U+PV" if potential == "gibbs" else "U"


def potential_label(potential: str) -> str:
    return {"gibbs": "G = U + P V - T S", "helmholtz": "F = U - T S", "sphere": "F = U - T S_sphere"}[potential]


def parse_at(items: str | Sequence[str] | Mapping[str, float] | None) -> dict[str, float]:
    """``"wd=0.01"`` (or a list of them, or a mapping) -> ``{"wd": 0.01}``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): float(v) for k, v in items.items()}
    if isinstance(items, str):
        items = [items]
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            number = float(value)
        except ValueError:
            raise InputError(f"--at {item!r}: use NAME=VALUE, e.g. --at wd=0.01") from None
        if not math.isfinite(number):
            raise InputError(f"--at {item!r}: the value must be a finite number")
        out[name.strip()] = number
    return out


def _nearest_index(values: np.ndarray, target: float, name: str, rtol: float = 1e-3) -> int:
    i = int(np.argmin(np.abs(values - target)))
    if abs(values[i] - target) > rtol * max(abs(target), 1e-300):
        shown = ", ".join(f"{v:g}" for v in values[:12]) + (" ..." if values.size > 12 else "")
        raise InputError(f"--at {name}={target:g}: no such {name} in the store (values: {shown})")
    return i


def sweep_temperatures(run: Any, window: float | int = 0.5, *, at: str | Sequence[str] | Mapping[str, float] |
                       None = None, potential: str = "auto") -> list[SweepTemperatures]:
    """Temperature intervals and power law for every learning-rate sweep of a run store.

    ``run`` is a path (opened with :func:`thermonet.store.open_run`), a run Dataset or any
    object with ``protocol`` and ``stationary(window)`` (:class:`thermonet.store.MeasuredStates`).
    The LR dimension is the protocol's first hyperparameter (``lr`` or ``elr``); the sweep
    is taken at every value of the other hyperparameter, or only at those given by ``at``
    (``"wd=0.01"``). States are ``stationary(window)`` averaged over seeds. Runs whose
    seed-mean U, S (or P, V) is not finite are skipped and listed in ``skipped``.
    """
    from thermonet.store import as_measured, open_run

    if isinstance(run, (str, Path)):
        run = open_run(run)
    measured = as_measured(run)
    protocol = measured.protocol
    resolved = _resolve_potential(potential, protocol)
    hps = tuple(protocol.hyperparameters)
    lr_name, others = hps[0], hps[1:]
    selection = parse_at(at)
    unknown = [k for k in selection if k not in others]
    if unknown:
        allowed = ", ".join(others) or "none"
        raise InputError(f"--at {unknown[0]}: not a hyperparameter of the sweep to fix (the {protocol.name} "
                         f"run sweeps {lr_name}; fixable: {allowed})")
    states = measured.stationary(window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = states.mean("seed", skipna=True) if "seed" in states.dims else states
    s_var = "S_sphere" if resolved == "sphere" else "S"
    if s_var not in mean or not np.any(np.isfinite(np.asarray(mean[s_var].values, dtype=float))):
        raise InputError(f"the run has no entropy estimates ({s_var} is NaN everywhere): the free-energy "
                         "temperature needs S for every run")
    missing = [name for name in hps if name not in mean.dims]
    if missing:
        raise InputError(f"the stationary states have no {missing[0]} dimension")

    slices: list[dict[str, float]] = [{}]
    for name in others:
        values = np.asarray(mean[name].values, dtype=float)
        if name in selection:
            picked = [values[_nearest_index(values, selection[name], name)]]
        else:
            picked = list(values)
        slices = [{**s, name: float(v)} for s in slices for v in picked]

    out = []
    for sel in slices:
        part = mean.sel({k: v for k, v in sel.items()}, method="nearest") if sel else mean
        part = part.transpose(lr_name, ...)
        lr = np.asarray(part[lr_name].values, dtype=float)
        U = np.asarray(part["U"].values, dtype=float).reshape(lr.size)
        S = np.asarray(part[s_var].values, dtype=float).reshape(lr.size)
        if resolved == "gibbs":
            P = np.asarray(part["P"].values, dtype=float).reshape(lr.size)
            V = np.asarray(part["V"].values, dtype=float).reshape(lr.size)
            finite_p = P[np.isfinite(P)]
            if finite_p.size and np.ptp(finite_p) > 1e-6 * np.max(np.abs(finite_p)):
                raise InputError(f"potential 'gibbs' needs a fixed pressure along the {lr_name} sweep, but P varies "
                                 f"({finite_p.min():g} .. {finite_p.max():g}); use --potential helmholtz or sphere")
            E = U + P * V
        else:
            E = U
        T_proto = (np.asarray(part["T"].values, dtype=float).reshape(lr.size) if "T" in part
                   else np.full(lr.size, np.nan))
        good = np.isfinite(U) & np.isfinite(S) & np.isfinite(E)
        skipped = tuple((float(v), "non-finite U or S (no finished entropy estimate, or a diverged run)")
                        for v in lr[~good])
        if good.sum() < 2:
            where = ", ".join(f"{k} = {v:g}" for k, v in sel.items()) or "the sweep"
            raise InputError(f"{where}: only {int(good.sum())} run(s) with finite U and S; the free-energy "
                             "temperature needs at least 2")
        intervals = hull_temperatures(lr[good], U[good], S[good], E[good], energy=energy_label(resolved))
        order = np.argsort(lr[good], kind="stable")
        t_proto = T_proto[good][order]
        try:
            fit, fit_error = fit_power_law(intervals), None
        except InputError as exc:
            fit, fit_error = None, str(exc)
        out.append(SweepTemperatures(lr_name=lr_name, selection=sel, potential=resolved, intervals=intervals,
                                     T_protocol=t_proto, fit=fit, fit_error=fit_error, skipped=skipped))
    return out


# ---------------------------------------------------------------------- text output
def _fmt(value: float, width: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "-"
    elif isinstance(value, float) and math.isinf(value):
        text = "inf" if value > 0 else "-inf"
    else:
        text = f"{value:.4g}"
    return text.rjust(width) if width else text


def format_sweep(sweep: SweepTemperatures) -> str:
    """The intervals table and the fit of one sweep, as plain text."""
    lr_name = sweep.lr_name
    energy = sweep.intervals.energy
    s_name = "S_sphere" if sweep.potential == "sphere" else "S"
    header = [lr_name, "U", s_name] + ([energy] if energy != "U" else []) + ["T_low", "T_high", "T_hull",
                                                                               "T_protocol", "status"]
    rows = []
    for run, t_proto in zip(sweep.intervals.runs, sweep.T_protocol):
        row = [_fmt(run.lr), _fmt(run.U), _fmt(run.S)] + ([_fmt(run.E)] if energy != "U" else [])
        row += [_fmt(run.T_low), _fmt(run.T_high), _fmt(run.T), _fmt(float(t_proto)), run.status]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [f"{sweep.label}: {potential_label(sweep.potential)}"]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    off = [r for r in sweep.intervals.runs if not r.on_hull]
    if off:
        lines.append(f"off the hull (never the free-energy minimiser): {lr_name} = "
                     + ", ".join(f"{r.lr:g}" for r in off))
    for v, why in sweep.skipped:
        lines.append(f"skipped {lr_name} = {v:g}: {why}")
    fit = sweep.fit.describe(lr_name) if sweep.fit is not None else f"none ({sweep.fit_error})"
    lines.append("power law: " + fit)
    return "\n".join(lines)


def _json_number(value: float) -> float | str | None:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


# ---------------------------------------------------------------------- figure
def default_temperatures(intervals: HullTemperatures, count: int = 4) -> list[float]:
    """A few temperatures for the free-energy panel: point estimates of evenly spread bounded runs."""
    t = [r.T for r in intervals.runs if r.bounded]
    if not t:
        t = [r.T for r in intervals.runs if math.isfinite(r.T)]
    if len(t) <= count:
        return t
    idx = np.unique(np.round(np.linspace(0, len(t) - 1, count)).astype(int))
    return [t[i] for i in idx]


def plot_sweep(sweeps: Sequence[SweepTemperatures], path: str | Path, *,
               temperatures: Sequence[float] | None = None, dpi: int = 110) -> Path:
    """Figure: a row per sweep with (a) U and S against LR, (b) the T intervals with the
    power law and the protocol T, (c) ``E − T S − min`` against LR for a few T with the
    minima starred. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = list(sweeps)
    if not sweeps:
        raise InputError("nothing to plot")
    fig, axes = plt.subplots(len(sweeps), 3, figsize=(14, 3.8 * len(sweeps)), squeeze=False)
    for row, sweep in zip(axes, sweeps):
        iv = sweep.intervals
        lr = iv.lr
        s_name = "S_sphere" if sweep.potential == "sphere" else "S"
        ax = row[0]
        ax.plot(lr, iv.column("U"), "o-", color="tab:blue", label="U (loss)")
        ax.set_xscale("log")
        ax.set_xlabel(sweep.lr_name)
        ax.set_ylabel("U", color="tab:blue")
        ax2 = ax.twinx()
        ax2.plot(lr, iv.column("S"), "s--", color="tab:orange", label=s_name)
        ax2.set_ylabel(s_name, color="tab:orange")
        ax.set_title(f"{sweep.label}: loss and entropy")

        ax = row[1]
        lo, hi = iv.column("T_low"), iv.column("T_high")
        t = iv.T
        finite_vals = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (lo, hi, t, sweep.T_protocol)])
        floor = finite_vals.min() / 10 if finite_vals.size else 1e-3
        ceil = finite_vals.max() * 10 if finite_vals.size else 1.0
        for r in iv.runs:
            if not r.on_hull or r.status == STATUS_NO_POSITIVE:
                ax.plot([r.lr], [floor], "x", color="tab:red")
                continue
            a = r.T_low if r.T_low > 0 else floor
            b = r.T_high if math.isfinite(r.T_high) else ceil
            ax.plot([r.lr, r.lr], [a, b], "-", color="tab:gray", lw=3, alpha=0.6)
        ok = np.isfinite(t) & (t > 0)
        both = ok & iv.bounded
        ax.plot(lr[both], t[both], "o", color="black", label="T hull (geometric mean)")
        if np.any(ok & ~both):
            ax.plot(lr[ok & ~both], t[ok & ~both], "o", mfc="none", color="black", label="one-sided bound")
        if np.any(np.isfinite(sweep.T_protocol)):
            ax.plot(lr, sweep.T_protocol, "^", color="tab:green", ms=5, label="T protocol (η_eff σ²/2)")
        if sweep.fit is not None:
            grid = np.geomspace(lr.min(), lr.max(), 50)
            ax.plot(grid, sweep.fit(grid), "k--", lw=1, label=f"T ∝ {sweep.lr_name}^{sweep.fit.alpha:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor, ceil)
        ax.set_xlabel(sweep.lr_name)
        ax.set_ylabel("T")
        ax.set_title("admissible T intervals (x: none)")
        ax.legend(fontsize=7)

        ax = row[2]
        temps = list(temperatures) if temperatures else default_temperatures(iv)
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(temps), 1)))
        fe = iv.free_energy(temps) if temps else np.zeros((0, lr.size))
        for curve, temp, color in zip(fe, temps, colors):
            span = float(np.ptp(curve)) or 1.0
            scaled = (curve - curve.min()) / span
            ax.plot(lr, scaled, "-", color=color, label=f"T = {temp:.3g}")
            j = int(np.argmin(curve))
            ax.plot(lr[j], 0.0, "*", color=color, ms=14, mec="black")
        ax.set_xscale("log")
        ax.set_xlabel(sweep.lr_name)
        name = {"gibbs": "G", "helmholtz": "F", "sphere": "F"}[sweep.potential]
        ax.set_ylabel(f"({name}_T - min) / (max - min)")
        ax.set_title(f"{potential_label(sweep.potential)} (stars: minima)")
        if temps:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
