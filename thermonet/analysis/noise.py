"""Temperature from the measured gradient noise, and the trend of the noise level.

The theory (THEORY §3) puts ``T = eta_eff sigma**2 / 2`` with one constant noise level
``sigma**2``. For networks the measured ``sigma**2 = tr Sigma(x)/(D-1)`` (THEORY §9) is
not constant: the paper (004, §7.3 and appendix F) finds it depends on ``eta lambda``
under fixed LR and on ``eta~`` under fixed ELR and on the fixed sphere. This module

* gives the temperature of every member from its measured noise
  (:func:`measured_temperature`, the ``T`` of ``ds.thermo.stationary()``) and the
  temperature at unit noise ``eta_eff / 2`` (:func:`unit_noise_temperature`, used by the
  equation-of-state fits, which fit one constant ``sigma0**2`` instead);
* fits the power law ``sigma**2 = A x**beta`` with ``x`` the protocol's trend variable
  (:meth:`Protocol.noise_trend_expr`: the combination left invariant by the protocol's
  rescaling symmetry, ``eta lambda``, ``eta~`` or ``eta/rho_0**2``) by least squares in
  log-log space (:func:`thermonet.analysis.power_law.fit_power_law`, :func:`noise_trend`),
  plus the unconstrained two-exponent fit ``sigma**2 = A hp1**b hp2**c`` that tells
  whether the noise really depends on the hyperparameters through ``x`` only.

The check built on it is :class:`thermonet.checks.noise_trend.NoiseTrendCheck`
(``noise-trend``).

>>> import thermonet
>>> from thermonet.analysis.noise import noise_trend
>>> trend = noise_trend(thermonet.open_run("runs/fixed-lr.zarr"))   # doctest: +SKIP
>>> print(trend.summary())                                           # doctest: +SKIP
sigma2 = 1 * (lr*wd)**0 ...
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import numpy as np
import sympy as sp
import xarray as xr

from thermonet.analysis.power_law import PowerLaw, fit_power_law, least_squares
from thermonet.analysis.states import hyperparameter_values
from thermonet.base.jsonsafe import json_safe
from thermonet.errors import InputError
from thermonet.store import MeasuredStates, as_measured

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from thermonet.theory.protocols import Protocol

__all__ = [
    "NoiseTrend",
    "measured_temperature",
    "noise_trend",
    "trend_variable",
    "unit_noise_temperature",
]


def trend_variable(protocol: "Protocol", hp: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """(name, values) of the protocol's trend variable (:meth:`Protocol.noise_trend_expr`) on
    hyperparameter arrays ``hp``. The name is written in store names, e.g. ``"lr*wd"`` or
    ``"lr/sphere_radius**2"``."""
    expr = protocol.noise_trend_expr()
    name = sp.sstr(expr.subs({sym: sp.Symbol(n) for n, sym in protocol.symbols.items()}))
    return name, protocol.numeric(expr)(hp)


def measured_temperature(measured: MeasuredStates | xr.Dataset, window: float | int = 0.5) -> xr.DataArray:
    """T = eta_eff sigma**2 / 2 of every member, with its measured radius and noise level.

    The same numbers as ``stationary(window)["T"]``; returned over (hyperparameters..., seed).
    """
    m = as_measured(measured)
    return m.stationary(window)["T"].rename("T")


def unit_noise_temperature(protocol: "Protocol", states: xr.Dataset) -> xr.DataArray:
    """T at unit noise level, ``eta_eff / 2`` (with the measured radius under fixed LR).

    Multiplied by a constant ``sigma0**2`` this is the temperature of the theory's
    constant-noise gas; :mod:`thermonet.eos_fit` fits that constant.
    """
    hp = hyperparameter_values(states["rho"], tuple(protocol.hyperparameters))
    values = protocol.temperature(hp, states["rho"].values, np.ones(states["rho"].shape))
    return xr.DataArray(values, dims=states["rho"].dims, coords=states["rho"].coords, name="T_unit")


# ---------------------------------------------------------------------- the noise trend of a run
@attrs.frozen(kw_only=True)
class NoiseTrend:
    """The measured noise level of every member and its power-law trend.

    Attributes
    ----------
    protocol, dim:
        Of the run.
    variable:
        The trend variable in store names (``"lr*wd"``, ``"elr"``, ``"lr/sphere_radius**2"``).
    trend:
        ``sigma2 = A * variable**beta`` over all members (:class:`PowerLaw`).
    exponents:
        The two-exponent fit ``sigma2 = A hp1**b hp2**c``: ``{hp1: b, hp2: c}`` with
        ``*_se`` standard errors and ``r2``. Under fixed LR a dependence on ``eta lambda``
        only means ``b = c``; under fixed ELR ``c = 0``; on the sphere ``c = -2 b``.
    states:
        Per member (hyperparameters..., seed): ``sigma2``, the trend variable ``x``,
        ``T`` (measured-noise temperature) and ``T_unit`` (``eta_eff/2``).
    """

    protocol: str
    dim: float
    variable: str
    trend: PowerLaw
    exponents: dict[str, float]
    states: xr.Dataset = attrs.field(repr=False)

    @property
    def hyperparameters(self) -> tuple[str, str]:
        return tuple(d for d in self.states["sigma2"].dims if d != "seed")  # type: ignore[return-value]

    def summary(self) -> str:
        t = self.trend
        h1, h2 = self.hyperparameters
        e = self.exponents
        r2 = "n/a (sigma2 constant)" if not math.isfinite(t.r2) else f"{t.r2:.4f}"
        return (f"sigma2 = {t.prefactor:.4g} * ({self.variable})^{t.slope:.4f} (+/- {t.slope_se:.2g}), R2 {r2}, "
                f"{t.n} members; two-exponent fit: {h1}^{e[h1]:.3f} {h2}^{e[h2]:.3f}")

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"protocol": self.protocol, "dim": self.dim, "variable": self.variable,
                          "trend": self.trend.as_dict(), "exponents": self.exponents})

    def plot(self, ax: "Axes | None" = None) -> "Figure":
        """sigma2 of every member against the trend variable (log-log) with the fitted power law."""
        from thermonet.base.plotting import axes_or_new

        fig, ax = axes_or_new(ax)
        plot_trend(self, ax)
        return fig


def plot_trend(trend: NoiseTrend, ax) -> None:
    """sigma2 of every member against the trend variable, one colour per second hyperparameter."""
    st = trend.states
    h1, h2 = trend.hyperparameters
    second = st[h2].values
    x = st["x"].transpose(h1, h2, ...).values
    y = st["sigma2"].transpose(h1, h2, ...).values
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    for j, value in enumerate(second):
        color = cmap(j / max(len(second) - 1, 1))
        ax.plot(x[:, j].ravel(), y[:, j].ravel(), "o", ms=4, color=color,
                label=f"{h2}={value:.3g}" if len(second) <= 8 or j in (0, len(second) - 1) else None)
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if good.any():
        xs = np.geomspace(x[good].min(), x[good].max(), 50)
        t = trend.trend
        ax.plot(xs, t.predict(xs), "k-", lw=1.2,
                label=f"{t.prefactor:.3g} x^{t.slope:.3f} (+/- {t.slope_se:.2g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"x = {trend.variable}")
    ax.set_ylabel("measured noise level sigma2")
    ax.legend(fontsize=7, ncol=2)


def noise_trend(measured: MeasuredStates | xr.Dataset, window: float | int = 0.5,
                states: xr.Dataset | None = None) -> NoiseTrend:
    """Measured noise level per member and its power-law trend (see :class:`NoiseTrend`).

    ``states`` (the run's ``stationary(window)``) may be passed to avoid recomputing it.
    Raises :class:`InputError` when fewer than 3 members have a finite positive sigma2 or
    the trend variable takes fewer than 2 values.
    """
    m = as_measured(measured)
    protocol = m.protocol
    st = m.stationary(window) if states is None else states
    hps = tuple(protocol.hyperparameters)
    order = [*hps, *(["seed"] if "seed" in st["sigma2"].dims else [])]
    sig2 = st["sigma2"].transpose(*order)
    hp = hyperparameter_values(sig2, hps)
    name, x = trend_variable(protocol, hp)
    trend = fit_power_law(x, sig2.values)

    y = sig2.values.ravel()
    good = np.isfinite(y) & (y > 0)
    u, v = (np.log(hp[n].ravel()[good]) for n in hps)
    design = np.stack([np.ones_like(u), u, v], axis=1)
    exponents: dict[str, float] = {}
    if good.sum() > 3 and np.unique(np.round(u, 9)).size > 1 and np.unique(np.round(v, 9)).size > 1:
        coef, se, r2, _ = least_squares(design, np.log(y[good]))
        exponents = {hps[0]: float(coef[1]), hps[1]: float(coef[2]), f"{hps[0]}_se": float(se[1]),
                     f"{hps[1]}_se": float(se[2]), "r2": float(r2)}
    else:
        exponents = {hps[0]: math.nan, hps[1]: math.nan, f"{hps[0]}_se": math.nan, f"{hps[1]}_se": math.nan,
                     "r2": math.nan}
    data = {"sigma2": sig2, "x": xr.DataArray(x, dims=sig2.dims, coords=sig2.coords),
            "T": st["T"].transpose(*order), "T_unit": unit_noise_temperature(protocol, st).transpose(*order)}
    return NoiseTrend(protocol=protocol.name, dim=float(m.dim), variable=name, trend=trend, exponents=exponents,
                      states=xr.Dataset(data))
