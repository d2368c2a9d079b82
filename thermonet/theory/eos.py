"""Equations of state: the relation between pressure P, volume V and temperature T.

Each subclass states its relation once, as a SymPy expression that vanishes on the
equation of state (:meth:`EquationOfState.relation_template`), and its free parameters
as attrs fields declared with :func:`parameter`. Everything else is derived by the base
class: solving for any of P, V, T, numeric (lambdified) functions, and least-squares
fits to measured states. Subclassing with a name registers it
(``class Virial(EquationOfState, name="virial")``), which is how ``thermonet fit-eos``
finds it.

Conventions: ``V = rho**2 / 2``, ``P`` is the (effective) weight decay, ``T`` the
temperature, and ``N_R = (D - 1) / 2`` the gas constant of the ideal gas ``P V = N_R T``.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable

import attrs
import numpy as np
import sympy as sp
from scipy import optimize

from thermonet.base import validate as _validate
from thermonet.base.registry import Registered
from thermonet.errors import InputError
from thermonet.theory.symbols import N_R, D, P, T, V, as_number

_PARAMETER = "thermonet.eos_parameter"


class _classproperty:
    """A read-only property of the class (and of its instances)."""

    def __init__(self, fget):
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj, owner):
        return self.fget(owner)


def parameter(default: float = 0.0, *, validator=_validate.finite):
    """An attrs field that is a free parameter of an equation of state (fitted by :meth:`EquationOfState.fit`)."""
    return attrs.field(default=default, validator=validator, metadata={_PARAMETER: True})

_STATE = {"P": P, "V": V, "T": T}


@attrs.frozen(kw_only=True)
class FitResult:
    """Outcome of :meth:`EquationOfState.fit`.

    Residuals are in log-pressure, ``ln P_model(T, V) - ln P_measured``; ``r2`` compares
    their sum of squares with the spread of ``ln P``. ``aic``/``bic`` use the Gaussian
    log-likelihood of those residuals, ``n ln(RSS/n) + 2k`` and ``n ln(RSS/n) + k ln n``.
    """

    eos: "EquationOfState"
    parameters: dict[str, float]
    uncertainties: dict[str, float]
    residuals: np.ndarray
    r2: float
    aic: float
    bic: float
    rss: float
    n_observations: int
    n_parameters: int
    success: bool
    message: str = ""

    def summary(self) -> str:
        """One line per parameter plus the goodness-of-fit figures."""
        lines = [f"{type(self.eos).__name__}: R2={self.r2:.4f} AIC={self.aic:.2f} BIC={self.bic:.2f}"]
        for name, value in self.parameters.items():
            lines.append(f"  {name} = {value:.6g} +/- {self.uncertainties[name]:.2g}")
        return "\n".join(lines)


@attrs.frozen(kw_only=True)
class EquationOfState(Registered, abc.ABC, registry="equation of state"):
    """Abstract equation of state ``f(P, V, T; parameters) = 0``.

    Parameters
    ----------
    dim:
        Number of scale-invariant parameters D (>= 2). ``None`` keeps D symbolic.
    n_r:
        Gas constant N_R; defaults to ``(dim - 1) / 2``.

    Subclasses declare their free parameters as fields with :func:`parameter` and
    implement :meth:`relation_template`.
    """

    dim: float | None = attrs.field(default=None, validator=_validate.dimension)
    n_r: float | None = attrs.field(default=None, validator=_validate.positive)

    @_classproperty
    def parameter_names(cls) -> tuple[str, ...]:
        """The free parameters: the fields declared with :func:`parameter`, in order."""
        return tuple(f.name for f in attrs.fields(cls) if f.metadata.get(_PARAMETER))

    # ------------------------------------------------------------------ the one relation
    @abc.abstractmethod
    def relation_template(self, gas_constant: sp.Expr, params: dict[str, sp.Symbol]) -> sp.Expr:
        """The relation in P, V, T that vanishes on the equation of state."""

    # ------------------------------------------------------------------ derived symbolics
    @property
    def gas_constant(self) -> sp.Expr:
        """N_R: explicit ``n_r``, else ``(dim - 1)/2``, else symbolic ``(D - 1)/2``."""
        if self.n_r is not None:
            return as_number(self.n_r)
        if self.dim is not None:
            return N_R.subs(D, as_number(self.dim))
        return N_R

    @property
    def parameter_symbols(self) -> dict[str, sp.Symbol]:
        return {name: sp.Symbol(name, real=True) for name in self.parameter_names}

    @property
    def parameter_values(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.parameter_names}

    def relation(self, symbolic_parameters: bool = False) -> sp.Expr:
        """The relation with the parameters substituted (or kept as symbols)."""
        syms = self.parameter_symbols
        expr = self.relation_template(self.gas_constant, syms)
        if symbolic_parameters:
            return expr
        return expr.subs({syms[n]: as_number(v) for n, v in self.parameter_values.items()})

    def solve_for(self, variable: str, symbolic_parameters: bool = False) -> sp.Expr:
        """Solve the relation for ``"P"``, ``"V"`` or ``"T"``.

        The relation is solved once with the parameters as symbols (fast and exact even
        for power laws) and the values substituted afterwards. Returns the unique
        solution that is real and positive at a test state; raises :class:`InputError`
        when there is none, more than one, or only a Cardano-type formula (polynomial
        degree > 2), where the numeric functions root-find instead.
        """
        return _solve_cached(self, variable, symbolic_parameters)

    def compressibility(self) -> sp.Expr:
        """Z = P V / (N_R T) as a function of T and V."""
        return sp.simplify(self.solve_for("P") * V / (self.gas_constant * T))

    # ------------------------------------------------------------------ numerics
    def pressure(self, T_: np.ndarray, V_: np.ndarray) -> np.ndarray:
        """P(T, V) evaluated numerically."""
        return self._numeric("P")(T=T_, V=V_)

    def volume(self, T_: np.ndarray, P_: np.ndarray) -> np.ndarray:
        """V(T, P) evaluated numerically (root-finding where the solution is implicit)."""
        return self._numeric("V")(T=T_, P=P_)

    def temperature(self, P_: np.ndarray, V_: np.ndarray) -> np.ndarray:
        """T(P, V) evaluated numerically."""
        return self._numeric("T")(P=P_, V=V_)

    def _numeric(self, variable: str) -> Callable[..., np.ndarray]:
        self._require_numeric()
        target = _state_symbol(variable)
        others = [s for s in (P, V, T) if s is not target]
        try:
            expr = self.solve_for(variable)
            fn = sp.lambdify(others, expr, "numpy")

            def explicit(**values: np.ndarray) -> np.ndarray:
                args = [np.asarray(values[str(s)], dtype=float) for s in others]
                return np.asarray(fn(*args), dtype=float) * np.ones(np.broadcast_shapes(*(a.shape for a in args)))

            return explicit
        except InputError:
            return self._implicit(target, others)

    def _implicit(self, target: sp.Symbol, others: list[sp.Symbol]) -> Callable[..., np.ndarray]:
        """Solve the relation for ``target`` numerically.

        All sign changes on a wide log-spaced scan around the ideal-gas value are roots;
        for V the largest is taken (the branch continuous with the dilute, ideal gas),
        for P and T the one closest to the ideal-gas value.
        """
        relation = self.relation()
        f = sp.lambdify([target, *others], relation, "numpy")
        ideal = IdealGas(dim=self.dim, n_r=self.n_r)._numeric(str(target))
        largest = target is V

        def implicit(**values: np.ndarray) -> np.ndarray:
            args = np.broadcast_arrays(*(np.asarray(values[str(s)], dtype=float) for s in others))
            guess = np.broadcast_to(ideal(**values), args[0].shape)
            out = np.empty(args[0].shape)
            for idx in np.ndindex(out.shape):
                a = [x[idx] for x in args]

                def h(log_x: float) -> float:
                    return float(f(np.exp(log_x), *a))

                out[idx] = np.exp(_scan_root(h, float(np.log(guess[idx])), largest))
            return out

        return implicit

    def _require_numeric(self) -> None:
        if self.dim is None and self.n_r is None:
            raise InputError(
                f"{type(self).__name__} needs dim (D >= 2) or n_r for numeric evaluation; "
                "it was built with D symbolic"
            )

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        P_: np.ndarray,
        V_: np.ndarray,
        T_: np.ndarray,
        *,
        temperature_scale: bool = False,
    ) -> FitResult:
        """Least-squares fit of the free parameters to measured states.

        Parameters
        ----------
        P_, V_, T_:
            Measured pressure, volume and temperature (any matching shapes; flattened).
        temperature_scale:
            Also fit a factor ``s`` with ``T -> s T`` (an unknown constant noise level).
            It is reported as the parameter ``temperature_scale``.
        """
        self._require_numeric()
        P_, V_, T_ = (np.asarray(x, dtype=float).ravel() for x in (P_, V_, T_))
        if not (P_.shape == V_.shape == T_.shape):
            raise InputError(f"P, V, T must have equal sizes, got {P_.size}, {V_.size}, {T_.size}")
        ok = np.isfinite(P_) & np.isfinite(V_) & np.isfinite(T_)
        if np.any((P_[ok] <= 0) | (V_[ok] <= 0) | (T_[ok] <= 0)):
            raise InputError("fit needs P > 0, V > 0 and T > 0 for every measured state")
        P_, V_, T_ = P_[ok], V_[ok], T_[ok]
        names = list(self.parameter_names) + (["temperature_scale"] if temperature_scale else [])
        if P_.size <= len(names):
            raise InputError(f"fit needs more than {len(names)} finite states, got {P_.size}")

        syms = self.parameter_symbols
        p_expr = sp.solve(self.relation(symbolic_parameters=True), P)
        if len(p_expr) != 1:
            raise InputError(f"{type(self).__name__}: pressure is not explicit; cannot fit")
        scale = sp.Symbol("temperature_scale", positive=True)
        p_expr = p_expr[0].subs(T, scale * T)
        fn = sp.lambdify([T, V, *syms.values(), scale], p_expr, "numpy")
        log_p = np.log(P_)
        x0 = [getattr(self, n) for n in self.parameter_names] + ([1.0] if temperature_scale else [])

        def model(x: np.ndarray) -> np.ndarray:
            params = list(x[: len(self.parameter_names)])
            s = x[-1] if temperature_scale else 1.0
            return np.asarray(fn(T_, V_, *params, s), dtype=float) * np.ones_like(T_)

        def residuals(x: np.ndarray) -> np.ndarray:
            p_model = model(x)
            # A non-positive model pressure is unphysical: penalise it smoothly.
            return np.where(p_model > 0, np.log(np.abs(p_model) + 1e-300) - log_p, 10.0 + np.abs(p_model))

        if names:
            sol = optimize.least_squares(residuals, np.asarray(x0, dtype=float), method="lm" if P_.size > len(names) else "trf")
            x, success, message, jac = sol.x, bool(sol.success), str(sol.message), sol.jac
        else:
            x, success, message, jac = np.array([]), True, "no free parameters", np.zeros((P_.size, 0))
        res = residuals(x)
        n, k = res.size, len(names)
        rss = float(res @ res)
        tss = float(((log_p - log_p.mean()) ** 2).sum())
        dof = max(n - k, 1)
        if k:
            try:
                cov = np.linalg.inv(jac.T @ jac) * rss / dof
                err = np.sqrt(np.clip(np.diag(cov), 0, None))
            except np.linalg.LinAlgError:
                err = np.full(k, np.nan)
        else:
            err = np.array([])
        values = dict(zip(names, map(float, x)))
        fitted = attrs.evolve(self, **{nm: values[nm] for nm in self.parameter_names})
        rss_n = max(rss / n, 1e-300)
        return FitResult(
            eos=fitted,
            parameters=values,
            uncertainties=dict(zip(names, map(float, err))),
            residuals=res,
            r2=1.0 - rss / tss if tss > 0 else float("nan"),
            aic=float(n * np.log(rss_n) + 2 * k),
            bic=float(n * np.log(rss_n) + k * np.log(n)),
            rss=rss,
            n_observations=n,
            n_parameters=k,
            success=success,
            message=message,
        )


# ---------------------------------------------------------------------- subclasses
@attrs.frozen(kw_only=True)
class IdealGas(EquationOfState, name="ideal"):
    """``P V = N_R T``."""

    def relation_template(self, gas_constant, params):
        return P * V - gas_constant * T


@attrs.frozen(kw_only=True)
class Virial(EquationOfState, name="virial"):
    """Virial expansion ``P V = N_R T (1 + B/V + C/V**2)``."""

    B: float = parameter(0.0)
    C: float = parameter(0.0)

    def relation_template(self, gas_constant, params):
        return P * V - gas_constant * T * (1 + params["B"] / V + params["C"] / V**2)


@attrs.frozen(kw_only=True)
class VanDerWaals(EquationOfState, name="van-der-waals"):
    """Van der Waals ``(P + a/V**2)(V - b) = N_R T``."""

    a: float = parameter(0.0)
    b: float = parameter(0.0)

    def relation_template(self, gas_constant, params):
        return (P + params["a"] / V**2) * (V - params["b"]) - gas_constant * T


@attrs.frozen(kw_only=True)
class PowerLawCompressibility(EquationOfState, name="power-law"):
    """Compressibility depending on temperature only: ``P V = N_R T Z(T)``, ``Z = z0 T**alpha``."""

    z0: float = parameter(1.0, validator=_validate.positive)
    alpha: float = parameter(0.0)

    def relation_template(self, gas_constant, params):
        return P * V - gas_constant * T * params["z0"] * T ** params["alpha"]


def __getattr__(name: str):
    if name == "EQUATIONS_OF_STATE":  # a live view of the registry: name -> class
        return EquationOfState.registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=256)
def _solve_cached(eos: EquationOfState, variable: str, symbolic_parameters: bool) -> sp.Expr:
    target = _state_symbol(variable)
    relation = eos.relation(symbolic_parameters=True)
    numerator = sp.numer(sp.together(relation))
    if numerator.is_polynomial(target) and sp.degree(numerator, target) > 2:
        raise InputError(
            f"{type(eos).__name__}: {variable} is a root of a polynomial of degree "
            f"{sp.degree(numerator, target)}; solved numerically instead"
        )
    candidates = [c for c in sp.solve(relation, target) if not c.has(sp.I)]
    if not symbolic_parameters:
        values = {eos.parameter_symbols[n]: as_number(v) for n, v in eos.parameter_values.items()}
        candidates = [c.subs(values) for c in candidates]
        candidates = [c for c in candidates if _positive_at_test_point(c)]
    if len(candidates) == 1:
        return candidates[0]
    raise InputError(
        f"{type(eos).__name__}: relation has {len(candidates)} admissible solutions for {variable} "
        "(expected exactly one); use the numeric functions instead"
    )


def _state_symbol(name: str) -> sp.Symbol:
    try:
        return _STATE[name]
    except KeyError:
        raise InputError(f"state variable must be one of P, V, T, got {name!r}") from None


def _positive_at_test_point(expr: sp.Expr) -> bool:
    """Real and positive at a generic positive state (T=0.37, P=0.61, V=1.7, D=7)."""
    value = complex(expr.subs({T: 0.37, P: 0.61, V: 1.7, D: 7}).evalf())
    return abs(value.imag) < 1e-12 and value.real > 0


def _scan_root(h: Callable[[float], float], x0: float, largest: bool) -> float:
    """A root of ``h`` on ``[x0 - 25, x0 + 25]``: the largest, or the one closest to ``x0``."""
    grid = x0 + np.linspace(-25.0, 25.0, 2001)
    with np.errstate(all="ignore"):
        values = np.array([h(x) for x in grid])
    ok = np.isfinite(values)
    changes = np.flatnonzero(ok[:-1] & ok[1:] & (np.sign(values[:-1]) != np.sign(values[1:])))
    if changes.size == 0:
        raise InputError("equation of state has no positive solution at this state")
    i = changes[-1] if largest else changes[np.argmin(np.abs(grid[changes] - x0))]
    return optimize.brentq(h, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-13)
