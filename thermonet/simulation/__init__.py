"""Isotropic-model simulator: a whole hyperparameter sweep advances as one ensemble.

* :func:`simulate` runs a sweep and streams it into a Zarr run store (:mod:`.writer`);
* :mod:`.engine`: the ensemble engines (compiled numba kernel on CPU, torch elsewhere);
* :mod:`.energies`: pluggable scale-invariant energies (default ``linear``);
* :mod:`.kernels`: the compiled kernel and the per-protocol numba steps;
* :mod:`.rng`: the counter-based random numbers (per member, per step).

See ``docs/performance.md`` ("Isotropic simulator") for speed figures.
"""

from thermonet.simulation.energies import ENERGIES, Energy, LinearEnergy, get_energy
from thermonet.simulation.run import ENTROPY_METHODS, Settings, resolve_settings, simulate, store_settings

__all__ = [
    "ENERGIES",
    "ENTROPY_METHODS",
    "Energy",
    "LinearEnergy",
    "Settings",
    "get_energy",
    "resolve_settings",
    "simulate",
    "store_settings",
]
