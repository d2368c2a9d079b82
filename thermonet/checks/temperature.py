"""``thermodynamic-temperature``: the temperature the state functions imply vs the kinetic one.

:func:`thermonet.analysis.thermodynamic.thermodynamic_temperature` gives
``T_thermo = (dU/dS)_V`` from the measured energy and entropy surfaces; the protocol gives
the kinetic ``T = eta_eff sigma^2 / 2`` from the step size and the measured noise. The
theory says they are the same temperature. No symmetry makes them agree: this is evidence
(on networks it assumes that the training loss is the energy, U = L).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from thermonet.analysis.surface import log_grid, surface_problem
from thermonet.analysis.thermodynamic import thermodynamic_temperature
from thermonet.base.plotting import log_mesh
from thermonet.checks.base import Check, CheckResult, assumes_loss_is_energy, nonnegative_tolerance, seed_mean
from thermonet.errors import InputError

__all__ = ["ThermodynamicTemperatureCheck"]


def _plot_ratio(result: CheckResult, ax) -> None:
    ratio = result.details["ratio"]
    hps = result.context["hyperparameters"]
    data = ratio.transpose(hps[1], hps[0]).values
    spread = np.nanmax(np.abs(data - 1)) if np.isfinite(data).any() else 0.1
    spread = max(spread, result.tolerance or 0.0, 1e-6)
    mesh = log_mesh(ax, ratio[hps[0]].values, ratio[hps[1]].values, data, cmap="RdBu_r", vmin=1 - spread,
                    vmax=1 + spread)
    ax.get_figure().colorbar(mesh, ax=ax, label="T_thermo / T_kinetic")
    ax.set_xlabel(hps[0])
    ax.set_ylabel(hps[1])


@attrs.frozen(kw_only=True)
class ThermodynamicTemperatureCheck(Check, name="thermodynamic-temperature"):
    """``(dU/dS)_V`` from the measured surfaces vs the kinetic ``T = eta_eff sigma^2/2``.

    Key figure ``abs_mean_ratio_error``: ``|<T_thermo/T> - 1|``, the grid mean of the ratio,
    with its standard error propagated through both fitted surfaces (the points share the
    fit, so the mean is the well-determined figure; pointwise ratios are reported and
    drawn, ``max_abs_ratio_error``). Default tolerance 3 % (a 10 % error in U fails),
    ``z = 3``. Evidence: theory (on networks it assumes U = L).
    """

    description: ClassVar[str] = "thermodynamic temperature (dU/dS)_V vs the kinetic eta_eff sigma^2 / 2"
    requires: ClassVar[tuple[str, ...]] = ("U", "S", "T", "V")
    evidence_reason: ClassVar[str] = ("the first law makes (dU/dS)_V a temperature; that it equals the kinetic "
                                      "one is the thermodynamic picture's claim, not a symmetry")

    tolerance: float = attrs.field(default=0.03, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def evidence_of(self, measured):
        return "theory", assumes_loss_is_energy(measured, self.evidence_reason)

    def applicability(self, measured, states):
        u, v, values = log_grid(seed_mean(states)["S"], tuple(measured.protocol.hyperparameters))
        return surface_problem(u, v, values)

    def _run(self, measured, states):
        hps = tuple(measured.protocol.hyperparameters)
        try:
            t = thermodynamic_temperature(states, hps)
        except InputError as exc:
            raise InputError(f"thermodynamic-temperature: {exc}") from None
        error = np.abs(t["ratio"].values - 1)
        finite = np.isfinite(error)
        mean_ratio, mean_se = t.attrs["mean_ratio"], t.attrs["mean_ratio_se"]
        numbers = {"abs_mean_ratio_error": abs(mean_ratio - 1), "mean_ratio": mean_ratio, "mean_ratio_se": mean_se,
                   "median_ratio": float(np.nanmedian(t["ratio"].values)),
                   "max_abs_ratio_error": float(np.nanmax(error)) if finite.any() else np.nan,
                   "mean_abs_ratio_error": float(np.nanmean(error)) if finite.any() else np.nan,
                   "ratio_se_median": float(np.nanmedian(t["ratio_se"].values)),
                   "r2_lnU": t.attrs["r2_lnU"], "r2_S": t.attrs["r2_S"], "points": float(finite.sum())}
        summary = (f"T_thermo/T_kinetic: grid mean {mean_ratio:.4g} +/- {mean_se:.2g} (|mean - 1| tolerance "
                   f"{self.tolerance:g}); pointwise max |ratio - 1| {numbers['max_abs_ratio_error']:.3g}, noise "
                   f"{numbers['ratio_se_median']:.2g}; surfaces R2 ln U {t.attrs['r2_lnU']:.4f}, S {t.attrs['r2_S']:.4f}")
        details = {name: t[name] for name in t.data_vars}
        return self._result(key="abs_mean_ratio_error", key_se=mean_se, numbers=numbers,
                            summary=summary, details=details, context={"hyperparameters": list(hps), "z": self.z},
                            plotter=_plot_ratio)
