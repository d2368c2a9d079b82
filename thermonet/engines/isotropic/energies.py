"""Energies of the isotropic test system: scale-invariant functions L(w) = L(w/‖w‖).

An energy supplies its value and gradient twice, with the same arithmetic:

* :meth:`Energy.value_grad_torch` for a batch ``w`` (members × D) in torch (any device);
* :meth:`Energy.cpu_value_grad` ``(w, rho, params, grad_out) -> L`` for one member
  (``w`` of length D, ``rho = ‖w‖``, ``params`` = :meth:`Energy.params`), writing
  ``∇L(w)`` into ``grad_out``: plain Python with loops, which the simulator compiles with
  numba into its CPU kernel (:mod:`.kernel`) and calls once per step.

Scale invariance means ``∇L(w) = ∇L(x)/ρ`` and ``⟨∇L(w), w⟩ = 0``; the simulator
records ``G₁² = ρ² ‖∇L(w)‖²`` (the gradient norm at unit norm) from the gradient alone.

To add an energy: subclass :class:`Energy` with a name
(``class MyEnergy(Energy, name="mine")``) and implement ``params``,
``value_grad_torch`` and ``cpu_value_grad``; ``thermonet simulate --energy mine`` then
finds it. ``vmf_stationary = True`` declares that its stationary direction is exactly
von Mises-Fisher (the exact-vMF checks apply to its runs).
"""

from __future__ import annotations

import abc
import json
from typing import ClassVar

import attrs
import numpy as np

from thermonet.base.registry import Registered
from thermonet.errors import InputError

__all__ = ["ENERGIES", "Energy", "LinearEnergy", "get_energy"]


@attrs.frozen
class Energy(Registered, abc.ABC, registry="energy"):
    """A scale-invariant energy on ``R^D \\ {0}``."""

    #: The stationary direction is exactly vMF(−μ, 1/T) under isotropic noise (THEORY §7).
    vmf_stationary: ClassVar[bool] = False

    dim: int
    seed: int = 0

    @staticmethod
    def cpu_value_grad(w, rho, params, grad_out):
        """``L(w)`` of one member, writing ``∇L(w)`` into ``grad_out`` (see the module docstring).

        ``None`` in a subclass: the energy runs with the torch engine only."""
        raise NotImplementedError

    @abc.abstractmethod
    def params(self) -> np.ndarray:
        """Float64 parameter vector passed to ``cpu_value_grad``."""

    @abc.abstractmethod
    def value_grad_torch(self, w):
        """``(L, ∇L(w))`` for a batch ``w`` (M, D): shapes (M,) and (M, D)."""

    def value_grad_numpy(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Same as the torch version for a numpy batch (M, D) (convenience)."""
        import torch

        value, grad = self.value_grad_torch(torch.from_numpy(np.asarray(w, dtype=np.float64)))
        return value.numpy(), grad.numpy()

    def describe(self) -> str:
        """Store attribute ``energy``: the name (parameters are in :meth:`attrs_dict`)."""
        return self.name

    def attrs_dict(self) -> dict:
        """JSON-serialisable parameters, stored as the attribute ``energy_params``."""
        return {}

    def attrs_json(self) -> str:
        return json.dumps(self.attrs_dict(), sort_keys=True)


@attrs.frozen
class LinearEnergy(Energy, name="linear"):
    """``L(w) = 1 + ⟨μ, w⟩/‖w‖`` (THEORY §7) with a unit ``μ`` drawn from ``seed``.

    ``μ = z/‖z‖``, ``z = numpy.random.default_rng(seed).standard_normal(dim)``; the
    stationary direction is ``vMF(−μ, κ = 1/T)``, ``L ∈ [0, 2]`` with minimum 0 at ``−μ``.
    ``∇L(w) = (μ − x⟨μ, x⟩)/ρ``, so ``G₁² = 1 − ⟨μ, x⟩²``.
    """

    vmf_stationary: ClassVar[bool] = True

    _mu: np.ndarray = attrs.field(init=False, repr=False, eq=False)
    _mu_tensors: dict = attrs.field(init=False, repr=False, eq=False, factory=dict)

    @_mu.default
    def _draw_mu(self) -> np.ndarray:
        z = np.random.default_rng(int(self.seed)).standard_normal(int(self.dim))
        mu = z / np.linalg.norm(z)
        mu.setflags(write=False)
        return mu

    @property
    def mu(self) -> np.ndarray:
        return self._mu

    def params(self) -> np.ndarray:
        return np.ascontiguousarray(self.mu, dtype=np.float64)

    def _mu_tensor(self, like):
        import torch

        key = (like.dtype, like.device)
        mu = self._mu_tensors.get(key)
        if mu is None:
            mu = self._mu_tensors[key] = torch.as_tensor(np.array(self.mu), dtype=like.dtype, device=like.device)
        return mu

    def value_grad_torch(self, w):
        import torch

        mu = self._mu_tensor(w)
        inv = 1.0 / torch.linalg.vector_norm(w, dim=-1, keepdim=True)
        dot = w @ mu  # (M,)
        c = dot[:, None] * (inv * inv)
        grad = (mu - c * w) * inv
        return 1.0 + dot * inv[:, 0], grad

    @staticmethod
    def cpu_value_grad(w, rho, params, grad_out):
        """``L = 1 + <mu, w>/rho``, ``grad = (mu - <mu, x> x)/rho``; ``params`` = mu."""
        dim = w.shape[0]
        dot = 0.0
        for j in range(dim):
            dot += params[j] * w[j]
        inv = 1.0 / rho
        c = dot * (inv * inv)
        for j in range(dim):
            grad_out[j] = (params[j] - c * w[j]) * inv
        return 1.0 + dot * inv

    def attrs_dict(self) -> dict:
        return {"mu": [float(v) for v in self.mu]}


def get_energy(name: str, dim: int, seed: int = 0) -> Energy:
    """Energy instance by registered name (``linear``, ...)."""
    return Energy.get(name)(dim=int(dim), seed=int(seed))


def __getattr__(name: str):
    if name == "ENERGIES":  # a live view of the registry: name -> class
        return Energy.registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
