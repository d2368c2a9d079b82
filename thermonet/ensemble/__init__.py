"""Ensembles of scale-invariant networks trained together on one device.

* :func:`train` (:mod:`.run`): a hyperparameter grid × seeds as one ensemble, streamed
  into a run store (``thermonet train``);
* :class:`EnsembleEngine` (:mod:`.engine`): stacked flat parameters, ``torch.func``
  (``functional_call`` + ``vmap`` + ``grad``), the protocols' own updates, divergence
  freezing, log-step measurements (THEORY §9) and the entropy queue;
* :mod:`.functional`: the flat-parameter view of a network and the members' initial points;
* :mod:`.reference`: the per-member eager baseline (tests and benchmarks);
* :mod:`.memory`: the memory estimate that refuses runs that will not fit.

See ``docs/networks.md``.
"""

from thermonet.ensemble.engine import MEASURED, EnsembleEngine, chunk_bounds
from thermonet.ensemble.functional import FlatModel, flatten_parameters, initial_point
from thermonet.ensemble.memory import estimate_memory, memory_budget
from thermonet.ensemble.reference import EagerMember, train_member_eager
from thermonet.ensemble.run import KIND, NETWORK_SERIES, TrainSettings, resolve_settings, store_settings, train

__all__ = [
    "KIND",
    "MEASURED",
    "NETWORK_SERIES",
    "EagerMember",
    "EnsembleEngine",
    "FlatModel",
    "TrainSettings",
    "chunk_bounds",
    "estimate_memory",
    "flatten_parameters",
    "initial_point",
    "memory_budget",
    "resolve_settings",
    "store_settings",
    "train",
    "train_member_eager",
]
