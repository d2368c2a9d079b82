"""The ``thermonet`` command line (the top layer).

Each subcommand lives in its own module under :mod:`thermonet.cli.commands` and exposes
``add_parser(subparsers)``; the parser it returns sets ``run`` to the function that does
the work. Errors a user can fix (:class:`thermonet.errors.ThermonetError`) are printed
as one line on stderr with exit status 2, never as a traceback.

Help is instant: ``thermonet --help`` lists the commands from :data:`COMMANDS` without
importing any of them, and ``thermonet COMMAND ...`` imports only that command's module,
which imports the heavy libraries (torch, xarray, matplotlib) only when it runs.

Plugins: before it builds a command, the command line imports every module declared in
the entry-point group ``thermonet.plugins`` (:data:`PLUGIN_GROUP`) of the installed
packages, so that protocols, energies, models, equations of state and checks defined
there register themselves and their flags appear (``docs/tutorial-protocol.md``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from thermonet.base.version import __version__
from thermonet.errors import ThermonetError

__all__ = ["COMMANDS", "COMMAND_MODULES", "PLUGIN_GROUP", "build_parser", "load_plugins", "main"]

#: Entry-point group whose modules the command line imports before building a command.
PLUGIN_GROUP = "thermonet.plugins"

#: Subcommand -> (module under thermonet.cli.commands, one line of help), in ``--help`` order.
COMMANDS: dict[str, tuple[str, str]] = {
    "theory": ("theory", "print the theory of one protocol (T, P, V, radius, Maxwell relation, gamma)"),
    "simulate": ("simulate", "simulate an ensemble of the isotropic model (all grid points and seeds at once)"),
    "check": ("check", "compare a run's stationary states with the theory (exit 0 pass, 1 fail, 2 bad input)"),
    "report": ("report", "write a Markdown report with figures and the check table"),
    "train": ("train", "train an ensemble of scale-invariant networks (all grid points and seeds at once)"),
    "fit-eos": ("fit_eos", "fit ideal and real-gas equations of state to measured states (one fitted noise level)"),
    "temperature": ("temperature", "temperature intervals from free-energy minimisation over a learning-rate sweep"),
    "study": ("study", "run a study script from studies/ (e.g. ideal-gas, the main job)"),
}

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES = tuple(module for module, _ in COMMANDS.values())


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors also exit with status 2 after one clear line."""

    def error(self, message: str) -> None:  # pragma: no cover - argparse path
        self.print_usage(sys.stderr)
        self.exit(2, f"thermonet: error: {message}\n")


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
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
    return parser, sub


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every command's full parser, or only ``only``'s (the others
    listed by name and help, unloaded)."""
    parser, sub = _top_parser()
    for name, (module_name, help_text) in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"thermonet.cli.commands.{module_name}").add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def load_plugins() -> list[str]:
    """Import the modules of every ``thermonet.plugins`` entry point; their names.

    A plugin that fails to import is reported as a :class:`ThermonetError` naming it.
    """
    from importlib.metadata import entry_points

    loaded = []
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin is the same user problem
            raise ThermonetError(f"the thermonet plugin {entry.name!r} ({entry.value}) failed to import: "
                                 f"{type(exc).__name__}: {exc}") from None
        loaded.append(entry.name)
    return loaded


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option), if known."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    try:
        if command is not None:
            load_plugins()
        parser = build_parser(only=command or "")
        args = parser.parse_args(argv)
    except ThermonetError as exc:  # an option's parser refused a value
        print(f"thermonet: error: {exc}", file=sys.stderr)
        return 2
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
    except OSError as exc:  # the machine refused (disk full, permissions, ...): not a verdict, not a bug
        from thermonet.base.paths import describe_os_error

        print(f"thermonet: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
