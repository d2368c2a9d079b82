"""Kozachenko–Leonenko nearest-neighbour entropy in Euclidean space.

The estimator (THEORY.md §8) for ``N`` samples in ``R^d`` with ``k`` neighbours is::

    Ĥ = ψ(N) − ψ(k) + ln V_d + (d/N) Σ_i ln r_{i,k},    V_d = π^{d/2} / Γ(d/2 + 1),

in nats, where ``r_{i,k}`` is the distance from sample ``i`` to its ``k``-th nearest other
sample. For ``k = 1``, ``ψ(N) − ψ(1) = ψ(N) + γ_E``; the paper writes ``ln(N−1) + γ_E``,
which differs by ``O(1/N)``.

Distances are computed in blocks of rows of the ``N × N`` distance matrix, from the Gram
form ``‖a‖² + ‖b‖² − 2 a·b`` (one matrix product per block, so it runs on a GPU), after
subtracting the per-set mean (this removes most of the cancellation in the Gram form
for concentrated samples). The product (float32 by default, ``search_dtype``) only
selects candidates: every sample that a rounding-error bound cannot exclude from the k
nearest is a candidate, and the candidates' distances are recomputed exactly as
``‖a − b‖`` in float64, so the neighbours are provably those of exact arithmetic and the
returned distances are accurate to float64 rounding even for very close pairs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import digamma

from thermonet.errors import InputError

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_SEARCH_DTYPE",
    "kl_entropy",
    "knn_distances",
    "log_unit_ball_volume",
]

#: Default working-memory budget (bytes) for one block of the distance computation.
DEFAULT_MEMORY_BYTES = 256 * 2**20


# ----------------------------------------------------------------------------- inputs


def _to_tensor(samples: Any, name: str = "samples") -> tuple[torch.Tensor, bool]:
    """Return ``(float64 tensor, was_numpy)``; the tensor may share memory with the input."""
    if isinstance(samples, torch.Tensor):
        x, was_numpy = samples, False
    else:
        try:
            arr = np.asarray(samples)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise InputError(f"{name} must be a numpy array or torch tensor: {exc}") from exc
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise InputError(
                f"{name} must hold real numbers (float or int), got dtype {arr.dtype}"
            )
        x, was_numpy = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)), True
    if x.is_complex() or x.dtype == torch.bool:
        raise InputError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.dim() < 2:
        raise InputError(
            f"{name} must have shape (..., N, d) with at least 2 dimensions, got shape "
            f"{tuple(x.shape)}"
        )
    return x.to(torch.float64), was_numpy


def _check_shape_and_k(x: torch.Tensor, k: Any, min_dim: int, name: str = "samples") -> int:
    n, d = x.shape[-2], x.shape[-1]
    if n < 2:
        raise InputError(f"{name} needs N >= 2 samples per set (shape (..., N, d)), got N = {n}")
    if d < min_dim:
        raise InputError(
            f"{name} needs dimension >= {min_dim} in the last axis, got {d} "
            f"(shape {tuple(x.shape)})"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"k must be an integer with 1 <= k <= N-1 = {n - 1}, got {k!r}")
    k = int(k)
    if not 1 <= k <= n - 1:
        raise InputError(f"k must satisfy 1 <= k <= N-1 = {n - 1}, got k = {k}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contain non-finite values (nan or inf); all must be finite")
    return k


def _check_block_args(block_size: Any, memory_bytes: Any) -> None:
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
            raise InputError(f"block_size must be a positive integer or None, got {block_size!r}")
        if block_size < 1:
            raise InputError(f"block_size must be a positive integer or None, got {block_size}")
    if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, (int, np.integer)):
        raise InputError(f"memory_bytes must be a positive integer, got {memory_bytes!r}")
    if memory_bytes < 1:
        raise InputError(f"memory_bytes must be a positive integer, got {memory_bytes}")


#: Precision of the candidate search by default (the result does not depend on it).
DEFAULT_SEARCH_DTYPE = "float32"
_SEARCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _check_search_dtype(value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype) and value in _SEARCH_DTYPES.values():
        return value
    if isinstance(value, str) and value in _SEARCH_DTYPES:
        return _SEARCH_DTYPES[value]
    raise InputError(f"search_dtype must be 'float32' or 'float64', got {value!r}")


def _auto_block_rows(n: int, d: int, memory_bytes: int) -> int:
    # Per row of a block: the product row (N, float32 or float64), the distance row and a
    # topk / comparison workspace (2 N float64), and a difference row for the exact
    # recomputation (2 d float64).
    per_row = 8 * (3 * n + 2 * d)
    return max(1, min(n, int(memory_bytes) // per_row))


def _wrap(result: torch.Tensor, was_numpy: bool) -> Any:
    if was_numpy:
        return result.cpu().numpy()
    return result


# ------------------------------------------------------------------- nearest neighbours


def _unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    """Unit roundoff of a matrix product in ``dtype`` on ``device`` (TF32/bf16 aware)."""
    if dtype == torch.float64:
        return 2.0**-53
    if dtype != torch.float32:  # pragma: no cover - only float32/float64 are used
        raise ValueError(f"unsupported search dtype {dtype}")
    u = 2.0**-24
    prec = torch.get_float32_matmul_precision()
    if prec == "medium":  # may use bfloat16 products
        u = 2.0**-8
    elif prec == "high" or (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32):
        u = 2.0**-11  # TensorFloat-32
    return u


def _gram_error_bound(d: int, u: float) -> float:
    """``c`` with ``|fl(a·b) − a·b| <= c ‖a‖ ‖b‖`` for the product of float64 ``a, b``
    rounded to a format with unit roundoff ``u`` and summed in any order (``γ_d`` bound)."""
    du = d * u
    if du >= 0.5:
        return math.inf
    gamma = du / (1.0 - du)
    conv = 2.0 * u + u * u  # rounding a and b to the search format
    return conv + gamma * (1.0 + u) ** 2


#: Candidates taken per row at first (k + this); rows whose provable candidate set is
#: larger get exactly as many as they need.
_FIRST_EXTRA = {torch.float32: 8, torch.float64: 2}
#: Blocks whose rows need more than this many candidates are searched again in float64.
_MAX_CANDIDATES = 256


def _knn_one_set(
    x: torch.Tensor, k: int, rows: int, search_dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """k-th nearest-neighbour distance for one set ``x`` of shape (N, d), float64.

    Candidates come from the Gram form ``‖a‖² + ‖b‖² − 2 a·b`` evaluated in
    ``search_dtype``. Every computed squared distance is within
    ``E_ij = 2 c ‖a_i‖‖a_j‖ + (2 c₆₄ + 8 ε + 8 u)(‖a_i‖² + ‖a_j‖²)`` of the exact one
    (``c`` from :func:`_gram_error_bound` for the search dtype, ``u`` its unit roundoff,
    ``c₆₄`` the same for float64, which bounds the float64 squared norms, ``ε = 2^-53``).
    The true k-th neighbour distance is at most (k-th smallest computed value) ``+ E_i``,
    ``E_i = max_j E_ij``, so every sample whose computed value exceeds (k-th smallest
    computed value) ``+ 2 E_i`` is provably farther than the k-th neighbour. All other
    samples are candidates; their distances are recomputed as ``‖a − b‖`` in float64 and
    the k-th smallest is returned. The neighbours are thus those of exact arithmetic (up
    to exact ties) for either dtype; float32 only takes more candidates. A block whose
    rows need more than ``_MAX_CANDIDATES`` candidates is searched again in float64.
    """
    n = x.shape[0]
    x = x - x.mean(dim=0, keepdim=True)  # translation does not change distances
    sq = (x * x).sum(dim=1)
    low = search_dtype != torch.float64
    xs, sqs = (x.to(search_dtype), sq.to(search_dtype)) if low else (x, sq)
    out = torch.empty(n, dtype=torch.float64, device=x.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        out[start:stop] = _knn_block(x, sq, xs, sqs, start, stop, k)
    return out


def _knn_block(x: torch.Tensor, sq: torch.Tensor, xs: torch.Tensor, sqs: torch.Tensor, start: int, stop: int,
               k: int) -> torch.Tensor:
    """Rows ``start:stop`` of :func:`_knn_one_set` for the centred set ``x`` (squared norms
    ``sq``), with candidates from the product of ``xs``, ``sqs`` (``x``, ``sq`` in the search
    dtype); a float32 block whose rows need more than ``_MAX_CANDIDATES`` candidates is
    searched again in float64."""
    n, d = x.shape
    search_dtype = xs.dtype
    low = search_dtype != torch.float64
    u = _unit_roundoff(search_dtype, x.device)
    c = _gram_error_bound(d, u)
    c64 = _gram_error_bound(d, 2.0**-53)
    bound_sq = 2.0 * c64 + 8.0 * 2.0**-53 + (8.0 * u if low else 0.0)
    local = torch.arange(stop - start, device=x.device)
    d2 = torch.addmm(sqs[start:stop, None] + sqs[None, :], xs[start:stop], xs.T, beta=1.0, alpha=-2.0)
    d2[local, local + start] = math.inf  # exclude self
    # E_i >= |computed − exact| for every entry of these rows
    err = 2.0 * c * torch.sqrt(sq[start:stop]) * float(torch.sqrt(sq.max())) + bound_sq * (sq[start:stop]
                                                                                          + float(sq.max()))
    m = min(k + _FIRST_EXTRA[search_dtype], n - 1)
    vals, cand = torch.topk(d2, m, dim=1, largest=False, sorted=True)
    vals = vals.to(torch.float64)
    thr = vals[:, k - 1] + 2.0 * err
    counts = (vals <= thr[:, None]).sum(dim=1)  # provable candidates among the first m
    short = counts >= m if m < n - 1 else torch.zeros_like(counts, dtype=torch.bool)
    out = torch.empty(stop - start, dtype=torch.float64, device=x.device)
    if bool(short.any()):
        # these rows have m or more provable candidates: count them all
        idx = torch.nonzero(short).flatten()
        need = int((d2[idx].to(torch.float64) <= thr[idx, None]).sum(dim=1).max())
        if need > _MAX_CANDIDATES and low:
            del d2, vals, cand
            return _knn_block(x, sq, x, sq, start, stop, k)
        cand_s = torch.topk(d2[idx], min(need, n - 1), dim=1, largest=False, sorted=False).indices
        out[idx] = _exact_kth(x[start + idx], x, cand_s, k)
    del d2, vals
    keep = torch.nonzero(~short).flatten()
    if keep.numel():
        out[keep] = _exact_kth(x[start + keep], x, cand[keep], k, counts[keep])
    return out


def _exact_kth(
    xb: torch.Tensor, x: torch.Tensor, cand: torch.Tensor, k: int, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """k-th smallest exact distance from each row of ``xb`` to its candidates.

    ``cand`` (rows, m) indexes ``x``; with ``counts`` only the first ``counts[i]`` (>= k)
    candidates of row ``i`` (sorted by the computed distance) are used: the others are
    provably not among the k nearest.
    """
    m = cand.shape[1] if counts is None else int(counts.max())
    exact = torch.full((xb.shape[0], m), math.inf, dtype=torch.float64, device=x.device)
    for j in range(m):
        if counts is None or j < k:
            exact[:, j] = torch.linalg.vector_norm(xb - x[cand[:, j]], dim=1)
        else:
            sel = torch.nonzero(counts > j).flatten()
            if sel.numel():
                exact[sel, j] = torch.linalg.vector_norm(xb[sel] - x[cand[sel, j]], dim=1)
    return torch.kthvalue(exact, k, dim=1).values


def knn_distances(
    samples: Any,
    k: int = 1,
    *,
    block_size: int | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    search_dtype: str = DEFAULT_SEARCH_DTYPE,
) -> Any:
    """Distance from each sample to its ``k``-th nearest other sample (Euclidean).

    Parameters
    ----------
    samples:
        Array of shape ``(..., N, d)`` (numpy array or torch tensor, CPU or GPU); each
        leading index is an independent set of ``N`` points.
    k:
        Neighbour rank, ``1 <= k <= N − 1``. The point itself is never its own neighbour,
        but an identical copy of it is (distance 0).
    block_size:
        Rows of the distance matrix computed at once. ``None`` chooses it from
        ``memory_bytes``. The result does not depend on it.
    memory_bytes:
        Working-memory budget per block when ``block_size`` is ``None`` (default 256 MiB).
    search_dtype:
        ``"float32"`` or ``"float64"``: precision of the matrix product that selects the
        neighbour candidates. Either way the candidate set provably contains the true k
        nearest (a margin from a rounding-error bound, see :func:`_knn_one_set`) and their
        distances are recomputed in float64, so the result is the same; float32 only
        makes the product faster (about 2x on CPUs, more on GPUs) at the price of a few
        more candidates. Ignored by the k-d tree used on CPUs for ``d <= 8``.

    Returns
    -------
    Array of shape ``(..., N)``, float64: numpy for numpy input, otherwise a torch tensor
    on the input's device.
    """
    x, was_numpy = _to_tensor(samples)
    k = _check_shape_and_k(x, k, min_dim=1)
    _check_block_args(block_size, memory_bytes)
    dtype = _check_search_dtype(search_dtype)
    return _wrap(_knn_batched(x, k, block_size, memory_bytes, dtype), was_numpy)


#: On the CPU, sets of at most this dimension use a k-d tree (O(N log N) instead of the
#: O(N^2) distance matrix; about 10x faster for D = 3, N = 1000). Same distances.
KD_TREE_MAX_DIM = 8


def _knn_kd_tree(flat: torch.Tensor, k: int) -> torch.Tensor:
    """k-th nearest-other-sample distances of each set in ``flat`` (B, N, d) by k-d tree."""
    from scipy.spatial import cKDTree

    points = flat.detach().numpy()
    out = np.empty(points.shape[:2])
    for b, pts in enumerate(points):
        # the query returns the point itself first (distance 0): column k is the k-th other one
        out[b] = cKDTree(pts).query(pts, k=[k + 1])[0][:, 0]
    return torch.from_numpy(out)


def _knn_batched(
    x: torch.Tensor,
    k: int,
    block_size: int | None,
    memory_bytes: int,
    search_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    search_dtype = _SEARCH_DTYPES[DEFAULT_SEARCH_DTYPE] if search_dtype is None else search_dtype
    lead = x.shape[:-2]
    n, d = x.shape[-2], x.shape[-1]
    flat = x.reshape(-1, n, d)
    if x.device.type == "cpu" and d <= KD_TREE_MAX_DIM:
        return _knn_kd_tree(flat, k).reshape(*lead, n)
    rows = int(block_size) if block_size is not None else _auto_block_rows(n, d, memory_bytes)
    rows = max(1, min(rows, n))
    out = torch.empty(flat.shape[0], n, dtype=torch.float64, device=x.device)
    for b in range(flat.shape[0]):
        out[b] = _knn_one_set(flat[b], k, rows, search_dtype)
    return out.reshape(*lead, n)


# ------------------------------------------------------------------------------ entropy


def log_unit_ball_volume(d: int) -> float:
    """``ln V_d`` with ``V_d = π^{d/2} / Γ(d/2 + 1)``, the volume of the unit ball in R^d."""
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)


def _kl_from_distances(r: torch.Tensor, k: int, d: int, what: str) -> torch.Tensor:
    """Entropy from k-th NN distances ``r`` of shape (..., N); raises on zero distances."""
    n = r.shape[-1]
    zero = r <= 0
    if bool(zero.any()):
        count = int(zero.sum())
        raise InputError(
            f"{what}: {count} sample(s) have k-th nearest-neighbour distance 0 (k = {k}), "
            f"i.e. at least k other samples coincide with them; the Kozachenko–Leonenko "
            f"estimator needs distinct samples: remove duplicates, add tiny jitter, or use "
            f"a larger k"
        )
    const = float(digamma(n) - digamma(k)) + log_unit_ball_volume(d)
    return const + d * torch.log(r).mean(dim=-1)


def kl_entropy(
    samples: Any,
    k: int = 1,
    *,
    block_size: int | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    search_dtype: str = DEFAULT_SEARCH_DTYPE,
) -> Any:
    """Kozachenko–Leonenko differential entropy (nats) of samples in ``R^d``.

    ``Ĥ = ψ(N) − ψ(k) + ln V_d + (d/N) Σ_i ln r_{i,k}`` with Euclidean distances.

    Parameters
    ----------
    samples:
        Shape ``(..., N, d)``, numpy array or torch tensor (CPU or GPU). One entropy per
        leading index.
    k:
        Neighbour rank, ``1 <= k <= N − 1``.
    block_size, memory_bytes, search_dtype:
        Blocking and candidate-search precision of the distance computation, see
        :func:`knn_distances` (they do not change the result).

    Returns
    -------
    float64 entropies of shape ``samples.shape[:-2]``: a numpy array (0-d for a single
    set) for numpy input, a torch tensor on the same device for torch input.

    Raises
    ------
    InputError
        Bad shape, ``k`` out of range, non-finite samples, or coinciding samples
        (a zero k-th neighbour distance would give ``ln 0``).
    """
    x, was_numpy = _to_tensor(samples)
    k = _check_shape_and_k(x, k, min_dim=1)
    _check_block_args(block_size, memory_bytes)
    dtype = _check_search_dtype(search_dtype)
    r = _knn_batched(x, k, block_size, memory_bytes, dtype)
    return _wrap(_kl_from_distances(r, k, x.shape[-1], "kl_entropy"), was_numpy)
