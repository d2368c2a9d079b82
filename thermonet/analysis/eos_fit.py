"""Ideal vs real gas: fitting every equation of state to the measured states of run stores.

The theory's ideal gas ``P V = N_R T`` (THEORY §4) uses ``T = eta_eff sigma**2 / 2`` with
one constant noise level ``sigma**2``. Measured networks have a noise level that varies
with the hyperparameters (paper 004, §7.3); the paper suggests a real gas with a
compressibility ``Z = P V / (N_R T) != 1`` as the extension (§8). This module makes the
comparison:

* the temperature uses **one fitted constant** noise level: ``T = sigma0**2 * T_unit``
  with ``T_unit = eta_eff / 2`` (the measured radius enters eta_eff under fixed LR) and
  ``sigma0**2`` fitted together with each equation of state (``temperature_scale`` of
  :meth:`EquationOfState.fit`). The ideal gas with each member's *measured* sigma**2 is
  not a test: with the same noise that sets the stationary radius it is the radius
  relation V1 itself (THEORY §3), exact up to the discrete-time correction, and every
  real gas would collapse onto it;
* every registered equation of state (:class:`~thermonet.theory.eos.EquationOfState`:
  ideal, virial, van der Waals, power-law compressibility) is fitted to the seed-mean states of one or more stores
  (pooled: same protocol and D), in log pressure; reported are the parameters with
  standard errors, R**2, AIC, BIC and the leave-one-out error (each state predicted by
  the fit to all others);
* where ``sigma0**2`` cannot be told apart from an equation's own parameters (the
  power law ``Z = z0 T**alpha``: ``z0`` absorbs it) the scale is left out of that fit and
  reported as absorbed;
* :meth:`EOSComparison.plot` draws ``Z`` over the grid with each fit;
* ``discrete_correction=True`` first maps every measured state onto the SDE state the
  theory describes, dividing out the discrete-time (full-gradient) term of THEORY §3
  with the measured tr Sigma(x) and G_1**2: the radius is scaled by
  ``rho_SDE / rho_discrete`` (fixed LR, ELR), ``lambda_eff`` by ``P_SDE / P_discrete``
  (fixed sphere), both evaluated at the measured noise. Without it the isotropic model
  shows an apparent real gas ``Z ~ 1 + G_1**2 / trSigma`` at large steps, which is the
  discretisation, not a property of the stationary distribution.

>>> from thermonet.analysis.eos_fit import fit_equations_of_state
>>> comparison = fit_equations_of_state(["runs/fixed-lr.zarr"])    # doctest: +SKIP
>>> print(comparison.table())                                      # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import sympy as sp
import xarray as xr

from thermonet.analysis.noise import unit_noise_temperature
from thermonet.analysis.states import hyperparameter_values, seed_mean
from thermonet.base.jsonsafe import json_safe
from thermonet.errors import InputError
from thermonet.store import MeasuredStates, as_measured
from thermonet.theory.eos import EquationOfState, FitResult
from thermonet.theory.symbols import P as P_sym
from thermonet.theory.symbols import T as T_sym
from thermonet.theory.symbols import V as V_sym
from thermonet.theory.symbols import gas_constant

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "EOSComparison",
    "EOSFit",
    "collect_states",
    "discrete_corrected",
    "fit_equations_of_state",
    "parse_eos_names",
]

#: Relative singular value below which a parameter direction counts as unidentifiable.
_DEGENERATE = 1e-7


def parse_eos_names(text: str | Sequence[str] | None) -> list[str]:
    """``"ideal,virial"`` (or a list) -> validated names; ``None`` -> every registered equation of state."""
    known = EquationOfState.names()
    if text is None:
        return known
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise InputError(f"--eos: give at least one of {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown equation of state {unknown[0]!r}; choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------- measured states
def _label(source: object, index: int) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).name
    return f"run{index}"


def _open(source: object) -> MeasuredStates:
    if isinstance(source, (str, Path)):
        from thermonet.store import open_run

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # partial runs: the finished steps are used
            return open_run(source).thermo
    return as_measured(source)


def discrete_corrected(protocol, states: xr.Dataset, dim: float) -> xr.Dataset:
    """Stationary states with the discrete-time term divided out (see the module docstring).

    Needs ``trace_sigma`` and ``grad_full_sq``. Fixed LR / ELR: ``rho`` (and ``V``, and
    ``T``, which depends on rho under fixed LR) become ``rho * rho_SDE / rho_discrete``;
    fixed sphere: ``P`` (lambda_eff) becomes ``P * P_SDE / P_discrete``. Both ratios are
    evaluated with the member's measured noise, ``sigma2 = trSigma / (D - 1)``.
    """
    from thermonet.theory.symbols import grad_sq, trace_sigma

    missing = [v for v in ("trace_sigma", "grad_full_sq")
               if v not in states.data_vars or not bool(np.isfinite(states[v]).any())]
    if missing:
        raise InputError(f"the discrete-time correction needs the measured {' and '.join(missing)}, "
                         "which the run does not provide")
    hps = tuple(protocol.hyperparameters)
    hp = hyperparameter_values(states["rho"], hps)
    tr = states["trace_sigma"].values
    g2 = states["grad_full_sq"].values
    noise = tr / (float(dim) - 1)
    out = states.copy()
    with np.errstate(all="ignore"):
        if protocol.measured_pressure is not None:
            p_sde = protocol.predicted("P", hp, noise, dim)
            fn = protocol.numeric(protocol.effective_weight_decay_expr(), (trace_sigma, grad_sq), dim=dim)
            ratio = p_sde / fn(hp, tr, g2)
            out["P"] = states["P"] * ratio
            out[protocol.measured_pressure] = out["P"]
        else:
            ratio = protocol.predicted("rho", hp, noise, dim) / protocol.predicted_radius_discrete(hp, tr, g2)
            out["rho"] = states["rho"] * ratio
            out["V"] = out["rho"] ** 2 / 2
            out["T"] = states["T"].copy(data=protocol.temperature(hp, out["rho"].values, states["sigma2"].values))
    out["discrete_ratio"] = states["rho"].copy(data=ratio)
    return out


def collect_states(sources: Sequence[object], window: float | int = 0.5,
                   labels: Sequence[str] | None = None, *, discrete_correction: bool = False) -> xr.Dataset:
    """Seed-mean stationary states of one or more runs, pooled along the dimension ``state``.

    ``sources`` are store paths, run Datasets or :class:`MeasuredStates`; all must share
    the protocol and D (else :class:`InputError`). Returns ``P``, ``V``, ``rho``,
    ``sigma2``, ``T`` (measured noise), ``T_unit`` (``eta_eff/2``) and the two
    hyperparameters per state, plus ``run`` (the label of its store). States with a
    non-finite or non-positive P, V or T_unit are left out. ``discrete_correction``
    applies :func:`discrete_corrected` to every member first.
    """
    if isinstance(sources, (str, Path, xr.Dataset)) or not isinstance(sources, Sequence):
        sources = [sources]
    if not sources:
        raise InputError("give at least one run store")
    labels = list(labels) if labels is not None else [_label(s, i) for i, s in enumerate(sources)]
    if len(labels) != len(sources):
        raise InputError(f"{len(labels)} labels for {len(sources)} runs")
    measured = [_open(s) for s in sources]
    first = measured[0]
    for label, m in zip(labels[1:], measured[1:]):
        if m.protocol.name != first.protocol.name:
            raise InputError(f"cannot pool runs of different protocols: {labels[0]} is {first.protocol.name}, "
                             f"{label} is {m.protocol.name}")
        if float(m.dim) != float(first.dim):
            raise InputError(f"cannot pool runs of different dimension D: {labels[0]} has D={first.dim}, "
                             f"{label} has D={m.dim}")
    protocol = first.protocol
    hps = tuple(protocol.hyperparameters)
    parts = []
    for label, m in zip(labels, measured):
        st = m.stationary(window)
        if discrete_correction:
            try:
                st = discrete_corrected(protocol, st, float(m.dim))
            except InputError as exc:
                raise InputError(f"{label}: {exc}") from None
        st = st.assign(T_unit=unit_noise_temperature(protocol, st))
        sm = seed_mean(st[["P", "V", "rho", "sigma2", "T", "T_unit"]]).transpose(*hps)
        flat = sm.stack(state=hps).reset_index("state")
        data = {k: ("state", np.asarray(flat[k].values, dtype=float)) for k in ("P", "V", "rho", "sigma2", "T",
                                                                                "T_unit")}
        for h in hps:
            data[h] = ("state", np.asarray(flat[h].values, dtype=float))
        data["run"] = ("state", np.array([label] * flat.sizes["state"], dtype=object))
        parts.append(xr.Dataset(data))
    states = xr.concat(parts, dim="state")
    good = np.ones(states.sizes["state"], dtype=bool)
    for k in ("P", "V", "T_unit"):
        v = states[k].values
        good &= np.isfinite(v) & (v > 0)
    states = states.isel(state=np.flatnonzero(good))
    states.attrs.update(protocol=protocol.name, dim=float(first.dim), hyperparameters=list(hps), runs=labels,
                        window=window, kind=str(getattr(first, "kind", "network")),
                        discrete_correction=bool(discrete_correction))
    return states


# ---------------------------------------------------------------------- one fit
@functools.lru_cache(maxsize=32)
def _pressure_function(eos: EquationOfState):
    """Numeric ln P(T, V, *parameters, scale) of an equation of state, lambdified once."""
    syms = eos.parameter_symbols
    solutions = sp.solve(eos.relation(symbolic_parameters=True), P_sym)
    if len(solutions) != 1:
        raise InputError(f"{type(eos).__name__}: pressure is not explicit; cannot fit")
    scale = sp.Symbol("temperature_scale", positive=True)
    expr = solutions[0].subs(T_sym, scale * T_sym)
    return sp.lambdify([T_sym, V_sym, *syms.values(), scale], expr, "numpy")


def _log_pressure(eos: EquationOfState, params: Mapping[str, float], scale: float, T: np.ndarray,
                  V: np.ndarray) -> np.ndarray:
    fn = _pressure_function(eos)
    with np.errstate(all="ignore"):
        p = np.asarray(fn(T, V, *[params[n] for n in eos.parameter_names], scale), dtype=float) * np.ones_like(T)
        return np.where(p > 0, np.log(np.abs(p) + 1e-300), np.nan)


def _scale_absorbed(eos: EquationOfState, T: np.ndarray, V: np.ndarray) -> bool:
    """Whether ``T -> s T`` is equivalent to a change of the equation's own parameters.

    Tested on the data: the Jacobian of ln P with respect to (parameters, ln s) at a
    few generic parameter values is rank-deficient.
    """
    names = list(eos.parameter_names)
    if not names:
        return False
    rng = np.random.default_rng(0)
    base = {n: float(getattr(eos, n)) for n in names}
    for _ in range(3):
        params = {n: base[n] + 0.05 * rng.standard_normal() * max(abs(base[n]), 1e-3) for n in names}
        cols = []
        for n in names:
            h = 1e-6 * max(abs(params[n]), 1e-3)
            up = _log_pressure(eos, {**params, n: params[n] + h}, 1.0, T, V)
            dn = _log_pressure(eos, {**params, n: params[n] - h}, 1.0, T, V)
            cols.append((up - dn) / (2 * h))
        h = 1e-6
        cols.append((_log_pressure(eos, params, math.exp(h), T, V) - _log_pressure(eos, params, math.exp(-h), T, V))
                    / (2 * h))
        jac = np.stack(cols, axis=1)
        jac = jac[np.all(np.isfinite(jac), axis=1)]
        if jac.shape[0] <= jac.shape[1]:
            continue
        jac = jac / np.maximum(np.linalg.norm(jac, axis=0), 1e-300)
        sv = np.linalg.svd(jac, compute_uv=False)
        if sv[-1] / sv[0] > _DEGENERATE:
            return False
    return True


def _fit(eos: EquationOfState, P: np.ndarray, V: np.ndarray, T: np.ndarray, scale: bool) -> FitResult:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return eos.fit(P, V, T, temperature_scale=scale)


@attrs.frozen(kw_only=True)
class EOSFit:
    """One equation of state fitted with one constant noise level.

    ``noise_level`` is the fitted sigma0**2 (``temperature_scale``; NaN when
    ``scale_absorbed``: the equation's own parameters absorb it). ``loo_errors`` are the
    leave-one-out errors in ln P: each state predicted by the fit to all the others.
    ``k`` counts the fitted parameters including sigma0**2.
    """

    name: str
    result: FitResult | None
    scale_absorbed: bool
    loo_errors: np.ndarray = attrs.field(repr=False)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def parameters(self) -> dict[str, float]:
        return {} if self.result is None else {k: v for k, v in self.result.parameters.items()
                                               if k != "temperature_scale"}

    @property
    def uncertainties(self) -> dict[str, float]:
        return {} if self.result is None else {k: v for k, v in self.result.uncertainties.items()
                                               if k != "temperature_scale"}

    @property
    def noise_level(self) -> float:
        if self.result is None or self.scale_absorbed:
            return math.nan
        return float(self.result.parameters["temperature_scale"])

    @property
    def noise_level_se(self) -> float:
        if self.result is None or self.scale_absorbed:
            return math.nan
        return float(self.result.uncertainties["temperature_scale"])

    @property
    def k(self) -> int:
        return 0 if self.result is None else self.result.n_parameters

    def _figure(self, attr: str) -> float:
        return math.nan if self.result is None else float(getattr(self.result, attr))

    @property
    def r2(self) -> float:
        return self._figure("r2")

    @property
    def aic(self) -> float:
        return self._figure("aic")

    @property
    def bic(self) -> float:
        return self._figure("bic")

    @property
    def loo_rmse(self) -> float:
        e = self.loo_errors[np.isfinite(self.loo_errors)]
        return float(np.sqrt(np.mean(e**2))) if e.size else math.nan

    @property
    def loo_max(self) -> float:
        e = self.loo_errors[np.isfinite(self.loo_errors)]
        return float(np.abs(e).max()) if e.size else math.nan

    def log_pressure(self, T_unit: np.ndarray, V: np.ndarray) -> np.ndarray:
        """ln P of the fitted equation at unit-noise temperatures ``T_unit`` and volumes ``V``."""
        if self.result is None:
            return np.full(np.broadcast_shapes(np.shape(T_unit), np.shape(V)), np.nan)
        scale = 1.0 if self.scale_absorbed else self.noise_level
        T_unit, V = np.broadcast_arrays(np.asarray(T_unit, float), np.asarray(V, float))
        eos = self.result.eos
        template = type(eos)(dim=eos.dim, n_r=eos.n_r)  # one lambdified function per equation, any parameters
        return _log_pressure(template, self.parameters, scale, T_unit, V)

    def as_dict(self) -> dict[str, Any]:
        return json_safe({
            "eos": self.name, "ok": self.ok, "error": self.error or None, "k": self.k,
            "parameters": self.parameters, "uncertainties": self.uncertainties,
            "noise_level": self.noise_level, "noise_level_se": self.noise_level_se,
            "scale_absorbed": self.scale_absorbed, "r2": self.r2, "aic": self.aic, "bic": self.bic,
            "loo_rmse": self.loo_rmse, "loo_max": self.loo_max,
            "success": None if self.result is None else self.result.success,
        })


def fit_one(name: str, states: xr.Dataset, loo: bool = True) -> EOSFit:
    """Fit the equation of state ``name`` to pooled ``states`` (see :func:`collect_states`)."""
    cls = EquationOfState.get(parse_eos_names([name])[0])
    eos = cls(dim=float(states.attrs["dim"]))
    P, V, T = (np.asarray(states[k].values, dtype=float) for k in ("P", "V", "T_unit"))
    absorbed = _scale_absorbed(eos, T, V)
    try:
        result = _fit(eos, P, V, T, scale=not absorbed)
    except InputError as exc:
        return EOSFit(name=name, result=None, scale_absorbed=absorbed, loo_errors=np.full(P.size, np.nan),
                      error=str(exc))
    errors = np.full(P.size, np.nan)
    if loo:
        start = attrs.evolve(eos, **{n: result.parameters[n] for n in eos.parameter_names})
        for i in range(P.size):
            keep = np.arange(P.size) != i
            try:
                sub = _fit(start, P[keep], V[keep], T[keep], scale=not absorbed)
            except InputError:
                continue
            scale = 1.0 if absorbed else sub.parameters["temperature_scale"]
            params = {n: sub.parameters[n] for n in eos.parameter_names}
            errors[i] = float(_log_pressure(eos, params, scale, T[i:i + 1], V[i:i + 1])[0] - math.log(P[i]))
    return EOSFit(name=name, result=result, scale_absorbed=absorbed, loo_errors=errors)


# ---------------------------------------------------------------------- the comparison
@attrs.frozen(kw_only=True)
class EOSComparison:
    """Every requested equation of state fitted to the same pooled states.

    ``states`` gains ``Z`` (``P V / (N_R sigma0**2 T_unit)`` with the ideal gas's fitted
    sigma0**2) and ``Z_measured_T`` (``P V / (N_R T)`` with each member's measured noise:
    1 up to the discrete-time correction, by construction).
    """

    states: xr.Dataset
    fits: dict[str, EOSFit]
    reference: EOSFit  #: the ideal-gas fit that defines sigma0**2 for Z

    @property
    def protocol(self) -> str:
        return str(self.states.attrs["protocol"])

    @property
    def dim(self) -> float:
        return float(self.states.attrs["dim"])

    @property
    def hyperparameters(self) -> tuple[str, str]:
        return tuple(self.states.attrs["hyperparameters"])  # type: ignore[return-value]

    def best(self, criterion: str = "bic") -> str | None:
        """Name of the equation of state with the lowest ``aic``, ``bic`` or ``loo`` (rmse).

        ``None`` when no fit has that figure (``loo`` after ``loo=False``).
        """
        key = {"aic": "aic", "bic": "bic", "loo": "loo_rmse"}.get(criterion)
        if key is None:
            raise InputError(f"criterion must be aic, bic or loo, got {criterion!r}")
        scored = [(getattr(f, key), n) for n, f in self.fits.items() if f.ok and math.isfinite(getattr(f, key))]
        return min(scored)[1] if scored else None

    def delta(self, criterion: str = "bic") -> dict[str, float]:
        """AIC or BIC of every fit minus the lowest."""
        name = self.best(criterion)
        best = getattr(self.fits[name], criterion) if name is not None else math.nan
        return {n: getattr(f, criterion) - best for n, f in self.fits.items()}

    def z_predicted(self, name: str) -> np.ndarray:
        """Z of the fitted equation ``name`` at the measured states (same normalisation as ``Z``)."""
        st = self.states
        n_r = gas_constant(self.dim)
        logp = self.fits[name].log_pressure(st["T_unit"].values, st["V"].values)
        return np.exp(logp) * st["V"].values / (n_r * self.reference.noise_level * st["T_unit"].values)

    def summary(self) -> str:
        bic, aic = self.best("bic"), self.best("aic")
        z = self.states["Z"].values
        zm = self.states["Z_measured_T"].values
        loo = self.best("loo") or "n/a"
        return (f"best by BIC: {bic}, by AIC: {aic}, by leave-one-out: {loo}; "
                f"Z with the fitted sigma0^2 in [{np.nanmin(z):.3f}, {np.nanmax(z):.3f}], "
                f"with the measured sigma2 in [{np.nanmin(zm):.3f}, {np.nanmax(zm):.3f}]")

    def table(self, markdown: bool = False) -> str:
        """The comparison table: k, R2, AIC, BIC, dBIC, leave-one-out errors, sigma0**2, parameters."""
        head = ["eos", "k", "R2", "AIC", "BIC", "dBIC", "LOO rmse", "LOO max", "sigma0^2", "parameters"]
        delta = self.delta("bic")
        rows = []
        for name, f in self.fits.items():
            if not f.ok:
                rows.append([name, "-", "-", "-", "-", "-", "-", "-", "-", f"failed: {f.error}"])
                continue
            noise = ("absorbed" if f.scale_absorbed else f"{f.noise_level:.4g} +/- {f.noise_level_se:.2g}")
            params = "; ".join(f"{k} = {v:.4g} +/- {f.uncertainties[k]:.2g}" for k, v in f.parameters.items()) or "-"
            loo = [f"{f.loo_rmse:.4g}", f"{f.loo_max:.3g}"] if math.isfinite(f.loo_rmse) else ["-", "-"]
            rows.append([name, str(f.k), f"{f.r2:.5f}", f"{f.aic:.2f}", f"{f.bic:.2f}", f"{delta[name]:.2f}",
                         *loo, noise, params])
        if markdown:
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            return "\n".join(lines)
        widths = [max(len(c) for c in col) for col in zip(head, *rows)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])

    def to_dict(self) -> dict[str, Any]:
        st = self.states
        return json_safe({
            "protocol": self.protocol, "dim": self.dim, "runs": list(st.attrs.get("runs", [])),
            "window": st.attrs.get("window"), "states": int(st.sizes["state"]),
            "discrete_correction": bool(st.attrs.get("discrete_correction", False)),
            "temperature": "T = sigma0^2 * eta_eff / 2 with one fitted constant sigma0^2",
            "best": {c: self.best(c) for c in ("aic", "bic", "loo")},
            "fits": {n: f.as_dict() for n, f in self.fits.items()},
            "Z": {"min": float(np.nanmin(st["Z"])), "max": float(np.nanmax(st["Z"])),
                  "mean_abs_deviation": float(np.nanmean(np.abs(st["Z"] - 1)))},
            "Z_measured_T": {"min": float(np.nanmin(st["Z_measured_T"])),
                             "max": float(np.nanmax(st["Z_measured_T"])),
                             "mean_abs_deviation": float(np.nanmean(np.abs(st["Z_measured_T"] - 1)))},
        })

    def plot(self, fig: "Figure | None" = None) -> "Figure":
        """Z over the grid: one panel per fit, measured Z (points) and the fit's Z (lines).

        x: the second hyperparameter; one colour per value of the first; one marker per run.
        """
        from matplotlib.figure import Figure
        from matplotlib.ticker import NullFormatter

        names = [n for n, f in self.fits.items() if f.ok]
        cols = min(len(names), 2) or 1
        rows = -(-len(names) // cols) or 1
        if fig is None:
            fig = Figure(figsize=(5.2 * cols, 4.0 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
        st = self.states
        h1, h2 = self.hyperparameters
        first_values = np.unique(st[h1].values)
        import matplotlib as mpl

        cmap = mpl.colormaps["viridis"]
        markers = "osD^v<>p"
        runs = list(dict.fromkeys(st["run"].values.tolist()))
        delta = self.delta("bic")
        for ax, name in zip(axes, names):
            zfit = self.z_predicted(name)
            for r_i, run in enumerate(runs):
                for j, value in enumerate(first_values):
                    sel = np.flatnonzero((st["run"].values == run) & np.isclose(st[h1].values, value))
                    if sel.size == 0:
                        continue
                    order = sel[np.argsort(st[h2].values[sel])]
                    color = cmap(j / max(len(first_values) - 1, 1))
                    x = st[h2].values[order]
                    label = f"{h1}={value:.3g}" if r_i == 0 and (len(first_values) <= 7 or j in (
                        0, len(first_values) - 1)) else None
                    ax.plot(x, st["Z"].values[order], markers[r_i % len(markers)], color=color, ms=4, label=label)
                    ax.plot(x, zfit[order], "-", color=color, lw=1)
            ax.axhline(1.0, color="0.5", lw=0.6, ls=":")
            f = self.fits[name]
            loo = f"{f.loo_rmse:.3g}" if math.isfinite(f.loo_rmse) else "n/a"
            ax.set_title(f"{name}: dBIC {delta[name]:+.1f}, LOO rmse {loo}", fontsize=9)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short decades
            ax.set_xlabel(h2)
            ax.set_ylabel("Z = P V / (N_R T)")
        for ax in axes[len(names):]:
            ax.set_axis_off()
        if names:
            axes[0].legend(fontsize=7, ncol=2, title="points: measured; lines: fit", title_fontsize=7)
        fig.suptitle(f"{self.protocol}, D={self.dim:g}: T = sigma0^2 eta_eff/2, sigma0^2 = "
                     f"{self.reference.noise_level:.4g} (ideal-gas fit)", fontsize=10)
        return fig


def fit_equations_of_state(sources: Sequence[object] | xr.Dataset, eos: str | Sequence[str] | None = None, *,
                           window: float | int = 0.5, labels: Sequence[str] | None = None,
                           loo: bool = True, discrete_correction: bool = False) -> EOSComparison:
    """Fit every requested equation of state to the pooled states of ``sources``.

    ``sources``: store paths, run Datasets or :class:`MeasuredStates` (or the output of
    :func:`collect_states`, a Dataset with a ``state`` dimension). ``eos``: names from
    :data:`EQUATIONS_OF_STATE` (default all). ``loo=False`` skips the leave-one-out refits.
    ``discrete_correction``: see :func:`discrete_corrected`.
    """
    names = parse_eos_names(eos)
    if isinstance(sources, xr.Dataset) and "state" in sources.dims:
        states = sources
    else:
        states = collect_states(sources, window=window, labels=labels, discrete_correction=discrete_correction)
    n = states.sizes["state"]
    if n < 5:
        raise InputError(f"an equation-of-state comparison needs at least 5 states with P, V, T > 0, got {n}")
    fits = {name: fit_one(name, states, loo=loo) for name in names}
    if not any(f.ok for f in fits.values()):
        raise InputError("no equation of state could be fitted: " + "; ".join(f"{n}: {f.error}"
                                                                               for n, f in fits.items()))
    reference = fits["ideal"] if "ideal" in fits else fit_one("ideal", states, loo=False)
    if not reference.ok:
        raise InputError(f"the ideal-gas fit failed: {reference.error}")
    n_r = gas_constant(float(states.attrs["dim"]))
    pv = states["P"] * states["V"]
    states = states.assign(Z=pv / (n_r * reference.noise_level * states["T_unit"]),
                           Z_measured_T=pv / (n_r * states["T"]))
    return EOSComparison(states=states, fits=fits, reference=reference)
