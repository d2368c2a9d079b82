"""``thermonet simulate``: simulate an ensemble of the isotropic model into a run store.

Example (the paper's fixed-LR grid, 289 members)::

    thermonet simulate isotropic --protocol fixed-lr --dim 3 --lr 1e-3:1e-1:17 \\
        --wd 1e-3:1e-1:17 --steps 2000000 --seed 0 --out runs/iso-lr.zarr

The options are those declared by :class:`thermonet.runs.options.IsotropicSettings`
(flag, validation, store attribute and ``--resume`` rule in one place); the grid flags
come from the registered protocols. Bad values end in one clear line and exit status 2.
"""

from __future__ import annotations

import argparse

from thermonet.cli.options import add_run_options, add_store_options, start_run
from thermonet.errors import InputError

MODELS = ("isotropic",)


def add_parser(subparsers) -> argparse.ArgumentParser:
    from thermonet.runs.options import IsotropicSettings

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
            "radius 1 (or --init-radius; fixed-sphere: the sphere radius). "
            "With --resume, options left out are taken from the store; options given must match it "
            "(the speed options --flush-seconds and --checkpoint-every may change)."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="the model to simulate: isotropic")
    add_run_options(parser, IsotropicSettings)
    add_store_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from thermonet.runs.isotropic import simulate, store_settings
    from thermonet.runs.options import IsotropicSettings

    if args.model not in MODELS:
        raise InputError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    return start_run(args, IsotropicSettings, simulate, store_settings, "runs/iso-lr.zarr")
