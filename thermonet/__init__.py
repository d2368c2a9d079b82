"""thermonet: thermodynamics of scale-invariant neural networks.

The package is layered along the data flow (see ``docs/architecture.md``)::

    base -> theory, estimators -> engines, models -> store -> runs -> analysis -> checks -> reports -> cli

Importing :mod:`thermonet` itself is cheap: ``open_run`` and the subpackages load on
first use, so that ``thermonet --help`` answers at once.
"""

from thermonet.base.version import __version__
from thermonet.errors import InputError, RunError, StoreError, ThermonetError
from thermonet import _compat

_compat.install()

__all__ = ["__version__", "InputError", "RunError", "StoreError", "ThermonetError", "open_run"]


def __getattr__(name: str):
    # ``thermonet.open_run`` is :func:`thermonet.store.open_run`, imported on first use
    if name == "open_run":
        from thermonet.store import open_run

        return open_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
