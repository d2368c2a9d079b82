"""Fixed sphere: projected SGD on the sphere of radius rho_0 (THEORY §2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs
import numpy as np
import sympy as sp

from thermonet.base import validate
from thermonet.errors import InputError
from thermonet.theory.protocols.base import Protocol
from thermonet.theory.protocols.hyperparameters import LR, SPHERE_RADIUS
from thermonet.theory.symbols import as_number, eta, grad_sq, rho, rho0, step_grad_sq, trace_sigma

__all__ = ["FixedSphere"]


@attrs.frozen
class FixedSphere(Protocol, name="fixed-sphere"):
    """Projected SGD on a sphere: ``w <- rho_0 (w - eta g)/||w - eta g||``.

    ``radius`` pins rho_0 to a number; left ``None`` it is the hyperparameter
    ``sphere_radius``. The volume is fixed, so the potential is Helmholtz's; the pressure
    is the measured effective weight decay ``lambda_eff`` (THEORY §4).
    """

    hyperparameter_specs: ClassVar = (LR, SPHERE_RADIUS)
    natural_variables: ClassVar[tuple[str, str]] = ("T", "V")
    measured_pressure: ClassVar[str] = "lambda_eff"
    rescaling: ClassVar = {"lr": 2, "sphere_radius": 1}

    radius: float | None = attrs.field(default=None, validator=validate.positive)

    def _rho0(self) -> sp.Expr:
        return rho0 if self.radius is None else as_number(self.radius)

    def effective_lr(self):
        return eta / self._rho0() ** 2

    def pressure_expr(self):
        return None

    def fixed_radius(self):
        return self._rho0()

    def expected_next_radius_sq(self):
        return self._rho0() ** 2

    def effective_weight_decay_expr(self) -> sp.Expr:
        """lambda_eff = eta E||g~||**2 / (2 rho_0**2), with E||g~||**2 = (trSigma + G1sq)/rho_0**2."""
        return eta * (trace_sigma + grad_sq) / (2 * self._rho0() ** 4)

    def pressure_series(self, hp: Mapping[str, np.ndarray], mean_grad_norm_sq: np.ndarray) -> np.ndarray:
        """lambda_eff = eta E||g~||**2 / (2 rho_0**2) with the measured mean ||g~||**2 (THEORY §4)."""
        radius = np.asarray(hp["sphere_radius"] if self.radius is None else self.radius, dtype=float)
        return np.asarray(hp["lr"], dtype=float) * np.asarray(mean_grad_norm_sq, dtype=float) / (2 * radius**2)

    def initial_radius(self, hp, init_radius):
        if init_radius is not None:
            raise InputError("fixed-sphere starts on its sphere (--sphere-radius); --init-radius does not apply")
        radius = hp["sphere_radius"] if self.radius is None else np.full(np.shape(hp["lr"]), self.radius)
        return np.asarray(radius, dtype=float).copy()

    def update_coefficients(self):
        """``w' = rho_0 (w - eta g~)/||w - eta g~||`` with ``||w - eta g~||**2 = rho**2 + eta**2 q``
        (``g~ ⟂ w``): one shrink factor ``alpha`` for the whole vector, ``beta = eta alpha``."""
        alpha = self._rho0() / sp.sqrt(rho**2 + eta**2 * step_grad_sq)
        return alpha, eta * alpha

    def step(self, w, grad, hp):
        radius = hp["sphere_radius"] if self.radius is None else self.radius
        moved = w - hp["lr"] * grad
        return radius * moved / moved.norm(dim=-1, keepdim=True)

    @staticmethod
    def cpu_step(w, g, hp):
        """``w <- rho_0 (w - eta g)/||w - eta g||``, hp = (lr, sphere_radius)."""
        lr = hp[0]
        radius = hp[1]
        norm2 = 0.0
        for j in range(w.shape[0]):
            w[j] = w[j] - lr * g[j]
            norm2 += w[j] * w[j]
        norm = norm2**0.5
        for j in range(w.shape[0]):
            w[j] = radius * w[j] / norm
