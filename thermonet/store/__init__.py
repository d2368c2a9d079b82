"""The run store (third layer): one xarray Dataset in Zarr per ensemble run.

* :mod:`.schema` -- the variables, dimensions and attributes, declared once;
* :mod:`.writer` -- atomic creation and streaming writes (:class:`RunStore`);
* :mod:`.checkpoint` -- the one checkpoint format of every engine;
* :mod:`.reader` -- :func:`open_run`, :func:`validate_run`;
* :mod:`.accessor` -- ``ds.thermo``: stationary thermodynamic states of a run;
* :mod:`.measured` -- :class:`MeasuredStates`, what checks accept;
* :mod:`.synthetic` -- runs generated from the exact theory (tests, demonstrations).

The layout is specified in ``docs/data-layout.md``.
"""

from thermonet.store.accessor import ThermoAccessor, batch_standard_error, parse_window
from thermonet.store.measured import MeasuredStates, as_measured, measured_kind
from thermonet.store.reader import PartialRunWarning, open_run, validate_run
from thermonet.store.schema import (
    ENTROPY_VARIABLES,
    KINDS,
    REQUIRED_ATTRIBUTES,
    SCHEMA_VERSION,
    TIME_SERIES_VARIABLES,
)

__all__ = [
    "ENTROPY_VARIABLES",
    "KINDS",
    "MeasuredStates",
    "PartialRunWarning",
    "REQUIRED_ATTRIBUTES",
    "SCHEMA_VERSION",
    "TIME_SERIES_VARIABLES",
    "ThermoAccessor",
    "as_measured",
    "batch_standard_error",
    "measured_kind",
    "open_run",
    "parse_window",
    "validate_run",
]
