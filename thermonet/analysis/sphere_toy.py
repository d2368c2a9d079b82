"""The learning-rate sweep of the sphere toy (paper 002) and its free-energy temperatures.

:func:`run_toy` trains the toy (:mod:`thermonet.engines.toy`) at every learning rate
with an ensemble of members per LR and returns the stationary loss, the ensemble entropy
of the directions, the measured noise level and the temperatures: the protocol's
``T = η_eff σ²/2`` from the noise measured on the ensemble (``σ² = ρ² tr Σ_B(w)/(D−1)``),
and the free-energy (hull) intervals of :mod:`thermonet.analysis.hull` (Helmholtz: the
sphere fixes the volume).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import attrs
import numpy as np

from thermonet.analysis.hull import hull_temperatures
from thermonet.analysis.power_law import fit_hull_power_law
from thermonet.engines.toy import DEFAULT_TILT, SphereToyEnergy, single_threaded, toy_engine
from thermonet.errors import InputError

__all__ = ["ToyResult", "run_toy"]


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
    (:func:`thermonet.analysis.hull.hull_temperatures` on (loss, entropy); ``fit`` None when
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


@single_threaded
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

    lr = np.sort(np.asarray(lr, dtype=float).ravel())
    if lr.size < 2 or not np.all(np.isfinite(lr) & (lr > 0)):
        raise InputError("run_toy needs at least 2 finite learning rates > 0")
    if seeds < 8:
        raise InputError(f"run_toy needs seeds >= 8 members per LR for the entropy estimate, got {seeds}")
    if not (0 < window <= 1) or snapshots < 1 or steps < 10:
        raise InputError("run_toy: window in (0, 1], snapshots >= 1 and steps >= 10 are required")
    energy = SphereToyEnergy(regime=regime, samples=samples, tilt=tilt, scale=scale)
    log_every = max(1, steps // 50)
    engine = toy_engine(energy, lr, seeds, steps, batch_size, radius, log_every)
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
            fit = fit_hull_power_law(intervals)
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


