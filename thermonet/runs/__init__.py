"""Runs (fourth layer): settings, and the one driver that fills a run store from an engine.

* :func:`simulate` -- the isotropic test system (:mod:`.isotropic`);
* :func:`train` -- ensembles of scale-invariant networks (:mod:`.network`);
* :mod:`.options` -- their settings, each option declared once (flag, validation, store
  attribute, ``--resume`` rule);
* :mod:`.driver` -- the loop, the checkpoints, ``--resume``/``--overwrite``.
"""

from thermonet.runs.isotropic import simulate
from thermonet.runs.network import train
from thermonet.runs.options import IsotropicSettings, RunSettings, TrainSettings

__all__ = ["IsotropicSettings", "RunSettings", "TrainSettings", "simulate", "train"]
