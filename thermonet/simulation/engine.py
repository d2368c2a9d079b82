"""Ensemble engines: every member of a sweep advances together, one array update per step.

Two backends with one interface and the same random numbers (:mod:`.rng`):

* :class:`NumbaEngine` (CPU, default there): the compiled kernel of :mod:`.kernels`
  advances all members for a whole chunk of steps (members in parallel threads, steps in
  a loop inside), writing log values and queue samples into preallocated arrays, and
  returns to Python only between chunks.
* :class:`TorchEngine` (any torch device, default on CUDA): the same step written with
  torch ops on (members × D) tensors, using the protocol's own ``Protocol.step`` and the
  energy's ``value_grad_torch``; one Python iteration per step. On the CPU it is the
  slow reference the compiled kernel is tested against.

State of an engine: the step ``t``, the weights ``w`` (M, D), the queue ring buffer
(M, N, D) and the log-interval accumulators ``acc`` (M, 2) = (Σ‖g̃‖², count). With the
counter-based generator that is all there is: :meth:`state_dict` / :meth:`load_state_dict`
resume a run exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from thermonet.simulation import rng
from thermonet.simulation.energies import Energy

__all__ = ["LOG_FIELDS", "Engine", "NumbaEngine", "TorchEngine", "initial_weights", "log_slots"]

#: Per-member time series produced by :meth:`Engine.advance`, in order.
LOG_FIELDS = ("loss", "rho", "grad_norm_sq", "grad_full_sq")


def initial_weights(keys: np.ndarray, dim: int, radius: np.ndarray) -> np.ndarray:
    """``w₀ = r ξ/‖ξ‖`` with ``ξ`` the member's normals of step 0 (uniform direction)."""
    xi = rng.normals_numpy(keys, 0, dim)
    return np.asarray(radius, dtype=np.float64).reshape(-1, 1) * xi / np.linalg.norm(xi, axis=1, keepdims=True)


def log_slots(t0: int, t1: int, log_every: int, total_steps: int) -> tuple[int, int]:
    """Global log indices ``[first, stop)`` written by steps ``t0+1 .. t1``.

    Log index ``i`` is the step ``(i + 1) * log_every``, and the last one is
    ``total_steps`` when that is not a multiple of ``log_every``.
    """
    first = t0 // log_every
    stop = t1 // log_every
    if t1 == total_steps and total_steps % log_every:
        stop += 1
    return first, stop


def log_steps(total_steps: int, log_every: int) -> np.ndarray:
    """The step numbers of all log indices (int64)."""
    steps = np.arange(1, total_steps // log_every + 1, dtype=np.int64) * log_every
    if total_steps % log_every:
        steps = np.append(steps, np.int64(total_steps))
    return steps


class Engine:
    """Common state handling; see the module docstring."""

    backend: str = ""

    def __init__(self, protocol, energy: Energy, hp: np.ndarray, keys: np.ndarray, *, sigma: float,
                 total_steps: int, log_every: int, queue_size: int, queue_every: int,
                 init_radius: np.ndarray):
        self.protocol = protocol
        self.energy = energy
        self.dim = int(energy.dim)
        self.hp = np.ascontiguousarray(hp, dtype=np.float64).reshape(len(keys), -1)
        self.keys = np.ascontiguousarray(keys, dtype=np.uint64)
        self.members = len(self.keys)
        self.sigma = float(sigma)
        self.total_steps = int(total_steps)
        self.log_every = int(log_every)
        self.queue_size = int(queue_size)
        self.queue_every = int(queue_every)
        self.t = 0
        self._init_state(initial_weights(self.keys, self.dim, init_radius))

    # subclasses -------------------------------------------------------------------
    def _init_state(self, w0: np.ndarray) -> None:
        raise NotImplementedError

    def advance(self, nsteps: int) -> tuple[int, dict[str, np.ndarray]]:
        """Run ``nsteps`` steps; return (first global log index, {field: (M, count)})."""
        raise NotImplementedError

    def queue_samples(self):
        """The queue (M, N, D): numpy for the CPU kernel, a tensor on the device otherwise."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    # helpers ------------------------------------------------------------------------
    def _check_steps(self, nsteps: int) -> int:
        nsteps = int(nsteps)
        if nsteps < 0 or self.t + nsteps > self.total_steps:
            raise ValueError(f"cannot advance {nsteps} steps from step {self.t} of {self.total_steps}")
        return nsteps

    def _check_state(self, state: Mapping[str, np.ndarray]) -> None:
        shapes = {"w": (self.members, self.dim), "queue": (self.members, self.queue_size, self.dim),
                  "acc": (self.members, 2)}
        for name, shape in shapes.items():
            if tuple(np.shape(state[name])) != shape:
                raise ValueError(f"checkpoint {name} has shape {np.shape(state[name])}, expected {shape}")


class NumbaEngine(Engine):
    """CPU engine: the compiled chunk kernel."""

    backend = "numba"

    def _init_state(self, w0):
        from thermonet.simulation.kernels import get_kernel

        self.kernel = get_kernel(self.protocol, self.energy)
        self.eparams = np.ascontiguousarray(self.energy.params(), dtype=np.float64)
        self.w = np.ascontiguousarray(w0)
        self.queue = np.full((self.members, self.queue_size, self.dim), np.nan)
        self.acc = np.zeros((self.members, 2))

    def advance(self, nsteps):
        nsteps = self._check_steps(nsteps)
        first, stop = log_slots(self.t, self.t + nsteps, self.log_every, self.total_steps)
        outs = {name: np.full((self.members, stop - first), np.nan) for name in LOG_FIELDS}
        if nsteps:
            self.kernel(self.w, self.hp, self.keys, self.eparams, self.sigma, np.int64(self.t), np.int64(nsteps),
                        np.int64(self.total_steps), np.int64(self.log_every), np.int64(first), self.queue,
                        np.int64(self.queue_every), self.acc, outs["loss"], outs["rho"], outs["grad_norm_sq"],
                        outs["grad_full_sq"])
        self.t += nsteps
        return first, outs

    def queue_samples(self):
        return self.queue

    def state_dict(self):
        return {"t": np.int64(self.t), "w": self.w.copy(), "queue": self.queue.copy(), "acc": self.acc.copy()}

    def load_state_dict(self, state):
        self._check_state(state)
        self.t = int(state["t"])
        self.w = np.ascontiguousarray(state["w"], dtype=np.float64).copy()
        self.queue = np.ascontiguousarray(state["queue"], dtype=np.float64).copy()
        self.acc = np.ascontiguousarray(state["acc"], dtype=np.float64).copy()


class TorchEngine(Engine):
    """Torch engine (any device): ``Protocol.step`` and ``Energy.value_grad_torch`` per step.

    Uses the same counter-based normals as the kernel (bit-identical uniforms; normals
    equal to ~1 ulp, see :mod:`.rng`), so CPU-kernel and torch trajectories agree to
    rounding, and each is deterministic on its own device.
    """

    backend = "torch"

    def __init__(self, *args, device: str = "cpu", **kwargs):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        super().__init__(*args, **kwargs)

    def _init_state(self, w0):
        torch = self.torch
        dev = self.device
        self.w = torch.as_tensor(w0, dtype=torch.float64, device=dev).clone()
        self.queue = torch.full((self.members, self.queue_size, self.dim), math.nan, dtype=torch.float64, device=dev)
        self.acc = torch.zeros((self.members, 2), dtype=torch.float64, device=dev)
        self.keys_t = rng.keys_to_torch(self.keys, dev)
        self.hp_t = {name: torch.as_tensor(self.hp[:, i:i + 1], dtype=torch.float64, device=dev)
                     for i, name in enumerate(self.protocol.hyperparameters)}

    def stochastic_gradient(self, w, t: int):
        """(g̃ (M, D), ‖g̃‖² (M,)) at step ``t`` from weights ``w``."""
        torch = self.torch
        _, grad = self.energy.value_grad_torch(w)
        xi = rng.normals_torch(self.keys_t, t, self.dim)
        inv = 1.0 / torch.sqrt((w * w).sum(-1, keepdim=True))
        proj = (xi * w).sum(-1, keepdim=True) * (inv * inv)
        noise = (self.sigma * inv) * (xi - proj * w)
        g = grad + noise
        return g, (g * g).sum(-1)

    def advance(self, nsteps):
        torch = self.torch
        nsteps = self._check_steps(nsteps)
        first, stop = log_slots(self.t, self.t + nsteps, self.log_every, self.total_steps)
        outs = {name: torch.full((self.members, stop - first), math.nan, dtype=torch.float64, device=self.device)
                for name in LOG_FIELDS}
        w, acc = self.w, self.acc
        with torch.no_grad():
            for t in range(self.t + 1, self.t + nsteps + 1):
                g, g2 = self.stochastic_gradient(w, t)
                w = self.protocol.step(w, g, self.hp_t)
                acc[:, 0] += g2
                acc[:, 1] += 1.0
                if t % self.log_every == 0 or t == self.total_steps:
                    li = (t + self.log_every - 1) // self.log_every - 1 - first
                    loss, grad = self.energy.value_grad_torch(w)
                    rho2 = (w * w).sum(-1)
                    outs["loss"][:, li] = loss
                    outs["rho"][:, li] = torch.sqrt(rho2)
                    outs["grad_norm_sq"][:, li] = acc[:, 0] / acc[:, 1]
                    outs["grad_full_sq"][:, li] = rho2 * (grad * grad).sum(-1)
                    acc.zero_()
                if t % self.queue_every == 0:
                    self.queue[:, (t // self.queue_every - 1) % self.queue_size] = w
        self.w = w
        self.t += nsteps
        return first, {k: v.cpu().numpy() for k, v in outs.items()}

    def queue_samples(self):
        return self.queue

    def state_dict(self):
        return {"t": np.int64(self.t), "w": self.w.cpu().numpy().copy(), "queue": self.queue.cpu().numpy().copy(),
                "acc": self.acc.cpu().numpy().copy()}

    def load_state_dict(self, state):
        torch = self.torch
        self._check_state(state)
        self.t = int(state["t"])
        self.w = torch.as_tensor(np.asarray(state["w"]), dtype=torch.float64, device=self.device).clone()
        self.queue = torch.as_tensor(np.asarray(state["queue"]), dtype=torch.float64, device=self.device).clone()
        self.acc = torch.as_tensor(np.asarray(state["acc"]), dtype=torch.float64, device=self.device).clone()


def make_engine(backend: str, protocol, energy: Energy, hp: np.ndarray, keys: np.ndarray, *,
                device: str = "cpu", **kwargs) -> Engine:
    """Engine by backend name (``numba`` or ``torch``)."""
    if backend == "numba":
        return NumbaEngine(protocol, energy, hp, keys, **kwargs)
    if backend == "torch":
        return TorchEngine(protocol, energy, hp, keys, device=device, **kwargs)
    raise ValueError(f"unknown backend {backend!r}")


def member_grid(grid: Mapping[str, Sequence[float]], names: Sequence[str], seeds: Sequence[int]):
    """Members in store order (hp₁, hp₂, …, seed), C-ordered: (hp (M, n), seeds (M,))."""
    axes = [np.asarray(grid[n], dtype=np.float64) for n in names] + [np.asarray(seeds, dtype=np.int64)]
    mesh = np.meshgrid(*axes, indexing="ij")
    hp = np.stack([m.ravel() for m in mesh[:-1]], axis=1) if names else np.zeros((mesh[-1].size, 0))
    return hp, mesh[-1].ravel().astype(np.int64)
