"""Ensembles of scale-invariant networks trained together on one device.

* :class:`EnsembleEngine` (:mod:`.engine`): stacked flat parameters, ``torch.func``
  (``functional_call`` + ``vmap`` + ``grad``), the protocols' own updates, divergence
  freezing, log-step measurements (THEORY §9) and the entropy queue;
* :mod:`.functional`: the flat-parameter view of a network and the members' initial points;
* :mod:`.data`: datasets (generated or read locally) and counter-based batches;
* :mod:`.reference`: the per-member eager baseline (tests and benchmarks);
* :mod:`.memory`: the memory estimate that refuses runs that will not fit.

The driver that trains a grid into a run store is :func:`thermonet.runs.train`. See
``docs/networks.md``.
"""

from thermonet.engines.network.engine import MEASURED, EnsembleEngine, chunk_bounds
from thermonet.engines.network.functional import FlatModel, flatten_parameters, initial_point
from thermonet.engines.network.memory import estimate_memory, memory_budget
from thermonet.engines.network.reference import EagerMember, train_member_eager

__all__ = [
    "MEASURED",
    "EagerMember",
    "EnsembleEngine",
    "FlatModel",
    "chunk_bounds",
    "estimate_memory",
    "flatten_parameters",
    "initial_point",
    "memory_budget",
    "train_member_eager",
]
