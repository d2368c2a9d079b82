"""``noise-trend`` (optional): is the noise level constant, as the ideal gas assumes?

Fits ``sigma2 = A x**beta`` over all members (:func:`thermonet.analysis.noise.noise_trend`),
``x`` the protocol's trend variable. Networks are expected to fail it (paper 004, §7.3),
so it is not among the default checks.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import attrs

from thermonet.analysis.noise import noise_trend, plot_trend
from thermonet.checks.base import Check, CheckResult, nonnegative_tolerance
from thermonet.errors import InputError

__all__ = ["NoiseTrendCheck"]


@attrs.frozen(kw_only=True)
class NoiseTrendCheck(Check, name="noise-trend"):
    """Constant noise level (the theory's assumption behind one temperature scale).

    Fits ``sigma2 = A x**beta`` over all members, ``x`` the protocol's trend variable
    (``eta lambda``, ``eta~``, ``eta/rho_0**2``). Key figure ``abs_slope``: ``|beta|`` with
    its least-squares standard error; default tolerance 0.05, ``z = 3`` (pass, fail or
    inconclusive by :func:`~thermonet.checks.base.decide`). Evidence: theory. The isotropic
    model passes (sigma2 is constant). A network
    that fails it is not an ideal gas with one constant noise level: its temperature
    must come from the measured sigma2 (as ``stationary()`` computes it), and
    ``thermonet fit-eos`` compares real-gas equations of state on it.
    """

    optional: ClassVar[bool] = True  # networks are expected to fail it (paper 004, §7.3)
    evidence_reason: ClassVar[str] = "the ideal gas assumes one constant noise level; the rescaling symmetry does not"
    description: ClassVar[str] = ("measured noise level sigma2 against eta*lambda (fixed LR), eta~ (fixed ELR) "
                                  "or eta/rho_0**2 (fixed sphere): power-law slope, expected 0")
    requires: ClassVar[tuple[str, ...]] = ("sigma2", "rho")

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        try:
            noise_trend(measured, states=states)
        except InputError as exc:
            return str(exc)
        return None

    def _run(self, measured, states) -> CheckResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            trend = noise_trend(measured, states=states)
        t = trend.trend
        se = t.slope_se if math.isfinite(t.slope_se) else 0.0
        numbers = {"slope": t.slope, "slope_se": t.slope_se,
                   "prefactor": t.prefactor, "prefactor_se": t.prefactor_se, "r2": t.r2,
                   "residual_std": t.residual_std, "members": float(t.n)}
        for k, value in trend.exponents.items():
            numbers[f"exponent_{k}" if not k == "r2" else "exponents_r2"] = value
        numbers["abs_slope"] = abs(t.slope)
        meaning = ("noise level constant, as the theory assumes" if abs(t.slope) <= self.tolerance else
                   "the noise level varies: one constant noise level (the ideal gas) does not describe this run; "
                   "use the measured temperature or a real-gas fit")
        summary = (f"sigma2 ~ ({trend.variable})^{t.slope:.3g} +/- {t.slope_se:.2g} (tolerance {self.tolerance:g} on "
                   f"|slope|): {meaning}")
        details = {"sigma2": trend.states["sigma2"], "x": trend.states["x"], "T": trend.states["T"],
                   "T_unit": trend.states["T_unit"]}

        def plotter(result, ax, trend=trend):
            plot_trend(trend, ax)

        return self._result(key="abs_slope", key_se=se, numbers=numbers, summary=summary,
                            details=details, plotter=plotter,
                            context={"variable": trend.variable, "hyperparameters": list(trend.hyperparameters)})
