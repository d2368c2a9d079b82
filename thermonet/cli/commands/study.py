"""``thermonet study NAME``: run one of the study scripts that ship with thermonet.

Studies are plain scripts in the repository's ``studies/`` folder (``studies/ideal_gas.py``
is also runnable as ``python studies/ideal_gas.py``), so that users can read and copy
them. The folder installs as the package ``thermonet.studies`` (like ``models/`` as
``thermonet.models``), so this command finds them after any install, editable or not,
and passes the remaining arguments on.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from thermonet.errors import InputError


def studies_dir() -> Path:
    """The folder of the installed ``thermonet.studies`` package (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("thermonet.studies")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the studies are not installed with this thermonet (no thermonet.studies package)")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def available() -> dict[str, Path]:
    """Study name (``ideal-gas``) -> script path (``studies/ideal_gas.py``)."""
    folder = studies_dir()
    return {p.stem.replace("_", "-"): p for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    names = ", ".join(available()) or "none found"
    parser = sub.add_parser(
        "study",
        help="run a study script from studies/ (e.g. ideal-gas, the main job)",
        description=f"Run a study end to end. Available: {names}. "
        "Arguments after the name go to the script (try 'thermonet study ideal-gas --help').",
    )
    parser.add_argument("name", help="study name, e.g. ideal-gas")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the study script")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    studies = available()
    script = studies.get(args.name)
    if script is None:
        raise InputError(f"unknown study {args.name!r}; available: {', '.join(studies) or 'none'}")
    saved = sys.argv
    sys.argv = [str(script), *args.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:  # the script's own exit status
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    finally:
        sys.argv = saved
    return 0
