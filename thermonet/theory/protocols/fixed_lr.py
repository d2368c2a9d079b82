"""Fixed learning rate: plain SGD with weight decay (THEORY §2)."""

from __future__ import annotations

from typing import ClassVar

import attrs

from thermonet.theory.protocols.base import Protocol
from thermonet.theory.protocols.hyperparameters import LR, WD
from thermonet.theory.symbols import eta, grad_sq, lam, rho, trace_sigma

__all__ = ["FixedLR"]


@attrs.frozen
class FixedLR(Protocol, name="fixed-lr"):
    """Fixed learning rate: ``w <- w - eta (g + lambda w)``."""

    hyperparameter_specs: ClassVar = (LR, WD)
    natural_variables: ClassVar[tuple[str, str]] = ("T", "P")
    rescaling: ClassVar = {"lr": 2, "wd": -2}

    def effective_lr(self):
        return eta / rho**2

    def pressure_expr(self):
        return lam

    def expected_next_radius_sq(self):
        return (1 - eta * lam) ** 2 * rho**2 + eta**2 * (trace_sigma + grad_sq) / rho**2

    def update_coefficients(self):
        """``w' = (1 - eta lambda) w - eta g~``."""
        return 1 - eta * lam, eta

    def step(self, w, grad, hp):
        return w - hp["lr"] * (grad + hp["wd"] * w)

    def torch_optimizer(self, params, hp):
        """``torch.optim.SGD(lr, weight_decay)``: exactly this update."""
        import torch

        return torch.optim.SGD(params, lr=hp["lr"], weight_decay=hp["wd"])

    @staticmethod
    def cpu_step(w, g, hp):
        """``w <- w - eta (g + lambda w)``, hp = (lr, wd)."""
        lr = hp[0]
        wd = hp[1]
        for j in range(w.shape[0]):
            w[j] = w[j] - lr * (g[j] + wd * w[j])
