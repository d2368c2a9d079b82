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
from thermonet.analysis.systems import exact_vmf_applies
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
    styles = {"sde": "--", "discrete": "-", "theory": "-."}
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


_IDENTITY_REASON = ("with the measured trSigma and G1^2 the discrete-time prediction is the norm recursion "
                    "rho'^2 = (1 - eta lambda)^2 rho^2 + eta^2 ||g||^2 (g is orthogonal to w), exact for any "
                    "scale-invariant model (THEORY §11): it tests stationarity and the measurement, not the "
                    "thermodynamics")
_THEORY_REASON = ("predicted from the set noise level and the exact vMF gradient norm at the kinetic temperature, "
                  "with no measured input: it fails when the stationary law is not vMF at T")


@attrs.frozen(kw_only=True)
class StationaryRadiusCheck(Check, name="stationary-radius"):
    """Measured stationary radius (fixed sphere: effective weight decay) vs its predictions (V1).

    Three predictions are computed and reported member by member
    (``details["member_errors"]``, :func:`member_error_table`):

    * ``theory`` (isotropic runs of an exact-vMF energy): the discrete-time radius with the
      set noise level and the exact vMF ``G1**2`` at the kinetic temperature, solved
      self-consistently (:meth:`~thermonet.theory.system.IsotropicNoiseSystem.discrete_state`):
      no measured input, so the comparison is evidence for the theory;
    * ``discrete``: the discrete-time radius with the *measured* trSigma and G1**2 — for any
      scale-invariant model the norm recursion makes this an identity (THEORY §11);
    * ``sde``: the ideal-gas (SDE) radius with the measured noise level.

    ``prediction`` picks the one the verdict uses: ``"auto"`` (default) is ``theory`` where
    the exact vMF law applies and ``discrete`` elsewhere; the check's ``evidence`` follows
    (theory / identity). Key figure: the largest relative error over members; each member's
    standard error combines the batch-means errors of the measured radius and, for the
    discrete prediction, of the noise measurement behind it (:func:`_discrete_radius_noise`).
    Default tolerance 5 %.

    Fixed sphere (the pressure is measured): the same with ``lambda_eff`` (measured from the
    training steps' gradient norms) against the protocol's pressure at the predicted
    ``E||g~||**2`` (theory), at the measured ``(trSigma + G1**2)/rho**2`` (discrete: an identity),
    and the ideal-gas pressure (sde); the radius must also be pinned within ``tolerance``.

    Also reported: ``*_rel_error_fluctuating`` (the discrete balance in expectation over the
    measured radius fluctuation) and the ``large_step_*`` comparison of SDE and discrete
    forms on the third of the members with the largest predicted correction.
    """

    description: ClassVar[str] = ("stationary radius vs theory, discrete-time and SDE predictions "
                                  "(fixed sphere: lambda_eff vs the predicted pressure)")
    requires: ClassVar[tuple[str, ...]] = ("rho", "sigma2")

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)
    prediction: str = attrs.field(default="auto")
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    @prediction.validator
    def _check_prediction(self, attribute, value):
        if value not in ("auto", "theory", "discrete", "sde"):
            raise InputError(f"StationaryRadiusCheck.prediction must be auto, theory, discrete or sde, got {value!r}")

    def applicability(self, measured, states):
        pressure = measured.protocol.measured_pressure
        if pressure is not None and pressure not in states.data_vars:
            return f"a {measured.protocol.name} run needs its measured pressure {pressure}"
        if self._use(measured) == "discrete" and not self._have_noise(states):
            return "the discrete-time prediction needs the measured trace_sigma and grad_full_sq"
        return None

    def _use(self, measured) -> str:
        if self.prediction != "auto":
            return self.prediction
        return "theory" if exact_vmf_applies(measured) else "discrete"

    def evidence_of(self, measured):
        use = self._use(measured)
        if use == "discrete":
            return "identity", _IDENTITY_REASON
        if use == "theory":
            return "theory", _THEORY_REASON
        return "theory", "the ideal-gas (SDE) radius with the measured noise level: the discrete step makes it fail"

    @staticmethod
    def _have_noise(states) -> bool:
        return all(v in states.data_vars and bool(np.isfinite(states[v]).any())
                   for v in ("trace_sigma", "grad_full_sq"))

    def _predictions(self, measured, states, hp) -> dict[str, np.ndarray]:
        """The predicted radius (or, for a measured pressure, E||g~||**2) of every member, per kind."""
        from thermonet.theory.system import IsotropicNoiseSystem

        protocol, dim = measured.protocol, measured.dim
        sigma2 = states["sigma2"].values
        out = {"sde": protocol.predicted("rho", hp, sigma2, dim)}
        if exact_vmf_applies(measured):
            state = IsotropicNoiseSystem.create(protocol, dim).discrete_state(hp, sigma2)
            out["theory"] = state["rho"]
            out["theory_grad_norm_sq"] = state["grad_norm_sq"]
        if self._have_noise(states):
            tr, g1 = states["trace_sigma"].values, states["grad_full_sq"].values
            with np.errstate(invalid="ignore"):
                out["discrete"] = protocol.predicted_radius_discrete(hp, tr, g1)
            out["discrete_grad_norm_sq"] = (tr + g1) / states["rho"].values ** 2
        return out

    def _run(self, measured, states):
        protocol = measured.protocol
        hps = tuple(protocol.hyperparameters)
        hp = hyperparameter_values(states["rho"], hps)
        template = states["rho"]
        use = self._use(measured)
        predictions = self._predictions(measured, states, hp)
        if use not in predictions:
            raise InputError(f"stationary-radius: no {use} prediction for this run")
        context = {"hyperparameters": list(hps), "prediction": use}
        if protocol.measured_pressure is not None:
            return self._run_pressure(measured, states, hp, template, predictions, use, context)

        numbers: dict[str, float] = {}
        details = {"rho": template}
        rho_se = states["rho_se"].values / template.values if "rho_se" in states.data_vars else np.zeros(
            template.shape)
        errors = {}
        for kind in ("theory", "discrete", "sde"):
            if kind in predictions:
                errors[kind] = (template.values - predictions[kind]) / predictions[kind]
                numbers[f"max_rel_error_{kind}"], numbers[f"mean_rel_error_{kind}"] = nan_stats(errors[kind])
                details[f"rho_{kind}"] = like(template, predictions[kind], f"rho_{kind}")
                details[f"rel_error_{kind}"] = like(template, errors[kind], f"rel_error_{kind}")
        noise = np.abs(np.nan_to_num(rho_se))
        large = None
        if "discrete" in predictions:
            comparison, large = _large_step_comparison(errors["sde"], errors["discrete"],
                                                       np.abs(predictions["discrete"] / predictions["sde"] - 1))
            numbers.update(comparison)
            discrete_noise = _discrete_radius_noise(protocol, hp, states, predictions["discrete"])
            if discrete_noise is not None:
                numbers["rel_noise_discrete_median"] = float(np.nanmedian(discrete_noise))
                details["rel_noise_discrete"] = like(template, discrete_noise, "rel_noise_discrete")
                if use == "discrete":
                    noise = discrete_noise
            if "rho_sq_rel_var" in states.data_vars:
                rho_fl = protocol.predicted_radius_fluctuating(hp, states["trace_sigma"].values,
                                                               states["grad_full_sq"].values,
                                                               states["rho_sq_rel_var"].values)
                rel_fl = (template.values - rho_fl) / rho_fl
                numbers["max_rel_error_fluctuating"], numbers["mean_rel_error_fluctuating"] = nan_stats(rel_fl)
        details["member_errors"] = _member_errors(template, template.values, predictions["sde"],
                                                  predictions.get("discrete"), large, "rho")
        key = f"max_rel_error_{use}"
        others = "; ".join(f"{kind} {numbers[f'max_rel_error_{kind}']:.3g}" for kind in errors if kind != use)
        summary = (f"radius vs {use} prediction: max rel. error {numbers[key]:.3g}, mean "
                   f"{numbers[f'mean_rel_error_{use}']:.3g} (tolerance {self.tolerance:g}); {others}"
                   f"{_comparison_text(numbers)}")
        shown = {f"rho_{k}": k for k in errors}
        return self._result(key=key, points=(errors[use], noise), numbers=numbers, summary=summary, details=details,
                            context=context, plotter=lambda r, ax: _curves(r, ax, "rho", shown, "radius rho"))

    def _run_pressure(self, measured, states, hp, template, predictions, use, context):
        protocol, dim = measured.protocol, measured.dim
        name = protocol.measured_pressure
        lam = states[name].values
        numbers: dict[str, float] = {}
        details = {name: states[name], "rho": template}
        expected = {"sde": protocol.predicted("P", hp, states["sigma2"].values, dim)}
        for kind in ("theory", "discrete"):
            if f"{kind}_grad_norm_sq" in predictions:
                expected[kind] = protocol.pressure_series(hp, predictions[f"{kind}_grad_norm_sq"])
        errors = {}
        for kind, value in expected.items():
            errors[kind] = (lam - value) / value
            numbers[f"max_rel_error_pressure_{kind}"], numbers[f"mean_rel_error_pressure_{kind}"] = \
                nan_stats(errors[kind])
            details[f"P_{kind}"] = like(template, value, f"P_{kind}")
            details[f"rel_error_pressure_{kind}"] = like(template, errors[kind], f"rel_error_pressure_{kind}")
        large = None
        if "discrete" in expected:
            comparison, large = _large_step_comparison(errors["sde"], errors["discrete"],
                                                       np.abs(expected["discrete"] / expected["sde"] - 1))
            numbers.update(comparison)
        details["member_errors"] = _member_errors(template, lam, expected["sde"], expected.get("discrete"), large, name)
        radius = protocol.predicted("rho", hp, states["sigma2"].values, dim)
        rel_r = (template.values - radius) / radius
        numbers["max_rel_error_radius"], numbers["mean_rel_error_radius"] = nan_stats(rel_r)
        numbers["max_rel_error_pressure"] = numbers[f"max_rel_error_pressure_{use}"]
        se_name = f"{name}_se"
        noise = np.abs(states[se_name].values / lam) if se_name in states.data_vars else np.zeros(lam.shape)
        # the radius is pinned: a member off its sphere counts as a disagreement of the same size
        disagreement = np.fmax(np.abs(errors[use]), np.abs(rel_r))
        others = "; ".join(f"{kind} {numbers[f'max_rel_error_pressure_{kind}']:.3g}" for kind in errors if kind != use)
        summary = (f"{name} vs {use} pressure: max rel. error {numbers['max_rel_error_pressure']:.3g}, mean "
                   f"{numbers[f'mean_rel_error_pressure_{use}']:.3g} (tolerance {self.tolerance:g}); {others}; "
                   f"radius pinned within {numbers['max_rel_error_radius']:.2g}{_comparison_text(numbers)}")
        shown = {f"P_{k}": k for k in errors}
        return self._result(key="max_rel_error_pressure", points=(disagreement, noise), numbers=numbers,
                            summary=summary, details=details, context=context,
                            plotter=lambda r, ax: _curves(r, ax, name, shown, "effective weight decay"))
