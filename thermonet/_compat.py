"""Old module paths that still work: each prints a deprecation message and forwards.

thermonet 0.2 moved its modules into folders that follow the data flow (see
``docs/architecture.md``). Code written for 0.1 keeps working: importing an old path,
e.g. ``from thermonet.simulation import simulate``, gives a module that forwards every
attribute to the new home (the same objects) and warns once with a
:class:`ThermonetDeprecationWarning` that names the new path. These aliases will be
removed in thermonet 0.3.

This module is the only place that knows the old names. It sits above every layer
(``tests/test_architecture.py`` exempts it): an alias may forward to any module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

__all__ = ["MOVED", "MOVED_ATTRIBUTES", "ThermonetDeprecationWarning", "install", "moved_attribute", "warn_renamed"]


class ThermonetDeprecationWarning(FutureWarning):
    """A name that moved or was renamed; shown by default (a FutureWarning)."""


#: Old module path -> the new module(s) its names now live in (searched in order).
MOVED: dict[str, tuple[str, ...]] = {
    "thermonet.grid": ("thermonet.base.grid",),
    "thermonet.plotting": ("thermonet.base.plotting",),
    "thermonet.theory._validate": ("thermonet.base.validate",),
    "thermonet.simulation": ("thermonet.runs.isotropic", "thermonet.engines.isotropic.energies"),
    "thermonet.simulation.rng": ("thermonet.engines.rng",),
    "thermonet.simulation.energies": ("thermonet.engines.isotropic.energies",),
    "thermonet.simulation.engine": ("thermonet.engines.isotropic.engine", "thermonet.engines.common"),
    "thermonet.simulation.kernels": ("thermonet.engines.isotropic.kernel",),
    "thermonet.simulation.run": ("thermonet.runs.isotropic",),
    "thermonet.simulation.writer": ("thermonet.store.writer", "thermonet.store.schema"),
    "thermonet.simulation.toy": ("thermonet.engines.toy", "thermonet.analysis.sphere_toy"),
    "thermonet.ensemble": ("thermonet.runs.network", "thermonet.engines.network"),
    "thermonet.ensemble.engine": ("thermonet.engines.network.engine",),
    "thermonet.ensemble.functional": ("thermonet.engines.network.functional",),
    "thermonet.ensemble.memory": ("thermonet.engines.network.memory",),
    "thermonet.ensemble.reference": ("thermonet.engines.network.reference",),
    "thermonet.ensemble.run": ("thermonet.runs.network",),
    "thermonet.data": ("thermonet.engines.network.data",),
    "thermonet.checks.synthetic": ("thermonet.store.synthetic",),
    "thermonet.checks.surface": ("thermonet.analysis.surface",),
    "thermonet.temperature": ("thermonet.analysis.noise", "thermonet.analysis.power_law",
                              "thermonet.checks.noise_trend"),
    "thermonet.free_energy": ("thermonet.analysis.free_energy", "thermonet.analysis.hull",
                              "thermonet.analysis.power_law", "thermonet.reports.free_energy"),
    "thermonet.eos_fit": ("thermonet.analysis.eos_fit",),
    "thermonet.measured_processes": ("thermonet.analysis.processes",),
    "thermonet.report": ("thermonet.reports.report", "thermonet.reports.tables"),
    "thermonet.commands": ("thermonet.cli.commands",),
    **{f"thermonet.commands.{name}": (f"thermonet.cli.commands.{name}",)
       for name in ("check", "fit_eos", "report", "simulate", "study", "temperature", "theory", "train")},
}


#: Names that changed as well as moved: old module -> {old name: "new.module:new_name"}.
RENAMED: dict[str, dict[str, str]] = {
    "thermonet.free_energy": {"fit_power_law": "thermonet.analysis.power_law:fit_hull_power_law",
                              "PowerLawFit": "thermonet.analysis.power_law:PowerLaw"},
    "thermonet.temperature": {"PowerLawTrend": "thermonet.analysis.power_law:PowerLaw"},
}


def _hyperparameter_symbols() -> dict:
    protocols = importlib.import_module("thermonet.theory.protocols")
    out: dict = {}
    for cls in protocols.Protocol.registered().values():
        for spec in cls.hyperparameter_specs:
            out.setdefault(spec.name, spec.symbol)
    return out


#: (old module, attribute) -> (what to use instead, a function giving the value).
MOVED_ATTRIBUTES = {
    ("thermonet.theory.symbols", "HYPERPARAMETER_SYMBOLS"): (
        "protocol.symbols (each protocol declares its hyperparameters)", _hyperparameter_symbols),
}


def moved_attribute(module: str, name: str):
    """The value of a moved attribute ``module.name`` (with a warning), or AttributeError."""
    entry = MOVED_ATTRIBUTES.get((module, name))
    if entry is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warn_renamed(f"{module}.{name}", entry[0], stacklevel=4)
    return entry[1]()


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` is now ``new`` (one line, shown by default)."""
    warnings.warn(f"{old} is deprecated and will be removed in thermonet 0.3; use {new}",
                  ThermonetDeprecationWarning, stacklevel=stacklevel)


class _Alias(types.ModuleType):
    """A module that forwards attribute lookups to the modules listed in :data:`MOVED`."""

    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"Deprecated alias of {', '.join(targets)}.")
        self._targets = targets

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        renamed = RENAMED.get(self.__name__, {}).get(attr)
        if renamed is not None:
            module, _, name = renamed.partition(":")
            return getattr(importlib.import_module(module), name)
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} (now {', '.join(self._targets)}) has no attribute {attr!r}")

    def __dir__(self):
        names: set[str] = set()
        for target in self._targets:
            names.update(dir(importlib.import_module(target)))
        return sorted(names)


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        is_package = any(other.startswith(fullname + ".") for other in MOVED)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=is_package)

    def create_module(self, spec):
        targets = MOVED[spec.name]
        warnings.warn(f"the module {spec.name} moved to {' and '.join(targets)}; the old path will be removed "
                      f"in thermonet 0.3", ThermonetDeprecationWarning, stacklevel=2)
        module = _Alias(spec.name, targets)
        if spec.submodule_search_locations is not None:
            module.__path__ = []
        return module

    def exec_module(self, module):
        return None


_FINDER = _AliasFinder()


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
