"""V1: the stationary radius (fixed LR/ELR) or effective weight decay (fixed sphere).

Predictions come from the protocol (``thermonet.theory.protocols``):

* SDE radius ``Protocol.predicted("rho", hp, sigma2, D)``: the ideal-gas equation of
  state solved with the protocol's T(rho) and P (THEORY §3);
* discrete-time radius ``Protocol.predicted_radius_discrete(hp, trSigma, G1sq)`` with the
  measured tr Sigma(x) and G_1**2: the balance E||w'||**2 = ||w||**2 (THEORY §3, paper
  appendix H);
* fixed sphere: the measured effective weight decay ``lambda_eff`` vs the ideal-gas
  pressure ``Protocol.predicted("P", hp, sigma2, D)`` (the SDE form, THEORY §4) and vs the
  discrete form ``FixedSphere.effective_weight_decay_expr()`` = eta (trSigma + G1**2) /
  (2 rho_0**4) with the measured tr Sigma(x) and G_1**2 (paper appendix H, eq. 123).

Both predictions are reported member by member (``details["member_errors"]``,
:func:`member_error_table`). The members where the discrete-time correction is largest
(the third with the largest predicted ``|discrete/SDE - 1|``: large eta or lambda) get
their own mean errors, and ``correction_beats_sde`` (1 or 0) says whether the correction
predicts them better than the SDE form.
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

__all__ = ["StationaryRadiusCheck", "member_error_table"]

_MAX_CURVES = 6
#: Fraction of the members, those with the largest predicted discrete-time correction,
#: on which the SDE and discrete predictions are compared ("large eta or lambda").
LARGE_STEP_FRACTION = 1 / 3


def _large_step_comparison(rel_sde: np.ndarray, rel_disc: np.ndarray, correction: np.ndarray
                           ) -> tuple[dict[str, float], np.ndarray]:
    """Mean |relative error| of both predictions on the members with the largest correction.

    ``correction`` is the predicted ``|discrete/SDE - 1|`` of each member. Returns the
    numbers and the boolean mask of the large-step members.
    """
    good = np.isfinite(rel_sde) & np.isfinite(rel_disc) & np.isfinite(correction)
    mask = np.zeros(np.shape(correction), dtype=bool)
    if not good.any():
        nan = float("nan")
        return {"large_step_members": 0.0, "large_step_min_correction": nan, "large_step_mean_abs_error_sde": nan,
                "large_step_mean_abs_error_discrete": nan, "correction_beats_sde": nan}, mask
    threshold = float(np.quantile(correction[good], 1 - LARGE_STEP_FRACTION))
    mask = good & (correction >= threshold)
    sde = float(np.mean(np.abs(rel_sde[mask])))
    disc = float(np.mean(np.abs(rel_disc[mask])))
    return {"large_step_members": float(mask.sum()), "large_step_min_correction": threshold,
            "large_step_mean_abs_error_sde": sde, "large_step_mean_abs_error_discrete": disc,
            "correction_beats_sde": float(disc < sde)}, mask


def _comparison_text(numbers: dict[str, float]) -> str:
    if not np.isfinite(numbers.get("correction_beats_sde", np.nan)):
        return ""
    beats = numbers["correction_beats_sde"] == 1.0
    return (f"; largest-correction third (large eta or lambda): mean |error| SDE "
            f"{numbers['large_step_mean_abs_error_sde']:.3g} vs discrete "
            f"{numbers['large_step_mean_abs_error_discrete']:.3g}, the correction "
            f"{'beats' if beats else 'does NOT beat'} the SDE form")


def _member_errors(template, measured: np.ndarray, sde: np.ndarray, disc: np.ndarray | None,
                   large: np.ndarray | None, quantity: str):
    """Per-member Dataset: measured value, both predictions and their relative errors."""
    import xarray as xr

    data = {"measured": like(template, measured), "sde": like(template, sde),
            "rel_error_sde": like(template, (measured - sde) / sde)}
    if disc is not None:
        data["discrete"] = like(template, disc)
        data["rel_error_discrete"] = like(template, (measured - disc) / disc)
        data["correction"] = like(template, disc / sde - 1)
        if large is not None:
            data["large_step"] = xr.DataArray(large, dims=template.dims, coords=template.coords)
    return xr.Dataset(data, attrs={"quantity": quantity})


def member_error_table(result: CheckResult, markdown: bool = True) -> str:
    """Table of the per-member relative errors of a ``stationary-radius`` result (SDE vs discrete).

    One row per member (hyperparameters, seed): the measured radius (fixed sphere:
    ``lambda_eff``), the SDE and discrete predictions and their relative errors; a ``*``
    marks the large-step members the comparison in the summary uses.
    """
    table = result.details.get("member_errors")
    if table is None:
        return f"{result.name}: no per-member errors ({result.summary})"
    dims = list(table["measured"].dims)
    flat = table.stack(member=dims)
    have_disc = "discrete" in table
    head = [*dims, table.attrs.get("quantity", "measured"), "SDE", "rel. err SDE"]
    if have_disc:
        head += ["discrete", "rel. err discrete", "large step"]
    rows = []
    for i in range(flat.sizes["member"]):
        point = flat.isel(member=i)
        row = [f"{point[d].item():.4g}" if d != "seed" else str(int(point[d].item())) for d in dims]
        row += [f"{float(point['measured']):.5g}", f"{float(point['sde']):.5g}",
                f"{float(point['rel_error_sde']):+.4f}"]
        if have_disc:
            large = bool(point["large_step"]) if "large_step" in point else False
            row += [f"{float(point['discrete']):.5g}", f"{float(point['rel_error_discrete']):+.4f}",
                    "*" if large else ""]
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])


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


def _discrete_radius_noise(protocol, hp, states, rho_disc: np.ndarray) -> np.ndarray | None:
    """Relative standard error of a member's radius error against the discrete prediction.

    The prediction is a function of the window means of trSigma and G1**2, whose batch-mean
    standard errors (``trace_sigma_se``, ``grad_full_sq_se``) are propagated by finite
    differences and combined in quadrature with that of the measured radius (``rho_se``).
    A network's gradient norms are heavy-tailed, so with tens of logs this noise reaches
    a few per cent. ``None`` when the standard errors are not there.
    """
    names = ("trace_sigma", "grad_full_sq", "trace_sigma_se", "grad_full_sq_se", "rho_se")
    if not all(n in states.data_vars for n in names):
        return None
    tr, g1 = states["trace_sigma"].values, states["grad_full_sq"].values
    tr_se, g1_se = states["trace_sigma_se"].values, states["grad_full_sq_se"].values
    with np.errstate(invalid="ignore", divide="ignore"):
        d_tr = protocol.predicted_radius_discrete(hp, tr + tr_se, g1) / rho_disc - 1
        d_g1 = protocol.predicted_radius_discrete(hp, tr, g1 + g1_se) / rho_disc - 1
        d_rho = states["rho_se"].values / states["rho"].values
        return np.sqrt(d_tr**2 + d_g1**2 + d_rho**2)


@attrs.frozen(kw_only=True)
class StationaryRadiusCheck(Check, name="stationary-radius"):
    """Measured stationary radius vs the SDE and discrete-time predictions (V1).

    Key figure: the largest relative error over members of the discrete-time prediction
    when the run stores ``trace_sigma`` and ``grad_full_sq`` (``prediction="discrete"``),
    else of the SDE radius; default tolerance 5 %.

    Fixed sphere: key figure ``max_rel_error_pressure``, the largest relative error of
    ``lambda_eff`` vs the prediction in use: the discrete form eta (trSigma + G1**2) /
    (2 rho_0**4) with the measured noise (``prediction="discrete"``, when stored;
    tolerance ``tolerance``, 5 %, like the other protocols), else the ideal-gas (SDE)
    pressure eta sigma2 (D-1) / (2 rho_0**4) (tolerance ``pressure_tolerance``, 10 %: the
    full-gradient term makes lambda_eff exceed it by about G_1**2 / trSigma). Both are
    reported as ``*_pressure_sde`` and ``*_pressure_discrete``. The radius must also be
    pinned to rho_0 within ``tolerance``.

    Every protocol: ``details["member_errors"]`` holds the per-member errors of both
    predictions (:func:`member_error_table`), and the ``large_step_*`` numbers compare
    them on the third of the members with the largest predicted correction.

    Fixed LR / ELR, reported and not judged: ``max_rel_error_discrete_beyond_noise``, the
    largest error less ``z`` (3) standard errors of the noise measurement behind the
    prediction (``rel_noise_discrete_median``; see :func:`_discrete_radius_noise`), and
    ``*_rel_error_fluctuating``, the discrete
    balance taken in expectation over the measured radius fluctuation
    (:meth:`~thermonet.theory.protocols.Protocol.predicted_radius_fluctuating`), which
    removes the last sub-percent bias of the discrete form at large fixed ELR.
    """

    description: ClassVar[str] = ("stationary radius vs SDE and discrete-time predictions "
                                  "(fixed sphere: lambda_eff vs ideal-gas and discrete-time pressure)")
    requires: ClassVar[tuple[str, ...]] = ("rho", "sigma2")

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)
    pressure_tolerance: float = attrs.field(default=0.1, validator=nonnegative_tolerance)
    prediction: str = attrs.field(default="discrete")
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    @prediction.validator
    def _check_prediction(self, attribute, value):
        if value not in ("discrete", "sde"):
            raise InputError(f"StationaryRadiusCheck.prediction must be 'discrete' or 'sde', got {value!r}")

    def applicability(self, measured, states):
        pressure = measured.protocol.measured_pressure
        if pressure is not None and pressure not in states.data_vars:
            return f"a {measured.protocol.name} run needs its measured pressure {pressure}"
        return None

    @staticmethod
    def _have_noise(states) -> bool:
        return all(v in states.data_vars and bool(np.isfinite(states[v]).any())
                   for v in ("trace_sigma", "grad_full_sq"))

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
        have_discrete = self._have_noise(states)

        if protocol.pressure_expr() is None:  # fixed sphere: pressure is measured
            return self._run_sphere(protocol, hps, hp, dim, sigma2, template, states, have_discrete,
                                    numbers, details, context)

        rho_sde = protocol.predicted("rho", hp, sigma2, dim)
        rel_sde = (template.values - rho_sde) / rho_sde
        numbers["max_rel_error_sde"], numbers["mean_rel_error_sde"] = nan_stats(rel_sde)
        details.update(rho_sde=like(template, rho_sde, "rho_sde"),
                       rel_error_sde=like(template, rel_sde, "rel_error_sde"))
        predictions = {"rho_sde": "sde"}
        rho_disc = large = None
        if have_discrete:
            with np.errstate(invalid="ignore"):
                rho_disc = protocol.predicted_radius_discrete(hp, states["trace_sigma"].values,
                                                              states["grad_full_sq"].values)
            rel_disc = (template.values - rho_disc) / rho_disc
            numbers["max_rel_error_discrete"], numbers["mean_rel_error_discrete"] = nan_stats(rel_disc)
            comparison, large = _large_step_comparison(rel_sde, rel_disc, np.abs(rho_disc / rho_sde - 1))
            numbers.update(comparison)
            noise = _discrete_radius_noise(protocol, hp, states, rho_disc)
            if noise is not None:
                with np.errstate(invalid="ignore"):
                    beyond = np.maximum(np.abs(rel_disc) - self.z * noise, 0.0)
                numbers["rel_noise_discrete_median"] = float(np.nanmedian(noise))
                numbers["max_rel_error_discrete_beyond_noise"] = float(np.nanmax(beyond))
                details["rel_noise_discrete"] = like(template, noise, "rel_noise_discrete")
            details.update(rho_discrete=like(template, rho_disc, "rho_discrete"),
                           rel_error_discrete=like(template, rel_disc, "rel_error_discrete"))
            predictions["rho_discrete"] = "discrete"
            if "rho_sq_rel_var" in states.data_vars:
                rho_fl = protocol.predicted_radius_fluctuating(hp, states["trace_sigma"].values,
                                                               states["grad_full_sq"].values,
                                                               states["rho_sq_rel_var"].values)
                rel_fl = (template.values - rho_fl) / rho_fl
                numbers["max_rel_error_fluctuating"], numbers["mean_rel_error_fluctuating"] = nan_stats(rel_fl)
                details.update(rho_fluctuating=like(template, rho_fl, "rho_fluctuating"),
                               rel_error_fluctuating=like(template, rel_fl, "rel_error_fluctuating"))
        details["member_errors"] = _member_errors(template, template.values, rho_sde, rho_disc, large, "rho")
        use = "discrete" if (self.prediction == "discrete" and have_discrete) else "sde"
        key = f"max_rel_error_{use}"
        passed = bool(np.isfinite(numbers[key]) and numbers[key] <= self.tolerance)
        extra = (f"; SDE {numbers['max_rel_error_sde']:.3g}" if use == "discrete" else "")
        if "max_rel_error_fluctuating" in numbers:
            extra += f"; with the radius variance {numbers['max_rel_error_fluctuating']:.3g}"
        if use == "discrete" and "max_rel_error_discrete_beyond_noise" in numbers:
            extra += (f"; beyond {self.z:g} s.e. of the noise measurement "
                      f"{numbers['max_rel_error_discrete_beyond_noise']:.3g}")
        summary = (f"radius vs {use} prediction: max rel. error {numbers[key]:.3g}, mean "
                   f"{numbers[f'mean_rel_error_{use}']:.3g} ({'<=' if passed else '>'} {self.tolerance:g}){extra}"
                   f"{_comparison_text(numbers)}")
        context["prediction"] = use
        return self._result(passed=passed, key=key, numbers=numbers, summary=summary, details=details, context=context,
                            plotter=lambda r, ax: _curves(r, ax, "rho", predictions, "radius rho"))

    def _run_sphere(self, protocol, hps, hp, dim, sigma2, template, states, have_discrete, numbers, details,
                    context):
        from thermonet.theory.symbols import grad_sq, trace_sigma

        measured_name = protocol.measured_pressure
        lam = states[measured_name].values
        P_ideal = protocol.predicted("P", hp, sigma2, dim)
        rel_sde = (lam - P_ideal) / P_ideal
        numbers["max_rel_error_pressure_sde"], numbers["mean_rel_error_pressure_sde"] = nan_stats(rel_sde)
        details.update({measured_name: states[measured_name]}, P_ideal=like(template, P_ideal, "P_ideal"),
                       rel_error_pressure_sde=like(template, rel_sde, "rel_error_pressure_sde"))
        predictions = {"P_ideal": "ideal_gas"}
        P_disc = large = None
        if have_discrete:
            fn = protocol.numeric(protocol.effective_weight_decay_expr(), (trace_sigma, grad_sq), dim=dim)
            with np.errstate(invalid="ignore"):
                P_disc = fn(hp, states["trace_sigma"].values, states["grad_full_sq"].values)
            rel_disc = (lam - P_disc) / P_disc
            numbers["max_rel_error_pressure_discrete"], numbers["mean_rel_error_pressure_discrete"] = \
                nan_stats(rel_disc)
            comparison, large = _large_step_comparison(rel_sde, rel_disc, np.abs(P_disc / P_ideal - 1))
            numbers.update(comparison)
            details.update(P_discrete=like(template, P_disc, "P_discrete"),
                           rel_error_pressure_discrete=like(template, rel_disc, "rel_error_pressure_discrete"))
            predictions["P_discrete"] = "discrete"
        details["member_errors"] = _member_errors(template, lam, P_ideal, P_disc, large, measured_name)
        use = "discrete" if (self.prediction == "discrete" and have_discrete) else "sde"
        numbers["max_rel_error_pressure"] = numbers[f"max_rel_error_pressure_{use}"]
        numbers["mean_rel_error_pressure"] = numbers[f"mean_rel_error_pressure_{use}"]
        details["rel_error_pressure"] = details[f"rel_error_pressure_{use}"].rename("rel_error_pressure")
        radius = protocol.predicted("rho", hp, sigma2, dim)
        rel_r = (template.values - radius) / radius
        numbers["max_rel_error_radius"], numbers["mean_rel_error_radius"] = nan_stats(rel_r)
        key = "max_rel_error_pressure"
        tol = self.tolerance if use == "discrete" else self.pressure_tolerance
        passed = bool(np.isfinite(numbers[key]) and numbers[key] <= tol
                      and np.isfinite(numbers["max_rel_error_radius"])
                      and numbers["max_rel_error_radius"] <= self.tolerance)
        what = "discrete-time" if use == "discrete" else "ideal-gas"
        extra = (f"; SDE (ideal gas) {numbers['max_rel_error_pressure_sde']:.3g}" if use == "discrete" else "")
        summary = (f"lambda_eff vs {what} P: max rel. error {numbers[key]:.3g}, mean "
                   f"{numbers['mean_rel_error_pressure']:.3g} ({'<=' if passed else '>'} {tol:g}){extra}; "
                   f"radius pinned within {numbers['max_rel_error_radius']:.2g}{_comparison_text(numbers)}")
        context["prediction"] = use
        return self._result(passed=passed, key=key, numbers=numbers, summary=summary, details=details,
                            context=context, tolerance=tol,
                            plotter=lambda r, ax: _curves(r, ax, measured_name, predictions, "effective weight decay"))
