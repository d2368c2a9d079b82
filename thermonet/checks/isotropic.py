"""Checks against the exact von Mises–Fisher statistics of the isotropic test system.

For ``L(x) = 1 + <mu, x>`` with isotropic noise the stationary direction is
``vMF(-mu, kappa = 1/T)`` (THEORY §7). The temperature of each member comes from its
protocol (``Protocol.temperature`` with the measured mean radius and noise level), the
exact values from :func:`thermonet.theory.vmf.energy` and
:func:`thermonet.theory.vmf.entropy`.

Comparisons are made on seed means (every seed of the ensemble pooled). The key figure is
the largest error over the grid; each point carries its standard error (the larger of the
batch-means error of the time series and the scatter between seeds, plus the temperature's
own uncertainty from the measured radius), and the verdict is
:func:`thermonet.checks.base.decide_points`': fail when a point is off by more than the
tolerance beyond ``z`` standard errors, inconclusive when some point's noise alone exceeds
the tolerance (the run cannot decide; it says how many more seeds or steps would), pass
otherwise. Evidence: theory (the exact vMF law at the kinetic temperature can fail).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
import xarray as xr

from thermonet.checks.base import (
    Check,
    CheckResult,
    hyperparameter_values,
    like,
    nan_stats,
    nonnegative_tolerance,
    seed_mean,
    seed_mean_and_error,
)
from thermonet.analysis.systems import exact_vmf_applies, vmf_energies
from thermonet.store import MeasuredStates, measured_kind
from thermonet.theory import vmf

__all__ = ["VMFEnergyCheck", "VMFEntropyCheck"]


def _isotropic_only(measured: MeasuredStates, states: xr.Dataset) -> str | None:
    kind = measured_kind(measured)
    if kind != "isotropic":
        return f"the exact vMF statistics hold for the isotropic model only (this run is kind={kind})"
    if not exact_vmf_applies(measured):
        return (f"the exact vMF statistics hold for the energies {', '.join(vmf_energies())} only "
                f"(this run's energy is {getattr(measured, 'energy', None)!r})")
    T = np.asarray(states["T"], dtype=float)
    if not np.any(np.isfinite(T) & (T > 0)):
        return "no member has a finite temperature > 0"
    return None


def _exact(fn, T: np.ndarray, dim: float) -> np.ndarray:
    T = np.asarray(T, dtype=float)
    out = np.full(T.shape, np.nan)
    good = np.isfinite(T) & (T > 0)
    if good.any():
        out[good] = fn(1.0 / T[good], dim)
    return out


def _plot_vs_temperature(result: CheckResult, ax, measured: str, theory_fn, ylabel: str, logy: bool) -> None:
    dim = result.context["dim"]
    t = np.asarray(result.details["T"], dtype=float).ravel()
    y = np.asarray(result.details[measured], dtype=float).ravel()
    good = np.isfinite(t) & (t > 0) & np.isfinite(y)
    ax.plot(t[good], y[good], "o", ms=3, alpha=0.35, color="C0", label="members")
    tm = np.asarray(result.details["T_mean"], dtype=float).ravel()
    ym = np.asarray(result.details[f"{measured}_mean"], dtype=float).ravel()
    err = np.asarray(result.details[f"{measured}_se"], dtype=float).ravel()
    ok = np.isfinite(tm) & np.isfinite(ym)
    ax.errorbar(tm[ok], ym[ok], yerr=err[ok], fmt="s", ms=3, color="C1", lw=1, label="seed mean")
    if good.any():
        grid = np.geomspace(t[good].min(), t[good].max(), 200)
        ax.plot(grid, theory_fn(1.0 / grid, dim), "k-", lw=1.2, label="exact vMF")
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("temperature T")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def _temperature_error(measured, states) -> np.ndarray:
    """Standard error of the seed-mean temperature from that of the radius (T depends on rho)."""
    hp = hyperparameter_values(states["rho"], tuple(measured.protocol.hyperparameters))
    with np.errstate(invalid="ignore", divide="ignore"):
        shifted = measured.protocol.temperature(hp, (states["rho"] + states["rho_se"].fillna(0.0)).values,
                                                states["sigma2"].values)
    T_shift = seed_mean(xr.Dataset({"T": states["T"].copy(data=shifted)}))["T"]
    return np.abs(T_shift.values - seed_mean(states[["T"]])["T"].values)


def _compare(check, measured, states, var: str, theory_fn, relative: bool):
    """Seed-mean comparison; returns the errors with their standard errors, numbers and details."""
    mean, se = seed_mean_and_error(states, var)
    T = seed_mean(states[["T"]])["T"]
    exact = _exact(theory_fn, T.values, measured.dim)
    scale = np.abs(exact) if relative else np.ones_like(exact)
    error = (mean.values - exact) / scale
    t_se = _temperature_error(measured, states) if "rho_se" in states.data_vars else np.zeros(T.shape)
    theory_se = np.abs(_exact(theory_fn, T.values + t_se, measured.dim) - exact) / scale
    noise = np.sqrt((se.values / scale) ** 2 + np.nan_to_num(theory_se) ** 2)
    worst, mean_abs = nan_stats(error)
    details = {var: states[var], "T": states["T"], f"{var}_mean": mean, f"{var}_se": se, "T_mean": T,
               f"{var}_theory": like(T, exact, f"{var}_theory"), "error": like(T, error, "error"),
               "error_se": like(T, noise, "error_se")}
    finite = noise[np.isfinite(noise) & np.isfinite(error)]
    numbers = {"max": worst, "mean": mean_abs, "signed_mean": float(np.nanmean(error)),
               "noise_median": float(np.median(finite)) if finite.size else float("nan"),
               "points": float(np.isfinite(error).sum())}
    return (error, noise), numbers, details


@attrs.frozen(kw_only=True)
class VMFEnergyCheck(Check, name="vmf-energy"):
    """Measured internal energy U (time-averaged loss) vs the exact vMF energy ``1 - A_D(1/T)``.

    Key figure ``max_rel_error``: the largest ``|U - U_vMF| / U_vMF`` over the grid (seed
    means); default tolerance 2 % (a 5 % error in U fails), ``z = 3``; see the module
    docstring for the verdict. Evidence: theory.
    """

    description: ClassVar[str] = "mean loss U vs exact vMF energy 1 - A_D(kappa) at kappa = 1/T"
    needs_exact_vmf: ClassVar[bool] = True
    evidence_reason: ClassVar[str] = ("the stationary law exp(-L/T) at the kinetic T = eta_eff sigma^2/2 is the "
                                      "theory's claim; noise or dynamics outside it shift U")
    requires: ClassVar[tuple[str, ...]] = ("U", "T")

    tolerance: float = attrs.field(default=0.02, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        return _isotropic_only(measured, states)

    def _run(self, measured, states):
        points, raw, details = _compare(self, measured, states, "U", vmf.energy, relative=True)
        numbers = {"max_rel_error": raw["max"], "mean_rel_error": raw["mean"],
                   "mean_signed_rel_error": raw["signed_mean"], "rel_noise_median": raw["noise_median"],
                   "points": raw["points"]}
        summary = (f"U vs exact vMF: max rel. error {raw['max']:.3g} (tolerance {self.tolerance:g}), mean "
                   f"{raw['mean']:.3g}, signed mean {raw['signed_mean']:+.3g}, noise {raw['noise_median']:.2g}; "
                   f"energy: {states.attrs.get('energy_average', 'time')} average")
        return self._result(key="max_rel_error", points=points, numbers=numbers, summary=summary, details=details,
                            context={"z": self.z},
                            plotter=lambda r, ax: _plot_vs_temperature(r, ax, "U", vmf.energy, "energy U", True))


@attrs.frozen(kw_only=True)
class VMFEntropyCheck(Check, name="vmf-entropy"):
    """Measured entropy on the unit sphere S_1 vs the exact vMF entropy at kappa = 1/T.

    Key figure ``max_abs_error`` in nats over the grid (seed means); default tolerance 0.1
    nats (the nearest-neighbour estimator has a bias of order N^(-1/(D-1))), ``z = 3``;
    see the module docstring for the verdict. ``mean_error`` is the signed mean error (the
    estimator bias, if any). Evidence: theory.
    """

    description: ClassVar[str] = "entropy S_1 on the unit sphere vs exact vMF entropy at kappa = 1/T"
    needs_exact_vmf: ClassVar[bool] = True
    evidence_reason: ClassVar[str] = ("the vMF law at the kinetic temperature is the theory's claim; the estimator "
                                      "is unbiased at D = 3 to 0.1 nats")
    requires: ClassVar[tuple[str, ...]] = ("S_sphere", "T")

    tolerance: float = attrs.field(default=0.1, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        return _isotropic_only(measured, states)

    def _run(self, measured, states):
        points, raw, details = _compare(self, measured, states, "S_sphere", vmf.entropy, relative=False)
        numbers = {"max_abs_error": raw["max"], "mean_abs_error": raw["mean"], "mean_error": raw["signed_mean"],
                   "noise_median": raw["noise_median"], "points": raw["points"]}
        summary = (f"S_1 vs exact vMF: max abs. error {raw['max']:.3g} nats (tolerance {self.tolerance:g}), "
                   f"mean error {raw['signed_mean']:+.3g}, noise {raw['noise_median']:.2g}")
        return self._result(key="max_abs_error", points=points, numbers=numbers, summary=summary, details=details,
                            context={"z": self.z},
                            plotter=lambda r, ax: _plot_vs_temperature(r, ax, "S_sphere", vmf.entropy,
                                                                       "entropy S_1 (nats)", False))
