"""V1: the stationary radius (fixed LR/ELR) or effective weight decay (fixed sphere).

Predictions come from the protocol (``thermonet.theory.protocols``):

* SDE radius ``Protocol.predicted("rho", hp, sigma2, D)``: the ideal-gas equation of
  state solved with the protocol's T(rho) and P (THEORY §3);
* discrete-time radius ``Protocol.predicted_radius_discrete(hp, trSigma, G1sq)`` with the
  measured tr Sigma(x) and G_1**2: the balance E||w'||**2 = ||w||**2 (THEORY §3, paper
  appendix H);
* fixed sphere: the measured effective weight decay ``lambda_eff`` vs the ideal-gas
  pressure ``Protocol.predicted("P", hp, sigma2, D)`` (THEORY §4).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from thermonet.checks.base import (
    Check,
    CheckResult,
    hyperparameter_values,
    like,
    nan_stats,
    nonnegative_tolerance,
    seed_mean,
)
from thermonet.errors import InputError

__all__ = ["StationaryRadiusCheck"]

_MAX_CURVES = 6


def _curves(result: CheckResult, ax, measured: str, predictions: dict[str, str], ylabel: str) -> None:
    """Seed means of ``measured`` vs the second hyperparameter, one colour per first one."""
    hps = result.context["hyperparameters"]
    first, second = hps
    data = {k: seed_mean(result.details[k].to_dataset(name="v"))["v"] for k in [measured, *predictions]}
    values = data[measured][first].values
    pick = np.unique(np.linspace(0, values.size - 1, min(values.size, _MAX_CURVES)).round().astype(int))
    colors = [f"C{i}" for i in range(len(pick))]
    styles = {"sde": "--", "discrete": "-", "ideal_gas": "--"}
    for color, idx in zip(colors, pick):
        sel = {first: values[idx]}
        x = data[measured][second].values
        ax.plot(x, data[measured].sel(sel).values, "o", color=color, ms=4, label=f"{first}={values[idx]:.3g}")
        for key, label in predictions.items():
            ax.plot(x, data[key].sel(sel).values, styles.get(label, ":"), color=color, lw=1)
    for label in predictions.values():
        ax.plot([], [], styles.get(label, ":"), color="k", lw=1, label=label.replace("_", " "))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(second)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=2)


@attrs.frozen(kw_only=True)
class StationaryRadiusCheck(Check):
    """Measured stationary radius vs the SDE and discrete-time predictions (V1).

    Key figure: the largest relative error over members of the discrete-time prediction
    when the run stores ``trace_sigma`` and ``grad_full_sq`` (``prediction="discrete"``),
    else of the SDE radius; default tolerance 5 %. Fixed sphere: the largest relative
    error of ``lambda_eff`` vs the ideal-gas pressure, default tolerance 10 % (the
    full-gradient term makes lambda_eff exceed it by about G_1**2 / trSigma).
    """

    name: ClassVar[str] = "stationary-radius"
    description: ClassVar[str] = ("stationary radius vs SDE and discrete-time predictions "
                                  "(fixed sphere: lambda_eff vs ideal-gas pressure)")
    requires: ClassVar[tuple[str, ...]] = ("rho", "sigma2")

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)
    pressure_tolerance: float = attrs.field(default=0.1, validator=nonnegative_tolerance)
    prediction: str = attrs.field(default="discrete")

    @prediction.validator
    def _check_prediction(self, attribute, value):
        if value not in ("discrete", "sde"):
            raise InputError(f"StationaryRadiusCheck.prediction must be 'discrete' or 'sde', got {value!r}")

    def applicability(self, measured, states):
        if measured.protocol.pressure_expr() is None and "lambda_eff" not in states.data_vars:
            return "a fixed-sphere run needs lambda_eff"
        return None

    def _run(self, measured, states):
        protocol = measured.protocol
        hps = tuple(protocol.hyperparameters)
        hp = hyperparameter_values(states["rho"], hps)
        dim = measured.dim
        sigma2 = states["sigma2"].values
        template = states["rho"]
        context = {"hyperparameters": list(hps)}
        numbers: dict[str, float] = {}
        details = {"rho": template}

        if protocol.pressure_expr() is None:  # fixed sphere: pressure is measured
            P_ideal = protocol.predicted("P", hp, sigma2, dim)
            lam = states["lambda_eff"].values
            rel_p = (lam - P_ideal) / P_ideal
            radius = protocol.predicted("rho", hp, sigma2, dim)
            rel_r = (template.values - radius) / radius
            numbers["max_rel_error_pressure"], numbers["mean_rel_error_pressure"] = nan_stats(rel_p)
            numbers["max_rel_error_radius"], numbers["mean_rel_error_radius"] = nan_stats(rel_r)
            key = "max_rel_error_pressure"
            tol = self.pressure_tolerance
            passed = bool(np.isfinite(numbers[key]) and numbers[key] <= tol
                          and np.isfinite(numbers["max_rel_error_radius"])
                          and numbers["max_rel_error_radius"] <= self.tolerance)
            details.update(lambda_eff=states["lambda_eff"], P_ideal=like(template, P_ideal, "P_ideal"),
                           rel_error_pressure=like(template, rel_p, "rel_error_pressure"))
            summary = (f"lambda_eff vs ideal-gas P: max rel. error {numbers[key]:.3g}, mean "
                       f"{numbers['mean_rel_error_pressure']:.3g} ({'<=' if passed else '>'} {tol:g}); "
                       f"radius pinned within {numbers['max_rel_error_radius']:.2g}")
            result = self._result(passed=passed, key=key, numbers=numbers, summary=summary, details=details,
                                  context=context,
                                  plotter=lambda r, ax: _curves(r, ax, "lambda_eff", {"P_ideal": "ideal_gas"},
                                                                "effective weight decay"))
            result.tolerance = float(tol)
            return result

        rho_sde = protocol.predicted("rho", hp, sigma2, dim)
        rel_sde = (template.values - rho_sde) / rho_sde
        numbers["max_rel_error_sde"], numbers["mean_rel_error_sde"] = nan_stats(rel_sde)
        details.update(rho_sde=like(template, rho_sde, "rho_sde"),
                       rel_error_sde=like(template, rel_sde, "rel_error_sde"))
        predictions = {"rho_sde": "sde"}
        have_discrete = all(v in states.data_vars and bool(np.isfinite(states[v]).any())
                            for v in ("trace_sigma", "grad_full_sq"))
        if have_discrete:
            with np.errstate(invalid="ignore"):
                rho_disc = protocol.predicted_radius_discrete(hp, states["trace_sigma"].values,
                                                              states["grad_full_sq"].values)
            rel_disc = (template.values - rho_disc) / rho_disc
            numbers["max_rel_error_discrete"], numbers["mean_rel_error_discrete"] = nan_stats(rel_disc)
            details.update(rho_discrete=like(template, rho_disc, "rho_discrete"),
                           rel_error_discrete=like(template, rel_disc, "rel_error_discrete"))
            predictions["rho_discrete"] = "discrete"
        use = "discrete" if (self.prediction == "discrete" and have_discrete) else "sde"
        key = f"max_rel_error_{use}"
        passed = bool(np.isfinite(numbers[key]) and numbers[key] <= self.tolerance)
        extra = (f"; SDE {numbers['max_rel_error_sde']:.3g}" if use == "discrete" else "")
        summary = (f"radius vs {use} prediction: max rel. error {numbers[key]:.3g}, mean "
                   f"{numbers[f'mean_rel_error_{use}']:.3g} ({'<=' if passed else '>'} {self.tolerance:g}){extra}")
        context["prediction"] = use
        return self._result(passed=passed, key=key, numbers=numbers, summary=summary, details=details, context=context,
                            plotter=lambda r, ax: _curves(r, ax, "rho", predictions, "radius rho"))
