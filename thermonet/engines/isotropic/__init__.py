"""The isotropic test system (THEORY §7) as an ensemble engine.

* :mod:`.engine`: the engines (compiled numba kernel on CPU, torch elsewhere);
* :mod:`.energies`: scale-invariant energies, registered by name (default ``linear``);
* :mod:`.kernel`: the compiled kernel built from a protocol's and an energy's CPU functions.

The counter-based random numbers are in :mod:`thermonet.engines.rng`; the driver that
simulates a grid into a run store is :func:`thermonet.runs.simulate`. See
``docs/performance.md`` ("Isotropic simulator") for speed figures.
"""

from thermonet.engines.isotropic.energies import Energy, LinearEnergy, get_energy
from thermonet.engines.isotropic.engine import IsotropicEngine, NumbaEngine, TorchEngine, make_engine

__all__ = ["Energy", "IsotropicEngine", "LinearEnergy", "NumbaEngine", "TorchEngine", "get_energy", "make_engine"]
