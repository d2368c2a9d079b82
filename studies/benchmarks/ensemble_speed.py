"""Ensemble engine vs a per-member eager loop: training throughput and log-step cost.

Trains the same E members two ways on the same device, side by side in one run:

* **ensemble**: :class:`thermonet.engines.network.EnsembleEngine` (stacked flat parameters,
  ``torch.func`` vmap + grad, the protocol's update on (E, D), per-member batches);
* **eager**: one ``nn.Module`` per member, ``loss.backward()`` and the standard
  ``torch.optim.SGD(lr, weight_decay)`` step, members one after the other
  (:class:`thermonet.engines.network.reference.EagerMember`; same batches, same initial points).

It prints member-steps/s for each, their ratio, the ensemble throughput against E, and
the cost per member of one log step (full-data gradient and test pass, K stochastic
gradients, queue entropy). The inputs are synthetic (Gaussian images with random labels):
speed does not depend on the data, and no dataset has to be present.

The issue's target (measure on an H100 or H200)::

    python studies/benchmarks/ensemble_speed.py --device cuda --members 1,8,32,64,128 \\
        --model convnet-si --width 8 --batch-size 128 --input-shape 3,32,32 --compile reduce-overhead

goal: ensemble/eager >= 20x at E = 64. Add ``--tf32`` to allow TF32 and ``--dtype`` to
compare precisions; ``--json FILE`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_dataset(shape: tuple[int, ...], n_train: int, n_test: int, classes: int, seed: int = 0):
    from thermonet.engines.network.data import Dataset

    g = torch.Generator().manual_seed(seed)
    return Dataset(name="synthetic", x_train=torch.randn(n_train, *shape, generator=g),
                   y_train=torch.randint(0, classes, (n_train,), generator=g),
                   x_test=torch.randn(n_test, *shape, generator=g),
                   y_test=torch.randint(0, classes, (n_test,), generator=g), num_classes=classes)


def member_grid(members: int, protocol) -> np.ndarray:
    """``members`` distinct, mild hyperparameter points of the protocol (one seed each)."""
    a = np.geomspace(0.05, 0.5, members) if protocol.name != "fixed-elr" else np.geomspace(1e-3, 1e-2, members)
    b = np.geomspace(1e-3, 1e-2, members) if protocol.name != "fixed-sphere" else np.geomspace(1.0, 4.0, members)
    return np.stack([a, b], axis=1)


def time_ensemble(engine, steps: int, warmup: int) -> float:
    engine.advance(warmup)
    _sync(engine.device)
    tic = time.perf_counter()
    engine.advance(steps)
    _sync(engine.device)
    return engine.members * steps / (time.perf_counter() - tic)


def time_eager(members, steps: int, warmup: int, device) -> float:
    for m in members:
        for _ in range(warmup):
            m.step_async()
    _sync(device)
    tic = time.perf_counter()
    for _ in range(steps):  # members one after the other at every step
        for m in members:
            m.step_async()
    _sync(device)
    return len(members) * steps / (time.perf_counter() - tic)


def time_log_step(engine) -> dict[str, float]:
    """Seconds per member: measure() (full data, test, K gradients) and the queue entropy."""
    # fill the queue with small perturbations of the current weights (timing only)
    with torch.no_grad():
        noise = torch.randn_like(engine.queue) * 1e-2 * engine.W.norm(dim=-1).mean() / math.sqrt(engine.dim)
        engine.queue.copy_(engine.W[:, None, :] + noise)
        engine.queue_count = engine.queue_size
    _sync(engine.device)
    tic = time.perf_counter()
    engine.measure(0)
    _sync(engine.device)
    measure = time.perf_counter() - tic
    tic = time.perf_counter()
    engine.entropies()
    _sync(engine.device)
    entropy = time.perf_counter() - tic
    return {"measure_s_per_member": measure / engine.members, "entropy_s_per_member": entropy / engine.members}


class _EagerTimed:
    """EagerMember.step without the host sync of returning the loss."""

    def __init__(self, member):
        self.m = member

    def step_async(self):
        import torch.nn.functional as F

        from thermonet.engines.network.data import batch_indices

        m = self.m
        t = m.t + 1
        idx = batch_indices(m.key, t, m.batch_size, m.data.n_train)[0]
        m.model.zero_grad(set_to_none=True)
        F.cross_entropy(m.model(m.data.x_train[idx]), m.data.y_train[idx]).backward()
        if m.optimizer is not None:
            m.optimizer.step()
        else:  # pragma: no cover - only fixed-lr is benchmarked by default
            with torch.no_grad():
                w = m.flat()[None]
                g = torch.cat([p.grad.reshape(-1) for p in m.params])[None]
                m._assign(m.protocol.step(w, g, m._hp_t)[0])
        m.t = t


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (tests parse the GPU session's commands with it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    parser.add_argument("--model", default="convnet-si")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--input-shape", default="3,32,32", help="input shape without batch axis (default 3,32,32)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--members", default="1,8,32,64,128", help="ensemble sizes E (comma list)")
    parser.add_argument("--eager-members", type=int, default=None,
                        help="compare with the eager loop at this E (default: the largest E <= 64)")
    parser.add_argument("--steps", type=int, default=50, help="timed ensemble steps per E")
    parser.add_argument("--eager-steps", type=int, default=20, help="timed eager steps per member")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--protocol", default="fixed-lr")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA")
    parser.add_argument("--compile", default=None, help="torch.compile mode for the ensemble step")
    parser.add_argument("--vectorize", default="auto", choices=("auto", "vmap", "loop"),
                        help="how the ensemble evaluates its members "
                             "(default auto: vmap on CUDA; on a CPU the loop for large networks)")
    parser.add_argument("--autocast", default=None, choices=("bf16",),
                        help="forward/backward of the ensemble's training step in bfloat16 (weights stay --dtype)")
    parser.add_argument("--grad-samples", type=int, default=64, help="K stochastic gradients of a log step")
    parser.add_argument("--grad-chunk", type=int, default=1, help="stochastic gradients per vmapped call")
    parser.add_argument("--queue-size", type=int, default=1000, help="N samples for the entropy timing")
    parser.add_argument("--log-members", type=int, default=None,
                        help="E for the log-step timing (default: the eager comparison E)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    from thermonet.engines.network import EnsembleEngine
    from thermonet.engines.network.reference import EagerMember
    from thermonet.theory.protocols import get_protocol

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
    dtype = getattr(torch, args.dtype)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    sizes = sorted({int(s) for s in args.members.split(",")})
    eager_e = args.eager_members or max([e for e in sizes if e <= 64] or [sizes[0]])
    log_e = args.log_members or eager_e
    protocol = get_protocol(args.protocol)
    data = synthetic_dataset(shape, args.n_train, args.n_test, args.classes).to(device=device, dtype=dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'}, " \
        f"{torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; model {args.model} width {args.width}, input {shape}, "
          f"batch {args.batch_size}, {args.dtype}{' +tf32' if args.tf32 else ''}"
          f"{' +bf16 autocast' if args.autocast else ''}, compile={args.compile}, vectorize={args.vectorize}")

    def engine(e, queue=2):
        hp = member_grid(e, protocol)
        return EnsembleEngine(model=args.model, width=args.width, head_norm=10.0, dataset=data, protocol=protocol,
                              hp=hp, seeds=list(range(e)), batch_size=args.batch_size, queue_size=queue,
                              queue_every=1, grad_samples=args.grad_samples, grad_chunk=args.grad_chunk,
                              device=str(device), dtype=dtype, allow_tf32=args.tf32, compile=args.compile or False,
                              autocast=args.autocast, vectorize=args.vectorize, entropy_method="chord")

    results: dict = {"device": name, "args": vars(args), "throughput": {}}
    print(f"\n{'E':>5} {'ensemble member-steps/s':>24} {'per member ms/step':>19}")
    for e in sizes:
        eng = engine(e)
        rate = time_ensemble(eng, args.steps, args.warmup)
        results["throughput"][e] = rate
        print(f"{e:>5} {rate:>24.1f} {1e3 / rate:>19.3f}")
        del eng
        if device.type == "cuda":
            torch.cuda.empty_cache()

    hp = member_grid(eager_e, protocol)
    eager = [_EagerTimed(EagerMember(model=args.model, width=args.width, head_norm=10.0, dataset=data,
                                     protocol=protocol, hp=dict(zip(protocol.hyperparameters, hp[m])), seed=m,
                                     batch_size=args.batch_size, device=str(device), dtype=dtype))
             for m in range(eager_e)]
    with engine(eager_e).precision():
        eager_rate = time_eager(eager, args.eager_steps, args.warmup, device)
    ens_rate = results["throughput"].get(eager_e) or time_ensemble(engine(eager_e), args.steps, args.warmup)
    results.update(eager_members=eager_e, eager_rate=eager_rate, ensemble_rate=ens_rate, ratio=ens_rate / eager_rate)
    print(f"\nE = {eager_e}: ensemble {ens_rate:.1f} member-steps/s, eager loop {eager_rate:.1f} member-steps/s, "
          f"ratio {ens_rate / eager_rate:.2f}x")
    del eager

    eng = engine(log_e, queue=args.queue_size)
    eng.advance(2)
    cost = time_log_step(eng)
    results["log_step"] = {"members": log_e, "grad_samples": args.grad_samples, "queue_size": args.queue_size,
                           "dim": eng.dim, **cost}
    step_cost = 1.0 / results["throughput"].get(log_e, ens_rate)
    print(f"\nlog step (E = {log_e}, D = {eng.dim}, K = {args.grad_samples}, N = {args.queue_size}), per member: "
          f"measure {cost['measure_s_per_member'] * 1e3:.1f} ms (= {cost['measure_s_per_member'] / step_cost:.0f} "
          f"training member-steps), entropy {cost['entropy_s_per_member'] * 1e3:.1f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
