"""Entropy of directions on the unit sphere ``S^{D−1}`` (nats, w.r.t. surface measure).

:func:`spherical_entropy` dispatches to the tangent-space (log-map) methods of
:mod:`thermonet.estimators.tangent` — ``"elliptical"`` (the default through
``method="auto"``), ``"gauss"``, ``"gauss-knn"``, ``"isotropic-bound"`` — or to one of two
Kozachenko–Leonenko variants (see ``docs/entropy-estimators.md``):

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

import math
import warnings
from typing import Any

import numpy as np
import torch

from thermonet.errors import InputError
from thermonet.estimators.knn import (
    DEFAULT_MEMORY_BYTES,
    DEFAULT_SEARCH_DTYPE,
    _check_block_args,
    _check_search_dtype,
    _check_shape_and_k,
    _kl_from_distances,
    _knn_batched,
    _to_tensor,
    _wrap,
)
from thermonet.estimators.tangent import EstimabilityWarning, entropy_one_set

__all__ = ["METHODS", "EstimabilityWarning", "hyperspherical_angles", "spherical_entropy"]

METHODS = ("auto", "elliptical", "gauss", "gauss-knn", "isotropic-bound", "chord", "angles")


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


def _check_groups(groups: Any, dim: int) -> tuple[int, ...]:
    if groups is None:
        return (dim,)
    try:
        sizes = tuple(int(g) for g in groups)
        ok = all(int(g) == g for g in groups)
    except (TypeError, ValueError):
        ok, sizes = False, ()
    if not ok or not sizes or any(g < 2 for g in sizes) or sum(sizes) != dim:
        raise InputError(
            f"groups must be a sequence of integer block sizes >= 2 that add up to D = {dim} "
            f"(one per factor sphere), got {groups!r}"
        )
    return sizes


def _normalise_groups(x: torch.Tensor, groups: tuple[int, ...]) -> torch.Tensor:
    if len(groups) == 1:
        return _normalise(x)
    parts, start = [], 0
    for g in groups:
        parts.append(_normalise(x[..., start : start + g]))
        start += g
    return torch.cat(parts, dim=-1)


def _resolve_auto(n: int, groups: tuple[int, ...]) -> tuple[str, list[tuple[tuple[int, ...], str]]]:
    """Plan for ``method='auto'``: ``("elliptical", [])`` or per-group fallbacks."""
    d = sum(groups) - len(groups)
    if n - 1 > d:
        return "elliptical", []
    plan = [((g,), "elliptical" if n - 1 > g - 1 else "isotropic-bound") for g in groups]
    return "per-group", plan


def spherical_entropy(
    samples: Any,
    k: int = 1,
    method: str = "auto",
    *,
    groups: Any = None,
    return_se: bool = False,
    block_size: int | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    search_dtype: str = DEFAULT_SEARCH_DTYPE,
) -> Any:
    """Entropy (nats) of the directions ``x = w/‖w‖`` on ``S^{D−1}`` w.r.t. surface measure.

    Parameters
    ----------
    samples:
        Shape ``(..., N, D)``, numpy array or torch tensor (CPU or GPU); rows need not be
        unit norm (they are normalised first, per group) but must be nonzero and finite.
    k:
        Neighbour rank, ``1 <= k <= N − 1``, for the nearest-neighbour methods
        (``"chord"``, ``"angles"``, ``"gauss-knn"``); checked but unused otherwise.
    method:
        ``"auto"`` (default): ``"elliptical"`` when ``N − 1 > d`` (``d = D − number of
        groups``); otherwise the entropy is not identifiable from the samples, and it
        returns per group the elliptical estimate where ``N − 1 > D_g − 1`` and the
        ``"isotropic-bound"`` elsewhere, summed (an upper bound), with an
        :class:`EstimabilityWarning`.
        ``"elliptical"``: Gaussian fit in log-map coordinates plus Tyler's elliptical
        correction (bias independent of the shape for every elliptical tangent law; see
        ``docs/entropy-estimators.md``); needs ``N − 1 > d``.
        ``"gauss"``: the bias-corrected Gaussian fit alone (exact for Gaussian tangent
        laws; an upper bound otherwise); needs ``N − 1 > d``.
        ``"gauss-knn"``: Gaussian fit plus the kNN difference between the whitened samples
        and a whitened Gaussian sample; needs ``N − 1 > d``.
        ``"isotropic-bound"``: entropy of the isotropic Gaussian with the same tangent
        variance, an upper bound for any ``N >= 2``.
        ``"chord"``: Kozachenko–Leonenko on the manifold with chord distances
        (``d = D − 1``; rotation invariant). ``"angles"``: the paper's estimator in
        hyperspherical-angle coordinates (orientation dependent). Both have a bias that
        depends on the shape of the distribution in high dimension.
    groups:
        Block sizes ``(D_1, …, D_L)`` with ``Σ D_g = D`` when the directions live on a
        product of spheres ``S^{D_1−1} × … × S^{D_L−1}`` (one sphere per layer); each block
        is normalised separately and the entropy is w.r.t. the product of the surface
        measures (intrinsic dimension ``d = D − L``). ``None``: one sphere.
    return_se:
        Also return a standard error per estimate (same shape and container): for the
        tangent-space methods the exact Gaussian log-determinant variance plus the excess
        variance of the per-sample surprisal over a Gaussian sample's; for the
        nearest-neighbour methods split-half (``SPLIT_HALF_REPEATS`` random halves, NaN
        when a half has fewer than ``k + 1`` samples). It measures sampling noise only,
        not the bias.
    block_size, memory_bytes, search_dtype:
        Blocking and candidate-search precision of the nearest-neighbour search, see
        :func:`thermonet.estimators.knn_distances` (they do not change the result).

    Returns
    -------
    float64 entropies of shape ``samples.shape[:-2]``: numpy (0-d for a single set) for
    numpy input, a torch tensor on the input's device for torch input; with
    ``return_se=True`` a pair ``(entropy, standard_error)``. The entropy of ``w`` on its
    sphere of radius ``ρ`` is this value ``+ (D−1) ln ρ``.

    Raises
    ------
    InputError
        Unknown method, bad ``groups``, ``k`` outside ``1..N−1``, ``N < 2``, ``D < 2``,
        non-finite or zero-norm samples, coinciding directions (zero neighbour distance),
        ``N − 1 <= d`` for a method that needs more samples or, for ``"angles"``, samples
        exactly on a singular set of the chart.
    """
    if method not in METHODS:
        raise InputError(
            f"spherical_entropy: unknown method {method!r}; allowed: "
            + ", ".join(repr(m) for m in METHODS)
        )
    x, was_numpy = _to_tensor(samples)
    k = _check_shape_and_k(x, k, min_dim=2)
    _check_block_args(block_size, memory_bytes)
    sdtype = _check_search_dtype(search_dtype)
    sizes = _check_groups(groups, x.shape[-1])
    u = _normalise_groups(x, sizes)
    del x  # peak memory: keep only the unit vectors
    if method in ("chord", "angles"):
        h, se = _knn_entropy(u, k, method, sizes, block_size, memory_bytes, return_se, sdtype)
    else:
        h, se = _tangent_entropy(u, k, method, sizes, sdtype)
    if return_se:
        return _wrap(h, was_numpy), _wrap(se, was_numpy)
    return _wrap(h, was_numpy)


def _tangent_entropy(u: torch.Tensor, k: int, method: str, sizes: tuple[int, ...], sdtype):
    lead = u.shape[:-2]
    n, dim = u.shape[-2], u.shape[-1]
    flat = u.reshape(-1, n, dim)
    h = torch.empty(flat.shape[0], dtype=torch.float64, device=u.device)
    se = torch.empty_like(h)
    if method == "auto":
        kind, plan = _resolve_auto(n, sizes)
        if kind == "per-group":
            bounded = [g for (g,), m in plan if m == "isotropic-bound"]
            warnings.warn(
                f"spherical_entropy: N − 1 = {n - 1} <= d = {dim - len(sizes)}: the entropy is not "
                f"identifiable from these samples; returning the sum over groups of the "
                f"elliptical estimate (groups with D_g <= N) and the isotropic upper bound "
                f"(groups of size {bounded or 'none'}), which ignores dependence between "
                f"groups and is an upper bound (see docs/entropy-estimators.md, 'N <= D')",
                EstimabilityWarning,
                stacklevel=3,
            )
    for b in range(flat.shape[0]):
        if method == "auto" and kind == "per-group":
            tot, var, start = 0.0, 0.0, 0
            for (g,), m in plan:
                hv, sv = entropy_one_set(flat[b][:, start : start + g], (g,), m, k, sdtype)
                tot += hv
                var += sv * sv
                start += g
            h[b], se[b] = tot, math.sqrt(var)
        else:
            m = "elliptical" if method == "auto" else method
            h[b], se[b] = entropy_one_set(flat[b], sizes, m, k, sdtype)
    return h.reshape(lead), se.reshape(lead)


#: Random half-splits used for the standard error of the nearest-neighbour methods.
SPLIT_HALF_REPEATS = 4


def _knn_entropy(u, k, method, sizes, block_size, memory_bytes, return_se, sdtype):
    """Nearest-neighbour entropy (chord or angles) and, if asked, its split-half SE.

    Standard error: for ``SPLIT_HALF_REPEATS`` random splits of the N samples into two
    halves, ``se² = mean (Ŝ_a − Ŝ_b)² / 4`` (the variance of one estimate on N/2 samples
    is twice that on N, and the halves are independent; the halves' common bias cancels
    in the difference). The splits use a fixed seed, so the result is deterministic.
    """
    dim = u.shape[-1]
    d = dim - len(sizes)
    what = f"spherical_entropy(method={method!r})"
    if method == "chord":
        points, logjac = u, None
    else:
        angles, logjac = [], 0.0
        start = 0
        for g in sizes:
            a, lj = _angles_and_log_jacobian(u[..., start : start + g], _angle_chunk_rows(g, memory_bytes))
            angles.append(a)
            logjac = logjac + lj
            start += g
        points = torch.cat(angles, dim=-1) if len(angles) > 1 else angles[0]
        if not bool(torch.isfinite(logjac).all()):
            bad = int((~torch.isfinite(logjac)).sum())
            raise InputError(
                f"spherical_entropy(method='angles'): {bad} sample(s) lie exactly on a singular "
                f"set of the hyperspherical-angle chart (a trailing block of coordinates is all "
                f"zero, so some sin φ_k = 0); use method='chord', which has no chart"
            )

    def estimate(pts, lj):
        r = _knn_batched(pts, k, block_size, memory_bytes, sdtype)
        h = _kl_from_distances(r, k, d, what)
        return h if lj is None else h + lj.mean(dim=-1)

    h = estimate(points, logjac)
    if not return_se:
        return h, None
    n = u.shape[-2]
    half = n // 2
    if half < k + 1:  # a half has no k-th neighbour: the error cannot be measured, the estimate stands
        return h, torch.full_like(h, math.nan)
    gen = torch.Generator().manual_seed(n)
    sq = torch.zeros_like(h)
    for _ in range(SPLIT_HALF_REPEATS):
        perm = torch.randperm(n, generator=gen).to(u.device)
        ia, ib = perm[:half], perm[half : 2 * half]
        ha = estimate(points[..., ia, :], None if logjac is None else logjac[..., ia])
        hb = estimate(points[..., ib, :], None if logjac is None else logjac[..., ib])
        sq = sq + (ha - hb) ** 2
    return h, torch.sqrt(sq / (4.0 * SPLIT_HALF_REPEATS))
