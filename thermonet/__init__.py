"""thermonet: thermodynamics of scale-invariant neural networks."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("thermonet")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from thermonet.errors import InputError, StoreError, ThermonetError
from thermonet.store import open_run

__all__ = ["__version__", "InputError", "StoreError", "ThermonetError", "open_run"]
