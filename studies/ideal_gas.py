"""Ideal-gas study: the isotropic-noise model under all three training protocols.

Reproduces the paper's isotropic-noise results (004, section 6 and appendix E) on a
reduced grid: simulate each protocol as one ensemble, check every run against the
ideal-gas theory (vMF energy and entropy, V1 radius, V2 potential minimum, V3 Maxwell
relation, V4 adiabat) and write one Markdown report with figures.

Run it as ``thermonet study ideal-gas`` or ``python studies/ideal_gas.py``; copy it to
script your own study. ``--points 17 --steps 2000000`` is the paper's grid (about a
minute per protocol on a 2-core CPU).

Entropy queue: 1000 samples, one every 200 steps by default (the paper takes one every
50). At the smallest effective learning rate (1e-3) the direction's correlation time is
about 1/eta_eff = 1000 steps, so samples 50 steps apart are strongly correlated and the
nearest-neighbour estimate reads about 0.2 nats low (measured: -0.11 to -0.26 nats at
eta~ = 1e-3 under fixed ELR with --queue-every 50); spacing them 200 steps apart costs
nothing and removes most of that bias.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from thermonet.errors import ThermonetError
from thermonet.reports.report import write_report
from thermonet.runs.isotropic import simulate


def grids(points: int) -> dict[str, dict[str, np.ndarray]]:
    """The paper's ranges (THEORY §7), each on ``points`` log-spaced values.

    The fixed sphere sweeps rho_0 in [0.5, 1] so that its effective learning rate
    eta/rho_0**2 stays >= 1e-3 like the other protocols': below that the direction's
    correlation time (~ rho_0**2/eta steps) is a sizeable fraction of the 50,000-step
    window the entropy queue spans, and the nearest-neighbour entropy reads low.
    """
    rates = np.geomspace(1e-3, 1e-1, points)
    return {
        "fixed-lr": {"lr": rates, "wd": rates},
        "fixed-elr": {"elr": rates, "wd": rates},
        "fixed-sphere": {"lr": rates, "sphere_radius": np.geomspace(0.5, 1.0, points)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thermonet study ideal-gas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports/ideal-gas", help="report folder (default reports/ideal-gas)")
    parser.add_argument("--runs", default="runs/ideal-gas", help="folder for the run stores (default runs/ideal-gas)")
    parser.add_argument("--points", type=int, default=7, help="grid points per hyperparameter (paper: 17; default 7)")
    parser.add_argument("--steps", type=int, default=2_000_000, help="steps per run (paper: 2e6)")
    parser.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    parser.add_argument("--dim", type=int, default=3, help="D (paper: 3)")
    parser.add_argument("--queue-every", type=int, default=200,
                        help="steps between entropy-queue samples (paper: 50; default 200, see below)")
    parser.add_argument("--protocols", default="fixed-lr,fixed-elr,fixed-sphere", help="comma list")
    parser.add_argument("--resume", action="store_true", help="continue killed runs instead of starting over")
    args = parser.parse_args(argv)

    if args.points < 3:
        parser.error("--points must be >= 3 (the Maxwell fit needs a 2-D grid)")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs_dir = Path(args.runs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    all_grids = grids(args.points)
    stores, timings = [], {}
    for protocol in args.protocols.split(","):
        if protocol not in all_grids:
            parser.error(f"unknown protocol {protocol!r}; choose from {', '.join(all_grids)}")
        store = runs_dir / f"{protocol}.zarr"
        print(f"[ideal-gas] {protocol}: {args.points}x{args.points} grid x {len(seeds)} seed(s), "
              f"D={args.dim}, {args.steps:,} steps -> {store}", flush=True)
        start = time.perf_counter()
        simulate(protocol=protocol, dim=args.dim, grid=all_grids[protocol], seeds=seeds, steps=args.steps,
                 queue_every=args.queue_every, out=store, resume=args.resume and store.exists(), overwrite=not args.resume,
                 progress=True, command=" ".join(["thermonet study ideal-gas", *(argv or sys.argv[1:])]))
        timings[protocol] = time.perf_counter() - start
        stores.append(store)

    page, results = write_report(stores, args.out, labels=[s.stem for s in stores])
    summary = {
        store.stem: {r.name: {"verdict": r.verdict, "evidence": r.evidence, "passed": r.passed, "summary": r.summary} for r in rs}
        for store, rs in zip(stores, results)
    }
    (Path(args.out) / "checks.json").write_text(json.dumps({"timings_s": timings, "checks": summary}, indent=2))
    print()
    for store, rs in zip(stores, results):
        print(f"{store.stem} ({timings[store.stem]:.0f} s)")
        for r in rs:
            print(f"  [{r.verdict:>4}] {r.name}: {r.summary}")
    print(f"\nreport: {page}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ThermonetError as exc:
        print(f"thermonet: error: {exc}", file=sys.stderr)
        sys.exit(2)
