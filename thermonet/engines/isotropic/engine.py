"""Isotropic-model engines: every member of a sweep advances together, one array update per step.

Two backends with one interface (:class:`thermonet.engines.common.Engine`) and the same
random numbers (:mod:`thermonet.engines.rng`):

* :class:`NumbaEngine` (CPU, default there): the compiled kernel of :mod:`.kernel`
  advances all members for a whole chunk of steps (members in parallel threads, steps in
  a loop inside), writing log values and queue samples into preallocated arrays, and
  returns to Python only between chunks.
* :class:`TorchEngine` (any torch device, default on CUDA): the same step written with
  torch ops on (members × D) tensors, using the protocol's own ``Protocol.step`` and the
  energy's ``value_grad_torch``; one Python iteration per step. On the CPU it is the
  slow reference the compiled kernel is tested against.

Logs (every variable of the store's time series): ``loss``, the energy averaged over every
step of the log interval (at the weights before each update), ``grad_norm_sq`` (the
interval's mean ``‖g̃‖²``) and ``trace_sigma`` (its mean ``trΣ(x)``: ``σ² (D−1)`` for
isotropic noise), ``sigma2 = trace_sigma/(D−1)``; ``loss_snapshot``, ``rho`` and
``grad_full_sq`` of the state after the log step; and, for a protocol whose pressure is
measured, that pressure from the interval's mean ``‖g̃‖²`` (:meth:`Protocol.pressure_series`).

State of an engine: the step ``t``, the weights ``w`` (M, D), the queue ring buffer
(M, N, D) and the log-interval accumulators ``acc`` (M, 2) = (Σ‖g̃‖², count). With the
counter-based generator that is all there is: :meth:`state_dict` / :meth:`load_state_dict`
resume a run exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from thermonet.engines import rng
from thermonet.engines.common import log_slots, log_steps, member_grid, queue_entropies
from thermonet.engines.isotropic.energies import Energy

__all__ = ["LOG_FIELDS", "IsotropicEngine", "NumbaEngine", "TorchEngine", "initial_weights", "log_slots",
           "log_steps", "make_engine", "member_grid"]

#: Per-member time series the backends compute, in order (the engine adds sigma2 and the pressure).
LOG_FIELDS = ("loss", "loss_snapshot", "rho", "grad_norm_sq", "grad_full_sq", "trace_sigma")
#: Accumulated over a log interval: (sum of L, sum of ||g~||**2, steps, sum of trSigma(x)).
ACCUMULATORS = 4


def initial_weights(keys: np.ndarray, dim: int, radius: np.ndarray) -> np.ndarray:
    """``w₀ = r ξ/‖ξ‖`` with ``ξ`` the member's normals of step 0 (uniform direction)."""
    xi = rng.normals_numpy(keys, 0, dim)
    return np.asarray(radius, dtype=np.float64).reshape(-1, 1) * xi / np.linalg.norm(xi, axis=1, keepdims=True)


def anisotropy_profile(dim: int, ratio: float) -> np.ndarray:
    """Per-direction noise scales ``a_j`` (D,): log-spaced so that ``max a / min a = ratio``,
    with mean square 1 (the same total noise as isotropic noise). ``ratio = 1``: all ones."""
    if ratio == 1:
        return np.ones(dim)
    a = np.sqrt(ratio) ** np.linspace(-1.0, 1.0, dim)
    return a / np.sqrt(np.mean(a**2))


def member_noise_factor(protocol, hp: dict[str, np.ndarray], exponent: float) -> np.ndarray:
    """Per-member factor on sigma for the noise-trend control: ``(x / x_ref)**(exponent / 2)``,
    so that ``sigma**2 ~ x**exponent`` with ``x`` the protocol's noise-trend variable
    (:meth:`Protocol.noise_trend_expr`: eta*lambda, eta~, eta/rho_0**2) and ``x_ref`` its
    geometric mean over the members. ``exponent = 0``: ones (the theory's constant noise)."""
    size = len(next(iter(hp.values())))
    if exponent == 0:
        return np.ones(size)
    x = np.asarray(protocol.numeric(protocol.noise_trend_expr())(hp), dtype=float) * np.ones(size)
    return (x / np.exp(np.mean(np.log(x)))) ** (exponent / 2)


class IsotropicEngine:
    """Common state handling of the two backends; see the module docstring.

    ``init_radius`` is the starting radius as the protocol allows it
    (:meth:`Protocol.initial_radius`; ``None``: 1, or the protocol's own). The entropies
    use ``entropy_method`` and ``entropy_k`` (:func:`thermonet.estimators.spherical_entropy`).

    The theory's system has isotropic Gaussian noise of one level and plain SGD. Four
    controls break that on purpose (``thermonet study controls``): ``noise_anisotropy``
    (the ratio of the largest to the smallest per-direction noise scale,
    :func:`anisotropy_profile`), ``noise_dof`` (Student-t noise with that many degrees of
    freedom, >= 3, scaled to unit variance), ``momentum`` (heavy-ball SGD,
    ``v <- β v + g~``) and ``noise_trend`` (a noise level that varies over the grid,
    ``sigma**2 ~ x**noise_trend``, :func:`member_noise_factor`, as networks' does).
    """

    backend: str = ""

    def __init__(self, protocol, energy: Energy, hp: np.ndarray, keys: np.ndarray, *, sigma: float,
                 total_steps: int, log_every: int, queue_size: int, queue_every: int,
                 init_radius: float | None = None, entropy_method: str = "chord", entropy_k: int = 1,
                 noise_anisotropy: float = 1.0, noise_dof: int | None = None, momentum: float = 0.0,
                 noise_trend: float = 0.0):
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
        self.entropy_method = entropy_method
        self.entropy_k = int(entropy_k)
        self.noise_scale = np.ascontiguousarray(anisotropy_profile(self.dim, float(noise_anisotropy)))
        self.tail_dof = 0 if noise_dof is None else int(noise_dof)
        self.momentum = float(momentum)
        self.t = 0
        self.hp_columns = {name: self.hp[:, i] for i, name in enumerate(protocol.hyperparameters)}
        self.member_sigma = np.ascontiguousarray(self.sigma * member_noise_factor(protocol, self.hp_columns,
                                                                                  float(noise_trend)))
        radius = protocol.initial_radius(self.hp_columns, init_radius)
        radius = np.ones(self.members) if radius is None else np.asarray(radius, dtype=np.float64)
        self._init_state(initial_weights(self.keys, self.dim, radius))

    # subclasses -------------------------------------------------------------------
    def _init_state(self, w0: np.ndarray) -> None:
        raise NotImplementedError

    def _advance(self, nsteps: int) -> tuple[int, dict[str, np.ndarray]]:
        """Run ``nsteps`` steps; return (first global log index, {LOG_FIELDS: (M, count)})."""
        raise NotImplementedError

    # the engine interface ---------------------------------------------------------
    def advance(self, nsteps: int) -> tuple[int, dict[str, np.ndarray]]:
        """Run ``nsteps`` steps; return (first global log index, {variable: (M, count)})."""
        first, outs = self._advance(nsteps)
        outs["sigma2"] = outs["trace_sigma"] / (self.dim - 1)
        if self.protocol.measured_pressure is not None:
            hp = {name: column[:, None] for name, column in self.hp_columns.items()}
            outs[self.protocol.measured_pressure] = self.protocol.pressure_series(hp, outs["grad_norm_sq"])
        return first, outs

    def entropies(self) -> dict[str, np.ndarray]:
        """S₁ and S of every member's queue (:func:`thermonet.engines.common.queue_entropies`)."""
        return queue_entropies(self.queue_samples(), self.entropy_method, self.entropy_k)

    def member_status(self) -> dict[str, np.ndarray]:
        return {}

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
                  "acc": (self.members, ACCUMULATORS), "velocity": (self.members, self.dim)}
        for name, shape in shapes.items():
            if tuple(np.shape(state[name])) != shape:
                raise ValueError(f"checkpoint {name} has shape {np.shape(state[name])}, expected {shape}")


class NumbaEngine(IsotropicEngine):
    """CPU engine: the compiled chunk kernel."""

    backend = "numba"

    def _init_state(self, w0):
        from thermonet.engines.isotropic.kernel import get_kernel

        self.kernel = get_kernel(self.protocol, self.energy)
        self.eparams = np.ascontiguousarray(self.energy.params(), dtype=np.float64)
        self.w = np.ascontiguousarray(w0)
        self.queue = np.full((self.members, self.queue_size, self.dim), np.nan)
        self.acc = np.zeros((self.members, ACCUMULATORS))
        self.velocity = np.zeros((self.members, self.dim))

    def _advance(self, nsteps):
        nsteps = self._check_steps(nsteps)
        first, stop = log_slots(self.t, self.t + nsteps, self.log_every, self.total_steps)
        outs = {name: np.full((self.members, stop - first), np.nan) for name in LOG_FIELDS}
        if nsteps:
            self.kernel(self.w, self.hp, self.keys, self.eparams, self.member_sigma, np.int64(self.t), np.int64(nsteps),
                        np.int64(self.total_steps), np.int64(self.log_every), np.int64(first), self.queue,
                        np.int64(self.queue_every), self.acc, self.noise_scale, np.int64(self.tail_dof),
                        self.momentum, self.velocity, outs["loss"], outs["loss_snapshot"], outs["rho"],
                        outs["grad_norm_sq"], outs["grad_full_sq"], outs["trace_sigma"])
        self.t += nsteps
        return first, outs

    def queue_samples(self):
        return self.queue

    def state_dict(self):
        return {"t": np.int64(self.t), "w": self.w.copy(), "queue": self.queue.copy(), "acc": self.acc.copy(),
                "velocity": self.velocity.copy()}

    def load_state_dict(self, state):
        self._check_state(state)
        self.t = int(state["t"])
        for name in ("w", "queue", "acc", "velocity"):
            setattr(self, name, np.ascontiguousarray(state[name], dtype=np.float64).copy())


class TorchEngine(IsotropicEngine):
    """Torch engine (any device): ``Protocol.step`` and ``Energy.value_grad_torch`` per step.

    Uses the same counter-based normals as the kernel (bit-identical uniforms; normals
    equal to ~1 ulp, see :mod:`thermonet.engines.rng`), so CPU-kernel and torch trajectories
    agree to rounding, and each is deterministic on its own device.
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
        self.acc = torch.zeros((self.members, ACCUMULATORS), dtype=torch.float64, device=dev)
        self.velocity = torch.zeros((self.members, self.dim), dtype=torch.float64, device=dev)
        self.keys_t = rng.keys_to_torch(self.keys, dev)
        self.hp_t = {name: torch.as_tensor(self.hp[:, i:i + 1], dtype=torch.float64, device=dev)
                     for i, name in enumerate(self.protocol.hyperparameters)}
        self.noise_scale_t = torch.as_tensor(self.noise_scale, dtype=torch.float64, device=dev)
        self.member_sigma_t = torch.as_tensor(self.member_sigma, dtype=torch.float64, device=dev)

    def noise_trace(self, w):
        """trSigma(x) at unit norm of every member (M,): ``σ² (Σ a² − Σ a² x²)``."""
        torch = self.torch
        a2 = self.noise_scale_t**2
        x2 = w * w / (w * w).sum(-1, keepdim=True)
        return self.member_sigma_t**2 * (a2.sum() - (a2 * x2).sum(-1))

    def stochastic_gradient(self, w, t: int):
        """(g̃ (M, D), ‖g̃‖² (M,)) at step ``t`` from weights ``w``."""
        torch = self.torch
        _, grad = self.energy.value_grad_torch(w)
        if self.tail_dof:
            both = rng.normals_torch(self.keys_t, t, self.dim + self.tail_dof)
            xi = both[:, :self.dim] * torch.sqrt((self.tail_dof - 2.0) / (both[:, self.dim:] ** 2).sum(-1,
                                                                                                       keepdim=True))
        else:
            xi = rng.normals_torch(self.keys_t, t, self.dim)
        xi = xi * self.noise_scale_t
        inv = 1.0 / torch.sqrt((w * w).sum(-1, keepdim=True))
        proj = (xi * w).sum(-1, keepdim=True) * (inv * inv)
        noise = (self.member_sigma_t[:, None] * inv) * (xi - proj * w)
        g = grad + noise
        return g, (g * g).sum(-1)

    def _advance(self, nsteps):
        torch = self.torch
        nsteps = self._check_steps(nsteps)
        first, stop = log_slots(self.t, self.t + nsteps, self.log_every, self.total_steps)
        outs = {name: torch.full((self.members, stop - first), math.nan, dtype=torch.float64, device=self.device)
                for name in LOG_FIELDS}
        w, acc = self.w, self.acc
        with torch.no_grad():
            for t in range(self.t + 1, self.t + nsteps + 1):
                loss_before, _ = self.energy.value_grad_torch(w)
                trace = self.noise_trace(w)
                g, g2 = self.stochastic_gradient(w, t)
                if self.momentum:
                    self.velocity = self.momentum * self.velocity + g
                    w = self.protocol.step(w, self.velocity, self.hp_t)
                else:
                    w = self.protocol.step(w, g, self.hp_t)
                acc[:, 0] += loss_before
                acc[:, 1] += g2
                acc[:, 2] += 1.0
                acc[:, 3] += trace
                if t % self.log_every == 0 or t == self.total_steps:
                    li = (t + self.log_every - 1) // self.log_every - 1 - first
                    loss, grad = self.energy.value_grad_torch(w)
                    rho2 = (w * w).sum(-1)
                    outs["loss"][:, li] = acc[:, 0] / acc[:, 2]
                    outs["loss_snapshot"][:, li] = loss
                    outs["rho"][:, li] = torch.sqrt(rho2)
                    outs["grad_norm_sq"][:, li] = acc[:, 1] / acc[:, 2]
                    outs["grad_full_sq"][:, li] = rho2 * (grad * grad).sum(-1)
                    outs["trace_sigma"][:, li] = acc[:, 3] / acc[:, 2]
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
                "acc": self.acc.cpu().numpy().copy(), "velocity": self.velocity.cpu().numpy().copy()}

    def load_state_dict(self, state):
        torch = self.torch
        self._check_state(state)
        self.t = int(state["t"])
        for name in ("w", "queue", "acc", "velocity"):
            setattr(self, name, torch.as_tensor(np.asarray(state[name]), dtype=torch.float64,
                                                device=self.device).clone())


#: The backends by name.
BACKENDS = {"numba": NumbaEngine, "torch": TorchEngine}


def make_engine(backend: str, protocol, energy: Energy, hp: np.ndarray, keys: np.ndarray, *,
                device: str = "cpu", **kwargs) -> IsotropicEngine:
    """Engine by backend name (``numba`` or ``torch``)."""
    if backend == "numba":
        return NumbaEngine(protocol, energy, hp, keys, **kwargs)
    if backend == "torch":
        return TorchEngine(protocol, energy, hp, keys, device=device, **kwargs)
    raise ValueError(f"unknown backend {backend!r}")


#: Old name of :class:`IsotropicEngine`.
Engine = IsotropicEngine
