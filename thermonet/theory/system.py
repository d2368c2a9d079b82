"""Thermodynamic systems: an energy model, a protocol and an equation of state, bound together.

The state functions of a system follow from its parts by standard thermodynamics:

* ``S(T, V) = S1(T) + integral_{1/2}^{V} (dP/dT)_V dV'``
* ``U(T, V) = U1(T) + integral_{1/2}^{V} (T (dP/dT)_V - P) dV'``

with ``S1``, ``U1`` from the energy model (the direction on the unit sphere) and the
reference volume ``V = 1/2`` (``rho = 1``). For the ideal gas this is exactly thermonet's
convention ``S = S1 + (D - 1) ln rho`` and ``U = U1``. The Helmholtz energy ``F = U - T S``
is explicit; the Gibbs energy and ``U(S, V)`` are Legendre transforms of it.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping

import attrs
import numpy as np
import sympy as sp
import xarray as xr

from thermonet.errors import InputError
from thermonet.base import validate as _validate
from thermonet.theory.energy import EnergyModel, VMFEnergy, VMFHighConcentration
from thermonet.theory.eos import EquationOfState, IdealGas
from thermonet.theory.potentials import Potential, helmholtz
from thermonet.theory.protocols import Protocol, get_protocol
from thermonet.theory.symbols import D, P, T, V, sigma2

#: Reference volume of the configurational integrals: V = 1/2 <=> rho = 1.
REFERENCE_VOLUME = sp.Rational(1, 2)


@attrs.frozen(kw_only=True)
class ThermodynamicSystem(abc.ABC):
    """Binds an energy on the sphere, a training protocol and an equation of state."""

    protocol: Protocol
    eos: EquationOfState
    energy: EnergyModel
    dim: float = attrs.field(validator=_validate.dimension)
    sigma2: float = attrs.field(default=1.0, validator=_validate.positive)

    # ---------------------------------------------------------------- symbolic state functions
    def _dP_dT(self) -> sp.Expr:
        return sp.diff(self.eos.solve_for("P"), T)

    def configurational_entropy_expr(self) -> sp.Expr:
        """integral_{1/2}^{V} (dP/dT)_V dV'."""
        v = sp.Dummy("v", positive=True)
        return _tidy(sp.integrate(self._dP_dT().subs(V, v), (v, REFERENCE_VOLUME, V)))

    def configurational_energy_expr(self) -> sp.Expr:
        """integral_{1/2}^{V} (T (dP/dT)_V - P) dV'."""
        v = sp.Dummy("v", positive=True)
        integrand = (T * self._dP_dT() - self.eos.solve_for("P")).subs(V, v)
        return _tidy(sp.integrate(integrand, (v, REFERENCE_VOLUME, V)))

    def entropy_expr(self) -> sp.Expr:
        """S(T, V)."""
        return self.energy.entropy_expr() + self.configurational_entropy_expr()

    def internal_energy_expr(self) -> sp.Expr:
        """U(T, V)."""
        return self.energy.energy_expr() + self.configurational_energy_expr()

    def helmholtz(self) -> Potential:
        """F(T, V) = U - T S."""
        return helmholtz(self.internal_energy_expr() - T * self.entropy_expr())

    def gibbs(self) -> Potential:
        """G(T, P), the Legendre transform of F in V."""
        return self.helmholtz().legendre(V, "G")

    def internal_energy(self) -> Potential:
        """U(S, V), the Legendre transform of F in T (closed form only for simple energies)."""
        return self.helmholtz().legendre(T, "U")

    def potential(self) -> Potential:
        """The potential this system's protocol minimises (G for (T, P), F for (T, V))."""
        return self.gibbs() if self.protocol.natural_variables == ("T", "P") else self.helmholtz()

    def heat_capacities(self) -> dict[str, sp.Expr]:
        """C_V, C_P and gamma = C_P / C_V as functions of (T, V).

        ``C_V = (dU/dT)_V`` and ``C_P - C_V = -T (dP/dT)_V**2 / (dP/dV)_T``.
        """
        c_v = sp.diff(self.internal_energy_expr(), T)
        p = self.eos.solve_for("P")
        c_p = c_v - T * sp.diff(p, T) ** 2 / sp.diff(p, V)
        return {"C_V": c_v, "C_P": sp.simplify(c_p), "gamma": c_p / c_v}

    # ---------------------------------------------------------------- hyperparameter space
    def entropy_in_hyperparameters(self) -> sp.Expr:
        """Stationary S as a function of the protocol's hyperparameters."""
        state = self.protocol.state(self.eos)
        return self.entropy_expr().subs({T: state["T"], V: state["V"]})

    def adiabat(self) -> dict[str, object]:
        """The adiabat (dS = 0) in hyperparameter coordinates (u, v) = (ln hp1, ln hp2).

        Returns the direction ``(du, dv)`` along which S is constant and, when S depends
        on the hyperparameters only through a monomial ``hp1**a * hp2**b`` (the
        high-concentration vMF case), that invariant.
        """
        s = self.entropy_in_hyperparameters().subs(D, self.dim)
        h1, h2 = self.protocol.symbols.values()
        s_u = _tidy_fast(h1 * sp.diff(s, h1))
        s_v = _tidy_fast(h2 * sp.diff(s, h2))
        result: dict[str, object] = {"dS_du": s_u, "dS_dv": s_v, "direction": (s_v, -s_u)}
        if not (s_u.free_symbols | s_v.free_symbols) - {sigma2}:
            exponents = [sp.nsimplify(x) for x in (s_u, s_v)]
            scale = min(abs(e) for e in exponents if e != 0)
            a, b = (e / scale for e in exponents)
            result["invariant"] = h1**a * h2**b
        return result

    # ---------------------------------------------------------------- numeric predictions
    def entropy(self, temperature: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """S(T, V) numerically (the energy model's accurate S1 plus the configurational part)."""
        conf = _configurational_functions(self)[0]
        t, v = np.broadcast_arrays(np.asarray(temperature, float), np.asarray(volume, float))
        return self.energy.entropy(t) + np.asarray(conf(t, v), dtype=float) * np.ones(t.shape)

    def internal_energy_value(self, temperature: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """U(T, V) numerically."""
        conf = _configurational_functions(self)[1]
        t, v = np.broadcast_arrays(np.asarray(temperature, float), np.asarray(volume, float))
        return self.energy.energy(t) + np.asarray(conf(t, v), dtype=float) * np.ones(t.shape)

    def predict(self, grid: Mapping[str, np.ndarray]) -> xr.Dataset:
        """Predicted stationary states on the outer product of the hyperparameter grids.

        Returns a Dataset over the protocol's hyperparameter dimensions with ``T``, ``P``,
        ``V``, ``rho``, ``U``, ``S``, ``S_sphere``, ``F`` and ``G``.
        """
        names = self.protocol.hyperparameters
        missing = [n for n in names if n not in grid]
        if missing:
            raise InputError(f"{self.protocol.name} needs a grid for {', '.join(missing)}")
        coords = {n: np.atleast_1d(np.asarray(grid[n], dtype=float)) for n in names}
        self.protocol.validate(coords)
        mesh = dict(zip(names, np.meshgrid(*coords.values(), indexing="ij")))
        out = {q: self.protocol.predicted(q, mesh, self.sigma2, self.dim, self.eos) for q in ("T", "P", "V", "rho")}
        out["S_sphere"] = self.energy.entropy(out["T"])
        out["S"] = self.entropy(out["T"], out["V"])
        out["U"] = self.internal_energy_value(out["T"], out["V"])
        out["F"] = out["U"] - out["T"] * out["S"]
        out["G"] = out["F"] + out["P"] * out["V"]
        ds = xr.Dataset({k: (names, v) for k, v in out.items()}, coords=coords)
        ds.attrs.update(protocol=self.protocol.name, dim=self.dim, sigma2=self.sigma2,
                        eos=type(self.eos).__name__, energy=type(self.energy).__name__)
        return ds


def _tidy(expr: sp.Expr) -> sp.Expr:
    """Simplify, keeping logarithms expanded: ``simplify`` likes ``log(x**y)``, which
    overflows numerically where ``y log x`` does not (all state symbols are positive)."""
    return sp.expand_log(sp.simplify(expr), force=True)


def _tidy_fast(expr: sp.Expr) -> sp.Expr:
    """A cheap normal form (expand, split logs and powers, cancel): enough to make a
    constant derivative visibly constant; ``simplify`` can run for minutes on Bessel
    functions with non-integer powers (power-law equations of state)."""
    return sp.cancel(sp.powsimp(sp.expand_log(sp.expand(expr), force=True), force=True))


@functools.lru_cache(maxsize=64)
def _configurational_functions(system: ThermodynamicSystem):
    """Lambdified configurational S and U of a system, derived once per system."""
    return tuple(
        sp.lambdify([T, V], expr.subs(D, system.dim), "numpy")
        for expr in (system.configurational_entropy_expr(), system.configurational_energy_expr())
    )


@attrs.frozen(kw_only=True)
class IsotropicNoiseSystem(ThermodynamicSystem):
    """The isotropic test system of THEORY §7: ``L = 1 + <mu, x>``, noise ``sigma P_w xi / ||w||``.

    Build it with :meth:`create`; ``high_concentration=True`` swaps the exact vMF energy
    for its small-temperature form (which makes U(S, V) and the adiabat closed-form).
    """

    def discrete_state(self, hp: Mapping[str, np.ndarray], sigma2_: np.ndarray | float | None = None,
                       iterations: int = 60) -> dict[str, np.ndarray]:
        """The stationary state with the discrete-time step, predicted without measured inputs.

        The radius solves the protocol's one-step balance (:meth:`Protocol.stationary_radius_discrete`)
        with ``trSigma = sigma2 (D-1)`` and the exact vMF full-gradient norm
        ``G1**2 = E[1 - <mu, x>**2] = (D-1) A_D(kappa)/kappa`` at ``kappa = 1/T(rho)``: a fixed
        point, found by iteration from the SDE radius. Returns ``rho``, ``T``, ``G1sq`` and
        ``grad_norm_sq = (trSigma + G1**2)/rho**2`` on the broadcast shape of ``hp``.
        ``sigma2_`` defaults to the system's (a number or an array over the grid).
        """
        from thermonet.theory import vmf
        from thermonet.theory.symbols import grad_sq, rho as rho_symbol, trace_sigma

        protocol, dim = self.protocol, float(self.dim)
        noise = np.asarray(self.sigma2 if sigma2_ is None else sigma2_, dtype=float)
        shape = np.broadcast_shapes(noise.shape, *(np.shape(np.asarray(hp[n])) for n in protocol.hyperparameters))
        noise = noise * np.ones(shape)
        trace = noise * (dim - 1)
        radius_of = protocol.numeric(protocol.stationary_radius_discrete(), (trace_sigma, grad_sq))
        temperature_of = protocol.numeric(protocol.temperature_expr(), (rho_symbol, sigma2))

        def full_gradient(temperature: np.ndarray) -> np.ndarray:
            kappa = 1.0 / temperature
            return (dim - 1) * vmf.mean_resultant_length(kappa, dim) / kappa

        radius = protocol.predicted("rho", hp, noise, dim, self.eos) * np.ones(shape)
        for _ in range(iterations):
            radius = radius_of(hp, trace, full_gradient(temperature_of(hp, radius, noise)))
        temperature = temperature_of(hp, radius, noise)
        g1 = full_gradient(temperature)
        return {"rho": radius, "T": temperature, "G1sq": g1, "grad_norm_sq": (trace + g1) / radius**2}

    @classmethod
    def create(cls, protocol: Protocol | str, dim: float, sigma: float = 1.0,
               high_concentration: bool = False) -> "IsotropicNoiseSystem":
        if isinstance(protocol, str):
            protocol = get_protocol(protocol)
        if not _validate._is_number(sigma) or float(sigma) <= 0:
            raise InputError(f"sigma (the noise level at unit norm) must be a finite number > 0, got {sigma!r}")
        energy = VMFHighConcentration(dim=dim) if high_concentration else VMFEnergy(dim=dim)
        return cls(protocol=protocol, eos=IdealGas(dim=dim), energy=energy, dim=dim, sigma2=float(sigma) ** 2)
