"""The ``thermonet`` command line.

Each subcommand lives in its own module under :mod:`thermonet.commands` and exposes
``add_parser(subparsers)``; the parser it returns sets ``run`` to the function that does
the work. Errors a user can fix (:class:`thermonet.errors.ThermonetError`) are printed
as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from thermonet import __version__
from thermonet.errors import ThermonetError

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "theory",
    "simulate",
    "check",
    "report",
    "train",
    "fit_eos",
    "temperature",
    "study",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors also exit with status 2 after one clear line."""

    def error(self, message: str) -> None:  # pragma: no cover - argparse path
        self.print_usage(sys.stderr)
        self.exit(2, f"thermonet: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="thermonet",
        description=(
            "Thermodynamics of scale-invariant networks: theory predictions, simulated and "
            "trained ensembles, and checks of the one against the other."
        ),
        epilog="Run 'thermonet COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"thermonet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"thermonet.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        result = args.run(args)
    except ThermonetError as exc:
        print(f"thermonet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thermonet: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
