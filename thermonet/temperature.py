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
  (:data:`TREND_EXPRESSIONS`: ``eta lambda``, ``eta~`` or ``eta/rho_0**2``) by least
  squares in log-log space (:func:`fit_power_law`, :func:`noise_trend`), plus the
  unconstrained two-exponent fit ``sigma**2 = A hp1**b hp2**c`` that tells whether the
  noise really depends on the hyperparameters through ``x`` only;
* reports it as a check, :class:`NoiseTrendCheck` (``noise-trend``): the isotropic model
  has constant noise, so the slope must vanish; a network that fails it needs the
  measured temperature (the ideal gas with one constant noise level does not describe
  it; see ``thermonet fit-eos``).

>>> import thermonet
>>> from thermonet.temperature import noise_trend
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

from thermonet.checks.base import Check, CheckResult, hyperparameter_values, nonnegative_tolerance
from thermonet.errors import InputError
from thermonet.store import MeasuredStates, as_measured
from thermonet.theory.symbols import HYPERPARAMETER_SYMBOLS, eta, eta_tilde, lam, rho0

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from thermonet.theory.protocols import Protocol

__all__ = [
    "NoiseTrend",
    "NoiseTrendCheck",
    "PowerLawTrend",
    "TREND_EXPRESSIONS",
    "fit_power_law",
    "measured_temperature",
    "noise_trend",
    "trend_variable",
    "unit_noise_temperature",
]

#: The combination of hyperparameters the noise level depends on, per protocol (paper 004,
#: §7.3 and appendix F): eta*lambda (fixed LR), eta~ (fixed ELR), eta/rho_0**2 (fixed sphere).
TREND_EXPRESSIONS: dict[str, sp.Expr] = {
    "fixed-lr": eta * lam,
    "fixed-elr": eta_tilde,
    "fixed-sphere": eta / rho0**2,
}


def _store_name(expr: sp.Expr) -> str:
    names = {sym: sp.Symbol(name) for name, sym in HYPERPARAMETER_SYMBOLS.items()}
    return sp.sstr(expr.subs(names))


def trend_variable(protocol: "Protocol", hp: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """(name, values) of the protocol's trend variable on hyperparameter arrays ``hp``.

    The name is written in store names, e.g. ``"lr*wd"`` or ``"lr/sphere_radius**2"``.
    """
    try:
        expr = TREND_EXPRESSIONS[protocol.name]
    except KeyError:
        raise InputError(f"no noise trend variable is known for protocol {protocol.name!r}") from None
    names = protocol.hyperparameters
    fn = sp.lambdify([HYPERPARAMETER_SYMBOLS[n] for n in names], expr, "numpy")
    args = [np.asarray(hp[n], dtype=float) for n in names]
    values = np.asarray(fn(*args), dtype=float) * np.ones(np.broadcast_shapes(*(a.shape for a in args)))
    return _store_name(expr), values


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


# ---------------------------------------------------------------------- power-law fits
@attrs.frozen(kw_only=True)
class PowerLawTrend:
    """``y = prefactor * x**slope`` fitted by least squares to ``ln y = ln A + slope ln x``.

    ``slope_se`` and ``prefactor_se`` are the usual least-squares standard errors (the
    prefactor's from that of ``ln A`` by the delta method); ``r2`` is that of the log-log
    fit (NaN when ``ln y`` does not vary at all).
    """

    slope: float
    slope_se: float
    prefactor: float
    prefactor_se: float
    r2: float
    residual_std: float
    n: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=float) ** self.slope

    def as_dict(self) -> dict[str, float]:
        return {"slope": self.slope, "slope_se": self.slope_se, "prefactor": self.prefactor,
                "prefactor_se": self.prefactor_se, "r2": self.r2, "residual_std": self.residual_std,
                "n": float(self.n)}


def _least_squares(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Coefficients, their standard errors, R2 and the residual std of an OLS fit."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    n, k = design.shape
    rss = float(resid @ resid)
    tss = float(((y - y.mean()) ** 2).sum())
    dof = n - k
    scale = rss / dof if dof > 0 else math.nan
    try:
        cov = np.linalg.pinv(design.T @ design) * scale
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:  # pragma: no cover - pinv does not raise for finite input
        se = np.full(k, math.nan)
    # a relative tolerance: ln y constant to rounding counts as constant
    r2 = 1.0 - rss / tss if tss > 1e-24 * max(1.0, float(y @ y)) else math.nan
    return coef, se, r2, math.sqrt(scale) if dof > 0 else math.nan


def fit_power_law(x: np.ndarray, y: np.ndarray) -> PowerLawTrend:
    """Fit ``y = A x**slope`` to the finite, positive pairs (least squares in log-log)."""
    x, y = (np.asarray(a, dtype=float).ravel() for a in (x, y))
    if x.shape != y.shape:
        raise InputError(f"x and y must have equal sizes, got {x.size} and {y.size}")
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[good]), np.log(y[good])
    if lx.size < 3:
        raise InputError(f"a power-law trend needs at least 3 points with finite positive values, got {lx.size}")
    if np.unique(np.round(lx, 9)).size < 2:
        raise InputError("a power-law trend needs at least 2 distinct values of the trend variable")
    design = np.stack([np.ones_like(lx), lx], axis=1)
    (log_a, slope), (log_a_se, slope_se), r2, resid = _least_squares(design, ly)
    prefactor = float(np.exp(log_a))
    return PowerLawTrend(slope=float(slope), slope_se=float(slope_se), prefactor=prefactor,
                         prefactor_se=float(prefactor * log_a_se), r2=float(r2), residual_std=float(resid),
                         n=int(lx.size))


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
        ``sigma2 = A * variable**beta`` over all members.
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
    trend: PowerLawTrend
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
        from thermonet.checks.base import json_safe

        return json_safe({"protocol": self.protocol, "dim": self.dim, "variable": self.variable,
                          "trend": self.trend.as_dict(), "exponents": self.exponents})

    def plot(self, ax: "Axes | None" = None) -> "Figure":
        """sigma2 of every member against the trend variable (log-log) with the fitted power law."""
        from thermonet.plotting import axes_or_new

        fig, ax = axes_or_new(ax)
        _plot_trend(self, ax)
        return fig


def _plot_trend(trend: NoiseTrend, ax) -> None:
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
        coef, se, r2, _ = _least_squares(design, np.log(y[good]))
        exponents = {hps[0]: float(coef[1]), hps[1]: float(coef[2]), f"{hps[0]}_se": float(se[1]),
                     f"{hps[1]}_se": float(se[2]), "r2": float(r2)}
    else:
        exponents = {hps[0]: math.nan, hps[1]: math.nan, f"{hps[0]}_se": math.nan, f"{hps[1]}_se": math.nan,
                     "r2": math.nan}
    data = {"sigma2": sig2, "x": xr.DataArray(x, dims=sig2.dims, coords=sig2.coords),
            "T": st["T"].transpose(*order), "T_unit": unit_noise_temperature(protocol, st).transpose(*order)}
    return NoiseTrend(protocol=protocol.name, dim=float(m.dim), variable=name, trend=trend, exponents=exponents,
                      states=xr.Dataset(data))


# ---------------------------------------------------------------------- the check
@attrs.frozen(kw_only=True)
class NoiseTrendCheck(Check):
    """Constant noise level (the theory's assumption behind one temperature scale).

    Fits ``sigma2 = A x**beta`` over all members, ``x`` the protocol's trend variable
    (``eta lambda``, ``eta~``, ``eta/rho_0**2``). Key figure ``abs_slope_beyond_noise``:
    ``|beta|`` less ``z`` of its standard errors (``z = 3``; ``z = 0`` for the raw slope);
    default tolerance 0.05. The isotropic model passes (sigma2 is constant). A network
    that fails it is not an ideal gas with one constant noise level: its temperature
    must come from the measured sigma2 (as ``stationary()`` computes it), and
    ``thermonet fit-eos`` compares real-gas equations of state on it.
    """

    name: ClassVar[str] = "noise-trend"
    description: ClassVar[str] = ("measured noise level sigma2 against eta*lambda (fixed LR), eta~ (fixed ELR) "
                                  "or eta/rho_0**2 (fixed sphere): power-law slope, expected 0")
    requires: ClassVar[tuple[str, ...]] = ("sigma2", "rho")

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        try:
            noise_trend(measured, states=states)
        except InputError as exc:
            return str(exc)
        return None

    def _run(self, measured, states) -> CheckResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            trend = noise_trend(measured, states=states)
        t = trend.trend
        se = t.slope_se if math.isfinite(t.slope_se) else 0.0
        beyond = max(abs(t.slope) - self.z * se, 0.0)
        numbers = {"abs_slope_beyond_noise": beyond, "slope": t.slope, "slope_se": t.slope_se,
                   "prefactor": t.prefactor, "prefactor_se": t.prefactor_se, "r2": t.r2,
                   "residual_std": t.residual_std, "members": float(t.n)}
        for k, value in trend.exponents.items():
            numbers[f"exponent_{k}" if not k == "r2" else "exponents_r2"] = value
        passed = beyond <= self.tolerance
        verdict = ("constant, as the theory assumes" if passed
                   else "not constant: use the measured temperature / a real-gas fit")
        summary = (f"sigma2 ~ ({trend.variable})^{t.slope:.3g} +/- {t.slope_se:.2g} (beyond {self.z:g} s.e. "
                   f"{beyond:.3g} {'<=' if passed else '>'} {self.tolerance:g}): noise level {verdict}")
        details = {"sigma2": trend.states["sigma2"], "x": trend.states["x"], "T": trend.states["T"],
                   "T_unit": trend.states["T_unit"]}

        def plotter(result, ax, trend=trend):
            _plot_trend(trend, ax)

        return self._result(passed=passed, key="abs_slope_beyond_noise", numbers=numbers, summary=summary,
                            details=details, plotter=plotter,
                            context={"variable": trend.variable, "hyperparameters": list(trend.hyperparameters)})
