"""Training protocols: one small class each, registered by name (THEORY §2).

* :class:`FixedSphere` (``fixed-sphere``), :class:`FixedELR` (``fixed-elr``),
  :class:`FixedLR` (``fixed-lr``);
* :class:`Protocol`, the base class: subclass it with ``name=...`` to add one
  (``docs/tutorial-protocol.md``);
* :func:`get_protocol` (an instance by name), ``Protocol.names()``.
"""

from thermonet.theory.protocols.base import HyperparameterMaxwellRelation, Protocol, get_protocol
from thermonet.theory.protocols.hyperparameters import ELR, LR, SPHERE_RADIUS, WD, Hyperparameter

# Imported for their registration, in the order help texts list them.
from thermonet.theory.protocols.fixed_sphere import FixedSphere  # isort: skip
from thermonet.theory.protocols.fixed_elr import FixedELR  # isort: skip
from thermonet.theory.protocols.fixed_lr import FixedLR  # isort: skip

__all__ = ["ELR", "LR", "SPHERE_RADIUS", "WD", "FixedELR", "FixedLR", "FixedSphere", "Hyperparameter",
           "HyperparameterMaxwellRelation", "PROTOCOLS", "Protocol", "get_protocol"]


def __getattr__(name: str):
    if name == "PROTOCOLS":  # a live view: protocols defined later (a tutorial, a study) are in it
        return Protocol.registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
