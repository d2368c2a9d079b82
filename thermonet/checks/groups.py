"""Per-group checks: a network's scale-invariant groups as a product of spheres (THEORY §11).

* ``group-radius`` (:class:`GroupRadiusCheck`, an **identity**): every group's measured
  radius against the radius its own one-step recursion predicts from its measured noise,
  ``rho_g**4 = beta**2 (trSigma_g + G1sq_g)/(1 - alpha**2)``
  (:meth:`thermonet.theory.protocols.Protocol.group_radius_discrete`). Because the
  group's gradient is orthogonal to its weights, the recursion is exact at every step;
  at stationarity it can only fail through non-stationarity or a wrong noise
  measurement, never through the thermodynamics. The groups' ideal-gas (SDE) radius is
  reported beside it, not judged.
* ``group-equipartition`` (:class:`EquipartitionCheck`, **theory**): the groups'
  temperatures ``T_g = eta_eff,g sigma2_g / 2`` against their degrees-of-freedom weighted
  mean (:class:`thermonet.theory.groups.ProductOfSpheres`). One temperature for every
  group is what the coarse-grained single sphere with isotropic noise predicts (and what
  components in thermal contact reach); the update itself does not force it, so it can
  fail.

Both skip on runs without per-group variables (isotropic runs, network stores written
before groups were measured).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import attrs
import numpy as np
import xarray as xr

from thermonet.checks.base import (
    Check,
    CheckResult,
    hyperparameter_values,
    nan_stats,
    nonnegative_tolerance,
    seed_mean_and_error,
)
from thermonet.errors import InputError, StoreError
from thermonet.store.schema import GROUP
from thermonet.theory.groups import ProductOfSpheres

__all__ = ["EquipartitionCheck", "GroupRadiusCheck", "group_states"]


def group_states(measured, window) -> xr.Dataset | None:
    """``measured.group_stationary(window)``, or ``None`` when the run has no groups."""
    method = getattr(measured, "group_stationary", None)
    if method is None:
        return None
    try:
        return method(window)
    except StoreError:
        return None


def _no_groups(measured, states) -> str | None:
    window = states.attrs.get("window_logs")
    if group_states(measured, window if window else 0.5) is None:
        return "the run has no per-group variables (an isotropic run, or a network store from before groups)"
    return None


def _relative_noise(predict: Callable[..., np.ndarray], values: list[np.ndarray], errors: list[np.ndarray],
                    reference: np.ndarray) -> np.ndarray:
    """Relative change of ``predict(*values)`` when each input moves by its standard error,
    combined in quadrature (finite differences; NaN errors count as 0)."""
    total = np.zeros(np.shape(reference))
    for i, error in enumerate(errors):
        moved = list(values)
        moved[i] = values[i] + np.nan_to_num(error)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total + (predict(*moved) / reference - 1) ** 2
    return np.sqrt(total)


def _argmax(values: np.ndarray) -> tuple[int, ...] | None:
    finite = np.isfinite(values)
    if not finite.any():
        return None
    return np.unravel_index(int(np.nanargmax(np.where(finite, values, -np.inf))), values.shape)


@attrs.frozen(kw_only=True)
class GroupRadiusCheck(Check, name="group-radius"):
    """Each group's stationary radius vs its one-step recursion with the measured noise (identity).

    Key figure ``max_rel_error``: the largest ``|rho_g / rho_g,pred - 1|`` over members and
    groups, each with its standard error, which propagates the batch-means errors of
    ``trSigma_g``, ``G1sq_g`` and ``rho_g`` (and of the whole vector's) through the
    prediction; judged point by point (:func:`~thermonet.analysis.verdicts.decide_points`:
    fail beyond the tolerance by ``z`` s.e., inconclusive where the noise cannot decide).
    Tolerance 5 %, as ``stationary-radius``.
    Also reported: the groups' ideal-gas radii (``max_rel_error_sde``), not judged.
    """

    description: ClassVar[str] = ("each scale group's radius vs its exact one-step recursion with the measured "
                                  "group noise (identity), and vs each group's ideal gas (reported)")
    requires: ClassVar[tuple[str, ...]] = ("rho", "trace_sigma", "grad_full_sq")
    needs_groups: ClassVar[bool] = True
    evidence: ClassVar[str] = "identity"
    evidence_reason: ClassVar[str] = ("g~_g is orthogonal to w_g (each group is scale-invariant), so "
                                      "||w_g'||^2 = alpha^2 ||w_g||^2 + beta^2 ||g~_g||^2 exactly; the radius it "
                                      "predicts from the measured noise tests stationarity and the measurement, "
                                      "not the thermodynamics (THEORY §11)")

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        if measured.protocol.update_coefficients() is None:
            return f"{measured.protocol.name} does not state its update as w' = alpha w - beta g~"
        return _no_groups(measured, states)

    def _run(self, measured, states) -> CheckResult:
        protocol = measured.protocol
        gs = group_states(measured, states.attrs["window_logs"])
        hps = tuple(protocol.hyperparameters)
        whole = states.broadcast_like(gs["rho"]).transpose(*gs["rho"].dims)
        hp = hyperparameter_values(gs["rho"], hps)
        measured_rho = gs["rho"].values
        inputs = [whole["rho"].values, whole["trace_sigma"].values, whole["grad_full_sq"].values,
                  gs["trace_sigma"].values, gs["grad_full_sq"].values]
        errors = [whole[f"{n}_se"].values if f"{n}_se" in whole else np.zeros_like(v)
                  for n, v in zip(("rho", "trace_sigma", "grad_full_sq"), inputs[:3])]
        errors += [gs["trace_sigma_se"].values, gs["grad_full_sq_se"].values]

        def predict(*values):
            return protocol.predicted_group_radius_discrete(hp, *values)

        with np.errstate(invalid="ignore", divide="ignore"):
            predicted = predict(*inputs)
            rel = measured_rho / predicted - 1
            noise = np.sqrt(_relative_noise(predict, inputs, errors, predicted) ** 2
                            + (gs["rho_se"].values / measured_rho) ** 2)
        numbers: dict[str, float] = {}
        numbers["max_rel_error"], numbers["mean_rel_error"] = nan_stats(rel)
        finite_noise = noise[np.isfinite(noise) & np.isfinite(rel)]
        numbers["rel_noise_median"] = float(np.median(finite_noise)) if finite_noise.size else math.nan
        where = _argmax(np.abs(rel))
        sde = self._sde(protocol, hp, whole, gs)
        if sde is not None:
            numbers["max_rel_error_sde"], numbers["mean_rel_error_sde"] = nan_stats(measured_rho / sde - 1)
        for i, name in enumerate(gs[GROUP].values):
            numbers[f"max_rel_error:{name}"] = nan_stats(rel[..., i])[0]
        key = "max_rel_error"
        worst = str(gs[GROUP].values[where[-1]]) if where is not None else "-"
        extra = (f"; the groups' ideal-gas radii {numbers['max_rel_error_sde']:.3g}" if sde is not None else "")
        summary = (f"group radii vs their one-step recursion: max rel. error {numbers['max_rel_error']:.3g} "
                   f"(group {worst}; tolerance {self.tolerance:g}); mean {numbers['mean_rel_error']:.3g}, noise "
                   f"{numbers['rel_noise_median']:.2g}{extra}")
        details = {"rho_group": gs["rho"], "rho_group_predicted": gs["rho"].copy(data=predicted),
                   "rel_error": gs["rho"].copy(data=rel), "rel_noise": gs["rho"].copy(data=noise)}
        if sde is not None:
            details["rho_group_sde"] = gs["rho"].copy(data=sde)
        return self._result(key=key, points=(rel, noise), numbers=numbers, summary=summary, details=details,
                            plotter=_plot_radii, context={"hyperparameters": list(hps),
                                                          "groups": [str(g) for g in gs[GROUP].values]})

    @staticmethod
    def _sde(protocol, hp, whole, gs) -> np.ndarray | None:
        system = _system(protocol, gs)
        if system is None:
            return None
        pressure = whole["P"].values if protocol.pressure_expr() is None else None
        axis = gs["rho"].dims.index(GROUP)
        with np.errstate(invalid="ignore", divide="ignore"):
            return system.radius_sde(hp, whole["rho"].values, gs["sigma2"].values, pressure, axis=axis)


def _system(protocol, gs) -> ProductOfSpheres | None:
    try:
        return ProductOfSpheres(protocol, dict(zip(map(str, gs[GROUP].values), map(int, gs["group_dim"].values))))
    except InputError:
        return None


def _plot_radii(result: CheckResult, ax) -> None:
    measured, predicted = result.details["rho_group"], result.details["rho_group_predicted"]
    for i, name in enumerate(result.context["groups"]):
        ax.plot(predicted.isel(group=i).values.ravel(), measured.isel(group=i).values.ravel(), "o", ms=4,
                color=f"C{i % 10}", label=name)
    both = np.concatenate([measured.values.ravel(), predicted.values.ravel()])
    both = both[np.isfinite(both) & (both > 0)]
    if both.size:
        lo, hi = both.min() / 1.1, both.max() * 1.1
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="identity")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rho_g predicted by the group recursion")
    ax.set_ylabel("rho_g measured")
    ax.legend(fontsize=7, ncol=2)


@attrs.frozen(kw_only=True)
class EquipartitionCheck(Check, name="group-equipartition"):
    """Equipartition across scale groups: ``T_g = T_bar`` for every group (theory).

    ``T_g = eta_eff,g sigma2_g / 2`` from each group's measured radius and noise, ``T_bar``
    their degrees-of-freedom weighted mean at the same log (``T_ratio`` of
    :meth:`~thermonet.store.accessor.ThermoAccessor.group_stationary`). Key figure
    ``max_abs_log_ratio``: the largest ``|ln(T_g/T_bar)|`` over hyperparameter points and
    groups (seed means), each with its standard error (batch means of the ratio, pooled
    over seeds), judged point by point (``decide_points``).
    Default tolerance 0.1 (10 %). Reported: every group's mean ratio, and the
    spread ``T_max/T_min`` averaged over the grid.
    """

    description: ClassVar[str] = ("per-group temperatures T_g = eta_eff,g sigma2_g/2 against their dof-weighted "
                                  "mean: equipartition, as one sphere with isotropic noise predicts")
    requires: ClassVar[tuple[str, ...]] = ("rho",)
    needs_groups: ClassVar[bool] = True
    evidence_reason: ClassVar[str] = ("the update gives each group its own temperature; one temperature for all "
                                      "groups is the prediction of the single-sphere, isotropic-noise picture "
                                      "and can fail")

    tolerance: float = attrs.field(default=0.1, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        return _no_groups(measured, states)

    def _run(self, measured, states) -> CheckResult:
        gs = group_states(measured, states.attrs["window_logs"])
        ratio, ratio_se = seed_mean_and_error(gs, "T_ratio")
        with np.errstate(invalid="ignore", divide="ignore"):
            log_ratio = np.log(ratio.values)
            log_se = ratio_se.values / ratio.values
        numbers: dict[str, float] = {}
        numbers["max_abs_log_ratio"], numbers["mean_abs_log_ratio"] = nan_stats(log_ratio)
        finite_se = log_se[np.isfinite(log_se) & np.isfinite(log_ratio)]
        numbers["log_ratio_se_median"] = float(np.median(finite_se)) if finite_se.size else math.nan
        names = [str(g) for g in gs[GROUP].values]
        axis = ratio.dims.index(GROUP)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.nanmax(ratio.values, axis=axis) / np.nanmin(ratio.values, axis=axis)
        numbers["spread_mean"] = float(np.nanmean(spread)) if np.isfinite(spread).any() else math.nan
        for i, name in enumerate(names):
            numbers[f"T_ratio_mean:{name}"] = float(np.nanmean(np.take(ratio.values, i, axis=axis)))
        key = "max_abs_log_ratio"
        hottest = max(names, key=lambda n: numbers[f"T_ratio_mean:{n}"])
        coldest = min(names, key=lambda n: numbers[f"T_ratio_mean:{n}"])
        verdict = "equal, as one ideal gas at one T" if numbers[key] <= self.tolerance else (
            "not equal: the layers run at different temperatures")
        summary = (f"per-group T_g/T_bar: max |ln ratio| {numbers['max_abs_log_ratio']:.3g} (tolerance "
                   f"{self.tolerance:g}), noise {numbers['log_ratio_se_median']:.2g}; hottest {hottest} x{numbers[f'T_ratio_mean:{hottest}']:.3g}, coldest "
                   f"{coldest} x{numbers[f'T_ratio_mean:{coldest}']:.3g}, mean spread T_max/T_min "
                   f"{numbers['spread_mean']:.3g}: {verdict}")
        details = {"T_ratio": ratio, "T_ratio_se": ratio_se, "T_group": gs["T"]}
        return self._result(key=key, points=(log_ratio, log_se), numbers=numbers, summary=summary,
                            details=details, plotter=_plot_ratios,
                            context={"hyperparameters": list(measured.protocol.hyperparameters), "groups": names})


def _plot_ratios(result: CheckResult, ax) -> None:
    ratio, se = result.details["T_ratio"], result.details["T_ratio_se"]
    first = result.context["hyperparameters"][0]
    for i, name in enumerate(result.context["groups"]):
        r = ratio.isel(group=i)
        x = r[first].broadcast_like(r).values.ravel()
        ax.errorbar(x * (1 + 0.03 * (i - 1)), r.values.ravel(), yerr=se.isel(group=i).values.ravel(), fmt="o",
                    ms=4, color=f"C{i % 10}", label=name)
    ax.axhline(1.0, color="k", lw=1, label="equipartition")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(first)
    ax.set_ylabel("T_g / T_bar")
    ax.legend(fontsize=7, ncol=2)
