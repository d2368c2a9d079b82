"""V4: the measured entropy is constant along the theory's adiabats.

The adiabat comes from a :class:`thermonet.theory.system.ThermodynamicSystem` (energy
model + protocol + equation of state). In hyperparameter coordinates
``(u, v) = (ln hp1, ln hp2)`` the predicted entropy gradient is

    grad S = C_V(T) grad ln T + V (dS_conf/dV) grad ln V,

with ``grad ln T``, ``grad ln V`` from ``Protocol.state()`` (SymPy), ``C_V`` from the
energy model's heat capacity at the measured temperature and ``S_conf(V)`` the system's
configurational entropy (``(D-1)/2 ln 2V`` for the ideal gas). The adiabat direction is
perpendicular to it. For the ideal gas at high concentration this is THEORY §6: fixed LR
at constant eta, fixed ELR at constant eta~**2/lambda, fixed sphere at constant eta (the
invariant reported comes from ``ThermodynamicSystem.adiabat()``).

The measured gradient is taken from the quadratic entropy surface
(:mod:`thermonet.checks.surface`). At each grid point the check compares the measured
slope along the adiabat with the slope across it. A fit-free view is reported as well:
group the grid points by the adiabatic coordinate ``xi = n . (u, v)`` (n the mean unit
normal to the adiabats) and compare the spread of S within groups (along adiabats) with
the spread of the group means (across adiabats).
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import attrs
import numpy as np
import sympy as sp
import xarray as xr

from thermonet.checks.base import (
    Check,
    CheckResult,
    assumes_loss_is_energy,
    hyperparameter_log_symbols,
    log_mesh,
    nan_stats,
    nonnegative_count,
    nonnegative_tolerance,
    seed_mean,
    seed_mean_and_error,
)
from thermonet.analysis.surface import (
    QuadraticSurface,
    bootstrap_over_seeds,
    fit_quadratic_surface,
    log_grid,
    surface_problem,
)
from thermonet.analysis.systems import default_system
from thermonet.errors import InputError
from thermonet.theory.symbols import D, V, sigma2

__all__ = ["AdiabatCheck", "NoiseTrendAdiabatCheck", "default_system"]


@functools.lru_cache(maxsize=32)
def _gradient_parts(system):
    """Numeric derivatives of ln T and ln V by (u, v, ln sigma2), and V dS_conf/dV, for a system.

    Returns ``((T_u, T_v, T_s, V_u, V_v, V_s), V dS_conf/dV)``, each a function of
    ``(u, v, sigma2)`` (of ``V`` for the last).
    """
    protocol = system.protocol
    state = protocol.state(system.eos)
    u, v = hyperparameter_log_symbols()
    s = sp.Symbol("s", real=True)  # ln sigma2
    h1, h2 = protocol.symbols.values()
    dim = sp.nsimplify(system.dim)
    parts = []
    for name in ("T", "V"):
        expr = sp.log(state[name].subs({h1: sp.exp(u), h2: sp.exp(v), sigma2: sp.exp(s)}).subs(D, dim))
        for var in (u, v, s):
            derivative = sp.simplify(sp.diff(expr, var)).subs(s, sp.log(sigma2))
            parts.append(sp.lambdify([u, v, sigma2], derivative, "numpy"))
    conf = system.configurational_entropy_expr().subs(D, dim)
    v_dsdv = sp.lambdify([V], sp.simplify(V * sp.diff(conf, V)), "numpy")
    return parts, v_dsdv


def _invariant(system) -> str | None:
    """The high-concentration adiabatic invariant from ``ThermodynamicSystem.adiabat()``, in store names."""
    from thermonet.theory.system import IsotropicNoiseSystem

    try:
        hc = IsotropicNoiseSystem.create(system.protocol, system.dim, math.sqrt(system.sigma2), high_concentration=True)
        invariant = hc.adiabat().get("invariant")
    except (InputError, ValueError, TypeError, NotImplementedError):
        return None
    if invariant is None:
        return None
    names = {sym: sp.Symbol(n) for n, sym in system.protocol.symbols.items()}
    return f"{sp.sstr(invariant.subs(names))} = const"


def _groups(xi: np.ndarray, bins: int) -> np.ndarray:
    """Group labels: equal xi (to rounding) when that pairs up most points, else equal-width bins."""
    span = float(np.ptp(xi)) if xi.size else 0.0
    if span == 0:
        return np.zeros(xi.size, dtype=int)
    _, labels, counts = np.unique(np.round(xi / span, 7), return_inverse=True, return_counts=True)
    labels = labels.ravel()
    if (counts[labels] >= 2).mean() >= 0.5:
        return labels
    edges = np.linspace(xi.min(), xi.max(), max(bins, 2) + 1)
    return np.clip(np.digitize(xi, edges[1:-1]), 0, max(bins, 2) - 1)


def spread_ratio(S: np.ndarray, xi: np.ndarray, bins: int) -> float:
    """Pooled std of S within groups of equal xi over the std of the group means."""
    good = np.isfinite(S) & np.isfinite(xi)
    S, xi = S[good], xi[good]
    labels = _groups(xi, bins)
    within, dof, means = 0.0, 0, []
    for g in np.unique(labels):
        s = S[labels == g]
        means.append(s.mean())
        if s.size >= 2:
            within += float(((s - s.mean()) ** 2).sum())
            dof += s.size - 1
    if dof == 0 or len(means) < 2:
        return math.nan
    across = float(np.std(means, ddof=1))
    return math.sqrt(within / dof) / across if across > 0 else math.inf


def _plot_adiabats(result: CheckResult, ax) -> None:
    S = result.details["S"]
    hps = result.context["hyperparameters"]
    x, y = S[hps[0]].values, S[hps[1]].values
    mesh = log_mesh(ax, x, y, S.transpose(hps[1], hps[0]).values, cmap="viridis")
    ax.get_figure().colorbar(mesh, ax=ax, label="entropy S (nats, seed mean)")
    coefficients = result.details.get("surface_coefficients")
    if coefficients is not None:
        surface = QuadraticSurface(coefficients=np.asarray(coefficients), r2=np.nan, points=0, residual_std=np.nan,
                                   centre=tuple(coefficients.attrs.get("centre", (0.0, 0.0))))
        fu, fv = np.meshgrid(np.linspace(np.log(x.min()), np.log(x.max()), 80),
                             np.linspace(np.log(y.min()), np.log(y.max()), 80))
        ax.contour(np.exp(fu), np.exp(fv), surface.value(fu, fv), levels=10, colors="k", linewidths=0.6,
                   linestyles="solid")
    au = result.details["adiabat_du"].transpose(hps[1], hps[0]).values
    av = result.details["adiabat_dv"].transpose(hps[1], hps[0]).values
    lu, lv = np.log(x), np.log(y)
    step = 0.35 * min(np.min(np.diff(lu)) if lu.size > 1 else 1.0, np.min(np.diff(lv)) if lv.size > 1 else 1.0)
    for i, vv in enumerate(lv):
        for j, uu in enumerate(lu):
            if np.isfinite(au[i, j]) and np.isfinite(av[i, j]):
                ax.plot(np.exp([uu - step * au[i, j], uu + step * au[i, j]]),
                        np.exp([vv - step * av[i, j], vv + step * av[i, j]]), "w-", lw=1.2)
    ax.plot([], [], "w-", label="theory adiabat direction")
    ax.plot([], [], "k-", lw=0.6, label="contours of fitted S")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(hps[0])
    ax.set_ylabel(hps[1])
    ax.legend(fontsize=7, loc="upper left", facecolor="0.8")


@attrs.frozen(kw_only=True)
class AdiabatCheck(Check, name="adiabat"):
    """Entropy constant along the theory's adiabats (V4).

    Key figure ``slope_ratio_mean``: the mean over the grid of
    ``|dS along the adiabat| / |dS across it|`` from the quadratic entropy surface (the
    tangent of the angle between the measured and the predicted entropy gradient), with
    its standard error (propagated from those of S; the mean of the points' errors, since
    they share one fit); default tolerance 0.1, ``z = 3``.
    ``system`` overrides the theory system (default :func:`default_system`).

    Evidence: theory. On a network the heat capacity comes from the training loss, which
    assumes U = L (isotropic noise, paper 004 §7.1).
    """

    description: ClassVar[str] = "entropy constant along the theory's adiabats in hyperparameter space"
    requires: ClassVar[tuple[str, ...]] = ("S", "T", "V")
    evidence_reason: ClassVar[str] = "the adiabats follow from the equation of state and the heat capacity"

    def evidence_of(self, measured):
        return "theory", assumes_loss_is_energy(measured, self.evidence_reason)

    tolerance: float = attrs.field(default=0.1, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)
    system: object | None = None
    bootstrap: int = attrs.field(default=200, validator=nonnegative_count)
    noise_trend: bool = False

    def applicability(self, measured, states):
        u, v, values = log_grid(seed_mean(states)["S"], tuple(measured.protocol.hyperparameters))
        return surface_problem(u, v, values)

    def _predicted_normal(self, system, u, v, T, Vol, s2, trend: tuple[float, float] = (0.0, 0.0)):
        """Unit normal to the adiabats (direction of the predicted grad S) at each point, and C_V.

        ``trend = (b, c)``: the noise level varies as ``sigma2 ∝ hp1**b hp2**c``, which adds
        ``b``, ``c`` times the ln-sigma2 derivatives of ln T and ln V (chain rule).
        """
        (tu, tv, ts, vu, vv, vs), v_dsdv = _gradient_parts(system)
        shape = u.shape
        b, c = trend
        d_t, d_v = (np.asarray(f(u, v, s2), dtype=float) * np.ones(shape) for f in (ts, vs))
        grad = [np.asarray(f(u, v, s2), dtype=float) * np.ones(shape) + extra
                for f, extra in ((tu, b * d_t), (tv, c * d_t), (vu, b * d_v), (vv, c * d_v))]
        good = np.isfinite(T) & (T > 0)
        c_v = np.full(shape, np.nan)
        if good.any():
            c_v[good] = system.energy.heat_capacity(T[good])
        conf = np.asarray(v_dsdv(Vol), dtype=float) * np.ones(shape)
        gu = c_v * grad[0] + conf * grad[2]
        gv = c_v * grad[1] + conf * grad[3]
        norm = np.hypot(gu, gv)
        with np.errstate(invalid="ignore", divide="ignore"):
            return gu / norm, gv / norm, c_v

    def statistics(self, S: xr.DataArray, hps, nu, nv, mean_normal, S_se: xr.DataArray | None = None
                   ) -> tuple[dict, dict]:
        """Numbers and maps for one seed-averaged entropy field (hp1, hp2).

        With ``S_se`` the slope along the adiabat gets a standard error (linear propagation
        through the fit) and the key figure counts only the part beyond ``z`` of them.
        """
        u, v, values = log_grid(S, hps)
        surface = fit_quadratic_surface(u, v, values)
        gu, gv = surface.gradient(u, v)
        across = gu * nu + gv * nv
        along = -gu * nv + gv * nu  # adiabat direction a = (-n_v, n_u)
        if S_se is not None:
            op_u, op_v = surface.gradient_operators(u, v)
            operator = -nv.ravel()[:, None] * op_u + nu.ravel()[:, None] * op_v
            noise = surface.propagated_std(operator, log_grid(S_se, hps)[2]).reshape(u.shape)
        else:
            noise = np.zeros(u.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.abs(along) / np.abs(across)
            ratio_se = noise / np.abs(across)
        ratio = np.where(np.isfinite(values), ratio, np.nan)
        ratio_se = np.where(np.isfinite(values), ratio_se, np.nan)
        worst, mean = nan_stats(ratio)
        finite = np.isfinite(ratio) & np.isfinite(ratio_se)
        # the slopes of neighbouring points share the fit: their errors are not independent,
        # so the mean's error is taken as the mean of the errors (no 1/sqrt(n))
        mean_se = float(np.mean(ratio_se[finite])) if finite.any() else np.nan
        xi = mean_normal[0] * u + mean_normal[1] * v
        bins = len(np.unique(np.round(u, 9)))
        numbers = {"slope_ratio_mean_se": mean_se,
                   "slope_ratio_mean": mean, "slope_ratio_max": worst,
                   "angle_deg_mean": float(np.degrees(np.nanmean(np.arctan(ratio)))),
                   "spread_ratio": spread_ratio(values.ravel(), xi.ravel(), bins),
                   "r2": surface.r2}
        maps = {"fitted": surface.value(u, v), "ratio": ratio, "along": along, "across": across,
                "coefficients": surface.coefficients, "centre": surface.centre}
        return numbers, maps

    def _run(self, measured, states):
        protocol = measured.protocol
        hps = tuple(protocol.hyperparameters)
        system = self.system if self.system is not None else default_system(measured, states)
        sm = seed_mean(states)
        S = sm["S"].transpose(*hps)
        u, v, _ = log_grid(S, hps)
        _, _, T = log_grid(sm["T"], hps)
        _, _, Vol = log_grid(sm["V"], hps)
        _, _, s2 = log_grid(sm["sigma2"], hps) if "sigma2" in sm else (None, None, np.full(u.shape, system.sigma2))
        trend, trend_text = (0.0, 0.0), ""
        if self.noise_trend:
            from thermonet.analysis.noise import noise_trend

            exponents = noise_trend(measured, states=states).exponents
            trend = (exponents[hps[0]], exponents[hps[1]])
            if not all(np.isfinite(trend)):
                raise InputError("adiabat with the noise trend: the grid is too small to fit sigma2 ~ hp1^b hp2^c")
            trend_text = f"; noise trend sigma2 ~ {hps[0]}^{trend[0]:.3g} {hps[1]}^{trend[1]:.3g}"
        nu, nv, c_v = self._predicted_normal(system, u, v, T, Vol, s2, trend)
        mean_normal = np.array([np.nanmean(nu), np.nanmean(nv)])
        mean_normal = mean_normal / np.hypot(*mean_normal)
        S_se = seed_mean_and_error(states, "S")[1].transpose(*hps)
        numbers, maps = self.statistics(S, hps, nu, nv, mean_normal, S_se)
        numbers["heat_capacity_mean"] = float(np.nanmean(c_v))

        def stat(field):
            nums, _ = self.statistics(field.transpose(*hps), hps, nu, nv, mean_normal)
            return {k: nums[k] for k in ("slope_ratio_mean", "slope_ratio_max", "spread_ratio")}

        numbers.update(bootstrap_over_seeds(states["S"], stat, replicates=self.bootstrap))
        key = "slope_ratio_mean"
        invariant = None if self.noise_trend else _invariant(system)
        where = f" ({invariant})" if invariant else trend_text
        summary = (f"slope of S along/across the adiabat{where}: mean {numbers[key]:.3g} +/- "
                   f"{numbers['slope_ratio_mean_se']:.2g} (tolerance {self.tolerance:g}), max "
                   f"{numbers['slope_ratio_max']:.3g}; spread ratio {numbers['spread_ratio']:.3g}")
        coords = {h: S[h].values for h in hps}

        def grid(values, name):
            return xr.DataArray(values, dims=hps, coords=coords, name=name)

        details = {"S": S, "S_fitted": grid(maps["fitted"], "S_fitted"),
                   "slope_ratio": grid(maps["ratio"], "slope_ratio"),
                   "slope_along": grid(maps["along"], "slope_along"),
                   "slope_across": grid(maps["across"], "slope_across"),
                   "adiabat_du": grid(-nv, "adiabat_du"), "adiabat_dv": grid(nu, "adiabat_dv"),
                   "heat_capacity": grid(c_v, "heat_capacity"),
                   "surface_coefficients": xr.DataArray(maps["coefficients"], dims="coefficient",
                                                        coords={"coefficient": list("abcdef")},
                                                        attrs={"centre": list(maps["centre"])})}
        context = {"hyperparameters": list(hps), "system": type(system).__name__,
                   "energy": type(system.energy).__name__, "adiabat": invariant,
                   "adiabatic_coordinate": [float(x) for x in mean_normal],
                   "noise_trend_exponents": [float(x) for x in trend]}
        return self._result(key=key, key_se=numbers["slope_ratio_mean_se"], numbers=numbers, summary=summary,
                            details=details, context=context, plotter=_plot_adiabats)


@attrs.frozen(kw_only=True)
class NoiseTrendAdiabatCheck(AdiabatCheck, name="adiabat-noise-trend"):
    """V4 with the measured noise trend: ``adiabat-noise-trend`` (optional check).

    The ideal-gas adiabat assumes a noise level that does not change with the
    hyperparameters. Networks break that (``noise-trend``: sigma2 ∝ (eta lambda)**beta
    with beta < 0, paper 004 §7.3), and the entropy then changes along the constant-sigma2
    adiabat. This check fits ``sigma2 = A hp1**b hp2**c`` to the run
    (:func:`thermonet.analysis.noise.noise_trend`) and adds ``b``, ``c`` through the chain
    rule before comparing directions; for fixed LR at high concentration the adiabat
    becomes ``eta**(1+b) lambda**c = const`` instead of ``eta = const``. Same numbers,
    tolerance and figure as ``adiabat``.
    """

    optional: ClassVar[bool] = True
    description: ClassVar[str] = "entropy constant along the adiabats predicted with the measured noise trend"
    noise_trend: bool = True
