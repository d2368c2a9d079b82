"""The quadratic entropy surface used by the Maxwell and adiabat checks (THEORY §5).

Measured entropies are noisy, so derivatives are taken from the least-squares surface
``S ~ a + b u + c v + d u**2 + e u v + f v**2`` over the grid, with ``u``, ``v`` the
natural logs of the two hyperparameters **centred on the grid** (``u = ln hp1 - mean``):
then ``(b, c)`` is the gradient at the grid's centre and no coefficient depends on the
units the hyperparameters are given in (THEORY §5's conditions on ``b``, ``c`` are stated
for the gradient; in uncentred logs ``b`` and ``c`` would shift with the units whenever
the surface is curved). Uncertainties come from a bootstrap over seeds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import attrs
import numpy as np
import xarray as xr

__all__ = ["QuadraticSurface", "fit_quadratic_surface", "surface_problem", "log_grid", "bootstrap_over_seeds",
           "COEFFICIENT_NAMES"]

COEFFICIENT_NAMES = ("a", "b", "c", "d", "e", "f")
MIN_POINTS = 7
MIN_DISTINCT = 3


@attrs.frozen
class QuadraticSurface:
    """``S ~ a + b u' + c v' + d u'**2 + e u' v' + f v'**2`` fitted by least squares, with
    ``(u', v') = (u, v) - centre``. Methods take the uncentred ``(u, v)``."""

    coefficients: np.ndarray
    r2: float
    points: int
    residual_std: float
    centre: tuple[float, float] = (0.0, 0.0)
    #: Least-squares operator: ``coefficients = solver @ values[mask]`` (6 x points).
    solver: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)
    #: Which of the flattened input points entered the fit.
    mask: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def named(self) -> dict[str, float]:
        return dict(zip(COEFFICIENT_NAMES, map(float, self.coefficients)))

    def _centred(self, u, v):
        return np.asarray(u, dtype=float) - self.centre[0], np.asarray(v, dtype=float) - self.centre[1]

    def value(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        a, b, c, d, e, f = self.coefficients
        u, v = self._centred(u, v)
        return a + b * u + c * v + d * u**2 + e * u * v + f * v**2

    def gradient(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dS/du, dS/dv)."""
        _, b, c, d, e, f = self.coefficients
        u, v = self._centred(u, v)
        return b + 2 * d * u + e * v, c + e * u + 2 * f * v

    def value_operator(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Matrix mapping the fitted values to the surface's value at the points ``(u, v)``
        (shape ``(u.size, points)``)."""
        u, v = (x.ravel() for x in self._centred(u, v))
        rows = np.stack([np.ones_like(u), u, v, u**2, u * v, v**2], axis=1)
        return rows @ self.solver

    def gradient_operators(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Matrices mapping the fitted values to (dS/du, dS/dv) at the points ``(u, v)``.

        Shapes ``(u.size, points)``: the gradient is linear in the data, so the standard
        error of any linear combination of it follows from the data's standard errors.
        """
        u, v = (x.ravel() for x in self._centred(u, v))
        zero, one = np.zeros_like(u), np.ones_like(u)
        du = np.stack([zero, one, zero, 2 * u, v, zero], axis=1)
        dv = np.stack([zero, zero, one, zero, u, 2 * v], axis=1)
        return du @ self.solver, dv @ self.solver

    def propagated_std(self, operator: np.ndarray, errors: np.ndarray) -> np.ndarray:
        """Standard error of ``operator @ values`` for independent errors of the fitted values."""
        se = np.asarray(errors, dtype=float).ravel()[self.mask]
        se = np.where(np.isfinite(se), se, 0.0)
        return np.sqrt((operator**2) @ se**2)


def log_grid(field: xr.DataArray, hyperparameters: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, values) on the full grid of a 2-D field over the two hyperparameters."""
    first, second = hyperparameters
    field = field.transpose(first, second)
    u, v = np.meshgrid(np.log(field[first].values.astype(float)), np.log(field[second].values.astype(float)),
                       indexing="ij")
    return u, v, np.asarray(field.values, dtype=float)


def surface_problem(u: np.ndarray, v: np.ndarray, values: np.ndarray) -> str | None:
    """Why a quadratic surface cannot be fitted to the finite points, or ``None``."""
    good = np.isfinite(values) & np.isfinite(u) & np.isfinite(v)
    if good.sum() < MIN_POINTS:
        return f"a quadratic surface needs at least {MIN_POINTS} grid points with finite entropy, got {int(good.sum())}"
    for name, x in (("first", u), ("second", v)):
        distinct = np.unique(np.round(x[good], 9)).size
        if distinct < MIN_DISTINCT:
            return (f"a quadratic surface needs at least {MIN_DISTINCT} values of the {name} hyperparameter, "
                    f"got {distinct}")
    return None


def fit_quadratic_surface(u: np.ndarray, v: np.ndarray, values: np.ndarray) -> QuadraticSurface:
    """Least-squares quadratic surface through the finite points, in coordinates centred on them."""
    u, v, values = (np.asarray(x, dtype=float).ravel() for x in (u, v, values))
    good = np.isfinite(values) & np.isfinite(u) & np.isfinite(v)
    centre = (float(np.mean(u[good])), float(np.mean(v[good]))) if good.any() else (0.0, 0.0)
    u, v, y = u[good] - centre[0], v[good] - centre[1], values[good]
    design = np.stack([np.ones_like(u), u, v, u**2, u * v, v**2], axis=1)
    # Scale columns for conditioning, solve, then undo the scaling.
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    solver = np.linalg.pinv(design / scale) / scale[:, None]
    coef = solver @ y
    fitted = design @ coef
    rss = float(((y - fitted) ** 2).sum())
    tss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - rss / tss if tss > 0 else math.nan
    dof = max(y.size - 6, 1)
    return QuadraticSurface(coefficients=coef, r2=r2, points=int(y.size), residual_std=math.sqrt(rss / dof),
                            centre=centre, solver=solver, mask=good)


def bootstrap_over_seeds(field: xr.DataArray, statistic: Callable[[xr.DataArray], dict[str, float]],
                         replicates: int = 200, rng: int = 0) -> dict[str, float]:
    """Bootstrap standard errors of ``statistic(seed-mean field)`` resampling seeds.

    Returns ``{name + "_err": std}``; empty when there is no ``seed`` dimension or only
    one seed. Replicates whose statistic raises or is non-finite are dropped.
    """
    if "seed" not in field.dims or field.sizes["seed"] < 2 or replicates < 2:
        return {}
    generator = np.random.default_rng(rng)
    n = field.sizes["seed"]
    samples: dict[str, list[float]] = {}
    for _ in range(replicates):
        pick = generator.integers(0, n, size=n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = field.isel(seed=pick).mean("seed", skipna=True)
        try:
            values = statistic(mean)
        except (ValueError, np.linalg.LinAlgError):
            continue
        for k, x in values.items():
            samples.setdefault(k, []).append(float(x))
    out = {}
    for k, xs in samples.items():
        a = np.asarray(xs)
        a = a[np.isfinite(a)]
        out[f"{k}_err"] = float(a.std(ddof=1)) if a.size >= 2 else math.nan
    return out
