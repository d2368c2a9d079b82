"""Nearest-neighbour entropy estimators (Kozachenko–Leonenko), Euclidean and on spheres.

See ``docs/entropy-estimators.md`` for formulas, conventions and measured biases.
"""

from thermonet.estimators.knn import kl_entropy, knn_distances, log_unit_ball_volume
from thermonet.estimators.sphere import METHODS, hyperspherical_angles, spherical_entropy
from thermonet.estimators.tangent import EstimabilityWarning

__all__ = [
    "EstimabilityWarning",
    "METHODS",
    "hyperspherical_angles",
    "kl_entropy",
    "knn_distances",
    "log_unit_ball_volume",
    "spherical_entropy",
]
