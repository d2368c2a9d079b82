"""Speed of the isotropic simulator against a plain eager PyTorch loop.

Run from the repository root::

    .venv/bin/python studies/benchmarks/simulator_speed.py            # full (a few minutes)
    .venv/bin/python studies/benchmarks/simulator_speed.py --quick    # smoke test

Parts, all in one run so the numbers are side by side:

1. The paper's grid for one protocol (fixed LR, 17 x 17 members, D = 3, 2e6 steps, queue
   of 1000 samples every 50 steps; THEORY §7) through ``thermonet.runs.simulate``,
   end to end (store, checkpoints and entropy estimates included), with the store's own
   breakdown ``timing_s`` (engine / entropy / store).
2. The same update written as a plain eager PyTorch loop (``torch.randn`` noise, one
   Python iteration per step over the (289, 3) ensemble, queue and log accumulators
   included), run for ``--eager-steps`` steps and EXTRAPOLATED linearly to 2e6 steps,
   alternated with the simulator's engine on the same ensemble (best of ``--repeats``
   each, so both see the same machine load). Ratios: per step, vs the engine time in
   part 1, and end to end.
3. How the simulator's engine time grows with the number of members (1, 17, 289, 1156
   at D = 3) and with D (3, 10, 100, 1000 at 289 members), in time per step and per
   member-step (engine only: no store, no entropy).

``--device cuda`` times the torch engine on the GPU instead of the CPU kernel.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from thermonet.engines import rng
from thermonet.engines.isotropic import get_energy
from thermonet.runs import simulate
from thermonet.engines.isotropic.engine import make_engine, member_grid
from thermonet.theory.protocols import get_protocol

PAPER = dict(protocol="fixed-lr", dim=3, steps=2_000_000, queue_size=1000, queue_every=50)


def paper_grid(n: int = 17) -> dict:
    values = np.geomspace(1e-3, 1e-1, n)
    return {"lr": values, "wd": values}


def eager_loop(members: int, dim: int, steps: int, device: str, log_every: int = 2000, queue_size: int = 1000,
               queue_every: int = 50) -> float:
    """Seconds per step of the plain eager torch loop for the fixed-LR paper setup."""
    proto = get_protocol("fixed-lr")
    energy = get_energy("linear", dim, 0)
    side = int(round(math.sqrt(members)))
    hp, _ = member_grid(paper_grid(side), proto.hyperparameters, [0])
    dev = torch.device(device)
    hp_t = {name: torch.as_tensor(hp[:, i:i + 1], device=dev) for i, name in enumerate(proto.hyperparameters)}
    gen = torch.Generator(device=dev).manual_seed(0)
    w = torch.randn(len(hp), dim, dtype=torch.float64, device=dev, generator=gen)
    w = w / w.norm(dim=-1, keepdim=True)
    queue = torch.zeros(len(hp), queue_size, dim, dtype=torch.float64, device=dev)
    acc = torch.zeros(len(hp), dtype=torch.float64, device=dev)
    logs = []

    def run(n: int, t0: int) -> None:
        nonlocal w, acc
        for t in range(t0 + 1, t0 + n + 1):
            _, grad = energy.value_grad_torch(w)
            xi = torch.randn(w.shape, dtype=torch.float64, device=dev, generator=gen)
            rho2 = (w * w).sum(-1, keepdim=True)
            noise = (xi - w * (xi * w).sum(-1, keepdim=True) / rho2) / torch.sqrt(rho2)
            g = grad + noise
            acc += (g * g).sum(-1)
            w = proto.step(w, g, hp_t)
            if t % queue_every == 0:
                queue[:, (t // queue_every - 1) % queue_size] = w
            if t % log_every == 0:
                loss, _ = energy.value_grad_torch(w)
                logs.append((loss.cpu(), w.norm(dim=-1).cpu(), acc.cpu() / log_every))
                acc.zero_()

    with torch.no_grad():
        run(min(200, steps), 0)  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(steps, 200)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps


def engine_time(members: int, dim: int, steps: int, device: str) -> float:
    """Seconds per step of the simulator's engine alone (after a warm-up chunk)."""
    proto = get_protocol("fixed-lr")
    energy = get_energy("linear", dim, 0)
    side = max(1, int(round(math.sqrt(members))))
    hp, seeds = member_grid(paper_grid(side), proto.hyperparameters, [0])
    keys = rng.member_keys(seeds, hp)
    backend = "numba" if device == "cpu" else "torch"
    eng = make_engine(backend, proto, energy, hp, keys, device=device, sigma=1.0, total_steps=steps + 100,
                      log_every=2000, queue_size=1000 if dim <= 100 else 100, queue_every=50,
                      init_radius=np.ones(len(hp)))
    eng.advance(100)  # compile / warm up
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    eng.advance(steps)
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def fmt_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.1f} s"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (tests parse the GPU session's commands with it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test; numbers are rough)")
    parser.add_argument("--device", default="cpu", help="cpu (compiled kernel) or cuda (torch engine)")
    parser.add_argument("--eager-steps", type=int, default=2000, help="steps of the eager loop to time")
    parser.add_argument("--skip-paper", action="store_true", help="skip the end-to-end paper-grid run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of eager vs engine timing")
    parser.add_argument("--out", default=None, help="where to put the paper-grid store (default: a temp dir)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    steps = 200_000 if args.quick else PAPER["steps"]
    eager_steps = min(args.eager_steps, 300) if args.quick else args.eager_steps

    print("command:", "python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}")
    if args.device.startswith("cuda"):
        print("device:", torch.cuda.get_device_name(torch.device(args.device)))
    import numba

    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads; "
          f"load average at start {os.getloadavg()[0]:.2f} (the machine may be shared: compare numbers "
          f"taken in one run)")
    members = 289

    # 1. the paper grid, end to end -------------------------------------------------
    sim_total = sim_engine = entropy_s = None
    if not args.skip_paper:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out) if args.out else Path(tmp) / "paper.zarr"
            simulate(grid=paper_grid(), seeds=[0], out=out, overwrite=True, device=args.device, progress=False,
                     **{**PAPER, "steps": 2 * PAPER["queue_size"] * PAPER["queue_every"]})  # compile / warm up
            start = time.perf_counter()
            simulate(grid=paper_grid(), seeds=[0], out=out, overwrite=True, device=args.device, progress=True,
                     **{**PAPER, "steps": steps})
            sim_total = time.perf_counter() - start
            import xarray as xr

            with xr.open_zarr(out) as ds:
                timing = dict(ds.attrs["timing_s"])
                n_entropy = ds.sizes["entropy_step"]
        sim_engine, entropy_s = timing["engine"], timing["entropy"]
        print(f"\n[1] paper grid: fixed-lr, 17 x 17 = {members} members, D = 3, {steps:,} steps, "
              f"queue 1000 every 50, {n_entropy} entropy estimates")
        print(f"    simulate() wall time      {sim_total:8.1f} s")
        print(f"      engine (kernel)         {timing['engine']:8.1f} s   "
              f"({timing['engine'] / steps / members * 1e9:.1f} ns per member-step)")
        print(f"      entropy estimates       {timing['entropy']:8.1f} s   "
              f"({timing['entropy'] / max(1, n_entropy):.2f} s each, thermonet.estimators)")
        print(f"      store + checkpoints     {timing['store']:8.1f} s")

    # 2. eager baseline vs the engine, measured alternately (best of --repeats each) ------
    eager_best = engine_best = math.inf
    for _ in range(args.repeats):
        eager_best = min(eager_best, eager_loop(members, 3, eager_steps, args.device))
        engine_best = min(engine_best, engine_time(members, 3, 20 * eager_steps, args.device))
    eager_total = eager_best * steps
    print(f"\n[2] plain eager PyTorch loop, {members} members, D = 3: {fmt_time(eager_best)} per step (best of "
          f"{args.repeats}, {eager_steps:,} steps each), EXTRAPOLATED to {steps:,} steps: {eager_total:.0f} s")
    print(f"    simulator engine, same ensemble, measured alternately: {fmt_time(engine_best)} per step "
          f"-> {engine_best * steps:.1f} s for {steps:,} steps")
    print(f"    speed-up, per step (engine vs eager, same conditions): {eager_best / engine_best:6.1f} x")
    if sim_engine is not None:
        print(f"    speed-up vs the engine time inside simulate() [1]:     {eager_total / sim_engine:6.1f} x")
        print(f"    speed-up end to end (same entropy work added to the eager loop): "
              f"{(eager_total + entropy_s) / sim_total:6.1f} x")

    # 3. scaling ----------------------------------------------------------------------
    print("\n[3] engine time per step (no store, no entropy)")
    print(f"    {'members':>8} {'D':>6} {'per step':>12} {'per member-step':>16}")
    budget = 2e6 if args.quick else 3e7  # member-steps per measurement
    for m, d in [(1, 3), (17, 3), (289, 3), (1156, 3), (289, 10), (289, 100), (289, 1000)]:
        side = max(1, int(round(math.sqrt(m))))
        m_real = side * side
        n = int(max(200, min(2_000_000, budget / (m_real * max(1, d / 3)))))
        sec = engine_time(m_real, d, n, args.device)
        print(f"    {m_real:>8} {d:>6} {fmt_time(sec):>12} {fmt_time(sec / m_real):>16}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
