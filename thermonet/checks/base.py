"""The check framework: :class:`Check`, :class:`CheckResult` and shared numerics.

A check compares one prediction of the theory with measured stationary states
(:class:`thermonet.store.MeasuredStates`, e.g. ``ds.thermo``) and returns a
:class:`CheckResult`: the key figures, the tolerance, a verdict, a one-line summary,
arrays for plots and a ``plot()`` method. Checks that cannot run on the given data (a
missing variable, a grid too small to fit a surface) return a result with
``passed=None`` (verdict ``"skip"``) and the reason as summary, never an exception.
"""

from __future__ import annotations

import abc
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import numpy as np
import sympy as sp
import xarray as xr

from thermonet.errors import InputError
from thermonet.store import MeasuredStates, as_measured, measured_kind

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from thermonet.theory.protocols import Protocol

__all__ = ["Check", "CheckResult", "json_safe", "nonnegative_count", "nonnegative_tolerance"]


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


def json_safe(value: Any) -> Any:
    """Convert numpy scalars/arrays, NaN and inf into JSON-serialisable values (NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


@attrs.define(kw_only=True)
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
        from thermonet.plotting import axes_or_new

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
class Check(abc.ABC):
    """A comparison of one theory prediction with measured stationary states.

    Subclasses set the class variables ``name`` and ``description``, give
    ``tolerance`` a default, list the stationary variables they need in ``requires``
    and implement :meth:`_run`. ``run`` handles the rest: it accepts a Dataset or any
    :class:`MeasuredStates`, computes the stationary states over ``window`` and skips
    with a reason when required data are missing or :meth:`applicability` objects.
    """

    name: ClassVar[str] = "check"
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ("U", "T")

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
        result.context = {**context, **result.context}
        return result

    @abc.abstractmethod
    def _run(self, measured: MeasuredStates, states: xr.Dataset) -> CheckResult:
        """The comparison itself, on validated stationary states."""

    def _result(self, *, passed: bool, key: str, numbers: Mapping[str, float], summary: str,
                details: Mapping[str, Any] | None = None, plotter=None, context: Mapping[str, Any] | None = None
                ) -> CheckResult:
        return CheckResult(
            name=self.name,
            description=self.description,
            passed=bool(passed),
            key=key,
            numbers={k: float(v) for k, v in numbers.items()},
            tolerance=float(self.tolerance),
            summary=summary,
            details=dict(details or {}),
            plotter=plotter,
            context=dict(context or {}),
        )


# ---------------------------------------------------------------------- shared numerics
def hyperparameter_values(states: xr.Dataset | xr.DataArray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Hyperparameter coordinates broadcast to the shape (and dim order) of ``states``."""
    template = states if isinstance(states, xr.DataArray) else states["U"]
    return {n: template[n].broadcast_like(template).transpose(*template.dims).values for n in names}


def like(template: xr.DataArray, values: np.ndarray, name: str | None = None) -> xr.DataArray:
    """``values`` as a DataArray with the dims and coordinates of ``template``."""
    return xr.DataArray(np.asarray(values, dtype=float), dims=template.dims, coords=template.coords, name=name)


def seed_mean(states: xr.Dataset) -> xr.Dataset:
    """NaN-skipping mean over ``seed`` (no-op without a seed dimension)."""
    if "seed" not in states.dims:
        return states
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return states.mean("seed", skipna=True, keep_attrs=True)


def nan_stats(values: np.ndarray | xr.DataArray) -> tuple[float, float]:
    """(max, mean) of the finite entries of ``|values|``; NaN when there are none."""
    a = np.abs(np.asarray(values, dtype=float))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan
    return float(a.max()), float(a.mean())


def gas_constant(dim: float) -> float:
    """N_R = (D - 1)/2, taken from the theory's symbol (not retyped)."""
    from thermonet.theory.symbols import N_R, D

    return float(N_R.subs(D, sp.nsimplify(dim)))


def hyperparameter_log_symbols() -> tuple[sp.Symbol, sp.Symbol]:
    """The (u, v) symbols :meth:`Protocol.maxwell_relation` uses (real ``u``, ``v``)."""
    return sp.Symbol("u", real=True), sp.Symbol("v", real=True)


def log_gradient(protocol: "Protocol", quantity: str, dim: float) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Numeric (d ln X/du, d ln X/dv) of a state variable X of ``protocol.state()``.

    u, v are the logs of the two hyperparameters. Returns ``f(u, v, sigma2)`` giving the
    two derivatives, broadcast to the inputs' shape.
    """
    return _log_gradient(protocol, quantity, float(dim))


@functools.lru_cache(maxsize=64)
def _log_gradient(protocol: "Protocol", quantity: str, dim: float):
    from thermonet.theory.symbols import HYPERPARAMETER_SYMBOLS, D, sigma2

    u, v = hyperparameter_log_symbols()
    h1, h2 = (HYPERPARAMETER_SYMBOLS[n] for n in protocol.hyperparameters)
    expr = sp.log(protocol.state()[quantity].subs({h1: sp.exp(u), h2: sp.exp(v)}).subs(D, sp.nsimplify(dim)))
    du, dv = sp.simplify(sp.diff(expr, u)), sp.simplify(sp.diff(expr, v))
    f_u = sp.lambdify([u, v, sigma2], du, "numpy")
    f_v = sp.lambdify([u, v, sigma2], dv, "numpy")

    def evaluate(u_: np.ndarray, v_: np.ndarray, sigma2_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = np.broadcast_shapes(np.shape(u_), np.shape(v_), np.shape(sigma2_))
        return (np.asarray(f_u(u_, v_, sigma2_), dtype=float) * np.ones(shape),
                np.asarray(f_v(u_, v_, sigma2_), dtype=float) * np.ones(shape))

    return evaluate


# ---------------------------------------------------------------------- plotting helpers
def log_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around log-spaced centres (geometric midpoints, extended at both ends)."""
    x = np.log(np.asarray(values, dtype=float))
    if x.size == 1:
        return np.exp(np.array([x[0] - 0.5, x[0] + 0.5]))
    mid = (x[1:] + x[:-1]) / 2
    return np.exp(np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]]))


def log_mesh(ax: "Axes", x: np.ndarray, y: np.ndarray, data: np.ndarray, **kwargs):
    """``pcolormesh`` of ``data[len(y), len(x)]`` on log axes with cells centred on the grid points."""
    mesh = ax.pcolormesh(log_edges(x), log_edges(y), np.asarray(data, dtype=float), shading="flat", **kwargs)
    ax.set_xscale("log")
    ax.set_yscale("log")
    return mesh


def seed_mean_and_error(states: xr.Dataset, var: str) -> tuple[xr.DataArray, xr.DataArray]:
    """Seed mean of ``states[var]`` and its standard error.

    The error combines the members' standard errors ``states[var + "_se"]`` (time-series
    batch means, :func:`thermonet.store.batch_standard_error`) as independent:
    ``sqrt(sum se**2) / n_seeds``. Zero when the states carry no ``*_se`` variable.
    """
    field = states[var]
    se_name = f"{var}_se"
    se = states[se_name] if se_name in states.data_vars else xr.zeros_like(field)
    if "seed" not in field.dims:
        return field, se.fillna(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = field.mean("seed", skipna=True)
        finite = field.notnull()
        count = finite.sum("seed")
        error = np.sqrt((se.where(finite) ** 2).sum("seed", skipna=True)) / count.where(count > 0)
    return mean, error.fillna(0.0)
