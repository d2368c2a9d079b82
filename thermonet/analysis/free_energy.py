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

Power law: :func:`thermonet.analysis.power_law.fit_hull_power_law` fits ``T = A · LR^α`` by weighted least squares in log
space to the runs whose interval is bounded on both sides (``0 < T_low ≤ T_high < ∞``),
with the point estimate ``sqrt(T_low T_high)`` and a log-space standard deviation of
``ln(T_high/T_low)/√12`` (the true ``ln T`` taken uniform in its interval).

The hull is :mod:`thermonet.analysis.hull`; here :func:`sweep_temperatures` takes the
sweeps of a run (any :class:`~thermonet.store.MeasuredStates`) through it; the table
and the figure are :mod:`thermonet.reports.free_energy`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from thermonet.analysis.hull import HullTemperatures, hull_temperatures, json_number
from thermonet.analysis.power_law import PowerLaw, fit_hull_power_law
from thermonet.errors import InputError

__all__ = [
    "POTENTIALS",
    "SweepTemperatures",
    "energy_label",
    "parse_at",
    "potential_label",
    "sweep_temperatures",
]

#: Values of ``potential=``.
POTENTIALS = ("auto", "gibbs", "helmholtz", "sphere")


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
    fit: PowerLaw | None
    fit_error: str | None = None
    skipped: tuple[tuple[float, str], ...] = ()

    @property
    def label(self) -> str:
        return ", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v}"
                         for k, v in self.selection.items()) or "all runs"

    def to_dict(self) -> dict[str, Any]:
        runs = self.intervals.to_dict()["runs"]
        for run, t in zip(runs, self.T_protocol):
            run["T_protocol"] = json_number(float(t))
        return {
            "lr_name": self.lr_name,
            "selection": {k: float(v) if isinstance(v, (int, float)) else str(v) for k, v in self.selection.items()},
            "potential": self.potential,
            "energy": self.intervals.energy,
            "runs": runs,
            "hull": list(self.intervals.hull),
            "fit": None if self.fit is None else self.fit.to_dict(),
            "fit_error": self.fit_error,
            "skipped": [{self.lr_name: float(v), "reason": why} for v, why in self.skipped],
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
            fit, fit_error = fit_hull_power_law(intervals), None
        except InputError as exc:
            fit, fit_error = None, str(exc)
        out.append(SweepTemperatures(lr_name=lr_name, selection=sel, potential=resolved, intervals=intervals,
                                     T_protocol=t_proto, fit=fit, fit_error=fit_error, skipped=skipped))
    return out

