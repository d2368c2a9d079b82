"""The SymPy symbols shared by every theory object.

One symbol per physical quantity, defined once, so expressions built by different
classes combine without renaming. The hyperparameters of the built-in protocols
(``eta``, ``eta_tilde``, ``lambda``, ``rho_0``) are defined here too; each protocol
declares which it uses, with its store name and flag
(:mod:`thermonet.theory.protocols.hyperparameters`).
"""

from __future__ import annotations

import sympy as sp

# State variables.
T = sp.Symbol("T", positive=True)  #: temperature
P = sp.Symbol("P", positive=True)  #: pressure (weight decay, or effective weight decay)
V = sp.Symbol("V", positive=True)  #: volume, rho**2 / 2
S = sp.Symbol("S", real=True)  #: entropy of w on its sphere, nats
U = sp.Symbol("U", real=True)  #: internal energy, mean loss

# System constants.
D = sp.Symbol("D", positive=True)  #: number of scale-invariant parameters
sigma2 = sp.Symbol("sigma2", positive=True)  #: per-direction noise level at unit norm
rho = sp.Symbol("rho", positive=True)  #: weight norm ||w||
trace_sigma = sp.Symbol("trSigma", positive=True)  #: tr Sigma(x) at unit norm
grad_sq = sp.Symbol("G1sq", nonnegative=True)  #: ||grad L(x)||**2 at unit norm

#: Number of "gas constant" units: P V = N_R T for the ideal gas.
N_R = (D - 1) / 2

# One scale-invariant group g of a network (THEORY §11, "per layer"): its own radius,
# dimension, and noise measured at the group's unit norm.
rho_g = sp.Symbol("rho_g", positive=True)  #: radius ||w_g|| of one group
D_g = sp.Symbol("D_g", positive=True)  #: number of parameters of one group
sigma2_g = sp.Symbol("sigma2_g", positive=True)  #: trSigma_g(x_g)/(D_g - 1)
trace_sigma_g = sp.Symbol("trSigma_g", positive=True)  #: trSigma_g(x_g) at the group's unit norm
grad_sq_g = sp.Symbol("G1sq_g", nonnegative=True)  #: ||grad_g L(x_g)||**2 at the group's unit norm
#: ||g~||**2 of one step's stochastic gradient (the whole vector, weight units) and of one group.
step_grad_sq = sp.Symbol("q", nonnegative=True)
step_grad_sq_g = sp.Symbol("q_g", nonnegative=True)

# Hyperparameters of the built-in protocols.
eta = sp.Symbol("eta", positive=True)  #: learning rate
eta_tilde = sp.Symbol("eta_tilde", positive=True)  #: effective learning rate
lam = sp.Symbol("lambda", positive=True)  #: weight decay
rho0 = sp.Symbol("rho_0", positive=True)  #: sphere radius

#: State variables by name, for processes and potentials.
STATE_SYMBOLS: dict[str, sp.Symbol] = {"T": T, "P": P, "V": V, "S": S, "U": U}


def volume_of_radius(radius: sp.Expr) -> sp.Expr:
    """V = rho**2 / 2: the volume convention used everywhere in thermonet."""
    return radius**2 / 2


def as_number(value: float) -> sp.Expr:
    """A user-given number as SymPy sees it in derivations.

    The exact rational when it is a simple one (0.25 -> 1/4, 49 -> 49, denominators up to
    1000), else a Float: a fitted exponent such as 0.4312345 as the rational
    862469/2000000 makes SymPy factorise integers with millions of digits when it
    combines powers, while a Float exponent is evaluated at once.
    """
    exact = sp.nsimplify(value, rational=True)
    return exact if exact.q <= 1000 else sp.Float(value)


def gas_constant(dim: float) -> float:
    """N_R = (D - 1)/2 as a number, from the symbol (not retyped)."""
    return float(N_R.subs(D, sp.nsimplify(dim)))


def __getattr__(name: str):
    from thermonet._compat import moved_attribute

    return moved_attribute(__name__, name)
