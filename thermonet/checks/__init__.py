"""Checks of measured stationary states against the theory.

Each check compares one prediction (pulled from :mod:`thermonet.theory`) with the
stationary states of a run (:class:`thermonet.store.MeasuredStates`, e.g. ``ds.thermo``)
and returns a :class:`CheckResult`. See ``docs/checks.md``.

>>> import thermonet
>>> from thermonet.checks import default_checks, run_checks
>>> ds = thermonet.open_run("runs/fixed-lr.zarr")            # doctest: +SKIP
>>> for result in run_checks(ds, window=0.5):               # doctest: +SKIP
...     print(result.name, result.verdict, result.summary)

Optional checks (:data:`OPTIONAL_CHECKS`, e.g. ``noise-trend``) are not among the
defaults; run them by name: ``run_checks(ds, [get_check("noise-trend")])``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import xarray as xr

from thermonet.checks.adiabat import AdiabatCheck
from thermonet.checks.base import Check, CheckResult
from thermonet.checks.ideal_gas import StationaryRadiusCheck
from thermonet.checks.isotropic import VMFEnergyCheck, VMFEntropyCheck
from thermonet.checks.maxwell import MaxwellCheck
from thermonet.checks.potentials import PotentialMinimumCheck
from thermonet.errors import InputError
from thermonet.store import MeasuredStates, as_measured, exact_vmf_applies

__all__ = [
    "AdiabatCheck",
    "CHECKS",
    "Check",
    "CheckResult",
    "MaxwellCheck",
    "NoiseTrendCheck",
    "OPTIONAL_CHECKS",
    "PotentialMinimumCheck",
    "StationaryRadiusCheck",
    "VMFEnergyCheck",
    "VMFEntropyCheck",
    "default_checks",
    "get_check",
    "run_checks",
]

#: Every check by name, in the order reports list them.
CHECKS: dict[str, type[Check]] = {
    cls.name: cls
    for cls in (VMFEnergyCheck, VMFEntropyCheck, StationaryRadiusCheck, PotentialMinimumCheck, MaxwellCheck,
                AdiabatCheck)
}

#: Checks run only when asked for by name (not by :func:`default_checks`), as
#: ``"module:Class"`` so that their modules, which build on this package, load lazily.
#: ``noise-trend``: the measured noise level against eta*lambda / eta~ / eta/rho_0**2
#: (:class:`thermonet.temperature.NoiseTrendCheck`); networks are expected to fail it
#: (paper 004, §7.3), so it is not a default. ``adiabat-noise-trend``: V4 with that
#: trend put into the predicted adiabats (:class:`thermonet.checks.adiabat.NoiseTrendAdiabatCheck`).
OPTIONAL_CHECKS: dict[str, str] = {
    "noise-trend": "thermonet.temperature:NoiseTrendCheck",
    "adiabat-noise-trend": "thermonet.checks.adiabat:NoiseTrendAdiabatCheck",
}

#: Checks that need the exact vMF statistics (isotropic runs only).
_ISOTROPIC_ONLY = ("vmf-energy", "vmf-entropy")


def _optional_class(name: str) -> type[Check]:
    module, _, attr = OPTIONAL_CHECKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def __getattr__(name: str):
    """Lazy access to the optional check classes (``from thermonet.checks import NoiseTrendCheck``)."""
    for key, target in OPTIONAL_CHECKS.items():
        if target.rpartition(":")[2] == name:
            return _optional_class(key)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_check(name: str, **options) -> Check:
    """A check by name (default or optional) with optional overrides (e.g. ``tolerance=0.02``)."""
    if name in CHECKS:
        cls = CHECKS[name]
    elif name in OPTIONAL_CHECKS:
        cls = _optional_class(name)
    else:
        raise InputError(f"unknown check {name!r}; choose from {', '.join([*CHECKS, *OPTIONAL_CHECKS])}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise InputError(f"check {name!r}: {exc}") from None


def default_checks(measured: MeasuredStates | xr.Dataset, tolerances: dict[str, float] | None = None) -> list[Check]:
    """The checks that apply to a run's kind and protocol, with optional tolerance overrides.

    Isotropic runs of a vMF energy (``linear``) get all checks; networks and other
    energies all but the exact-vMF ones. Checks whose
    data are missing or whose grid is too small still appear and report ``skip``.
    """
    m = as_measured(measured)
    tolerances = dict(tolerances or {})
    unknown = set(tolerances) - set(CHECKS)
    if unknown:
        raise InputError(f"unknown check(s) {', '.join(sorted(unknown))}; choose from {', '.join(CHECKS)}")
    vmf = exact_vmf_applies(m)
    names = [n for n in CHECKS if vmf or n not in _ISOTROPIC_ONLY]
    return [get_check(n, **({"tolerance": tolerances[n]} if n in tolerances else {})) for n in names]


def run_checks(measured: MeasuredStates | xr.Dataset, checks: Iterable[Check] | None = None, *,
               window: float | int = 0.5) -> list[CheckResult]:
    """Run ``checks`` (default :func:`default_checks`) over the final ``window`` of the run."""
    m = as_measured(measured)
    chosen = default_checks(m) if checks is None else list(checks)
    return [check.run(m, window=window) for check in chosen]
