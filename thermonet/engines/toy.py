"""The 3-D sphere toy of paper 002: per-sample losses on S², trained with mini-batch noise.

Per-sample losses are scale-invariant quadratic forms

    L_i(w) = c ⟨v_i, w⟩² / ‖w‖²,   i = 1..n,   ‖v_i‖ = 1,

whose minima are the great circles ``⟨v_i, x⟩ = 0``. The training loss is their mean,
``L(x) = c xᵀ M x`` with ``M = mean_i v_i v_iᵀ``. The sample vectors are

    v_i = (cos ε cos φ_i, cos ε sin φ_i, s_i sin ε),   φ_i = 2π i/n,   s_i = (−1)^i,

(``n`` even, ≥ 4), which makes ``M = diag(cos²ε/2, cos²ε/2, sin²ε)`` exactly:

* **over-parameterised** (``regime="over"``, tilt ``ε = 0``): every great circle passes
  through the poles ``±e_z``; all per-sample losses share the minimiser, the minimum
  loss is 0 and every per-sample gradient vanishes there, so the mini-batch noise
  vanishes at the optimum (the gradient signal-to-noise ratio stays finite while both go
  to zero);
* **under-parameterised** (``regime="under"``, ``0 < ε < atan(1/√2)``): the circles no longer
  meet; the mean loss still has its minimum at ``±e_z`` but with value ``c sin²ε > 0``, and
  the per-sample gradients there, ``±2c sinε cosε (cos φ_i, sin φ_i, 0)``, are nonzero
  (they average to zero): the noise persists at the optimum.

Training uses the simulator's torch engine (:class:`thermonet.engines.isotropic.TorchEngine`)
with the protocol's own ``step`` (default: the fixed sphere of radius 1), replacing only
the Gaussian noise by mini-batch noise: :class:`MiniBatchEngine` overrides
``stochastic_gradient`` to average the per-sample gradients of a batch of ``b`` samples
drawn with replacement. The batch indices come from the engine's counter-based normals
(``u = Φ(ξ)``), so a member's trajectory depends only on its key and the step.

The learning-rate sweep with its free-energy temperatures is
:func:`thermonet.analysis.sphere_toy.run_toy`; :func:`trajectories` traces single members.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Sequence
from typing import ClassVar

import attrs
import numpy as np

from thermonet.errors import InputError
from thermonet.engines import rng
from thermonet.engines.common import member_grid
from thermonet.engines.isotropic.energies import Energy
from thermonet.engines.isotropic.engine import TorchEngine

__all__ = ["REGIMES", "MiniBatchEngine", "SphereToyEnergy", "single_threaded", "toy_engine", "trajectories"]

#: The two forms of the toy.
REGIMES = ("under", "over")
#: Default tilt of the under-parameterised form (radians).
DEFAULT_TILT = 0.3


def _check_samples(instance, attribute, value):
    if int(value) != value or value < 4 or value % 2:
        raise InputError(f"sphere toy: samples must be an even integer >= 4, got {value}")


@attrs.frozen
class SphereToyEnergy(Energy):
    """Mean of ``n`` per-sample losses ``c ⟨v_i, x⟩²`` on S² (see the module docstring).

    ``regime`` picks the tilt: ``"over"`` forces ``ε = 0``, ``"under"`` uses ``tilt``.
    Only the torch path exists (no ``cpu_value_grad``, and it is not registered for
    ``thermonet simulate``): train it with :class:`MiniBatchEngine`.
    """

    label: ClassVar[str] = "sphere-toy"

    dim: int = attrs.field(default=3)
    seed: int = 0
    regime: str = attrs.field(default="under")
    samples: int = attrs.field(default=6, validator=_check_samples)
    tilt: float = DEFAULT_TILT
    scale: float = 10.0

    @dim.validator
    def _dim(self, attribute, value):
        if value != 3:
            raise InputError(f"the sphere toy lives on S² (dim = 3), got dim = {value}")

    @regime.validator
    def _regime(self, attribute, value):
        if value not in REGIMES:
            raise InputError(f"sphere toy: regime must be one of {', '.join(REGIMES)}, got {value!r}")

    def __attrs_post_init__(self):
        if self.regime == "under" and not (0 < self.tilt < math.atan(1 / math.sqrt(2))):
            raise InputError(f"sphere toy: the under-parameterised tilt must lie in (0, {math.atan(2**-0.5):.3f}) "
                             f"rad so that ±e_z stays the minimiser; got {self.tilt}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise InputError(f"sphere toy: scale must be a finite number > 0, got {self.scale}")

    # ------------------------------------------------------------------ geometry
    @property
    def epsilon(self) -> float:
        return 0.0 if self.regime == "over" else float(self.tilt)

    @property
    def vectors(self) -> np.ndarray:
        """The unit vectors ``v_i`` (n, 3); per-sample minima are the great circles ⟂ v_i."""
        n = int(self.samples)
        phi = 2 * np.pi * np.arange(n) / n
        s = (-1.0) ** np.arange(n)
        eps = self.epsilon
        return np.stack([np.cos(eps) * np.cos(phi), np.cos(eps) * np.sin(phi), s * np.sin(eps)], axis=1)

    @property
    def minimum_loss(self) -> float:
        """``c sin²ε``: 0 over-parameterised, positive under-parameterised."""
        return float(self.scale * math.sin(self.epsilon) ** 2)

    @property
    def minimiser(self) -> np.ndarray:
        return np.array([0.0, 0.0, 1.0])

    def params(self) -> np.ndarray:
        return np.ascontiguousarray(np.append(self.vectors.ravel(), self.scale), dtype=np.float64)

    def attrs_dict(self) -> dict:
        return {"regime": self.regime, "samples": int(self.samples), "tilt": self.epsilon, "scale": float(self.scale)}

    def describe(self) -> str:
        return f"{self.label}-{self.regime}"

    # ------------------------------------------------------------------ values and gradients
    def loss_numpy(self, x: np.ndarray) -> np.ndarray:
        """Mean loss at points ``x`` (..., 3) (any norm)."""
        x = np.asarray(x, dtype=float)
        dots = x @ self.vectors.T / np.linalg.norm(x, axis=-1, keepdims=True)
        return self.scale * np.mean(dots**2, axis=-1)

    def per_sample_value_grad_torch(self, w):
        """Per-sample losses (M, n) and gradients ∂L_i/∂w (M, n, 3)."""
        import torch

        v = torch.as_tensor(self.vectors, dtype=w.dtype, device=w.device)
        rho = torch.linalg.vector_norm(w, dim=-1, keepdim=True)  # (M, 1)
        x = w / rho
        dots = x @ v.T  # (M, n)
        values = self.scale * dots**2
        # ∇_w [c (v·x)²] = (2 c (v·x)/ρ) (v − (v·x) x)
        grads = (2 * self.scale * dots / rho)[..., None] * (v[None] - dots[..., None] * x[:, None, :])
        return values, grads

    def value_grad_torch(self, w):
        values, grads = self.per_sample_value_grad_torch(w)
        return values.mean(-1), grads.mean(-2)

    def noise_sigma2_torch(self, w, batch_size: int):
        """``σ² = ρ² tr Σ_B(w)/(D−1)`` per member: the mini-batch gradient covariance
        (batches of ``batch_size`` drawn with replacement) at unit norm."""
        _, grads = self.per_sample_value_grad_torch(w)
        mean = grads.mean(-2, keepdim=True)
        trace = ((grads - mean) ** 2).sum(-1).mean(-1) / batch_size
        rho2 = (w * w).sum(-1)
        return rho2 * trace / (self.dim - 1)


class MiniBatchEngine(TorchEngine):
    """The simulator's torch engine with mini-batch noise instead of Gaussian noise.

    ``stochastic_gradient`` averages the per-sample gradients of ``batch_size`` indices
    drawn with replacement; ``sigma`` is unused. Everything else (the protocol step, the
    logs, the state) is :class:`TorchEngine`'s.
    """

    def __init__(self, *args, batch_size: int = 1, **kwargs):
        if int(batch_size) != batch_size or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        super().__init__(*args, **kwargs)
        if not hasattr(self.energy, "per_sample_value_grad_torch"):
            raise InputError("MiniBatchEngine needs an energy with per_sample_value_grad_torch (e.g. SphereToyEnergy)")

    def batch_indices(self, t: int):
        """(M, b) sample indices of step ``t`` from the counter-based normals."""
        torch = self.torch
        xi = rng.normals_torch(self.keys_t, t, self.batch_size)
        u = torch.special.ndtr(xi)
        n = int(self.energy.samples)
        return torch.clamp((u * n).long(), 0, n - 1)

    def stochastic_gradient(self, w, t: int):
        torch = self.torch
        _, grads = self.energy.per_sample_value_grad_torch(w)  # (M, n, D)
        idx = self.batch_indices(t)  # (M, b)
        picked = torch.gather(grads, 1, idx[..., None].expand(-1, -1, grads.shape[-1]))
        g = picked.mean(1)
        return g, (g * g).sum(-1)


@contextlib.contextmanager
def _torch_threads(count: int | None):
    """Run small ensembles single-threaded: with (M x 3) tensors, thread start-up costs
    more than the arithmetic (10x slower on a busy 2-core machine). Restores the setting."""
    import torch

    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(fn):
    """Give ``fn`` a keyword ``threads`` (default 1; None keeps torch's setting)."""

    @functools.wraps(fn)
    def wrapper(*args, threads: int | None = 1, **kwargs):
        with _torch_threads(threads):
            return fn(*args, **kwargs)

    return wrapper


def toy_engine(energy: SphereToyEnergy, lr: np.ndarray, seeds: int, steps: int, batch_size: int, radius: float,
               log_every: int, seed_offset: int = 0) -> MiniBatchEngine:
    """A :class:`MiniBatchEngine` of ``seeds`` members per learning rate on the fixed sphere of ``radius``."""
    from thermonet.theory.protocols import FixedSphere

    protocol = FixedSphere()  # the toy of paper 002 lives on a sphere: (learning rate, radius)
    grid = dict(zip(protocol.hyperparameters, (lr, [radius])))
    hp, member_seeds = member_grid(grid, protocol.hyperparameters, np.arange(seeds) + seed_offset)
    keys = rng.member_keys(member_seeds, hp)
    # A separate key space per regime would make the two ensembles share no noise; they
    # share it on purpose here (same batch draws), so the comparison isolates the geometry.
    return MiniBatchEngine(protocol, energy, hp, keys, batch_size=batch_size, sigma=0.0, total_steps=steps,
                           log_every=log_every, queue_size=1, queue_every=steps + 1)


@single_threaded
def trajectories(regime: str, lr: Sequence[float], *, steps: int = 2000, every: int = 1, batch_size: int = 2,
                 seed: int = 0, start: Sequence[float] | None = None, **energy_kwargs) -> np.ndarray:
    """Paths of one member per LR on S²: array (len(lr), steps // every + 1, 3).

    ``start`` (a 3-vector) sets a common starting direction; default: the member's own
    random start.
    """
    import torch

    lr = np.asarray(lr, dtype=float).ravel()
    energy = SphereToyEnergy(regime=regime, **energy_kwargs)
    engine = toy_engine(energy, lr, 1, steps, batch_size, 1.0, log_every=steps, seed_offset=seed)
    if start is not None:
        s = np.asarray(start, dtype=float)
        s = s / np.linalg.norm(s)
        engine.w = torch.as_tensor(np.tile(s, (lr.size, 1)), dtype=torch.float64)
    path = [engine.w.numpy().copy()]
    while engine.t < steps:
        engine.advance(min(every, steps - engine.t))
        path.append(engine.w.numpy().copy())
    out = np.stack(path, axis=1)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)
