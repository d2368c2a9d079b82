"""Thermodynamic processes on measured data: follow a process through a run's grid.

A :class:`~thermonet.theory.processes.Process` (isobaric, isothermal, adiabatic or your
own subclass) defines a path of equilibrium states; with a theory system
(:class:`~thermonet.theory.system.IsotropicNoiseSystem` for isotropic runs, an ideal gas
with a fitted constant heat capacity for networks; see
:func:`thermonet.analysis.systems.default_system`) the path is a schedule of hyperparameters.
:func:`measure_process` reads the measured stationary states along that schedule
(interpolated in log-hyperparameter space between the grid points, or the nearest grid
points, or the quadratic entropy surface) and compares the measured changes of entropy
and energy with the predicted ones:

>>> import thermonet
>>> from thermonet.analysis.processes import measure_process
>>> from thermonet.theory.processes import Adiabatic
>>> ds = thermonet.open_run("runs/fixed-lr.zarr")                       # doctest: +SKIP
>>> m = measure_process(Adiabatic(), ds, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1})  # doctest: +SKIP
>>> print(m.summary())        # fixed-LR adiabat: lr stays 0.01, measured dS ~ 0  # doctest: +SKIP

The verdict compares ``|dS_measured - dS_predicted|`` (less ``z`` standard errors) with
``tolerance * N_R``, ``N_R = (D-1)/2``, and ``|dU_measured - dU_predicted|`` with
``energy_tolerance`` times the energy scale of the path (``max(|dU_predicted|, max |U|)``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import xarray as xr
from scipy import integrate
from scipy.interpolate import RegularGridInterpolator

from thermonet.analysis.verdicts import decide
from thermonet.analysis.states import seed_mean, seed_mean_and_error
from thermonet.analysis.surface import fit_quadratic_surface, log_grid, surface_problem
from thermonet.analysis.systems import default_system
from thermonet.base.jsonsafe import json_safe
from thermonet.base.plotting import log_mesh
from thermonet.errors import InputError
from thermonet.store import MeasuredStates, as_measured
from thermonet.theory.processes import Process, ProcessPath, State
from thermonet.theory.symbols import gas_constant

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from thermonet.theory.system import ThermodynamicSystem

__all__ = ["METHODS", "MeasuredProcess", "measure_process", "measured_along"]

#: How measured values are read along a path: ``linear`` / ``cubic`` interpolation on the
#: seed-mean grid in (ln hp1, ln hp2); ``nearest``: the grid point nearest each path point
#: (selection, no interpolation); ``surface``: S from the quadratic entropy surface (THEORY
#: §5), the other quantities linear.
METHODS = ("linear", "cubic", "nearest", "surface")
_QUANTITIES = ("S", "U", "T", "P", "V")


def _grid_axes(field: xr.DataArray, hps: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.log(np.asarray(field[h].values, dtype=float)) for h in hps)  # type: ignore[return-value]


def _inside(points: np.ndarray, axes: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Points clipped onto the grid when they lie outside by rounding only; NaN rows stay."""
    out = points.copy()
    for i, ax in enumerate(axes):
        lo, hi = ax.min(), ax.max()
        slack = 1e-5  # relative 1e-5 in the hyperparameter: root-finding rounding, not a real excursion
        near = (out[:, i] < lo) & (out[:, i] > lo - slack) | (out[:, i] > hi) & (out[:, i] < hi + slack)
        out[near, i] = np.clip(out[near, i], lo, hi)
    return out


def measured_along(states: xr.Dataset, hps: tuple[str, str], hp_path: Mapping[str, np.ndarray],
                   method: str = "linear") -> xr.Dataset:
    """Seed-mean measured S, U, T, P, V (and standard errors of S, U) at hyperparameter points.

    ``hp_path`` maps each hyperparameter to the values along the path (any length).
    Raises :class:`InputError` when a point lies outside the measured grid.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    sm = seed_mean(states).transpose(*hps, ...)
    axes = _grid_axes(sm["U"], hps)
    for h, ax in zip(hps, axes):
        if ax.size < 2:
            raise InputError(f"the measured grid has a single {h}; a path through it needs at least 2 values")
        if np.any(np.diff(ax) <= 0):
            raise InputError(f"the {h} coordinate must increase")
    points = np.stack([np.log(np.asarray(hp_path[h], dtype=float)) for h in hps], axis=1)
    points = _inside(points, axes)
    outside = np.zeros(points.shape[0], dtype=bool)
    for i, ax in enumerate(axes):
        outside |= (points[:, i] < ax.min()) | (points[:, i] > ax.max())
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        where = ", ".join(f"{h}={math.exp(points[k, i]):.4g}" for i, h in enumerate(hps))
        ranges = "; ".join(f"{h} in [{math.exp(ax.min()):.4g}, {math.exp(ax.max()):.4g}]" for h, ax in zip(hps, axes))
        raise InputError(f"the path leaves the measured grid at point {k} ({where}); the grid has {ranges}")
    if method == "cubic" and min(ax.size for ax in axes) < 4:
        raise InputError("cubic interpolation needs at least 4 values of each hyperparameter; use method='linear'")

    fields: dict[str, np.ndarray] = {}
    for q in _QUANTITIES:
        if q in sm:
            fields[q] = np.asarray(sm[q].transpose(*hps).values, dtype=float)
    for q in ("S", "U"):
        fields[f"{q}_se"] = np.asarray(seed_mean_and_error(states, q)[1].transpose(*hps).values, dtype=float)

    out: dict[str, np.ndarray] = {}
    if method == "nearest":
        idx = [np.abs(points[:, i][:, None] - ax[None, :]).argmin(axis=1) for i, ax in enumerate(axes)]
        for q, values in fields.items():
            out[q] = values[idx[0], idx[1]]
        for i, h in enumerate(hps):
            out[f"{h}_grid"] = np.exp(axes[i][idx[i]])
    else:
        kind = "cubic" if method == "cubic" else "linear"
        for q, values in fields.items():
            if not np.isfinite(values).all():
                if q.endswith("_se") or q in ("S",) and not np.isfinite(values).any():
                    out[q] = np.full(points.shape[0], np.nan)
                    continue
                raise InputError(f"the measured {q} has missing grid points; interpolation needs a complete grid "
                                 "(use method='nearest')")
            out[q] = RegularGridInterpolator(axes, values, method=kind)(points)
        if method == "surface":
            u, v, S = log_grid(sm["S"], hps)
            problem = surface_problem(u, v, S)
            if problem:
                raise InputError(f"method='surface': {problem}")
            surface = fit_quadratic_surface(u, v, S)
            out["S"] = surface.value(points[:, 0], points[:, 1])
    data = {q: ("point", np.asarray(v, dtype=float)) for q, v in out.items()}
    for i, h in enumerate(hps):
        data[h] = ("point", np.exp(points[:, i]))
    return xr.Dataset(data, attrs={"method": method})


@attrs.frozen(kw_only=True)
class MeasuredProcess:
    """A process followed through measured states, compared with the theory.

    Attributes
    ----------
    process, system:
        The process and the theory system that turned it into a hyperparameter path.
    path:
        The predicted :class:`ProcessPath` (``path.states``: T, P, V, S, U and the
        hyperparameters along the dimension ``point``).
    measured:
        Measured S, U, T, P, V (seed means; ``S_se``, ``U_se``) at the same points.
    numbers:
        ``delta_S_measured`` (+ ``_se``), ``delta_S_predicted``, ``delta_S_error``,
        ``delta_S_error_over_nr`` (the key figure, with its standard error
        ``delta_S_error_over_nr_se``),
        ``profile_S_max_over_nr`` (worst point of the S profile), the same for U
        (``delta_U_rel_error``: relative to the energy scale of the path), work
        ``W_measured``/``W_predicted`` and heat ``Q_measured``/``Q_predicted``
        (``Q = dU + W``), ``TdS_measured`` (the integral of T dS along the path).
    """

    process: Process
    system: "ThermodynamicSystem"
    path: ProcessPath
    measured: xr.Dataset
    numbers: dict[str, float]
    tolerance: float
    energy_tolerance: float | None
    z: float
    verdict: str
    to_decide: str = ""
    context: dict[str, Any] = attrs.field(factory=dict)

    @property
    def passed(self) -> bool | None:
        """``True`` (pass), ``False`` (fail), ``None`` (inconclusive: the run cannot decide it)."""
        return {"pass": True, "fail": False}.get(self.verdict)

    @property
    def delta_S(self) -> tuple[float, float]:
        """(measured, predicted) entropy change."""
        return self.numbers["delta_S_measured"], self.numbers["delta_S_predicted"]

    @property
    def delta_U(self) -> tuple[float, float]:
        """(measured, predicted) energy change."""
        return self.numbers["delta_U_measured"], self.numbers["delta_U_predicted"]

    def summary(self) -> str:
        n = self.numbers
        name = type(self.process).__name__
        hps = self.context["hyperparameters"]
        ends = ", ".join(f"{h} {self.path.states[h].values[0]:.3g} -> {self.path.states[h].values[-1]:.3g}"
                         for h in hps)
        energy = (f"; dU measured {n['delta_U_measured']:.4g} vs predicted {n['delta_U_predicted']:.4g} "
                  f"(rel. {n['delta_U_rel_error']:.3g})")
        decide = f" ({self.to_decide})" if self.to_decide else ""
        return (f"{name} ({ends}): dS measured {n['delta_S_measured']:.4g} +/- {n['delta_S_measured_se']:.2g} vs "
                f"predicted {n['delta_S_predicted']:.4g}, |error|/N_R {n['delta_S_error_over_nr']:.3g} "
                f"+/- {n['delta_S_error_over_nr_se']:.2g} (tolerance {self.tolerance:g})"
                f"{energy}: {self.verdict}{decide}")

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"process": type(self.process).__name__, "system": type(self.system).__name__,
                          "verdict": self.verdict, "passed": self.passed, "to_decide": self.to_decide or None,
                          "tolerance": self.tolerance,
                          "energy_tolerance": self.energy_tolerance, "z": self.z, "numbers": self.numbers,
                          "context": self.context,
                          "path": {k: self.path.states[k].values for k in ("T", "P", "V", "S", "U",
                                                                          *self.context["hyperparameters"])},
                          "measured": {k: self.measured[k].values for k in self.measured.data_vars}})

    def plot(self, fig: "Figure | None" = None) -> "Figure":
        """Three panels: the path over the measured entropy map; S and U along the path."""
        from matplotlib.figure import Figure

        if fig is None:
            fig = Figure(figsize=(15, 4.2), layout="constrained")
        ax_map, ax_s, ax_u = fig.subplots(1, 3)
        hps = self.context["hyperparameters"]
        grid = self.context["grid_S"]
        data = np.asarray(grid.transpose(hps[1], hps[0]).values, dtype=float)
        if np.isfinite(data).any():
            mesh = log_mesh(ax_map, grid[hps[0]].values, grid[hps[1]].values, data, cmap="viridis")
            fig.colorbar(mesh, ax=ax_map, label="measured S (seed mean)")
        ax_map.plot(self.path.states[hps[0]].values, self.path.states[hps[1]].values, "w-", lw=2)
        ax_map.plot(self.path.states[hps[0]].values[:1], self.path.states[hps[1]].values[:1], "wo", ms=6,
                    label="start")
        ax_map.plot(self.path.states[hps[0]].values[-1:], self.path.states[hps[1]].values[-1:], "w^", ms=6,
                    label="end")
        ax_map.set_xscale("log")
        ax_map.set_yscale("log")
        ax_map.set_xlabel(hps[0])
        ax_map.set_ylabel(hps[1])
        ax_map.legend(fontsize=7, facecolor="0.7")
        ax_map.set_title(f"{type(self.process).__name__} path ({self.measured.attrs.get('method')})", fontsize=10)

        var = self.context["path_variable"]
        x = self.path.states[var].values
        for ax, q, label in ((ax_s, "S", "S - S(start)"), (ax_u, "U", "U - U(start)")):
            pred = self.path.states[q].values
            meas = self.measured[q].values
            ax.plot(x, pred - pred[0], "k-", lw=1.5, label="theory")
            se = self.measured.get(f"{q}_se")
            err = None if se is None else np.where(np.isfinite(se.values), se.values, 0.0)
            ax.errorbar(x, meas - meas[0], yerr=err, fmt="o", ms=3, color="C1", label="measured")
            ax.set_xscale("log")
            ax.set_xlabel(var)
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
        n = self.numbers
        ax_s.set_title(f"dS: measured {n['delta_S_measured']:.3g}, theory {n['delta_S_predicted']:.3g}", fontsize=10)
        ax_u.set_title(f"dU: measured {n['delta_U_measured']:.3g}, theory {n['delta_U_predicted']:.3g}", fontsize=10)
        return fig


def _start_state(system: "ThermodynamicSystem", start: State | Mapping[str, float]) -> State:
    if isinstance(start, State):
        return start
    names = system.protocol.hyperparameters
    if set(start) != set(names):
        raise InputError(f"start must give the hyperparameters {', '.join(names)} (or be a State), "
                         f"got {', '.join(start) or 'none'}")
    predicted = system.predict({n: [float(start[n])] for n in names})
    return State(T=float(predicted["T"].values.ravel()[0]), V=float(predicted["V"].values.ravel()[0]))


def _target(system: "ThermodynamicSystem", to: Mapping[str, float]) -> dict[str, float]:
    if len(to) != 1:
        raise InputError(f"'to' must name exactly one variable, got {dict(to)!r}")
    (name, value), = to.items()
    if name in ("T", "P", "V"):
        return {name: float(value)}
    protocol = system.protocol
    pressure = protocol.pressure_expr()
    if name in protocol.hyperparameters and pressure is not None and pressure == protocol.symbols[name]:
        return {"P": float(value)}  # the weight decay is the pressure
    raise InputError(f"'to' must name T, P or V (or the weight decay of a fixed-LR/ELR run), got {name!r}")


def measure_process(process: Process, run: MeasuredStates | xr.Dataset | str | Path, *,
                    start: State | Mapping[str, float], to: Mapping[str, float], window: float | int = 0.5,
                    system: "ThermodynamicSystem | None" = None, num: int = 25, method: str = "linear",
                    tolerance: float = 0.1, energy_tolerance: float | None = 0.1, z: float = 3.0) -> MeasuredProcess:
    """Follow ``process`` through the measured states of ``run`` and compare with the theory.

    Parameters
    ----------
    process:
        Any :class:`Process` (``Adiabatic()``, ``Isothermal()``, ``Isobaric()``, a subclass).
    run:
        A run store path, run Dataset or :class:`MeasuredStates`.
    start:
        The start: the protocol's hyperparameters (``{"lr": 0.01, "wd": 0.001}``; the
        theory's state there) or a :class:`State`.
    to:
        Where the path ends: one of ``T``, ``P``, ``V`` (``{"P": 0.1}``) or, for fixed
        LR/ELR, the weight decay (``{"wd": 0.1}``).
    system:
        The theory system; default :func:`thermonet.analysis.systems.default_system`.
    num, method:
        Points on the path; how measured values are read there (:data:`METHODS`).
    tolerance, energy_tolerance, z:
        Pass when ``max(|dS_meas - dS_pred| - z se, 0) <= tolerance N_R`` and (unless
        ``energy_tolerance`` is None) ``|dU_meas - dU_pred| <= energy_tolerance`` times the
        energy scale of the path.
    """
    for name, value in (("tolerance", tolerance), ("z", z)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(run, (str, Path)):
        from thermonet.store import open_run

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            run = open_run(run)
    m = as_measured(run)
    states = m.stationary(window)
    protocol = m.protocol
    hps = tuple(protocol.hyperparameters)
    if system is None:
        system = default_system(m, states)
    if system.protocol.name != protocol.name:
        raise InputError(f"the system's protocol is {system.protocol.name}, the run's {protocol.name}")
    if not bool(np.isfinite(states["S"]).any()):
        raise InputError("the run has no entropy (a process comparison needs S)")
    path = process.path(system, _start_state(system, start), to=_target(system, to), num=num)
    hp_path = {h: path.states[h].values for h in hps}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        measured = measured_along(states, hps, hp_path, method=method)
    if not np.isfinite(measured["S"].values).all():
        raise InputError("the run has no finite entropy along the path (a process comparison needs S)")

    n_r = gas_constant(float(m.dim))
    S_m, U_m = measured["S"].values, measured["U"].values
    S_p, U_p = path.states["S"].values, path.states["U"].values
    se = lambda q, i: float(np.nan_to_num(measured[f"{q}_se"].values[i]))  # noqa: E731
    dS_m, dS_p = float(S_m[-1] - S_m[0]), float(S_p[-1] - S_p[0])
    dS_se = math.hypot(se("S", 0), se("S", -1))
    dU_m, dU_p = float(U_m[-1] - U_m[0]), float(U_p[-1] - U_p[0])
    dU_se = math.hypot(se("U", 0), se("U", -1))
    energy_scale = max(abs(dU_p), float(np.nanmax(np.abs(U_p))), 1e-300)
    err_S = dS_m - dS_p
    profile_S = np.abs((S_m - S_m[0]) - (S_p - S_p[0]))
    profile_U = np.abs((U_m - U_m[0]) - (U_p - U_p[0]))
    P_m = measured["P"].values if "P" in measured else path.states["P"].values
    V_m = measured["V"].values
    T_m = measured["T"].values
    W_m = float(integrate.simpson(P_m, x=V_m))
    TdS_m = float(integrate.simpson(T_m, x=S_m))
    numbers = {
        "delta_S_measured": dS_m, "delta_S_measured_se": dS_se, "delta_S_predicted": dS_p, "delta_S_error": err_S,
        "delta_S_error_over_nr": abs(err_S) / n_r, "delta_S_error_over_nr_se": dS_se / n_r,
        "profile_S_max_over_nr": float(np.nanmax(profile_S)) / n_r,
        "delta_U_measured": dU_m, "delta_U_measured_se": dU_se, "delta_U_predicted": dU_p,
        "delta_U_error": dU_m - dU_p, "delta_U_rel_error": abs(dU_m - dU_p) / energy_scale,
        "delta_U_rel_error_se": dU_se / energy_scale,
        "profile_U_max_rel": float(np.nanmax(profile_U)) / energy_scale,
        "W_measured": W_m, "W_predicted": path.work, "Q_measured": dU_m + W_m, "Q_predicted": path.heat,
        "TdS_measured": TdS_m,
    }
    # three-way verdicts (thermonet.analysis.verdicts): fail if either figure fails, else
    # inconclusive if either cannot be decided, else pass
    verdicts = [decide(numbers["delta_S_error_over_nr"], numbers["delta_S_error_over_nr_se"], tolerance, z)]
    if energy_tolerance is not None:
        verdicts.append(decide(numbers["delta_U_rel_error"], numbers["delta_U_rel_error_se"], energy_tolerance, z))
    kinds = [v for v, _ in verdicts]
    verdict = "fail" if "fail" in kinds else "inconclusive" if "inconclusive" in kinds else "pass"
    to_decide = "; ".join(t for v, t in verdicts if v == "inconclusive" and t) if verdict == "inconclusive" else ""
    sm = seed_mean(states)
    var = _target(system, to)
    context = {"hyperparameters": list(hps), "protocol": protocol.name, "dim": m.dim, "window": window,
               "method": method, "path_variable": next(iter(var)), "to": dict(to),
               "start": dict(start) if not isinstance(start, State) else start.given(),
               "grid_S": sm["S"].transpose(*hps)}
    return MeasuredProcess(process=process, system=system, path=path, measured=measured, numbers=numbers,
                           tolerance=float(tolerance), energy_tolerance=energy_tolerance, z=float(z),
                           verdict=verdict, to_decide=to_decide, context=context)
