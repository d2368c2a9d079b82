"""A network's scale-invariant groups as one multi-component system: a product of spheres.

Every model in :mod:`thermonet.models` is scale-invariant group by group (a layer and
its BatchNorm; :meth:`~thermonet.models.ScaleInvariantNet.scale_groups`). So each group g
has its own radius ``rho_g``, direction ``x_g`` on ``S^(D_g - 1)`` and noise, and the
direction of the whole vector lives on the product of the groups' spheres, of dimension
``D - L`` (THEORY §11). A single sphere ``S^(D-1)`` with ``N_R = (D-1)/2`` is a
coarse-graining of it.

:class:`ProductOfSpheres` treats every group as an ideal gas with
``N_R,g = (D_g - 1)/2`` under the protocol the groups share. What each group sees of the
protocol is derived from the protocol's own statements, never retyped:

* its effective learning rate ``eta_eff,g = eta_eff rho**2 / rho_g**2``
  (:meth:`Protocol.group_effective_lr`: fixed LR ``eta/rho_g**2``, fixed ELR
  ``eta~ rho**2/rho_g**2``, fixed sphere ``eta/rho_g**2``) and temperature
  ``T_g = eta_eff,g sigma2_g / 2``, ``sigma2_g = trSigma_g(x_g)/(D_g - 1)``;
* the pressure they share (weight decay; the sphere's measured lambda_eff, since its
  projection shrinks every group by the same factor);
* the one-step recursion ``||w_g'||**2 = alpha**2 rho_g**2 + beta**2 ||g~_g||**2`` from
  ``w' = alpha w - beta g~`` (:meth:`Protocol.update_coefficients`).

What holds by the symmetry alone (identities: they test the measurement and
stationarity, not the thermodynamics):

* ``sum_g rho_g**2 = rho**2`` at every step;
* the recursion above, exactly at every step; at stationarity (mean field)
  ``rho_g**4 = beta**2 (trSigma_g + G1sq_g)/(1 - alpha**2)``
  (:meth:`Protocol.group_radius_discrete`), i.e. every group's angular step
  ``E||g~_g||**2/rho_g**2 = (1 - alpha**2)/beta**2`` is the same;
* ``(D - 1) T = sum_g (D_g - 1) T_g`` (:meth:`ProductOfSpheres.coarse_temperature`):
  ``eta_eff,g rho_g**2`` is the same for every group, so the coarse-grained temperature
  of the single sphere is the groups' temperatures weighted by their degrees of freedom.

What can fail (a prediction): **equipartition**, ``T_g = T`` for every group. The
coarse-grained single sphere with isotropic noise ``Sigma(x) = sigma2 (I - x x^T)/rho**2``
gives every direction the same noise per degree of freedom, hence the same temperature
in every group; so does thermal equilibrium between components that exchange energy. A
network whose layers run at different temperatures is not one ideal gas at one T
(:class:`thermonet.checks.groups.EquipartitionCheck` measures ``T_g / T_bar``, with
``T_bar`` the dof-weighted mean, :meth:`ProductOfSpheres.mean_temperature`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import sympy as sp

from thermonet.errors import InputError
from thermonet.theory.protocols import Protocol, get_protocol
from thermonet.theory.symbols import N_R, D, rho, rho_g

__all__ = ["ProductOfSpheres"]


def _dims(value: Mapping[str, int] | Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    items = list(value.items()) if isinstance(value, Mapping) else [tuple(v) for v in value]
    out = tuple((str(name), int(size)) for name, size in items)
    if not out:
        raise InputError("a product of spheres needs at least one group")
    if len({name for name, _ in out}) != len(out):
        raise InputError(f"group names must be distinct, got {[name for name, _ in out]}")
    bad = [name for name, size in out if size < 2]
    if bad:
        raise InputError(f"every group needs D_g >= 2 (a sphere of dimension >= 1); {', '.join(bad)} do not")
    return out


@attrs.frozen
class ProductOfSpheres:
    """The groups of a network as ideal gases under one protocol (see the module docstring).

    ``protocol``: a :class:`Protocol` or its name; ``dims``: ``{group name: D_g}`` (or
    pairs), in the order of the store's ``group`` dimension.
    """

    protocol: Protocol = attrs.field(converter=lambda p: get_protocol(p) if isinstance(p, str) else p)
    dims: tuple[tuple[str, int], ...] = attrs.field(converter=_dims)

    # ------------------------------------------------------------------ structure
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.dims)

    @property
    def sizes(self) -> np.ndarray:
        """D_g of every group (int array, group order)."""
        return np.array([size for _, size in self.dims], dtype=np.int64)

    @property
    def dim(self) -> int:
        """D = sum_g D_g."""
        return int(self.sizes.sum())

    @property
    def sphere_dimension(self) -> int:
        """Dimension of the product of spheres, ``D - L``."""
        return self.dim - len(self.dims)

    def gas_constants(self) -> np.ndarray:
        """N_R,g = (D_g - 1)/2 of every group (from the symbol N_R, not retyped)."""
        n_r = sp.lambdify(D, N_R, "numpy")
        return np.asarray(n_r(self.sizes.astype(float)), dtype=float)

    # ------------------------------------------------------------------ the groups together
    def coarse_weight_expr(self) -> sp.Expr:
        """``eta_eff,g rho_g**2 / (eta_eff rho**2)``: 1 for every protocol whose update moves
        all coordinates alike, which makes :meth:`coarse_temperature` an identity."""
        return sp.simplify(self.protocol.group_effective_lr() * rho_g**2 / (self.protocol.effective_lr() * rho**2))

    # ------------------------------------------------------------------ numeric
    def _group_axis(self, values: np.ndarray, axis: int) -> np.ndarray:
        values = np.moveaxis(np.asarray(values, dtype=float), axis, -1)
        if values.shape[-1] != len(self.dims):
            raise InputError(f"expected {len(self.dims)} groups along axis {axis}, got {values.shape[-1]}")
        return values

    def coarse_temperature(self, group_temperature: np.ndarray, axis: int = -1) -> np.ndarray:
        """``sum_g (D_g - 1) T_g / (D - 1)``: the single sphere's temperature (an identity, see the
        module docstring; exact where :meth:`coarse_weight_expr` is 1)."""
        t = self._group_axis(group_temperature, axis)
        return (t * (self.sizes - 1)).sum(-1) / (self.dim - 1)

    def mean_temperature(self, group_temperature: np.ndarray, axis: int = -1) -> np.ndarray:
        """``sum_g (D_g - 1) T_g / sum_g (D_g - 1)``: the temperature every group has under
        equipartition (the dof-weighted mean)."""
        t = self._group_axis(group_temperature, axis)
        return (t * (self.sizes - 1)).sum(-1) / (self.sizes - 1).sum()

    def radius_sde(self, hp: Mapping[str, np.ndarray], radius: np.ndarray, sigma2_group: np.ndarray,
                   pressure: np.ndarray | None = None, axis: int = -1) -> np.ndarray:
        """rho_g from each group's ideal gas with the measured sigma2_g and its own D_g (groups
        along ``axis``; :meth:`Protocol.predicted_group_radius_sde`). The per-group
        temperatures and recursion radii are the protocol's own
        (:meth:`Protocol.group_temperature`, :meth:`Protocol.predicted_group_radius_discrete`)."""
        shape = [1] * np.ndim(sigma2_group)
        shape[axis] = len(self.dims)
        sizes = self.sizes.astype(float).reshape(shape)
        return self.protocol.predicted_group_radius_sde(hp, radius, sigma2_group, sizes, pressure)
