"""Fixed effective learning rate (THEORY §2)."""

from __future__ import annotations

from typing import ClassVar

import attrs
import sympy as sp

from thermonet.theory.protocols.base import Protocol
from thermonet.theory.protocols.hyperparameters import ELR, WD
from thermonet.theory.symbols import eta_tilde, grad_sq, lam, rho, trace_sigma

__all__ = ["FixedELR"]


@attrs.frozen
class FixedELR(Protocol, name="fixed-elr"):
    """Fixed effective learning rate: ``w <- w - eta~ ||w||**2 (g + lambda w)``."""

    hyperparameter_specs: ClassVar = (ELR, WD)
    natural_variables: ClassVar[tuple[str, str]] = ("T", "P")
    rescaling: ClassVar = {"elr": 0, "wd": -2}

    def effective_lr(self):
        return eta_tilde

    def pressure_expr(self):
        return lam

    def expected_next_radius_sq(self):
        shrink = 1 - eta_tilde * lam * rho**2
        return shrink**2 * rho**2 + eta_tilde**2 * rho**4 * (trace_sigma + grad_sq) / rho**2

    def _small_step(self):
        return {eta_tilde: sp.Rational(1, 10**6)}

    def update_coefficients(self):
        """``w' = (1 - eta~ rho**2 lambda) w - eta~ rho**2 g~``."""
        return 1 - eta_tilde * rho**2 * lam, eta_tilde * rho**2

    def step(self, w, grad, hp):
        return w - hp["elr"] * (w * w).sum(-1, keepdim=True) * (grad + hp["wd"] * w)

    @staticmethod
    def cpu_step(w, g, hp):
        """``w <- w - eta~ ||w||**2 (g + lambda w)``, hp = (elr, wd)."""
        elr = hp[0]
        wd = hp[1]
        rho2 = 0.0
        for j in range(w.shape[0]):
            rho2 += w[j] * w[j]
        c = elr * rho2
        for j in range(w.shape[0]):
            w[j] = w[j] - c * (g[j] + wd * w[j])
