"""Options and steps shared by several subcommands.

* reading a run store: :func:`add_run_argument`, :func:`add_window_option`,
  :func:`add_json_option` (``check``, ``temperature``, ``report``);
* writing one (``simulate``, ``train``): :func:`add_run_options` (the settings class's
  declared options and every registered protocol's hyperparameter grid),
  :func:`add_store_options`, :func:`check_store_options`, :func:`parse_grid_options`,
  :func:`resumed_settings`, :func:`command_line`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings

from thermonet.errors import InputError


# ------------------------------------------------------------------------------ reading a store
def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_path", metavar="RUN", help="run store (a Zarr directory written by thermonet)")


def add_window_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", default="0.5",
                        help="final fraction of the logs (0 < f <= 1) or number of final logs (default 0.5)")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the results as JSON to FILE ('-' for stdout instead of the table)")


#: Variables the stationary states are computed from: the command-line readers decode them
#: before computing anything, so a damaged chunk is an error (exit 2), not a crash or a verdict.
STATIONARY_INPUTS = ("loss", "rho", "sigma2", "trace_sigma", "grad_full_sq", "grad_norm_sq", "lambda_eff",
                     "entropy", "entropy_sphere", "diverged_at", "step", "entropy_step", "seed")


def unique_runs(paths) -> list[str]:
    """The run paths with repeats removed (the same store by any spelling: resolved paths),
    saying so on stderr: a store given twice would count its states twice."""
    import os

    seen, out = {}, []
    for path in paths:
        key = os.path.realpath(path)
        if key in seen:
            print(f"thermonet: warning: {path} is the same store as {seen[key]}; counted once", file=sys.stderr)
            continue
        seen[key] = path
        out.append(path)
    return out


def open_with_warnings(path: str, *, verify: bool = False):
    """open_run, printing store warnings (partial runs) as one line each on stderr. The
    variables the stationary states use are decoded first (every variable with ``verify``)."""
    from thermonet.store import open_run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_run(path, verify=True if verify else STATIONARY_INPUTS)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"thermonet: warning: {w.message}", file=sys.stderr)
    return ds


# ------------------------------------------------------------------------------ writing a store
def add_run_options(parser: argparse.ArgumentParser, settings_cls, skip=()) -> None:
    """The declared options of ``settings_cls`` and one grid flag per hyperparameter of any
    registered protocol (``--lr``, ``--wd``, ``--elr``, ``--sphere-radius``, ...)."""
    from thermonet.base.options import add_arguments
    from thermonet.runs.options import hyperparameter_flags

    add_arguments(parser, settings_cls, skip=skip)
    for name, (flag, help_text) in hyperparameter_flags().items():
        parser.add_argument(flag, dest=f"grid_{name}", default=None, metavar="GRID", help=help_text)


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """``--out``, ``--resume`` and ``--overwrite``."""
    parser.add_argument("--out", help="run store to write (a .zarr directory)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run store in --out")


def check_store_options(args: argparse.Namespace, example: str) -> None:
    """``--out`` is given (``example``: a store path for the message) and ``--resume`` and
    ``--overwrite`` are not both."""
    if not args.out:
        raise InputError(f"--out is required (the run store to write, e.g. {example})")
    if args.resume and args.overwrite:
        raise InputError("--resume and --overwrite exclude each other")


def parse_grid_options(args: argparse.Namespace) -> dict:
    """The hyperparameter grids given on the command line, by name."""
    from thermonet.base.grid import parse_grid
    from thermonet.runs.options import hyperparameter_flags

    return {name: parse_grid(getattr(args, f"grid_{name}"), flag[2:]) for name, (flag, _) in hyperparameter_flags().items()
            if getattr(args, f"grid_{name}", None) is not None}


def start_run(args: argparse.Namespace, settings_cls, run, store_settings, example: str) -> int:
    """What ``simulate`` and ``train`` do with their arguments: the options given (and, with
    ``--resume``, the store's for those left out) go to ``run`` (``thermonet.runs.simulate``
    or ``train``), which checks them against their declarations."""
    from pathlib import Path

    from thermonet.base.options import given_options

    check_store_options(args, example)
    out = Path(args.out)
    options = given_options(args, settings_cls)
    grid = parse_grid_options(args)
    if args.resume and (out.exists() or out.is_symlink()):
        settings = resumed_settings(store_settings(out), options, grid)
    else:
        settings = {**options, "grid": grid}
    path = run(out=out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
               command=command_line(), **settings)
    print(f"run store: {path}")
    return 0


def resumed_settings(stored: dict, options: dict, grid: dict) -> dict:
    """A store's settings overridden by the options and grids given with ``--resume``
    (grids given for some of the store's hyperparameters replace only those)."""
    settings = dict(stored)
    settings.update(options)
    if grid:
        settings["grid"] = {**stored["grid"], **grid} if set(grid) <= set(stored["grid"]) else grid
    return settings


def command_line() -> str:
    """This command line, as recorded in a store's ``command`` attribute."""
    return "thermonet " + " ".join(shlex.quote(a) for a in sys.argv[1:])
