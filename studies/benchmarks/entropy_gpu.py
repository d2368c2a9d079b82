"""Queue entropy on the GPU vs CPU baselines, with the same nearest-neighbour distances.

N weight samples in D dimensions shaped like a stationary queue (directions scattered
around a mean direction, so neighbours are close compared with the norm: the regime
where cancellation in ``‖a‖² + ‖b‖² − 2ab`` matters) are fed to

* ``thermonet.estimators.knn_distances`` / ``spherical_entropy(method="chord")`` on the
  GPU (the estimator every thermonet run uses; float64, one matrix product per block);
* the same estimator on the CPU (torch, all threads);
* an independent brute-force baseline in numpy (float64 BLAS Gram blocks + exact
  re-ranking of the candidates);
* optionally scipy's k-d tree (``--kdtree``; in high D it degenerates to brute force
  with overhead, so it is skipped above ``--kdtree-max-dim`` unless forced).

It prints wall times, the GPU speed-up over each baseline and the largest relative
difference between the nearest-neighbour distances (all must agree to float tolerance),
plus the entropies. The issue's target (measure on an H100 or H200)::

    python studies/benchmarks/entropy_gpu.py --n 4000 --dim 100000 --device cuda

goal: >= 50x over the CPU baseline with the same distances.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import numpy as np
import torch


def queue_like_samples(n: int, dim: int, spread: float, seed: int) -> np.ndarray:
    """``w_i = ρ (μ + spread ξ_i/√D)`` normalised to a common radius with a little jitter (float64)."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal(dim)
    mu /= np.linalg.norm(mu)
    x = mu[None, :] + spread * rng.standard_normal((n, dim)) / math.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * (5.0 * (1.0 + 0.01 * rng.standard_normal((n, 1))))


def numpy_brute_force(x: np.ndarray, k: int = 1, block: int = 512, extra: int = 2) -> np.ndarray:
    """k-th nearest-neighbour distances by float64 BLAS Gram blocks and exact re-ranking."""
    n = x.shape[0]
    x = x - x.mean(axis=0, keepdims=True)
    sq = np.einsum("ij,ij->i", x, x)
    out = np.empty(n)
    m = min(k + extra, n - 1)
    for a in range(0, n, block):
        b = min(n, a + block)
        d2 = sq[a:b, None] + sq[None, :] - 2.0 * (x[a:b] @ x.T)
        d2[np.arange(b - a), np.arange(a, b)] = np.inf
        cand = np.argpartition(d2, m - 1, axis=1)[:, :m]
        exact = np.linalg.norm(x[a:b, None, :] - x[cand], axis=2)
        out[a:b] = np.sort(exact, axis=1)[:, k - 1]
    return out


def kdtree_distances(x: np.ndarray, k: int = 1) -> np.ndarray:
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(x).query(x, k=k + 1, workers=-1)
    return dist[:, k]


def _timed(fn, device: torch.device | None = None, repeats: int = 1):
    best, value = math.inf, None
    for _ in range(repeats):
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        value = fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - tic)
    return best, value


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (tests parse the GPU session's commands with it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="samples N (default 4000)")
    parser.add_argument("--dim", type=int, default=100_000, help="dimension D (default 1e5)")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--spread", type=float, default=0.05, help="angular spread of the samples (default 0.05)")
    parser.add_argument("--device", default="auto", help="device of the fast path: cuda, cpu or auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of the fast path (best of)")
    parser.add_argument("--kdtree", action="store_true", help="also time scipy's cKDTree")
    parser.add_argument("--kdtree-max-dim", type=int, default=2000)
    parser.add_argument("--no-numpy", action="store_true", help="skip the numpy brute-force baseline")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    from thermonet.estimators import knn_distances, spherical_entropy

    from thermonet.errors import InputError
    from thermonet.runs.options import resolve_device

    parser = build_parser()
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(resolve_device(args.device))
    except InputError as exc:
        parser.error(str(exc))
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.processor() or 'cpu'}, {torch.get_num_threads()} threads; NOT the GPU target)"
    x = queue_like_samples(args.n, args.dim, args.spread, args.seed)
    print(f"N = {args.n}, D = {args.dim}, k = {args.k}; fast path on {label}; torch {torch.__version__}")

    xt = torch.from_numpy(x).to(device)
    knn_distances(xt[: min(64, args.n)], k=args.k)  # warm-up (kernels, allocator)
    t_fast, r_fast = _timed(lambda: knn_distances(xt, k=args.k), device, args.repeats)
    t_ent, s_fast = _timed(lambda: spherical_entropy(xt, k=args.k, method="chord"), device, args.repeats)
    r_fast = r_fast.cpu().numpy()
    print(f"\n{'method':<38} {'time (s)':>10} {'speed-up':>9} {'max rel. diff of distances':>27}")
    print(f"{'estimator knn_distances on ' + device.type:<38} {t_fast:>10.3f} {'1':>9} {'-':>27}")
    print(f"{'estimator spherical_entropy on ' + device.type:<38} {t_ent:>10.3f} {'':>9} {'':>27}")
    rows = []
    if device.type == "cuda":
        xc = torch.from_numpy(x)
        t_cpu, r_cpu = _timed(lambda: knn_distances(xc, k=args.k))
        rows.append(("estimator knn_distances on cpu (torch)", t_cpu, r_cpu.numpy()))
    if not args.no_numpy:
        t_np, r_np = _timed(lambda: numpy_brute_force(x, k=args.k))
        rows.append(("numpy brute force (float64 BLAS)", t_np, r_np))
    if args.kdtree:
        if args.dim <= args.kdtree_max_dim:
            t_kd, r_kd = _timed(lambda: kdtree_distances(x, k=args.k))
            rows.append(("scipy cKDTree", t_kd, r_kd))
        else:
            print(f"{'scipy cKDTree':<38} {'skipped (D > --kdtree-max-dim)':>48}")
    for name, seconds, r in rows:
        diff = float(np.max(np.abs(r - r_fast) / r))
        print(f"{name:<38} {seconds:>10.3f} {seconds / t_fast:>8.1f}x {diff:>27.2e}")
    d = args.dim - 1
    print(f"\nspherical entropy S_1 (chord, d = {d}): {float(s_fast):.6f} nats; mean ln r = "
          f"{float(np.log(r_fast).mean()):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
