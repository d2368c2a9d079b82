"""Checks of measured stationary states against the theory (sixth layer).

Each check compares one prediction (pulled from :mod:`thermonet.theory`) with the
stationary states of a run (:class:`thermonet.store.MeasuredStates`, e.g. ``ds.thermo``)
and returns a :class:`CheckResult`. Checks register by subclassing
(``class MaxwellCheck(Check, name="maxwell")``); see ``docs/checks.md``.

>>> import thermonet
>>> from thermonet.checks import default_checks, run_checks
>>> ds = thermonet.open_run("runs/fixed-lr.zarr")            # doctest: +SKIP
>>> for result in run_checks(ds, window=0.5):               # doctest: +SKIP
...     print(result.name, result.verdict, result.summary)

Optional checks (``optional = True``, e.g. ``noise-trend``) are not among the defaults;
run them by name: ``run_checks(ds, [get_check("noise-trend")])``.
"""

from __future__ import annotations

from collections.abc import Iterable

import xarray as xr

from thermonet.analysis.systems import exact_vmf_applies
from thermonet.checks.base import Check, CheckResult
from thermonet.errors import InputError
from thermonet.store import MeasuredStates, as_measured

# Imported for their registration, in the order reports list them.
from thermonet.checks.isotropic import VMFEnergyCheck, VMFEntropyCheck  # isort: skip
from thermonet.checks.ideal_gas import StationaryRadiusCheck  # isort: skip
from thermonet.checks.potentials import PotentialMinimumCheck  # isort: skip
from thermonet.checks.maxwell import MaxwellCheck  # isort: skip
from thermonet.checks.adiabat import AdiabatCheck, NoiseTrendAdiabatCheck  # isort: skip
from thermonet.checks.temperature import ThermodynamicTemperatureCheck  # isort: skip
from thermonet.checks.noise_trend import NoiseTrendCheck  # isort: skip
from thermonet.checks.groups import EquipartitionCheck, GroupRadiusCheck  # isort: skip

__all__ = [
    "AdiabatCheck",
    "CHECKS",
    "Check",
    "CheckResult",
    "EquipartitionCheck",
    "GroupRadiusCheck",
    "MaxwellCheck",
    "NoiseTrendAdiabatCheck",
    "NoiseTrendCheck",
    "OPTIONAL_CHECKS",
    "PotentialMinimumCheck",
    "StationaryRadiusCheck",
    "ThermodynamicTemperatureCheck",
    "VMFEnergyCheck",
    "VMFEntropyCheck",
    "default_checks",
    "get_check",
    "run_checks",
]


def __getattr__(name: str):
    # live views of the registry: checks defined later (a study, a tutorial) are in them
    if name == "CHECKS":  #: the default checks by name, in report order
        return {n: c for n, c in Check.registered().items() if not c.optional}
    if name == "OPTIONAL_CHECKS":  #: the checks run only when asked for by name
        return {n: c for n, c in Check.registered().items() if c.optional}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_check(name: str, **options) -> Check:
    """A check by name (default or optional) with optional overrides (e.g. ``tolerance=0.02``)."""
    cls = Check.get(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise InputError(f"check {name!r}: {exc}") from None


def default_checks(measured: MeasuredStates | xr.Dataset, tolerances: dict[str, float] | None = None) -> list[Check]:
    """The checks that apply to a run's kind and protocol, with optional tolerance overrides.

    Isotropic runs of a vMF energy get every default check; networks and other energies
    all but those that need the exact vMF statistics (``needs_exact_vmf``); runs without
    per-group variables all but the per-group checks (``needs_groups``). Checks whose data
    are missing or whose grid is too small still appear and report ``skip``.
    """
    m = as_measured(measured)
    tolerances = dict(tolerances or {})
    defaults = {n: c for n, c in Check.registered().items() if not c.optional}
    unknown = set(tolerances) - set(defaults)
    if unknown:
        raise InputError(f"unknown check(s) {', '.join(sorted(unknown))}; choose from {', '.join(defaults)}")
    vmf = exact_vmf_applies(m)
    groups = getattr(m, "groups", None) is not None
    return [get_check(n, **({"tolerance": tolerances[n]} if n in tolerances else {}))
            for n, cls in defaults.items() if (vmf or not cls.needs_exact_vmf) and (groups or not cls.needs_groups)]


def run_checks(measured: MeasuredStates | xr.Dataset, checks: Iterable[Check] | None = None, *,
               window: float | int = 0.5) -> list[CheckResult]:
    """Run ``checks`` (default :func:`default_checks`) over the final ``window`` of the run."""
    m = as_measured(measured)
    chosen = default_checks(m) if checks is None else list(checks)
    return [check.run(m, window=window) for check in chosen]
