"""``thermonet train``: train a grid of scale-invariant networks as one ensemble into a run store.

Example (fixed LR on MNIST-1D, 3 × 3 grid × 2 seeds = 18 members on one GPU)::

    thermonet train --model convnet-si --width 8 --dataset mnist1d --protocol fixed-lr \\
        --lr 0.1:1:3 --wd 1e-3:1e-2:3 --seeds 0,1 --steps 20000 --device cuda --out runs/net.zarr

The options are those declared by :class:`thermonet.runs.options.TrainSettings` (flag,
validation, store attribute and ``--resume`` rule in one place); the grid flags come
from the registered protocols. Bad values end in one clear line and exit status 2.
"""

from __future__ import annotations

import argparse

from thermonet.cli.options import add_run_options, add_store_options, start_run


def add_parser(subparsers) -> argparse.ArgumentParser:
    from thermonet.runs.options import TrainSettings

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
            "With --resume, options left out are taken from the store; options given must match it "
            "(device, speed and memory options may change). See docs/networks.md."
        ),
    )
    add_run_options(parser, TrainSettings)
    add_store_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from thermonet.runs.network import store_settings, train
    from thermonet.runs.options import TrainSettings

    return start_run(args, TrainSettings, train, store_settings, "runs/net.zarr")
