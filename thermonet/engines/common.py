"""What every ensemble engine shares: the interface the run driver uses, the time axis, members.

An *engine* advances an ensemble, every (hyperparameter point, seed) a member, and
measures it. The isotropic simulator (:mod:`thermonet.engines.isotropic`) and the network
trainer (:mod:`thermonet.engines.network`) are two engines behind one interface,
:class:`Engine`, so that one driver loop (:func:`thermonet.runs.driver.drive`) runs
both and one checkpoint format saves both.

Time axis: log index ``i`` is the step ``(i + 1) * log_every``, and the last one is the
final step when that is not a multiple of ``log_every`` (:func:`log_steps`,
:func:`log_slots`). Members are in store order, C-ordered over (hp₁, hp₂, …, seed)
(:func:`member_grid`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Protocol as TypingProtocol, runtime_checkable

import numpy as np

from thermonet.errors import ThermonetError

__all__ = ["Engine", "log_slots", "log_steps", "member_grid", "queue_entropies"]


@runtime_checkable
class Engine(TypingProtocol):
    """The interface the run driver needs from an engine.

    * ``t``: steps done; ``members``; ``dim`` (D);
    * ``advance(n)``: ``n`` more steps; returns ``(first log index, {variable: (members,
      count)})`` with every time-series variable of the logs those steps completed (count
      may be 0);
    * ``entropies()``: ``{"entropy_sphere": (members,), "entropy": (members,),
      "entropy_se": (members,)}`` from the current queue (NaN where a member has none);
    * ``member_status()``: per-member variables of the store (``{"diverged_at": ...}``),
      or ``{}``;
    * ``state_dict()`` / ``load_state_dict(state)``: everything needed to continue
      exactly, as numpy arrays and numbers (the checkpoint).

    Optional: ``groups``, the ``(name, D_g)`` of the scale-invariant groups of a network
    (the store gets the ``group`` dimension); per-group variables are then ``(members,
    groups, count)`` in the logs and ``(members, groups)`` in the entropies.
    """

    t: int
    members: int
    dim: int

    def advance(self, nsteps: int) -> tuple[int, dict[str, np.ndarray]]: ...

    def entropies(self) -> dict[str, np.ndarray]: ...

    def member_status(self) -> dict[str, np.ndarray]: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None: ...


def log_slots(t0: int, t1: int, log_every: int, total_steps: int) -> tuple[int, int]:
    """Global log indices ``[first, stop)`` written by steps ``t0+1 .. t1``."""
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


def member_grid(grid: Mapping[str, Sequence[float]], names: Sequence[str], seeds: Sequence[int]):
    """Members in store order (hp₁, hp₂, …, seed), C-ordered: (hp (M, n), seeds (M,))."""
    axes = [np.asarray(grid[n], dtype=np.float64) for n in names] + [np.asarray(seeds, dtype=np.int64)]
    mesh = np.meshgrid(*axes, indexing="ij")
    hp = np.stack([m.ravel() for m in mesh[:-1]], axis=1) if names else np.zeros((mesh[-1].size, 0))
    return hp, mesh[-1].ravel().astype(np.int64)


def queue_entropies(samples, method: str, k: int, active: np.ndarray | None = None,
                    block_bytes: int = 256 * 2**20, columns=None, standard_error: bool = True) -> dict[str, np.ndarray]:
    """``entropy_sphere`` (S₁), ``entropy`` (S = S₁ + (D−1) ln ρ̄) and ``entropy_se`` (the
    estimator's standard error of S₁, ``spherical_entropy(..., return_se=True)``; the
    sampling noise of ln ρ̄ is negligible next to it) of every member's queue.

    ``samples`` is (M, N, D), numpy or torch (any device); ``active`` (M,) bool selects the
    members to estimate (NaN elsewhere); ``columns`` (an index array) restricts the
    samples to those coordinates (one scale-invariant group: its sphere, its D_g), taken
    block by block. Members are estimated in blocks of at most ``block_bytes`` of float64
    samples (the estimator works on a float64 copy). When a block fails (e.g. coinciding
    samples in one member) its members are estimated one by one, NaN where it fails, and
    a warning says so. ``standard_error=False`` skips the standard error (NaN; it costs two
    more estimates for the nearest-neighbour methods).
    """
    from thermonet.estimators import spherical_entropy

    members, size = samples.shape[0], samples.shape[1]
    dim = samples.shape[-1] if columns is None else len(columns)
    chosen = np.arange(members) if active is None else np.flatnonzero(np.asarray(active, dtype=bool))
    s1 = np.full(members, math.nan)
    s = np.full(members, math.nan)
    se = np.full(members, math.nan)
    per_block = max(1, int(block_bytes) // max(1, 8 * size * dim))
    torch_input = hasattr(samples, "cpu")

    def as_numpy(value) -> np.ndarray:
        return np.asarray(value.cpu().numpy() if hasattr(value, "cpu") else value, dtype=np.float64).reshape(-1)

    def estimate(x) -> tuple[np.ndarray, np.ndarray]:
        if not standard_error:
            value = as_numpy(spherical_entropy(x, k=k, method=method))
            return value, np.full(value.shape, math.nan)
        value, error = spherical_entropy(x, k=k, method=method, return_se=True)
        return as_numpy(value), as_numpy(error)

    def mean_norm(x) -> np.ndarray:
        if torch_input:
            import torch

            return torch.linalg.vector_norm(x.to(torch.float64), dim=-1).mean(-1).cpu().numpy()
        return np.linalg.norm(np.asarray(x, dtype=np.float64), axis=-1).mean(-1)

    warned = False
    for start in range(0, chosen.size, per_block):
        index = chosen[start:start + per_block]
        block = samples[index] if torch_input else np.asarray(samples)[index]
        if columns is not None:
            block = block[..., columns]
        try:
            values, errors = estimate(block)
        except ThermonetError as exc:
            if not warned:
                print(f"thermonet: warning: entropy failed for some members ({exc}); writing NaN there",
                      file=sys.stderr)
                warned = True
            values, errors = np.full(index.size, math.nan), np.full(index.size, math.nan)
            for i in range(index.size):
                try:
                    value, error = estimate(block[i])
                    values[i], errors[i] = float(value[0]), float(error[0])
                except ThermonetError:
                    pass
        s1[index] = values
        s[index] = values + (dim - 1) * np.log(mean_norm(block))
        se[index] = errors
    return {"entropy_sphere": s1, "entropy": s, "entropy_se": se}
