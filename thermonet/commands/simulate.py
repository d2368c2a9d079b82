"""``thermonet simulate``: simulate an ensemble of the isotropic model into a run store.

Example (the paper's fixed-LR grid, 289 members)::

    thermonet simulate isotropic --protocol fixed-lr --dim 3 --lr 1e-3:1e-1:17 \\
        --wd 1e-3:1e-1:17 --steps 2000000 --seed 0 --out runs/iso-lr.zarr

Every option is parsed here (not by argparse types), so bad values end in one clear line
and exit status 2 through :class:`thermonet.errors.InputError` / ``StoreError``.
"""

from __future__ import annotations

import argparse

from thermonet.commands._options import (
    add_store_options,
    check_store_options,
    command_line,
    parse_grid_options,
    resumed_settings,
)
from thermonet.errors import InputError

MODELS = ("isotropic",)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate an ensemble of the isotropic model (all grid points and seeds at once)",
        description=(
            "Simulate SGD with weight decay on the isotropic test system (THEORY §7) for every "
            "hyperparameter point and seed of a grid, as one ensemble, streaming the results into a "
            "Zarr run store (readable while the run goes; --resume continues a killed run)."
        ),
        epilog=(
            "Grids: A:B:N gives N log-spaced values from A to B; a comma list gives those values. "
            "Protocols and their hyperparameters: fixed-lr (--lr, --wd), fixed-elr (--elr, --wd), "
            "fixed-sphere (--lr, --sphere-radius). Initial point: a uniformly random direction per member, "
            "radius 1 (fixed-lr, fixed-elr) or the sphere radius (fixed-sphere). "
            "With --resume, options left out are taken from the store; options given must match it."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="the model to simulate: isotropic")
    parser.add_argument("--protocol", help="fixed-lr, fixed-elr or fixed-sphere")
    parser.add_argument("--dim", help="dimension D of the weights (>= 2; default 3)")
    parser.add_argument("--lr", help="learning rates η (fixed-lr, fixed-sphere): A:B:N or a comma list")
    parser.add_argument("--wd", help="weight decays λ > 0 (fixed-lr, fixed-elr)")
    parser.add_argument("--elr", help="effective learning rates η̃ (fixed-elr)")
    parser.add_argument("--sphere-radius", dest="sphere_radius", help="sphere radii ρ₀ (fixed-sphere)")
    parser.add_argument("--steps", help="SGD steps per member (default 2000000)")
    parser.add_argument("--seed", "--seeds", dest="seed", help="seed or comma list of seeds (default 0)")
    parser.add_argument("--sigma", help="noise level σ at unit norm (default 1)")
    parser.add_argument("--energy", help="energy: linear, L = 1 + <μ, w>/|w| (default)")
    parser.add_argument("--energy-seed", dest="energy_seed", help="seed of the random unit μ (default 0)")
    parser.add_argument("--queue-size", dest="queue_size", help="weight samples N in the entropy queue (default 1000)")
    parser.add_argument("--queue-every", dest="queue_every", help="steps between queued samples (default 50)")
    parser.add_argument("--log-every", dest="log_every", help="steps between time-series logs (default steps/1000)")
    parser.add_argument("--entropy-every", dest="entropy_every",
                        help="steps between entropy estimates once the queue is full (default ~steps/20, "
                             "a multiple of --log-every)")
    parser.add_argument("--entropy-method", dest="entropy_method",
                        help="angles, chord or auto (default: angles at D = 3, as in the paper, else chord)")
    parser.add_argument("--entropy-k", dest="entropy_k", help="neighbour rank k of the entropy estimator (default 1)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto = cuda when available (default cpu; for "
                                          "small ensembles at D below ~100 the CPU kernel is faster)")
    parser.add_argument("--backend", help="advanced: numba (CPU default) or torch (CUDA default; slow on CPU)")
    add_store_options(parser)
    parser.add_argument("--flush-seconds", dest="flush_seconds",
                        help="target seconds of simulation between writes to the store (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def _seeds(text: str) -> list[int]:
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"--seed {text!r}: seeds must be integers >= 0, e.g. 0 or 0,1,2") from None
        if value < 0:
            raise InputError(f"--seed {text!r}: seeds must be integers >= 0")
        out.append(value)
    if not out:
        raise InputError("--seed: give at least one seed")
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from thermonet.simulation import simulate, store_settings

    if args.model not in MODELS:
        raise InputError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    check_store_options(args, "runs/iso-lr.zarr")
    out = Path(args.out)

    options = {
        "protocol": args.protocol, "dim": args.dim, "steps": args.steps, "sigma": args.sigma,
        "energy": args.energy, "energy_seed": args.energy_seed, "queue_size": args.queue_size,
        "queue_every": args.queue_every, "log_every": args.log_every, "entropy_every": args.entropy_every,
        "entropy_method": args.entropy_method, "entropy_k": args.entropy_k, "device": args.device,
        "backend": args.backend,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if args.seed is not None:
        options["seeds"] = _seeds(args.seed)
    grid = parse_grid_options(args)

    if args.resume and (out.exists() or out.is_symlink()):
        settings = resumed_settings(store_settings(out), options, grid)
    else:
        if "protocol" not in options:
            raise InputError("--protocol is required: fixed-lr, fixed-elr or fixed-sphere")
        settings = {"dim": 3, "steps": 2_000_000, "seeds": [0], **options, "grid": grid}
    flush = 2.0
    if args.flush_seconds is not None:
        try:
            flush = float(args.flush_seconds)
        except ValueError:
            raise InputError(f"--flush-seconds must be a number, got {args.flush_seconds!r}") from None
        if not flush > 0 or flush == float("inf"):
            raise InputError(f"--flush-seconds must be a finite number > 0, got {args.flush_seconds!r}")
    path = simulate(out=out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                    command=command_line(), flush_seconds=flush, **settings)
    print(f"run store: {path}")
    return 0
