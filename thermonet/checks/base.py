"""The check framework: :class:`Check` and :class:`CheckResult`.

A check compares one prediction of the theory with measured stationary states
(:class:`thermonet.store.MeasuredStates`, e.g. ``ds.thermo``) and returns a
:class:`CheckResult`: the key figures, the tolerance, a verdict, a one-line summary,
arrays for plots and a ``plot()`` method. Checks that cannot run on the given data (a
missing variable, a grid too small to fit a surface) return a result with
``passed=None`` (verdict ``"skip"``) and the reason as summary, never an exception.

Subclassing with a name registers a check (``class MaxwellCheck(Check, name="maxwell")``);
``optional = True`` keeps it out of the defaults (run it by name with
``thermonet check --also NAME``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import numpy as np
import xarray as xr

from thermonet.analysis.states import (  # noqa: F401 - re-exported: the checks' shared numerics
    hyperparameter_log_symbols,
    hyperparameter_values,
    like,
    log_gradient,
    nan_stats,
    seed_mean,
    seed_mean_and_error,
)
from thermonet.analysis.verdicts import VERDICTS, decide, decide_points  # noqa: F401 - re-exported
from thermonet.base.jsonsafe import json_safe
from thermonet.base.plotting import log_edges, log_mesh  # noqa: F401 - re-exported
from thermonet.errors import InputError
from thermonet.store import MeasuredStates, as_measured, measured_kind
from thermonet.theory.symbols import gas_constant  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from thermonet.theory.protocols import Protocol

__all__ = ["Check", "CheckResult", "json_safe", "nonnegative_count", "nonnegative_tolerance"]

from thermonet.base.registry import Registered  # noqa: E402


def nonnegative_tolerance(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: a finite number >= 0."""
    try:
        ok = math.isfinite(float(value)) and float(value) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"{type(instance).__name__}.{attribute.name} must be a finite number >= 0, got {value!r}")


def nonnegative_count(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"{type(instance).__name__}.{attribute.name} must be an int >= 0, got {value!r}")


#: What a check's comparison is evidence of.
EVIDENCE = ("theory", "identity")


@attrs.frozen(kw_only=True)
class CheckResult:
    """Outcome of one :class:`Check`.

    Attributes
    ----------
    name, description:
        The check's name and what it compares.
    verdict:
        ``"pass"``, ``"fail"``, ``"inconclusive"`` (this run cannot decide it: see
        :func:`decide` and ``to_decide``) or ``"skip"`` (the check does not apply).
    evidence, evidence_reason:
        ``"theory"``: the comparison can fail if the thermodynamic picture is wrong;
        ``"identity"``: it holds by a symmetry or by construction for this system, whatever
        the thermodynamics (then it tests measurement and stationarity, not the theory).
        The reason says why, in one line.
    key, key_se:
        Name of the key figure in ``numbers`` that the verdict compares with
        ``tolerance``, and its standard error (NaN when unknown); ``None`` when skipped.
    z:
        Standard errors a decision must clear.
    to_decide:
        For an inconclusive check: how many more seeds or steps would decide it.
    numbers:
        The key figures (floats), e.g. ``max_rel_error``; ``*_err`` entries are
        bootstrap standard errors over seeds.
    tolerance:
        The threshold the key figure must not exceed.
    summary:
        One line for a table or a log.
    details:
        Arrays (xarray objects) behind the numbers, for plots and further analysis.
    context:
        Protocol, window and similar facts about the data the check saw.
    """

    name: str
    description: str
    verdict: str = attrs.field(validator=attrs.validators.in_(VERDICTS))
    summary: str
    key: str | None = None
    key_se: float = math.nan
    z: float = 3.0
    evidence: str = attrs.field(default="theory", validator=attrs.validators.in_(EVIDENCE))
    evidence_reason: str = ""
    to_decide: str = ""
    numbers: dict[str, float] = attrs.field(factory=dict)
    tolerance: float | None = None
    details: dict[str, Any] = attrs.field(factory=dict, repr=False)
    context: dict[str, Any] = attrs.field(factory=dict)
    plotter: Callable[["CheckResult", "Axes"], None] | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def passed(self) -> bool | None:
        """``True`` (pass), ``False`` (fail), ``None`` (inconclusive or skipped)."""
        return {"pass": True, "fail": False}.get(self.verdict)

    @property
    def key_value(self) -> float:
        return float(self.numbers.get(self.key, math.nan)) if self.key else math.nan

    def plot(self, ax: "Axes | None" = None) -> "Figure":
        """Draw the check's figure on ``ax`` (a new Figure when ``None``) and return the Figure."""
        from thermonet.base.plotting import axes_or_new

        fig, ax = axes_or_new(ax)
        if self.plotter is None or self.verdict == "skip" and not self.details:
            ax.text(0.5, 0.5, f"{self.name}: {self.summary}", ha="center", va="center", wrap=True,
                    transform=ax.transAxes, fontsize=9)
            ax.set_axis_off()
        else:
            self.plotter(self, ax)
            ax.set_title(f"{self.name}: {self.verdict}", fontsize=10)
        return fig

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (details and the plot function are left out)."""
        return json_safe(
            {
                "name": self.name,
                "description": self.description,
                "verdict": self.verdict,
                "passed": self.passed,
                "evidence": self.evidence,
                "evidence_reason": self.evidence_reason,
                "key": self.key,
                "key_value": self.key_value if self.key else None,
                "key_se": self.key_se if self.key else None,
                "z": self.z,
                "to_decide": self.to_decide or None,
                "tolerance": self.tolerance,
                "summary": self.summary,
                "numbers": self.numbers,
                "context": self.context,
            }
        )


@attrs.frozen(kw_only=True)
class Check(Registered, abc.ABC, registry="check"):
    """A comparison of one theory prediction with measured stationary states.

    Subclasses register with a name (``class X(Check, name="x")``), set ``description``,
    give ``tolerance`` a default, list the stationary variables they need in ``requires``
    and implement :meth:`_run`. ``run`` handles the rest: it accepts a Dataset or any
    :class:`MeasuredStates`, computes the stationary states over ``window`` and skips
    with a reason when required data are missing or :meth:`applicability` objects.
    ``optional = True``: not among the default checks (run it by name).
    """

    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ("U", "T")
    optional: ClassVar[bool] = False
    #: Only meaningful for the isotropic system with an exact-vMF energy (left out elsewhere).
    needs_exact_vmf: ClassVar[bool] = False
    #: Only meaningful for runs with per-group variables (left out of the defaults elsewhere).
    needs_groups: ClassVar[bool] = False
    #: ``"theory"`` or ``"identity"`` (see :class:`CheckResult`), and why; per run: :meth:`evidence_of`.
    evidence: ClassVar[str] = "theory"
    evidence_reason: ClassVar[str] = ""

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)

    def applicability(self, measured: MeasuredStates, states: xr.Dataset) -> str | None:
        """``None`` when the check can run, else the reason it cannot (one line)."""
        return None

    def evidence_of(self, measured: MeasuredStates) -> tuple[str, str]:
        """``(evidence, reason)`` of this comparison on this run (default: the class's)."""
        return self.evidence, self.evidence_reason

    def run(self, measured: MeasuredStates | xr.Dataset, *, window: float | int = 0.5) -> CheckResult:
        """Run the check on the stationary states over the final ``window`` of the run."""
        m = as_measured(measured)
        states = m.stationary(window)
        context = {
            "protocol": m.protocol.name,
            "kind": measured_kind(m),
            "dim": m.dim,
            "window": window,
            **{k: v for k, v in states.attrs.items() if k.startswith("window_")},
        }
        missing = [v for v in self.requires if v not in states.data_vars or not bool(np.isfinite(states[v]).any())]
        reason = (f"needs {', '.join(missing)}, which the run does not provide" if missing
                  else self.applicability(m, states))
        evidence, why = self.evidence_of(m)
        if reason:
            return CheckResult(name=self.name, description=self.description, verdict="skip",
                               summary=f"skipped: {reason}", tolerance=self.tolerance, context=context,
                               evidence=evidence, evidence_reason=why)
        result = self._run(m, states)
        result = attrs.evolve(result, context={**context, **result.context}, evidence=evidence, evidence_reason=why)
        return _unless_entropy_is_a_bound(_unless_drifting(result, states), states, self.requires)

    @abc.abstractmethod
    def _run(self, measured: MeasuredStates, states: xr.Dataset) -> CheckResult:
        """The comparison itself, on validated stationary states."""

    def _result(self, *, key: str, numbers: Mapping[str, float], summary: str, key_se: float | None = None,
                points: tuple[np.ndarray, np.ndarray] | None = None, signed_points: bool = False,
                passed: bool | None = None,
                details: Mapping[str, Any] | None = None, plotter=None, context: Mapping[str, Any] | None = None,
                tolerance: float | None = None) -> CheckResult:
        """The result. The verdict: with ``points`` (disagreements and their standard errors
        over a grid; ``signed_points``: negative values are safe margins) :func:`decide_points`'s,
        which also sets ``numbers[key]`` to the largest disagreement; with ``key_se`` :func:`decide`'s on ``numbers[key]``; otherwise
        ``passed`` decides (pass / fail)."""
        tol = float(self.tolerance if tolerance is None else tolerance)
        z = float(getattr(self, "z", 3.0))
        to_decide = ""
        numbers = dict(numbers)
        if points is not None:
            verdict, to_decide, numbers[key], key_se = decide_points(points[0], points[1], tol, z,
                                                                     signed=signed_points)
        elif key_se is not None:
            verdict, to_decide = decide(float(numbers[key]), float(key_se), tol, z)
        else:
            verdict = "pass" if passed else "fail"
        return CheckResult(
            name=self.name,
            description=self.description,
            verdict=verdict,
            key=key,
            key_se=math.nan if key_se is None else float(key_se),
            z=z,
            to_decide=to_decide,
            numbers={k: float(v) for k, v in numbers.items()},
            tolerance=tol,
            summary=summary,
            details=dict(details or {}),
            plotter=plotter,
            context=dict(context or {}),
        )




def assumes_loss_is_energy(measured: MeasuredStates, reason: str) -> str:
    """``reason``, plus, for networks, that the training loss stands in for the energy: that
    assumes isotropic noise (under anisotropic noise the stationary law is exp(-Phi/T)
    with Phi != L, paper 004 §7.1)."""
    if measured_kind(measured) == "isotropic":
        return reason
    return reason + "; assumes U = L (the training loss as the energy: isotropic noise, paper 004 §7.1)"


def _unless_entropy_is_a_bound(result: CheckResult, states: xr.Dataset, requires: tuple[str, ...]) -> CheckResult:
    """A theory check built on entropies that are not estimates (``states.attrs["entropy_bound"]``:
    an upper bound, or N <= D) cannot decide: its pass or fail becomes inconclusive, and says
    why. Identities keep their verdict: a symmetry holds for any functional of the stationary
    law, so an estimator's bias cancels in them."""
    reason = states.attrs.get("entropy_bound", "")
    if (result.verdict not in ("pass", "fail") or not reason or result.evidence != "theory"
            or not {"S", "S_sphere"} & set(requires)):
        return result
    return attrs.evolve(result, verdict="inconclusive", to_decide=reason,
                        context={**result.context, "verdict_if_estimated": result.verdict})


def _unless_drifting(result: CheckResult, states: xr.Dataset) -> CheckResult:
    """A run whose window still drifts (``states["stationary"]`` false for some member)
    cannot decide a check: its pass or fail becomes inconclusive, and says so."""
    if result.verdict not in ("pass", "fail") or "stationary" not in states.data_vars:
        return result
    drifting = int((~np.asarray(states["stationary"].values, dtype=bool)).sum())
    if drifting == 0:
        return result
    total = int(np.asarray(states["stationary"]).size)
    note = (f"{drifting} of {total} members still drift over the window (drift test, |z| > "
            f"{states.attrs.get('drift_threshold', float('nan')):.1f}): run longer or take a later window")
    return attrs.evolve(result, verdict="inconclusive", to_decide=note,
                        numbers={**result.numbers, "drifting_members": float(drifting)},
                        context={**result.context, "verdict_if_stationary": result.verdict})
