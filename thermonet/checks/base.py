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


@attrs.frozen(kw_only=True)
class CheckResult:
    """Outcome of one :class:`Check`.

    Attributes
    ----------
    name, description:
        The check's name and what it compares.
    passed:
        ``True``/``False``, or ``None`` when the check was skipped.
    key:
        Name of the key figure in ``numbers`` that the verdict compares with
        ``tolerance`` (``None`` when skipped).
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
    passed: bool | None
    summary: str
    key: str | None = None
    numbers: dict[str, float] = attrs.field(factory=dict)
    tolerance: float | None = None
    details: dict[str, Any] = attrs.field(factory=dict, repr=False)
    context: dict[str, Any] = attrs.field(factory=dict)
    plotter: Callable[["CheckResult", "Axes"], None] | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def verdict(self) -> str:
        """``"pass"``, ``"fail"`` or ``"skip"``."""
        return "skip" if self.passed is None else ("pass" if self.passed else "fail")

    @property
    def key_value(self) -> float:
        return float(self.numbers.get(self.key, math.nan)) if self.key else math.nan

    def plot(self, ax: "Axes | None" = None) -> "Figure":
        """Draw the check's figure on ``ax`` (a new Figure when ``None``) and return the Figure."""
        from thermonet.base.plotting import axes_or_new

        fig, ax = axes_or_new(ax)
        if self.plotter is None or self.passed is None and not self.details:
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
                "key": self.key,
                "key_value": self.key_value if self.key else None,
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

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)

    def applicability(self, measured: MeasuredStates, states: xr.Dataset) -> str | None:
        """``None`` when the check can run, else the reason it cannot (one line)."""
        return None

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
        if reason:
            return CheckResult(name=self.name, description=self.description, passed=None, summary=f"skipped: {reason}",
                               tolerance=self.tolerance, context=context)
        result = self._run(m, states)
        return attrs.evolve(result, context={**context, **result.context})

    @abc.abstractmethod
    def _run(self, measured: MeasuredStates, states: xr.Dataset) -> CheckResult:
        """The comparison itself, on validated stationary states."""

    def _result(self, *, passed: bool, key: str, numbers: Mapping[str, float], summary: str,
                details: Mapping[str, Any] | None = None, plotter=None, context: Mapping[str, Any] | None = None,
                tolerance: float | None = None) -> CheckResult:
        return CheckResult(
            name=self.name,
            description=self.description,
            passed=bool(passed),
            key=key,
            numbers={k: float(v) for k, v in numbers.items()},
            tolerance=float(self.tolerance if tolerance is None else tolerance),
            summary=summary,
            details=dict(details or {}),
            plotter=plotter,
            context=dict(context or {}),
        )


