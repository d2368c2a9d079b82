"""Bias of the spherical Kozachenko–Leonenko entropy estimators on von Mises–Fisher samples.

For each dimension D, concentration κ, sample size N and mean orientation (the chart pole
e₁, or a random direction), draw N samples from vMF(μ, κ) on S^{D−1}
(scipy.stats.vonmises_fisher), estimate the entropy with
``spherical_entropy(method="angles")`` (paper) and ``method="chord"``, and report
``bias = estimate − exact`` in nats, averaged over ``--reps`` independent draws (± the
standard deviation over draws). The exact entropy is ``vonmises_fisher(μ, κ).entropy()``,
or the Bessel-function formula ``S₁ = −ln C_D(κ) − κ A_D(κ)`` if scipy fails.

The two orientations use the same random_state, and scipy draws around a canonical axis
and then rotates, so the e₁ and random-μ sample sets are exact rotations of each other:
the chord method gives identical numbers for both, and any difference in the angle
column is the orientation effect, not sampling noise.

Usage::

    .venv/bin/python studies/benchmarks/entropy_bias.py --out bias.md

Defaults: D ∈ {3, 10, 30, 100, 300, 1000}, κ ∈ {10·D, 100·D}, N = 1000 for every D and
N = 4000 for D ≤ 1000, 5 repetitions; about 3.5 minutes on 2 CPU cores
(``--reps 2 --max-dim-large 100`` for a quick look).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy.special import ive
from scipy.stats import vonmises_fisher

from thermonet.estimators import spherical_entropy


def vmf_entropy_formula(dim: int, kappa: float) -> float:
    """S₁ = −ln C_D(κ) − κ A_D(κ) with exponentially scaled Bessel functions."""
    nu = 0.5 * dim - 1.0
    log_i = math.log(ive(nu, kappa)) + kappa
    log_c = nu * math.log(kappa) - 0.5 * dim * math.log(2.0 * math.pi) - log_i
    a_d = ive(0.5 * dim, kappa) / ive(nu, kappa)
    return -log_c - kappa * a_d


def vmf_entropy(mu: np.ndarray, kappa: float) -> tuple[float, str]:
    try:
        value = float(vonmises_fisher(mu, kappa).entropy())
        if math.isfinite(value):
            return value, "scipy"
    except Exception:  # noqa: BLE001 - fall back to the formula on any scipy failure
        pass
    return vmf_entropy_formula(len(mu), kappa), "formula"


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for dim in args.dims:
        e1 = np.zeros(dim)
        e1[0] = 1.0
        rand = np.random.default_rng(args.seed + dim).normal(size=dim)
        rand /= np.linalg.norm(rand)
        ns = [args.n] + ([args.n_large] if args.n_large and dim <= args.max_dim_large else [])
        for factor in args.kappa_factors:
            kappa = float(factor * dim)
            for n in ns:
                for orient, mu in (("e1", e1), ("random", rand)):
                    exact, source = vmf_entropy(mu, kappa)
                    biases = {m: [] for m in ("angles", "chord")}
                    t0 = time.perf_counter()
                    for rep in range(args.reps):
                        x = vonmises_fisher(mu, kappa).rvs(
                            n, random_state=args.seed + 7919 * rep + 31 * dim + n
                        )
                        for m in biases:
                            biases[m].append(float(spherical_entropy(x, k=args.k, method=m)) - exact)
                    row = dict(
                        D=dim, kappa=kappa, N=n, orient=orient, exact=exact, source=source,
                        seconds=time.perf_counter() - t0,
                    )
                    for m, b in biases.items():
                        row[f"{m}_mean"] = float(np.mean(b))
                        row[f"{m}_sd"] = float(np.std(b, ddof=1)) if len(b) > 1 else float("nan")
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


HEADER = (
    "| D | κ | N | mean μ | exact S₁ | bias angles | bias chord | bias/(D−1) chord |\n"
    "|---:|---:|---:|:---|---:|---:|---:|---:|"
)


def format_row(r: dict) -> str:
    def pm(m: str) -> str:
        sd = r[f"{m}_sd"]
        return f"{r[f'{m}_mean']:+.3f} ± {sd:.3f}" if math.isfinite(sd) else f"{r[f'{m}_mean']:+.3f}"

    src = "" if r["source"] == "scipy" else " (formula)"
    per_dim = r["chord_mean"] / (r["D"] - 1)
    return (
        f"| {r['D']} | {r['kappa']:g} | {r['N']} | {r['orient']} | {r['exact']:.3f}{src} | "
        f"{pm('angles')} | {pm('chord')} | {per_dim:+.4f} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[3, 10, 30, 100, 300, 1000])
    p.add_argument("--kappa-factors", type=float, nargs="+", default=[10.0, 100.0],
                   help="κ = factor · D (default 10 100)")
    p.add_argument("--n", type=int, default=1000, help="samples per set (default 1000)")
    p.add_argument("--n-large", type=int, default=4000,
                   help="second sample size, used for D <= --max-dim-large (0: off)")
    p.add_argument("--max-dim-large", type=int, default=1000)
    p.add_argument("--reps", type=int, default=5, help="independent draws per cell")
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the table as Markdown to this file")
    args = p.parse_args(argv)

    cmd = "python studies/benchmarks/entropy_bias.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"bias = estimate − exact (nats), mean ± sd over {args.reps} draws, k = {args.k}")
    print(HEADER, flush=True)
    t0 = time.perf_counter()
    rows = run(args)
    total = time.perf_counter() - t0
    print(f"total {total:.1f} s")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(f"Command: `{cmd.strip()}` ({total:.0f} s)\n\n")
            fh.write(f"bias = estimate − exact (nats), mean ± sd over {args.reps} draws, k = {args.k}; "
                     "random μ drawn with seed + D.\n\n")
            fh.write(HEADER + "\n")
            for r in rows:
                fh.write(format_row(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
