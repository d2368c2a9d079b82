"""Entropy of directions on the unit sphere ``S^{D−1}`` (nats, w.r.t. surface measure).

Two Kozachenko–Leonenko variants (see ``docs/entropy-estimators.md``):

``method="angles"`` (paper appendix D.6, kept for fidelity)
    Map ``x = w/‖w‖`` to hyperspherical angles ``φ₁..φ_{D−1}``::

        φ_k     = atan2(‖x_{k+1:}‖, x_k) ∈ [0, π],   k = 1..D−2
        φ_{D−1} = atan2(x_D, x_{D−1})   ∈ (−π, π]

    estimate the entropy of ``φ`` with plain Euclidean distances in angle space
    (``d = D − 1``, no wrap-around of ``φ_{D−1}``), and add the mean log-Jacobian of the
    chart, ``E[Σ_{k=1}^{D−2} (D−1−k) ln sin φ_k]``. The chart is singular at the poles
    ``±e_1`` (and on the lower-dimensional sets where tails of ``x`` vanish), so the result
    depends on how the distribution sits relative to the coordinate axes.

``method="chord"`` (coordinate-free)
    Kozachenko–Leonenko on the manifold: intrinsic dimension ``d = D − 1``, chord
    (Euclidean) distances between unit vectors and ``V_{D−1}``. Locally chord ≈ geodesic
    distance, so the estimator is consistent, and it is exactly invariant to rotations.

``ln sin φ_k`` is computed as ``ln‖x_{k+1:}‖ − ln‖x_{k:}‖`` (tail norms from a reversed
cumulative sum of squares), which is accurate also for ``φ_k`` near 0 or π.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from thermonet.errors import InputError
from thermonet.estimators.knn import (
    DEFAULT_MEMORY_BYTES,
    _check_block_args,
    _check_shape_and_k,
    _kl_from_distances,
    _knn_batched,
    _to_tensor,
    _wrap,
)

__all__ = ["METHODS", "hyperspherical_angles", "spherical_entropy"]

METHODS = ("angles", "chord")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    zero = norms == 0
    if bool(zero.any()):
        raise InputError(
            f"spherical_entropy: {int(zero.sum())} sample(s) have zero norm, so their "
            f"direction is undefined; every sample must be a nonzero vector"
        )
    return x / norms


def _angle_chunk_rows(dim: int, memory_bytes: int) -> int:
    # a few (rows × D) float64 temporaries per chunk: squares, tail norms, logs, atan2
    return max(1, int(memory_bytes) // (8 * 4 * dim))


def _angles_and_log_jacobian(
    x: torch.Tensor, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hyperspherical angles (..., N, D−1) and per-sample log-Jacobian (..., N).

    ``x`` must be unit vectors (float64). Computed in chunks of ``rows`` rows of the
    flattened samples to bound the memory of the intermediate tail norms.
    """
    shape = x.shape
    dim = shape[-1]
    flat = x.reshape(-1, dim)
    angles = torch.empty(flat.shape[0], dim - 1, dtype=torch.float64, device=x.device)
    logjac = torch.empty(flat.shape[0], dtype=torch.float64, device=x.device)
    # weights (D−1−k) for k = 1..D−2
    weights = torch.arange(dim - 2, 0, -1, dtype=torch.float64, device=x.device)
    for start in range(0, flat.shape[0], rows):
        xb = flat[start : start + rows]
        # tail[:, j] = ‖x_{j+1:}‖ in 1-based terms, i.e. norm of xb[:, j:]
        tail = torch.sqrt(torch.flip(torch.cumsum(torch.flip(xb * xb, [1]), dim=1), [1]))
        if dim > 2:
            angles[start : start + rows, : dim - 2] = torch.atan2(tail[:, 1 : dim - 1], xb[:, : dim - 2])
            log_tail = torch.log(tail[:, : dim - 1])
            log_sin = log_tail[:, 1:] - log_tail[:, :-1]  # ln sin φ_k, k = 1..D−2
            logjac[start : start + rows] = log_sin @ weights
        else:
            logjac[start : start + rows] = 0.0
        angles[start : start + rows, dim - 2] = torch.atan2(xb[:, dim - 1], xb[:, dim - 2])
    return angles.reshape(*shape[:-1], dim - 1), logjac.reshape(shape[:-1])


def hyperspherical_angles(samples: Any) -> Any:
    """Hyperspherical angles ``φ₁..φ_{D−1}`` of the directions of ``samples`` (..., D).

    ``x_1 = cos φ₁``, ``x_2 = sin φ₁ cos φ₂``, …, ``x_{D−1} = sin φ₁⋯sin φ_{D−2} cos φ_{D−1}``,
    ``x_D = sin φ₁⋯sin φ_{D−2} sin φ_{D−1}``; ``φ₁..φ_{D−2} ∈ [0, π]``, ``φ_{D−1} ∈ (−π, π]``.
    Same container/device conventions as :func:`spherical_entropy`; shape (..., D−1).
    """
    if isinstance(samples, torch.Tensor):
        x, was_numpy = samples.to(torch.float64), False
    else:
        x, was_numpy = torch.from_numpy(np.asarray(samples, dtype=np.float64)), True
    if x.dim() < 1 or x.shape[-1] < 2:
        raise InputError(f"samples need a last axis of length D >= 2, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise InputError("samples contain non-finite values (nan or inf); all must be finite")
    u = _normalise(x)
    angles, _ = _angles_and_log_jacobian(u, _angle_chunk_rows(u.shape[-1], DEFAULT_MEMORY_BYTES))
    return _wrap(angles, was_numpy)


def spherical_entropy(
    samples: Any,
    k: int = 1,
    method: str = "angles",
    *,
    block_size: int | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Any:
    """Entropy (nats) of the directions ``x = w/‖w‖`` on ``S^{D−1}`` w.r.t. surface measure.

    Parameters
    ----------
    samples:
        Shape ``(..., N, D)``, numpy array or torch tensor (CPU or GPU); rows need not be
        unit norm (they are normalised first) but must be nonzero and finite.
    k:
        Neighbour rank, ``1 <= k <= N − 1``.
    method:
        ``"angles"`` (paper: KL in hyperspherical-angle coordinates plus the mean
        log-Jacobian; depends on the orientation of the distribution, biased when mass
        sits near the poles ``±e_1`` of the chart) or ``"chord"`` (KL on the manifold with
        chord distances, ``d = D − 1``; rotation invariant). Prefer ``"chord"`` for new
        work.
    block_size, memory_bytes:
        Blocking of the nearest-neighbour search, see
        :func:`thermonet.estimators.knn_distances`.

    Returns
    -------
    float64 entropies of shape ``samples.shape[:-2]``: numpy (0-d for a single set) for
    numpy input, a torch tensor on the input's device for torch input. The entropy of
    ``w`` on its sphere of radius ``ρ`` is this value ``+ (D−1) ln ρ``.

    Raises
    ------
    InputError
        Unknown method, ``k`` outside ``1..N−1``, ``N < 2``, ``D < 2``, non-finite or
        zero-norm samples, coinciding directions (zero neighbour distance) or, for
        ``"angles"``, samples exactly on a singular set of the chart.
    """
    if method not in METHODS:
        raise InputError(
            f"spherical_entropy: unknown method {method!r}; allowed: "
            + ", ".join(repr(m) for m in METHODS)
        )
    x, was_numpy = _to_tensor(samples)
    k = _check_shape_and_k(x, k, min_dim=2)
    _check_block_args(block_size, memory_bytes)
    u = _normalise(x)
    del x  # peak memory: keep only the unit vectors
    dim = u.shape[-1]
    d = dim - 1
    if method == "chord":
        r = _knn_batched(u, k, block_size, memory_bytes)
        return _wrap(_kl_from_distances(r, k, d, "spherical_entropy(method='chord')"), was_numpy)

    angles, logjac = _angles_and_log_jacobian(u, _angle_chunk_rows(dim, memory_bytes))
    del u
    if not bool(torch.isfinite(logjac).all()):
        bad = int((~torch.isfinite(logjac)).sum())
        raise InputError(
            f"spherical_entropy(method='angles'): {bad} sample(s) lie exactly on a singular "
            f"set of the hyperspherical-angle chart (a trailing block of coordinates is all "
            f"zero, so some sin φ_k = 0); use method='chord', which has no chart"
        )
    r = _knn_batched(angles, k, block_size, memory_bytes)
    h_angles = _kl_from_distances(r, k, d, "spherical_entropy(method='angles')")
    return _wrap(h_angles + logjac.mean(dim=-1), was_numpy)
