"""Stationary states as arrays: the small helpers every analysis and check shares.

* :func:`hyperparameter_values`, :func:`like` -- hyperparameters and results on a state's grid;
* :func:`seed_mean`, :func:`seed_mean_and_error`, :func:`nan_stats` -- averages over seeds;
* :func:`log_gradient`, :func:`hyperparameter_log_symbols` -- derivatives of the theory's
  state in ``(u, v) = (ln hp1, ln hp2)``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp
import xarray as xr

if TYPE_CHECKING:
    from thermonet.theory.protocols import Protocol

__all__ = ["hyperparameter_log_symbols", "hyperparameter_values", "like", "log_gradient", "nan_stats", "seed_mean",
           "seed_mean_and_error"]


def hyperparameter_values(states: xr.Dataset | xr.DataArray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Hyperparameter coordinates broadcast to the shape (and dim order) of ``states``."""
    template = states if isinstance(states, xr.DataArray) else states["U"]
    return {n: template[n].broadcast_like(template).transpose(*template.dims).values for n in names}


def like(template: xr.DataArray, values: np.ndarray, name: str | None = None) -> xr.DataArray:
    """``values`` as a DataArray with the dims and coordinates of ``template``."""
    return xr.DataArray(np.asarray(values, dtype=float), dims=template.dims, coords=template.coords, name=name)


def seed_mean(states: xr.Dataset) -> xr.Dataset:
    """NaN-skipping mean over ``seed`` (no-op without a seed dimension)."""
    if "seed" not in states.dims:
        return states
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return states.mean("seed", skipna=True, keep_attrs=True)


def nan_stats(values: np.ndarray | xr.DataArray) -> tuple[float, float]:
    """(max, mean) of the finite entries of ``|values|``; NaN when there are none."""
    a = np.abs(np.asarray(values, dtype=float))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan
    return float(a.max()), float(a.mean())


def hyperparameter_log_symbols() -> tuple[sp.Symbol, sp.Symbol]:
    """The (u, v) symbols :meth:`Protocol.maxwell_relation` uses (real ``u``, ``v``)."""
    return sp.Symbol("u", real=True), sp.Symbol("v", real=True)


def log_gradient(protocol: "Protocol", quantity: str, dim: float) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Numeric (d ln X/du, d ln X/dv) of a state variable X of ``protocol.state()``.

    u, v are the logs of the two hyperparameters. Returns ``f(u, v, sigma2)`` giving the
    two derivatives, broadcast to the inputs' shape.
    """
    return _log_gradient(protocol, quantity, float(dim))


@functools.lru_cache(maxsize=64)
def _log_gradient(protocol: "Protocol", quantity: str, dim: float):
    from thermonet.theory.symbols import D, sigma2

    u, v = hyperparameter_log_symbols()
    h1, h2 = protocol.symbols.values()
    expr = sp.log(protocol.state()[quantity].subs({h1: sp.exp(u), h2: sp.exp(v)}).subs(D, sp.nsimplify(dim)))
    du, dv = sp.simplify(sp.diff(expr, u)), sp.simplify(sp.diff(expr, v))
    f_u = sp.lambdify([u, v, sigma2], du, "numpy")
    f_v = sp.lambdify([u, v, sigma2], dv, "numpy")

    def evaluate(u_: np.ndarray, v_: np.ndarray, sigma2_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = np.broadcast_shapes(np.shape(u_), np.shape(v_), np.shape(sigma2_))
        return (np.asarray(f_u(u_, v_, sigma2_), dtype=float) * np.ones(shape),
                np.asarray(f_v(u_, v_, sigma2_), dtype=float) * np.ones(shape))

    return evaluate


#: Degrees of freedom of one member's batch-means standard error (10 batches).
MEMBER_SE_DOF = 9
#: Level of the test that the seeds scatter more than their own errors say.
SCATTER_TEST_LEVEL = 0.01


def seed_mean_and_error(states: xr.Dataset, var: str) -> tuple[xr.DataArray, xr.DataArray]:
    """Seed mean of ``states[var]`` and its standard error.

    Two estimates of the same variance: the members' own standard errors
    ``states[var + "_se"]`` (time-series batch means,
    :func:`thermonet.store.batch_standard_error`, about 9 degrees of freedom each) combined
    as independent, ``sqrt(sum se**2) / n``, and, with two or more seeds, the scatter between
    the seeds, ``std / sqrt(n)`` (``n - 1`` degrees of freedom). They are pooled, weighted by
    their degrees of freedom; when the seeds scatter more than their own errors allow (an F
    test at level 1 %: correlations longer than a batch, seeds in different states) the
    scatter alone is used. One estimate when there is only one; zero when there is neither.
    """
    from scipy import stats

    field = states[var]
    se_name = f"{var}_se"
    se = states[se_name] if se_name in states.data_vars else None
    if "seed" not in field.dims:
        return field, (xr.zeros_like(field) if se is None else se.fillna(0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = field.mean("seed", skipna=True)
        finite = field.notnull()
        count = finite.sum("seed")
        n = count.where(count > 0)
        between_var = (field.var("seed", ddof=1, skipna=True) / n).where(count > 1)
        if se is None:
            return mean, np.sqrt(between_var).fillna(0.0)
        within_var = (se.where(finite) ** 2).sum("seed", skipna=True) / n**2
        dof_w = MEMBER_SE_DOF * n
        dof_b = n - 1
        pooled = (dof_w * within_var + dof_b * between_var.fillna(0.0)) / (dof_w + dof_b.where(count > 1, 0))
        critical = xr.apply_ufunc(lambda d1, d2: stats.f.ppf(1 - SCATTER_TEST_LEVEL, d1, d2),
                                  dof_b.where(count > 1), dof_w)
        scattered = between_var > within_var * critical
        variance = xr.where(scattered, between_var, pooled)
        variance = xr.where(count > 1, variance, within_var)
        error = np.sqrt(variance).fillna(0.0)
    return mean, error
