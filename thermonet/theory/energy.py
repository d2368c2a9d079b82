"""Energy models: the temperature dependence of the internal energy on the unit sphere.

An energy model supplies ``U1(T)``, the mean loss of the stationary direction, and
``S1(T)``, the entropy of the direction on the unit sphere S^{D-1} (nats, surface
measure). The two are tied by ``dS1 = dU1 / T``: one model states both, and the heat
capacity ``C_V = dU1/dT`` follows from SymPy. The volume dependence of the state
functions comes from the equation of state, not from here (see
:mod:`thermonet.theory.system`).

Models
------
* :class:`VMFEnergy` -- exact, for the isotropic model ``L = 1 + <mu, x>``: the stationary
  direction is von Mises-Fisher with kappa = 1/T (THEORY §7).
* :class:`VMFHighConcentration` -- its small-T form ``U1 = (D-1) T/2``,
  ``S1 = ((D-1)/2) ln(2 pi e T)``.
* :class:`ConstantHeatCapacity` -- ``U1 = u0 + c_V T``, ``S1 = s0 + c_V ln T``: a generic
  ideal-gas-like energy for a network whose C_V is measured.
"""

from __future__ import annotations

import abc

import attrs
import numpy as np
import sympy as sp

from thermonet.base import validate as _validate
from thermonet.theory.symbols import D, T, as_number


@attrs.frozen(kw_only=True)
class EnergyModel(abc.ABC):
    """Temperature dependence of the energy and entropy of the direction ``x``."""

    dim: float | None = attrs.field(default=None, validator=_validate.dimension)

    @property
    def dimension(self) -> sp.Expr:
        """D as a SymPy number when ``dim`` is given, else the symbol ``D``."""
        return D if self.dim is None else as_number(self.dim)

    @abc.abstractmethod
    def energy_expr(self) -> sp.Expr:
        """U1(T) as a SymPy expression."""

    @abc.abstractmethod
    def entropy_expr(self) -> sp.Expr:
        """S1(T) as a SymPy expression (nats, unit sphere)."""

    def heat_capacity_expr(self) -> sp.Expr:
        """C_V = dU1/dT."""
        return sp.diff(self.energy_expr(), T)

    # Numeric evaluation; subclasses override where lambdify is inaccurate.
    def energy(self, temperature: np.ndarray) -> np.ndarray:
        return _evaluate(self.energy_expr(), temperature)

    def entropy(self, temperature: np.ndarray) -> np.ndarray:
        return _evaluate(self.entropy_expr(), temperature)

    def heat_capacity(self, temperature: np.ndarray) -> np.ndarray:
        return _evaluate(self.heat_capacity_expr(), temperature)


@attrs.frozen(kw_only=True)
class VMFEnergy(EnergyModel):
    """Exact von Mises-Fisher energy of the isotropic model, kappa = 1/T.

    ``U1 = 1 - A_D(kappa)``, ``S1 = -ln C_D(kappa) - kappa A_D(kappa)`` with
    ``A_D = I_{D/2}/I_{D/2-1}`` and ``C_D = kappa^{D/2-1} / ((2 pi)^{D/2} I_{D/2-1})``.
    Numeric values use :mod:`thermonet.theory.vmf` (stable for huge D and kappa).
    """

    def _kappa_terms(self):
        kappa = 1 / T
        nu = self.dimension / 2
        ratio = sp.besseli(nu, kappa) / sp.besseli(nu - 1, kappa)
        log_c = (nu - 1) * sp.log(kappa) - nu * sp.log(2 * sp.pi) - sp.log(sp.besseli(nu - 1, kappa))
        return kappa, ratio, log_c

    def energy_expr(self):
        _, ratio, _ = self._kappa_terms()
        return 1 - ratio

    def entropy_expr(self):
        kappa, ratio, log_c = self._kappa_terms()
        return -log_c - kappa * ratio

    def _numeric_dim(self) -> float:
        if self.dim is None:
            from thermonet.errors import InputError

            raise InputError("VMFEnergy needs dim (D >= 2) for numeric evaluation")
        return float(self.dim)

    def energy(self, temperature):
        from thermonet.theory import vmf

        return vmf.energy(1.0 / np.asarray(temperature, dtype=float), self._numeric_dim())

    def entropy(self, temperature):
        from thermonet.theory import vmf

        return vmf.entropy(1.0 / np.asarray(temperature, dtype=float), self._numeric_dim())

    def heat_capacity(self, temperature):
        from thermonet.theory import vmf

        return vmf.heat_capacity(1.0 / np.asarray(temperature, dtype=float), self._numeric_dim())


@attrs.frozen(kw_only=True)
class VMFHighConcentration(EnergyModel):
    """Small-temperature vMF: ``U1 = (D-1) T / 2``, ``S1 = ((D-1)/2) ln(2 pi e T)``."""

    def energy_expr(self):
        return (self.dimension - 1) * T / 2

    def entropy_expr(self):
        return (self.dimension - 1) / 2 * sp.log(2 * sp.pi * sp.E * T)


@attrs.frozen(kw_only=True)
class ConstantHeatCapacity(EnergyModel):
    """``U1 = u0 + c_v T``, ``S1 = s0 + c_v ln T``."""

    c_v: float = attrs.field(default=1.0, validator=_validate.positive)
    u0: float = attrs.field(default=0.0, validator=_validate.finite)
    s0: float = attrs.field(default=0.0, validator=_validate.finite)

    def energy_expr(self):
        return as_number(self.u0) + as_number(self.c_v) * T

    def entropy_expr(self):
        return as_number(self.s0) + as_number(self.c_v) * sp.log(T)


def _evaluate(expr: sp.Expr, temperature: np.ndarray) -> np.ndarray:
    t = np.asarray(temperature, dtype=float)
    if expr.free_symbols - {T}:
        from thermonet.errors import InputError

        raise InputError(f"cannot evaluate {expr} numerically: give the model a dim")
    fn = sp.lambdify([T], expr, "numpy")
    return np.asarray(fn(t), dtype=float) * np.ones_like(t)
