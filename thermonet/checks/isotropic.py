"""Checks against the exact von Mises–Fisher statistics of the isotropic test system.

For ``L(x) = 1 + <mu, x>`` with isotropic noise the stationary direction is
``vMF(-mu, kappa = 1/T)`` (THEORY §7). The temperature of each member comes from its
protocol (``Protocol.temperature`` with the measured mean radius and noise level), the
exact values from :func:`thermonet.theory.vmf.energy` and
:func:`thermonet.theory.vmf.entropy`.

Comparisons are made on seed means. The verdict allows for the statistical noise of the
measured means: the key figure is the error *beyond* ``z`` standard errors
(``max(|error| - z * se, 0)``, standard errors from batch means of the time series, see
:func:`thermonet.store.batch_standard_error`), so a short, noisy run is not failed for
its noise; the raw errors and the noise level are reported next to it.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
import xarray as xr

from thermonet.checks.base import (
    Check,
    CheckResult,
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


def _compare(check, measured, states, var: str, theory_fn, relative: bool):
    """Seed-mean comparison; returns numbers, details and the key figure."""
    mean, se = seed_mean_and_error(states, var)
    T = seed_mean(states[["T"]])["T"]
    exact = _exact(theory_fn, T.values, measured.dim)
    scale = np.abs(exact) if relative else np.ones_like(exact)
    error = (mean.values - exact) / scale
    noise = se.values / scale
    beyond = np.maximum(np.abs(error) - check.z * noise, 0.0)
    beyond = np.where(np.isfinite(error), beyond, np.nan)
    worst, mean_abs = nan_stats(error)
    details = {var: states[var], "T": states["T"], f"{var}_mean": mean, f"{var}_se": se, "T_mean": T,
               f"{var}_theory": like(T, exact, f"{var}_theory"), "error": like(T, error, "error"),
               "error_beyond_noise": like(T, beyond, "error_beyond_noise")}
    finite = noise[np.isfinite(noise) & np.isfinite(error)]
    numbers = {"max": worst, "mean": mean_abs, "signed_mean": float(np.nanmean(error)),
               "beyond_noise": nan_stats(beyond)[0],
               "noise_median": float(np.median(finite)) if finite.size else float("nan"),
               "points": float(np.isfinite(error).sum())}
    return numbers, details


@attrs.frozen(kw_only=True)
class VMFEnergyCheck(Check, name="vmf-energy"):
    """Measured internal energy U (mean loss) vs the exact vMF energy ``1 - A_D(1/T)``.

    Key figure ``max_rel_error_beyond_noise``: over the grid (seed means), the largest
    ``max(|U - U_vMF| / U_vMF - z * se, 0)`` with ``se`` the relative standard error of
    the measured mean; default tolerance 5 %, ``z = 3`` (``z = 0``: raw errors).
    """

    description: ClassVar[str] = "mean loss U vs exact vMF energy 1 - A_D(kappa) at kappa = 1/T"
    needs_exact_vmf: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("U", "T")

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        return _isotropic_only(measured, states)

    def _run(self, measured, states):
        raw, details = _compare(self, measured, states, "U", vmf.energy, relative=True)
        numbers = {"max_rel_error_beyond_noise": raw["beyond_noise"], "max_rel_error": raw["max"],
                   "mean_rel_error": raw["mean"], "mean_signed_rel_error": raw["signed_mean"],
                   "rel_noise_median": raw["noise_median"], "points": raw["points"]}
        key = "max_rel_error_beyond_noise"
        passed = bool(np.isfinite(numbers[key]) and numbers[key] <= self.tolerance)
        summary = (f"U vs exact vMF: max rel. error {raw['max']:.3g} (beyond {self.z:g} s.e. {raw['beyond_noise']:.3g} "
                   f"{'<=' if passed else '>'} {self.tolerance:g}), mean {raw['mean']:.3g}, "
                   f"noise {raw['noise_median']:.2g}")
        return self._result(passed=passed, key=key, numbers=numbers, summary=summary, details=details,
                            context={"z": self.z},
                            plotter=lambda r, ax: _plot_vs_temperature(r, ax, "U", vmf.energy, "energy U", True))


@attrs.frozen(kw_only=True)
class VMFEntropyCheck(Check, name="vmf-entropy"):
    """Measured entropy on the unit sphere S_1 vs the exact vMF entropy at kappa = 1/T.

    Key figure ``max_abs_error_beyond_noise`` in nats over the grid (seed means), the
    error beyond ``z`` standard errors; default tolerance 0.1 nats (the nearest-neighbour
    estimator has a bias of order N^(-1/(D-1))), ``z = 3``. ``mean_error`` is the signed
    mean error (the estimator bias, if any).
    """

    description: ClassVar[str] = "entropy S_1 on the unit sphere vs exact vMF entropy at kappa = 1/T"
    needs_exact_vmf: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("S_sphere", "T")

    tolerance: float = attrs.field(default=0.1, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        return _isotropic_only(measured, states)

    def _run(self, measured, states):
        raw, details = _compare(self, measured, states, "S_sphere", vmf.entropy, relative=False)
        numbers = {"max_abs_error_beyond_noise": raw["beyond_noise"], "max_abs_error": raw["max"],
                   "mean_abs_error": raw["mean"], "mean_error": raw["signed_mean"],
                   "noise_median": raw["noise_median"], "points": raw["points"]}
        key = "max_abs_error_beyond_noise"
        passed = bool(np.isfinite(numbers[key]) and numbers[key] <= self.tolerance)
        summary = (f"S_1 vs exact vMF: max abs. error {raw['max']:.3g} nats (beyond {self.z:g} s.e. "
                   f"{raw['beyond_noise']:.3g} {'<=' if passed else '>'} {self.tolerance:g}), "
                   f"mean error {raw['signed_mean']:+.3g}")
        return self._result(passed=passed, key=key, numbers=numbers, summary=summary, details=details,
                            context={"z": self.z},
                            plotter=lambda r, ax: _plot_vs_temperature(r, ax, "S_sphere", vmf.entropy,
                                                                       "entropy S_1 (nats)", False))
