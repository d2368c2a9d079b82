"""Thermodynamic processes: paths of states defined by one constraint each.

A process is a class with a single method, :meth:`Process.constraint`, returning an
expression in the state variables ``T``, ``P``, ``V``, ``S`` that stays equal to its value
at the start state along the path. Everything else -- the path of states, the
hyperparameter path a protocol must follow, ``dS``, ``dU``, work and heat -- comes from the
base class and the system's equation of state and state functions::

    class Polytropic(Process):
        n: float = attrs.field(default=1.5)

        def constraint(self):
            return P * V**self.n

Conventions: first law ``dU = dQ - P dV``, so the work done by the system is
``W = integral P dV`` and the heat taken in is ``Q = dU + W``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import attrs
import numpy as np
import sympy as sp
import xarray as xr
from scipy import integrate, optimize

from thermonet.errors import InputError
from thermonet.base import validate as _validate
from thermonet.theory.symbols import D, P, S, T, V, sigma2
from thermonet.theory.system import ThermodynamicSystem

_STATE_NAMES = ("T", "P", "V")


@attrs.frozen
class State:
    """A state of the gas given by two of T, P, V (the third follows from the equation of state)."""

    T: float | None = attrs.field(default=None, validator=_validate.positive)
    P: float | None = attrs.field(default=None, validator=_validate.positive)
    V: float | None = attrs.field(default=None, validator=_validate.positive)

    def given(self) -> dict[str, float]:
        return {k: float(v) for k, v in attrs.asdict(self).items() if v is not None}


@attrs.frozen(kw_only=True)
class ProcessPath:
    """States along a process, with the integrated first-law quantities."""

    process: "Process"
    states: xr.Dataset  #: T, P, V, S, U along the dimension ``point``; hyperparameters too

    @property
    def delta_S(self) -> float:
        return float(self.states.S[-1] - self.states.S[0])

    @property
    def delta_U(self) -> float:
        return float(self.states.U[-1] - self.states.U[0])

    @property
    def work(self) -> float:
        """W = integral P dV (done by the system)."""
        return float(integrate.simpson(self.states.P.values, x=self.states.V.values))

    @property
    def heat(self) -> float:
        """Q = dU + W (first law)."""
        return self.delta_U + self.work

    def summary(self) -> dict[str, float]:
        return {"delta_S": self.delta_S, "delta_U": self.delta_U, "W": self.work, "Q": self.heat}


@attrs.frozen
class Process(abc.ABC):
    """A path of equilibrium states on which :meth:`constraint` is constant."""

    @abc.abstractmethod
    def constraint(self) -> sp.Expr:
        """Expression in the symbols T, P, V, S that is constant along the process."""

    # ------------------------------------------------------------------ derived
    def constraint_in(self, system: ThermodynamicSystem) -> sp.Expr:
        """The constraint as a function of (T, V), via the system's P(T, V) and S(T, V)."""
        expr = self.constraint().subs({S: system.entropy_expr(), P: system.eos.solve_for("P")})
        return expr.subs(D, system.dim)

    def path(self, system: ThermodynamicSystem, start: State, to: Mapping[str, float], num: int = 50) -> ProcessPath:
        """Equilibrium states from ``start`` to the point where ``to``'s variable reaches its value.

        ``to`` names one of ``T``, ``P``, ``V`` (e.g. ``{"V": 2.0}``), which is stepped
        geometrically in ``num`` points; the other two variables solve the constraint
        and the equation of state.
        """
        if len(to) != 1 or next(iter(to)) not in _STATE_NAMES:
            raise InputError(f"'to' must name exactly one of T, P, V, got {dict(to)!r}")
        if num < 2:
            raise InputError(f"num must be >= 2, got {num}")
        (target_name, target_end), = to.items()
        if not np.isfinite(target_end) or target_end <= 0:
            raise InputError(f"the end value of {target_name} must be > 0, got {target_end}")
        t0, v0 = _complete(system, start)
        numeric = _NumericSystem(system, self)
        c0 = numeric.constraint(t0, v0)
        start_value = numeric.variable(target_name, t0, v0)
        targets = np.geomspace(start_value, target_end, num)

        log_tv = np.log([t0, v0])
        rows = []
        for target in targets:
            def equations(x: np.ndarray) -> np.ndarray:
                with np.errstate(over="ignore"):
                    t, v = np.exp(x)
                return np.array([
                    numeric.relative(numeric.constraint(t, v), c0),
                    np.log(numeric.variable(target_name, t, v) / target),
                ])

            sol = optimize.root(equations, log_tv, method="hybr", options={"xtol": 1e-12})
            # hybr may report slow progress once it sits at machine precision: judge the residual.
            if np.max(np.abs(equations(sol.x))) > 1e-8:
                raise InputError(
                    f"{type(self).__name__}: no state with {target_name} = {target:.6g} on this path "
                    f"(the constraint cannot be met there: {sol.message})"
                )
            log_tv = sol.x
            rows.append(np.exp(sol.x))
        t, v = np.array(rows).T
        states = numeric.states(t, v)
        return ProcessPath(process=self, states=states)


# ---------------------------------------------------------------------- the four classics
@attrs.frozen
class Isochoric(Process):
    """Constant volume (constant radius)."""

    def constraint(self):
        return V


@attrs.frozen
class Isobaric(Process):
    """Constant pressure (constant weight decay)."""

    def constraint(self):
        return P


@attrs.frozen
class Isothermal(Process):
    """Constant temperature."""

    def constraint(self):
        return T


@attrs.frozen
class Adiabatic(Process):
    """Constant entropy (reversible, no heat exchanged): solved from S, not from gamma."""

    def constraint(self):
        return S


# ---------------------------------------------------------------------- numerics
class _NumericSystem:
    """Lambdified state functions of a system along one process."""

    def __init__(self, system: ThermodynamicSystem, process: Process) -> None:
        self.system = system
        self.pressure = sp.lambdify([T, V], system.eos.solve_for("P").subs(D, system.dim), "numpy")
        constraint = process.constraint()
        self.uses_entropy = S in constraint.free_symbols
        self._constraint = sp.lambdify([T, P, V, S], constraint.subs(D, system.dim), "numpy")
        inverse = system.protocol.hyperparameters_of_state(system.eos)
        natural = [{"T": T, "P": P, "V": V}[n] for n in system.protocol.natural_variables]
        self.hyperparameters = {
            name: sp.lambdify(natural, expr.subs({D: system.dim, sigma2: system.sigma2}), "numpy")
            for name, expr in inverse.items()
        }

    def constraint(self, t: float, v: float) -> float:
        p = self.pressure(t, v)
        s = float(self.system.entropy(t, v)) if self.uses_entropy else 0.0
        return float(self._constraint(t, p, v, s))

    def variable(self, name: str, t: float, v: float) -> float:
        return {"T": t, "V": v, "P": float(self.pressure(t, v))}[name]

    @staticmethod
    def relative(value: float, reference: float) -> float:
        return (value - reference) / max(abs(reference), 1.0)

    def states(self, t: np.ndarray, v: np.ndarray) -> xr.Dataset:
        p = np.asarray(self.pressure(t, v), dtype=float) * np.ones_like(t)
        data = {
            "T": t, "P": p, "V": v, "rho": np.sqrt(2 * v),
            "S": self.system.entropy(t, v), "U": self.system.internal_energy_value(t, v),
        }
        natural = [data[n] for n in self.system.protocol.natural_variables]
        for name, fn in self.hyperparameters.items():
            data[name] = np.asarray(fn(*natural), dtype=float) * np.ones_like(t)
        return xr.Dataset({k: ("point", np.asarray(x, dtype=float)) for k, x in data.items()},
                          attrs={"protocol": self.system.protocol.name, "dim": self.system.dim})


def _complete(system: ThermodynamicSystem, start: State) -> tuple[float, float]:
    """(T, V) of a start state given by any two of T, P, V."""
    given = start.given()
    if len(given) != 2:
        raise InputError(f"a start state needs exactly two of T, P, V; got {sorted(given) or 'none'}")
    for name, value in given.items():
        if not np.isfinite(value) or value <= 0:
            raise InputError(f"start state: {name} must be > 0, got {value}")
    eos = system.eos
    if "T" in given and "V" in given:
        return given["T"], given["V"]
    if "T" in given:
        return given["T"], float(eos.volume(np.array(given["T"]), np.array(given["P"])))
    return float(eos.temperature(np.array(given["P"]), np.array(given["V"]))), given["V"]
