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

Training uses the simulator's torch engine (:class:`thermonet.simulation.engine.TorchEngine`)
with the protocol's own ``step`` (default: the fixed sphere of radius 1), replacing only
the Gaussian noise by mini-batch noise: :class:`MiniBatchEngine` overrides
``stochastic_gradient`` to average the per-sample gradients of a batch of ``b`` samples
drawn with replacement. The batch indices come from the engine's counter-based normals
(``u = Φ(ξ)``), so a member's trajectory depends only on its key and the step.

:func:`run_toy` sweeps learning rates with an ensemble of members per LR and returns the
stationary loss, the ensemble entropy of the directions, the measured noise level and
the temperatures: the protocol's ``T = η_eff σ²/2`` from the noise measured on the
ensemble (``σ² = ρ² tr Σ_B(w)/(D−1)``), and the free-energy (hull) intervals of
:mod:`thermonet.free_energy` (Helmholtz: the sphere fixes the volume).
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
from thermonet.simulation.energies import Energy
from thermonet.simulation.engine import TorchEngine

__all__ = ["REGIMES", "MiniBatchEngine", "SphereToyEnergy", "ToyResult", "run_toy", "trajectories"]

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
    Only the torch path exists (``value_grad_numba`` is None): train it with
    :class:`MiniBatchEngine`.
    """

    name: ClassVar[str] = "sphere-toy"
    value_grad_numba: ClassVar[object] = None

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
        return f"{self.name}-{self.regime}"

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
        from thermonet.simulation import rng

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


# ---------------------------------------------------------------------- sweeps
@attrs.frozen
class ToyResult:
    """A learning-rate sweep of the toy.

    Per LR (arrays of length L): ``loss`` (mean over members and the window's logs),
    ``loss_excess = loss − minimum_loss``, ``entropy`` (entropy of the member directions
    on S², Kozachenko–Leonenko with chord distances, averaged over the window's
    snapshots), ``sigma2`` (mean measured noise level), ``T_noise = lr σ²/(2ρ₀²)``,
    ``snr`` (‖∇L‖/sqrt(tr Σ_B) averaged over members), ``distance`` (mean angle to the
    nearest minimiser ±e_z, radians), ``absorbed`` (fraction of members sitting exactly at
    ±e_z at the end, left out of the entropy). ``intervals``/``fit``: the free-energy temperature
    (:func:`thermonet.free_energy.hull_temperatures` on (loss, entropy); ``fit`` None when
    it cannot be fitted, with ``fit_error``).
    """

    regime: str
    energy: SphereToyEnergy
    lr: np.ndarray
    loss: np.ndarray
    loss_excess: np.ndarray
    entropy: np.ndarray
    sigma2: np.ndarray
    T_noise: np.ndarray
    snr: np.ndarray
    distance: np.ndarray
    absorbed: np.ndarray
    intervals: object
    fit: object | None
    fit_error: str | None
    members: int
    steps: int
    batch_size: int
    seconds: float

    @property
    def collapsed(self) -> np.ndarray:
        """LRs whose ensemble collapsed onto the minimiser to float precision (entropy -inf)."""
        return np.isneginf(self.entropy)

    def _column(self, name: str, collapsed_value: float) -> np.ndarray:
        out = np.full(self.lr.size, np.nan)
        out[self.collapsed] = collapsed_value
        if self.intervals is not None:
            lookup = {run.lr: getattr(run, name) for run in self.intervals.runs}
            for i, v in enumerate(self.lr):
                if v in lookup:
                    out[i] = lookup[v]
        return out

    @property
    def T_hull(self) -> np.ndarray:
        """Hull point estimate per LR (0 for collapsed ensembles: S = -inf, slope 0)."""
        return self._column("T", 0.0)

    @property
    def T_low(self) -> np.ndarray:
        return self._column("T_low", 0.0)

    @property
    def T_high(self) -> np.ndarray:
        return self._column("T_high", 0.0)


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


def _single_threaded(fn):
    """Give ``fn`` a keyword ``threads`` (default 1; None keeps torch's setting)."""

    @functools.wraps(fn)
    def wrapper(*args, threads: int | None = 1, **kwargs):
        with _torch_threads(threads):
            return fn(*args, **kwargs)

    return wrapper


def _engine(energy: SphereToyEnergy, lr: np.ndarray, seeds: int, steps: int, batch_size: int, radius: float,
            log_every: int, seed_offset: int = 0) -> MiniBatchEngine:
    from thermonet.simulation import rng
    from thermonet.simulation.engine import member_grid
    from thermonet.theory.protocols import get_protocol

    protocol = get_protocol("fixed-sphere")
    hp, member_seeds = member_grid({"lr": lr, "sphere_radius": [radius]}, protocol.hyperparameters,
                                   np.arange(seeds) + seed_offset)
    keys = rng.member_keys(member_seeds, hp)
    # A separate key space per regime would make the two ensembles share no noise; they
    # share it on purpose here (same batch draws), so the comparison isolates the geometry.
    return MiniBatchEngine(protocol, energy, hp, keys, batch_size=batch_size, sigma=0.0, total_steps=steps,
                           log_every=log_every, queue_size=1, queue_every=steps + 1,
                           init_radius=np.full(len(keys), radius))


@_single_threaded
def run_toy(regime: str, lr: Sequence[float], *, seeds: int = 256, steps: int = 20_000, batch_size: int = 2,
            window: float = 0.5, snapshots: int = 8, samples: int = 6, tilt: float = DEFAULT_TILT,
            scale: float = 10.0, radius: float = 1.0, entropy_k: int = 1) -> ToyResult:
    """Train the toy at every LR with ``seeds`` members each (fixed sphere of radius ``radius``).

    The stationary window is the final ``window`` fraction of the ``steps``; ``snapshots``
    ensemble snapshots in it give the entropy and the noise level; the loss is the mean of
    the logs in it (logged every ``steps // 50`` steps). An ensemble whose members
    coincide (collapsed onto the minimiser to float precision) gets entropy ``-inf``,
    is left out of the hull and has ``T_hull = 0`` (a point at S = -inf makes the hull
    edge to its right horizontal). ``threads``: torch threads while it runs (default 1,
    fastest for these small tensors; None leaves the setting alone).
    """
    import time

    import torch

    from thermonet.free_energy import fit_power_law, hull_temperatures

    lr = np.sort(np.asarray(lr, dtype=float).ravel())
    if lr.size < 2 or not np.all(np.isfinite(lr) & (lr > 0)):
        raise InputError("run_toy needs at least 2 finite learning rates > 0")
    if seeds < 8:
        raise InputError(f"run_toy needs seeds >= 8 members per LR for the entropy estimate, got {seeds}")
    if not (0 < window <= 1) or snapshots < 1 or steps < 10:
        raise InputError("run_toy: window in (0, 1], snapshots >= 1 and steps >= 10 are required")
    energy = SphereToyEnergy(regime=regime, samples=samples, tilt=tilt, scale=scale)
    log_every = max(1, steps // 50)
    engine = _engine(energy, lr, seeds, steps, batch_size, radius, log_every)
    start = int(round(steps * (1 - window)))
    snap_steps = np.unique(np.linspace(start, steps, snapshots + 1)[1:].round().astype(int))
    tick = time.perf_counter()
    losses: list[np.ndarray] = []
    log_step = 0
    entropies, absorbed, sigma2s, snrs, distances = [], [], [], [], []
    shape = (lr.size, seeds)
    for target in snap_steps:
        first, outs = engine.advance(int(target - engine.t))
        for j in range(outs["loss"].shape[1]):
            log_step = (first + j + 1) * log_every
            if log_step > start:
                losses.append(outs["loss"][:, j].reshape(shape))
        w = engine.w
        x = (w / torch.linalg.vector_norm(w, dim=-1, keepdim=True)).reshape(*shape, 3)
        entropy_now, absorbed_now = _ensemble_entropy(x.numpy(), entropy_k)
        entropies.append(entropy_now)
        absorbed.append(absorbed_now)
        sig = energy.noise_sigma2_torch(w, batch_size).reshape(shape).numpy()
        sigma2s.append(sig.mean(-1))
        _, grad = energy.value_grad_torch(w)
        signal = torch.linalg.vector_norm(grad, dim=-1).reshape(shape).numpy()
        noise = np.sqrt(sig * (energy.dim - 1) / (w * w).sum(-1).reshape(shape).numpy())
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # members exactly at the pole: no ratio
            snrs.append(np.nanmean(np.where(noise > 0, signal / noise, np.nan), axis=-1))
        distances.append(np.arccos(np.clip(np.abs(x[..., 2].numpy()), 0, 1)).mean(-1))
    seconds = time.perf_counter() - tick
    loss = np.mean(losses, axis=0).mean(-1) if losses else np.full(lr.size, np.nan)
    # Mean over snapshots; -inf as soon as one snapshot has collapsed members.
    entropy = np.mean(np.asarray(entropies), axis=0)
    sigma2 = np.mean(sigma2s, axis=0)
    T_noise = lr * sigma2 / (2 * radius**2)
    good = np.isfinite(loss) & np.isfinite(entropy)
    intervals = hull_temperatures(lr[good], loss[good], entropy[good]) if good.sum() >= 2 else None
    fit, fit_error = None, None
    if intervals is not None:
        try:
            fit = fit_power_law(intervals)
        except InputError as exc:
            fit_error = str(exc)
    else:
        fit_error = "fewer than 2 runs with finite loss and entropy"
    return ToyResult(regime=regime, energy=energy, lr=lr, loss=loss, loss_excess=loss - energy.minimum_loss,
                     entropy=entropy, sigma2=sigma2, T_noise=T_noise, snr=np.mean(snrs, axis=0),
                     distance=np.mean(distances, axis=0), absorbed=np.asarray(absorbed)[-1],
                     intervals=intervals, fit=fit, fit_error=fit_error,
                     members=seeds, steps=steps, batch_size=batch_size, seconds=seconds)


def _ensemble_entropy(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Entropy of the member directions of each LR, (L, N, 3) -> ((L,), (L,)).

    Members exactly at a pole ``±e_z`` (absorbed: in the over-parameterised form the
    gradient and the noise vanish there, so once the tangent components underflow a
    member never moves again) are left out; the second array is their fraction. The
    entropy is ``-inf`` when fewer than 8 members are left or the rest coincide.
    """
    from thermonet.estimators import spherical_entropy

    out = np.empty(x.shape[0])
    absorbed = np.empty(x.shape[0])
    for i, members in enumerate(x):
        at_pole = (members[:, 0] == 0) & (members[:, 1] == 0)
        absorbed[i] = at_pole.mean()
        free = members[~at_pole]
        if free.shape[0] < 8:
            out[i] = -np.inf
            continue
        try:
            out[i] = float(spherical_entropy(free, k=k, method="chord"))
        except InputError:
            out[i] = -np.inf
    return out, absorbed


@_single_threaded
def trajectories(regime: str, lr: Sequence[float], *, steps: int = 2000, every: int = 1, batch_size: int = 2,
                 seed: int = 0, start: Sequence[float] | None = None, **energy_kwargs) -> np.ndarray:
    """Paths of one member per LR on S²: array (len(lr), steps // every + 1, 3).

    ``start`` (a 3-vector) sets a common starting direction; default: the member's own
    random start.
    """
    import torch

    lr = np.asarray(lr, dtype=float).ravel()
    energy = SphereToyEnergy(regime=regime, **energy_kwargs)
    engine = _engine(energy, lr, 1, steps, batch_size, 1.0, log_every=steps, seed_offset=seed)
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
