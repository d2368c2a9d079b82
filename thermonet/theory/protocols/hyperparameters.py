"""Hyperparameters as protocols declare them: store name, SymPy symbol, flag and meaning.

A protocol lists its hyperparameters in ``hyperparameter_specs`` (in (u, v) order).
Everything that needs one, the store's dimension, the command-line flag of
``thermonet simulate``/``train``, the symbol in the derivations and the messages for bad
values, reads it from this declaration. Protocols share a hyperparameter by using the
same object (``fixed-lr`` and ``fixed-sphere`` both take :data:`LR`); a new protocol may
declare its own.
"""

from __future__ import annotations

import attrs
import sympy as sp

from thermonet.theory.symbols import eta, eta_tilde, lam, rho0

__all__ = ["ELR", "LR", "SPHERE_RADIUS", "WD", "Hyperparameter"]


@attrs.frozen
class Hyperparameter:
    """One hyperparameter of a protocol.

    ``name`` is the store dimension (``lr``); ``symbol`` its SymPy symbol; ``meaning``
    a few words for help texts (``"learning rate η"``); ``requirement`` says why it must
    be > 0 (shown when it is not); ``typical`` a value ``thermonet theory`` uses when none
    is given.
    """

    name: str
    symbol: sp.Symbol
    meaning: str
    requirement: str = "it must be > 0"
    typical: float = 0.01

    @property
    def flag(self) -> str:
        """The command-line flag: ``--sphere-radius`` for ``sphere_radius``."""
        return "--" + self.name.replace("_", "-")


LR = Hyperparameter("lr", eta, "learning rate η")
ELR = Hyperparameter("elr", eta_tilde, "effective learning rate η̃")
WD = Hyperparameter("wd", lam, "weight decay λ", requirement="a stationary radius needs weight decay > 0")
SPHERE_RADIUS = Hyperparameter("sphere_radius", rho0, "sphere radius ρ₀", typical=1.0)
