"""Thermodynamic potentials and the Legendre transforms and Maxwell relations between them.

A :class:`Potential` is a SymPy expression in its two natural variables together with
their conjugates: ``dPhi = s_1 y_1 dx_1 + s_2 y_2 dx_2``. For the three potentials used
by thermonet

* ``U(S, V)``:  dU = T dS - P dV
* ``F(T, V)``:  dF = -S dT - P dV      (fixed sphere)
* ``G(T, P)``:  dG = -S dT + V dP      (fixed ELR and fixed LR)

A Legendre transform in ``x_i`` gives ``Phi - x_i dPhi/dx_i`` in the variable ``y_i``;
Maxwell relations are the equality of the mixed second derivatives, written in the
conjugate variables.
"""

from __future__ import annotations

import attrs
import sympy as sp

from thermonet.errors import InputError
from thermonet.theory.symbols import P, S, T, V


@attrs.frozen
class Conjugate:
    """``dPhi/dvariable = sign * conjugate``."""

    variable: sp.Symbol
    conjugate: sp.Symbol
    sign: int


@attrs.frozen
class MaxwellRelation:
    """``(d y_1 / d x_2)_{x_1} = ratio * (d y_2 / d x_1)_{x_2}`` from one potential."""

    potential: str
    lhs: str
    rhs: str
    #: The common value, ``d^2 Phi / dx_1 dx_2`` divided by ``s_1``, in the natural variables.
    value: sp.Expr
    #: The natural variables it is written in.
    variables: tuple[sp.Symbol, sp.Symbol]

    def __str__(self) -> str:
        return f"{self.lhs} = {self.rhs}   [from {self.potential}]"


@attrs.frozen
class Potential:
    """A thermodynamic potential in its natural variables."""

    name: str
    expr: sp.Expr
    pairs: tuple[Conjugate, Conjugate]

    @property
    def variables(self) -> tuple[sp.Symbol, sp.Symbol]:
        return (self.pairs[0].variable, self.pairs[1].variable)

    def conjugate(self, variable: sp.Symbol) -> sp.Expr:
        """The conjugate of ``variable`` as a function of the natural variables."""
        pair = self._pair(variable)
        return sp.simplify(pair.sign * sp.diff(self.expr, variable))

    def legendre(self, variable: sp.Symbol, name: str) -> "Potential":
        """Legendre transform replacing ``variable`` by its conjugate.

        ``Phi' = Phi - x dPhi/dx`` with ``x`` eliminated through ``y = s dPhi/dx``.
        Raises :class:`InputError` when ``x`` cannot be solved for in closed form.
        """
        pair = self._pair(variable)
        y = pair.conjugate
        derivative = sp.diff(self.expr, variable)
        try:
            solutions = sp.solve(sp.Eq(y, pair.sign * derivative), variable)
        except NotImplementedError:  # transcendental (e.g. Bessel functions): no closed form
            solutions = []
        solutions = [s for s in solutions if not s.has(sp.I)]
        if len(solutions) != 1:
            raise InputError(
                f"Legendre transform of {self.name} in {variable}: {len(solutions)} closed-form solutions "
                f"for {variable}({y}, ...); use a model with an invertible {y}({variable})"
            )
        x_of_y = solutions[0]
        new_expr = sp.simplify((self.expr - variable * derivative).subs(variable, x_of_y))
        new_pairs = tuple(
            Conjugate(variable=y, conjugate=variable, sign=-pair.sign) if p is pair else p for p in self.pairs
        )
        return Potential(name=name, expr=new_expr, pairs=new_pairs)  # type: ignore[arg-type]

    def maxwell_relation(self) -> MaxwellRelation:
        """Equality of the mixed second derivatives, in conjugate-variable form."""
        (p1, p2) = self.pairs
        value = sp.simplify(sp.diff(self.expr, p1.variable, p2.variable) * p1.sign)
        ratio = p2.sign * p1.sign
        sign = "" if ratio > 0 else "-"
        return MaxwellRelation(
            potential=self.name,
            lhs=f"(d{p1.conjugate}/d{p2.variable})_{p1.variable}",
            rhs=f"{sign}(d{p2.conjugate}/d{p1.variable})_{p2.variable}",
            value=value,
            variables=(p1.variable, p2.variable),
        )

    def _pair(self, variable: sp.Symbol) -> Conjugate:
        for pair in self.pairs:
            if pair.variable == variable:
                return pair
        raise InputError(f"{self.name} has natural variables {self.variables}, not {variable}")


def helmholtz(expr: sp.Expr) -> Potential:
    """F(T, V) with dF = -S dT - P dV."""
    return Potential("F", expr, (Conjugate(T, S, -1), Conjugate(V, P, -1)))


def internal_energy(expr: sp.Expr) -> Potential:
    """U(S, V) with dU = T dS - P dV."""
    return Potential("U", expr, (Conjugate(S, T, +1), Conjugate(V, P, -1)))


def gibbs(expr: sp.Expr) -> Potential:
    """G(T, P) with dG = -S dT + V dP."""
    return Potential("G", expr, (Conjugate(T, S, -1), Conjugate(P, V, +1)))


def maxwell_relations(*potentials: Potential) -> list[MaxwellRelation]:
    """One Maxwell relation per potential."""
    return [p.maxwell_relation() for p in potentials]
