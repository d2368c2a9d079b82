"""Nearest-neighbour entropy estimators (Kozachenko–Leonenko), Euclidean and on spheres.

See ``docs/entropy-estimators.md`` for formulas, conventions and measured biases.
"""

from thermonet.estimators.knn import kl_entropy, knn_distances, log_unit_ball_volume
from thermonet.estimators.sphere import hyperspherical_angles, spherical_entropy

__all__ = [
    "hyperspherical_angles",
    "kl_entropy",
    "knn_distances",
    "log_unit_ball_volume",
    "spherical_entropy",
]
