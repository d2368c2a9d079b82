"""What a check needs from an experiment: :class:`MeasuredStates`, the structural type.

Checks, analyses and reports accept anything with ``protocol``, ``dim`` and
``stationary(window)`` (an :class:`xarray.Dataset` of stationary states, see
:meth:`thermonet.store.accessor.ThermoAccessor.stationary`); the ``ds.thermo`` accessor
of a run store is one, and so is any other experiment object that provides them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Protocol as TypingProtocol
from typing import runtime_checkable

import xarray as xr

from thermonet.errors import InputError

if TYPE_CHECKING:
    from thermonet.theory.protocols import Protocol

__all__ = ["MeasuredStates", "as_measured", "measured_kind"]


@runtime_checkable
class MeasuredStates(TypingProtocol):
    """An experiment's protocol, dimension and stationary states.

    ``stationary(window)`` returns an :class:`xarray.Dataset` over (hyperparameters...,
    seed) with at least ``U``, ``S``, ``S_sphere``, ``rho``, ``V``, ``sigma2``, ``T``, ``P``;
    its hyperparameter coordinates are ``protocol.hyperparameters``.

    Optional members read with ``getattr``: ``kind`` (``"isotropic"`` for the simulated
    test system, else ``"network"``, the default) and ``energy`` (the simulated energy's
    name), which decide whether the exact-vMF checks apply
    (:func:`thermonet.analysis.systems.exact_vmf_applies`).
    """

    @property
    def protocol(self) -> "Protocol": ...

    @property
    def dim(self) -> float: ...

    def stationary(self, window: float | int = 0.5) -> xr.Dataset: ...


def measured_kind(measured: object) -> str:
    """``measured.kind`` when it has one, else ``"network"``."""
    return str(getattr(measured, "kind", "network"))


def as_measured(obj: object) -> MeasuredStates:
    """``obj`` itself when it is :class:`MeasuredStates`, ``obj.thermo`` for a Dataset."""
    if isinstance(obj, xr.Dataset):
        from thermonet.store import accessor  # noqa: F401 - registers ds.thermo

        return obj.thermo
    if isinstance(obj, MeasuredStates):
        return obj
    raise InputError(
        f"expected a run Dataset or an object with protocol, dim and stationary(); got {type(obj).__name__}"
    )
