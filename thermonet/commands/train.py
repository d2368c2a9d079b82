"""``thermonet train``: train a grid of scale-invariant networks as one ensemble into a run store.

Example (fixed LR on MNIST-1D, 3 × 3 grid × 2 seeds = 18 members on one GPU)::

    thermonet train --model convnet-si --width 8 --dataset mnist1d --protocol fixed-lr \\
        --lr 0.1:1:3 --wd 1e-3:1e-2:3 --seeds 0,1 --steps 20000 --device cuda --out runs/net.zarr

Every option is parsed here or by :func:`thermonet.ensemble.resolve_settings` (not by
argparse types), so bad values end in one clear line and exit status 2.
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

# option name -> (flag, help)
_OPTIONS = {
    "model": ("--model", "network: convnet-si, resnet18-si, convnet1d-si, mlp-si or a registered one"),
    "width": ("--width", "width multiplier k (default 8)"),
    "head_norm": ("--head-norm", "norm of the fixed last layer (default 10)"),
    "dataset": ("--dataset", "mnist1d, cifar10, cifar100 or teacher; options as NAME:key=value,... "
                             "(e.g. teacher:n_train=2000,noise=0.1; default mnist1d)"),
    "data_dir": ("--data-dir", "directory holding CIFAR in the python-pickle layout (default $THERMONET_DATA "
                               "or ./data); nothing is ever downloaded"),
    "samples_per_class": ("--samples-per-class", "balanced training subset: this many examples per class"),
    "protocol": ("--protocol", "fixed-lr, fixed-elr or fixed-sphere"),
    "steps": ("--steps", "SGD steps per member"),
    "batch_size": ("--batch-size", "mini-batch size B, drawn with replacement every step (default 128)"),
    "eval_batch_size": ("--eval-batch-size", "chunk size for test-set evaluation (default: --batch-size)"),
    "log_every": ("--log-every", "steps between logs (default steps/100)"),
    "queue_size": ("--queue-size", "weight samples N in the entropy queue (default 1000)"),
    "queue_every": ("--queue-every", "steps between queued samples (default: the queue spans the last half)"),
    "entropy_every": ("--entropy-every", "steps between entropy estimates once the queue is full "
                                         "(default ~steps/20)"),
    "entropy_method": ("--entropy-method", "chord (default) or angles (the paper's chart)"),
    "entropy_k": ("--entropy-k", "neighbour rank k of the entropy estimator (default 1)"),
    "grad_samples": ("--grad-samples", "K stochastic gradients per log step for trace Sigma (default 32)"),
    "grad_chunk": ("--grad-chunk", "stochastic gradients per vectorised call (speed vs memory; default 1)"),
    "init_radius": ("--init-radius", "rescale the initial trained vector to this norm (fixed-lr, fixed-elr)"),
    "device": ("--device", "cpu, cuda, cuda:N or auto (default cpu)"),
    "dtype": ("--dtype", "float32 (default) or float64"),
    "compile": ("--compile", "torch.compile the training step: default, reduce-overhead or max-autotune"),
    "checkpoint_every": ("--checkpoint-every", "seconds between checkpoints (default 600)"),
    "max_memory": ("--max-memory", "memory the run may use, e.g. 8GiB (default: from the device)"),
    "autocast": ("--autocast", "bf16: forward/backward of training steps in bfloat16 (weights, updates and "
                               "measurements stay in --dtype); default none"),
    "vectorize": ("--vectorize", "how members are evaluated: vmap (one call, grouped convolutions; GPU), loop "
                                 "(member by member, dense layers) or auto (default: vmap on CUDA; on a CPU the "
                                 "loop for networks with >= 16384 activations per example, else vmap)"),
    "threads": ("--threads", "CPU threads for torch (default: torch's choice; 1 is best on a busy machine)"),
}
_FLAGS_ONLY = {
    "share_init": ("--share-init", "every member starts from the initial point of the first seed"),
    "independent_batches": ("--independent-batches",
                            "batches keyed by seed and hyperparameters (default: by seed, so the grid points of "
                            "one seed see the same batches)"),
    "allow_tf32": ("--tf32", "allow TF32 for float32 convolutions and matmuls on CUDA"),
    "no_queue_checkpoint": ("--no-queue-checkpoint", "leave the entropy queue out of checkpoints (smaller; after "
                                                     "a resume the queue refills before the next entropy)"),
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train an ensemble of scale-invariant networks (all grid points and seeds at once)",
        description=(
            "Train a scale-invariant network for every hyperparameter point and seed of a grid, as one "
            "vectorised ensemble on one device, and stream losses, accuracies, radius, gradient noise "
            "(trace Sigma, sigma^2, G1^2, SNR) and queue entropies into a Zarr run store that "
            "'thermonet check' and 'thermonet report' read."
        ),
        epilog=(
            "Grids: A:B:N gives N log-spaced values from A to B; a comma list gives those values. "
            "Protocols: fixed-lr (--lr, --wd), fixed-elr (--elr, --wd), fixed-sphere (--lr, --sphere-radius). "
            "With --resume, options left out are taken from the store; options given must match it. "
            "See docs/networks.md."
        ),
    )
    for name, (flag, help_text) in _OPTIONS.items():
        parser.add_argument(flag, dest=name, help=help_text)
    parser.add_argument("--lr", help="learning rates eta (fixed-lr, fixed-sphere): A:B:N or a comma list")
    parser.add_argument("--wd", help="weight decays lambda > 0 (fixed-lr, fixed-elr)")
    parser.add_argument("--elr", help="effective learning rates (fixed-elr)")
    parser.add_argument("--sphere-radius", dest="sphere_radius", help="sphere radii rho_0 (fixed-sphere)")
    parser.add_argument("--seeds", "--seed", dest="seeds", help="comma list of seeds (default 0)")
    for name, (flag, help_text) in _FLAGS_ONLY.items():
        parser.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
    add_store_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from thermonet.ensemble import store_settings, train

    check_store_options(args, "runs/net.zarr")
    out = Path(args.out)
    options = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None}
    for name in ("share_init", "independent_batches", "allow_tf32"):
        if getattr(args, name):
            options[name] = True
    if args.no_queue_checkpoint:
        options["checkpoint_queue"] = False
    if args.seeds is not None:
        options["seeds"] = args.seeds
    grid = parse_grid_options(args)

    if args.resume and (out.exists() or out.is_symlink()):
        settings = resumed_settings(store_settings(out), options, grid)
    else:
        for required, flag in (("model", "--model"), ("protocol", "--protocol"), ("steps", "--steps")):
            if required not in options:
                raise InputError(f"{flag} is required")
        settings = {**options, "grid": grid}
    path = train(out=out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                 command=command_line(), **settings)
    print(f"run store: {path}")
    return 0
