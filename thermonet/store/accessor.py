"""The ``ds.thermo`` accessor: the thermodynamic reading of a run Dataset.

:class:`ThermoAccessor` (registered on every :class:`xarray.Dataset` when
:mod:`thermonet.store` is imported) turns a run's time series into stationary
thermodynamic states: U, S, T, P, V per member, with batch-means standard errors
(:func:`batch_standard_error`). It satisfies :class:`thermonet.store.measured.MeasuredStates`.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from thermonet.errors import InputError, StoreError
from thermonet.store.schema import ENTROPY_STEP, GROUP, GROUP_DIM, GROUP_VARIABLES, STEP, TIME_AVERAGED, check_dataset

if TYPE_CHECKING:
    from thermonet.theory.protocols import Protocol

__all__ = ["ThermoAccessor", "batch_standard_error", "done_steps", "parse_window"]


def done_steps(ds: xr.Dataset, steps_done: int) -> np.ndarray:
    """The logged steps that are finished (``step <= steps_done``)."""
    steps = np.asarray(ds[STEP].values)
    return steps[steps <= steps_done]


def _window_size(window: float | int, n_logs: int) -> int:
    """Number of final logs a ``window`` (fraction in (0, 1] or a count) selects."""
    if isinstance(window, (bool, np.bool_)):
        raise InputError(f"window must be a fraction in (0, 1] or a number of logs >= 1, got {window!r}")
    if isinstance(window, (int, np.integer)):
        if window < 1:
            raise InputError(f"window={window}: a number of final logs must be >= 1")
        if window > n_logs:
            raise InputError(f"window={window} logs, but only {n_logs} logs are finished")
        return int(window)
    try:
        fraction = float(window)
    except (TypeError, ValueError):
        raise InputError(f"window must be a fraction in (0, 1] or a number of logs >= 1, got {window!r}") from None
    if not (math.isfinite(fraction) and 0 < fraction <= 1):
        raise InputError(f"window={window!r}: a fraction of the logs must lie in (0, 1]; use an int for a count")
    return max(1, math.ceil(fraction * n_logs - 1e-9))


def batch_standard_error(series: xr.DataArray, axis: str, batches: int = 10) -> xr.DataArray:
    """Standard error of the mean of ``series`` along ``axis`` by the method of batch means.

    The series is cut into ``min(batches, n)`` contiguous batches; the standard error is
    the standard deviation of the (NaN-skipping) batch means over the square root of
    their number. Batches longer than the autocorrelation time make it valid for
    correlated series. NaN where fewer than two batches have data.
    """
    values = np.asarray(series.load().values, dtype=float)
    position = series.dims.index(axis)
    values = np.moveaxis(values, position, -1)
    n = values.shape[-1]
    count = min(int(batches), n)
    shape = values.shape[:-1]
    if count < 2:
        se = np.full(shape, np.nan)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.stack([np.nanmean(chunk, axis=-1) for chunk in np.array_split(values, count, axis=-1)], axis=-1)
            finite = np.isfinite(means).sum(axis=-1)
            se = np.nanstd(means, axis=-1, ddof=1) / np.sqrt(np.maximum(finite, 1))
        se = np.where(finite >= 2, se, np.nan)
    dims = [d for d in series.dims if d != axis]
    coords = {k: v for k, v in series.coords.items() if axis not in v.dims}
    return xr.DataArray(se, dims=dims, coords=coords)


#: Family-wise false-alarm rate of the drift test over all members and variables of a run.
DRIFT_ALPHA = 0.01


def entropy_bound_reason(attrs) -> str:
    """Why a run's stored entropies cannot be taken as estimates of S ("" when they can):
    the isotropic upper bound was asked for, or the queue held no more samples than the
    sphere has dimensions (N ≤ D), where no estimator identifies the entropy: ``auto``
    then returns the bound, the nearest-neighbour methods a number whose bias depends on
    the shape of the distribution (docs/entropy-estimators.md, "N ≤ D")."""
    method = str(attrs.get("entropy_method", ""))
    size, dim = int(attrs.get("queue_size", 0) or 0), int(attrs.get("dim", 0) or 0)
    if method == "isotropic-bound":
        return "the entropies are the isotropic upper bound (--entropy-method isotropic-bound), not estimates"
    if 0 < size <= dim:
        what = "upper bounds" if method == "auto" else f"{method} values with a shape-dependent bias"
        return (f"the entropies are {what}, not estimates: a queue of N = {size} samples cannot identify the "
                f"entropy on a sphere of D = {dim} (N <= D); a queue longer than D would decide it")
    return ""


#: Below this many entropy estimates in a window, batch means cannot measure their noise:
#: the entropy estimator's own standard error (``entropy_se``) is a floor under ``S_se``.
FEW_ENTROPY_ESTIMATES = 4


def drift_batches(n: int) -> int:
    """Batches per half-window the drift test uses on ``n`` logs: 2 to 10, at least 4 logs each."""
    return max(2, min(10, (n // 2) // 4))


def drift_z(series: xr.DataArray, axis: str, batches: int | None = None) -> xr.DataArray:
    """Drift of every member over a window: the second half's mean minus the first half's, in
    standard errors of that difference (batch means, ``batches`` per half, default
    :func:`drift_batches`). NaN with too few logs to tell. The statistic is Student-t
    distributed with about ``2 (batches - 1)`` degrees of freedom (:func:`drift_threshold`)."""
    n = series.sizes[axis]
    if n < 4:
        return xr.full_like(series.isel({axis: 0}, drop=True), np.nan, dtype=float)
    batches = drift_batches(n) if batches is None else int(batches)
    first, second = series.isel({axis: slice(0, n // 2)}), series.isel({axis: slice(n // 2, None)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        diff = second.mean(axis, skipna=True) - first.mean(axis, skipna=True)
        se = np.sqrt(batch_standard_error(first, axis, batches) ** 2 + batch_standard_error(second, axis, batches) ** 2)
        # a pinned quantity (the fixed sphere's radius) varies only by rounding: no drift to test
        level = np.abs(series.mean(axis, skipna=True))
        return xr.where(se > 1e-9 * level, diff / se, 0.0).where(np.isfinite(diff))


def drift_threshold(tests: int, alpha: float = DRIFT_ALPHA, dof: float | None = None) -> float:
    """|z| above which a drift is called significant with ``tests`` tests at family-wise ``alpha``
    (Bonferroni, two-sided): the Student-t quantile with ``dof`` degrees of freedom (the
    batch-means standard error is itself estimated from few batches), normal when ``None``."""
    from scipy import stats

    p = 1 - alpha / (2 * max(1, tests))
    return float(stats.norm.ppf(p) if dof is None else stats.t.ppf(p, dof))


def format_diverged(rows: list[dict], limit: int = 20) -> str:
    """One line naming diverged members (``ThermoAccessor.diverged()``), or ``""``."""
    if not rows:
        return ""
    shown = "; ".join(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                                if k != "step") + f" at step {row['step']}" for row in rows[:limit])
    more = f"; and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{len(rows)} member(s) diverged and were frozen (left out of the checks): {shown}{more}"


def parse_window(text: str) -> float | int:
    """Command-line ``--window``: ``"0.5"`` (a fraction) or ``"200"`` (a count of logs)."""
    text = str(text).strip()
    try:
        value: float | int = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"--window {text!r}: give a fraction in (0, 1] or a whole number of logs") from None
    _window_size(value, 10**9)  # range check only
    return value


@xr.register_dataset_accessor("thermo")
class ThermoAccessor:
    """``ds.thermo``: the thermodynamic reading of a run Dataset.

    Satisfies :class:`MeasuredStates`. Validates the schema on first use.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._protocol = check_dataset(ds)
        self._ds = ds
        self._cache: dict[object, xr.Dataset] = {}

    # ------------------------------------------------------------------ metadata
    @property
    def protocol(self) -> "Protocol":
        return self._protocol

    @property
    def dim(self) -> float:
        dim = float(self._ds.attrs["dim"])
        return int(dim) if dim.is_integer() else dim

    @property
    def kind(self) -> str:
        return str(self._ds.attrs["kind"])

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        return tuple(self.protocol.hyperparameters)

    @property
    def energy(self) -> str | None:
        """The ``energy`` attribute (isotropic runs: the simulated energy's name), if any."""
        value = self._ds.attrs.get("energy")
        return None if value is None else str(value)

    @property
    def steps_done(self) -> int:
        return int(self._ds.attrs["steps_done"])

    @property
    def complete(self) -> bool:
        return self._ds.attrs.get("complete") is True

    def grid(self) -> dict[str, np.ndarray]:
        """Hyperparameter values, by name."""
        return {name: np.asarray(self._ds[name].values, dtype=float) for name in self.hyperparameters}

    @property
    def groups(self) -> dict[str, int] | None:
        """``{group name: D_g}`` of a run with per-group variables, else ``None`` (stores
        written before groups existed, isotropic runs)."""
        if not any(v in self._ds.data_vars for v in GROUP_VARIABLES):
            return None
        return {str(n): int(d) for n, d in zip(self._ds[GROUP].values, self._ds[GROUP_DIM].values)}

    # ------------------------------------------------------------------ stationary states
    def window_steps(self, window: float | int = 0.5) -> np.ndarray:
        """The logged steps the window selects (finished logs only)."""
        done = done_steps(self._ds, self.steps_done)
        if done.size == 0:
            raise StoreError(f"no log is finished yet (steps_done = {self.steps_done})")
        return done[done.size - _window_size(window, done.size):]

    def stationary(self, window: float | int = 0.5) -> xr.Dataset:
        """Stationary state of every member: means over the final ``window`` of the run.

        ``window`` is a fraction in (0, 1] of the finished logs (``step <= steps_done``)
        or an int number of final logs. Entropies are averaged over the entropy
        estimates at ``entropy_step`` in the same step range (at least the last finished
        one). NaN entries (unwritten) are skipped.

        Returns a Dataset over (hyperparameters..., seed) with

        * ``U``: mean loss (a time average over every step since schema 3; attribute
          ``energy_average`` says ``"time"`` or ``"snapshot"``); ``rho``: mean radius;
          ``V = rho**2 / 2`` of that mean radius (the same mean radius that enters
          ``S = S_1 + (D-1) ln rho``);
        * ``S``: mean ``entropy``; ``S_sphere``: mean ``entropy_sphere`` (both NaN when
          the store has no entropy);
        * ``sigma2``, and where stored ``trace_sigma``, ``grad_full_sq``,
          ``grad_norm_sq``, ``lambda_eff``: window means;
        * ``rho_sq_rel_var``: ``Var(ρ²)/E[ρ²]²`` over the window, the radius fluctuation
          that the moment-corrected discrete radius needs
          (:meth:`~thermonet.theory.protocols.Protocol.predicted_radius_fluctuating`);
        * ``U_se``, ``rho_se``, ``S_se``, ``S_sphere_se`` (and ``trace_sigma_se``,
          ``grad_full_sq_se`` where stored): standard errors of those window means by
          batch means (:func:`batch_standard_error`, 10 batches). Where an entropy
          window has fewer than :data:`FEW_ENTROPY_ESTIMATES` estimates, the larger of
          that and the estimator's own error (``rms(entropy_se)/√n``), so one entropy
          estimate still carries its error;
        * ``drift_U``, ``drift_rho``: the second half of the window minus the first, in
          standard errors (:func:`drift_z`); ``stationary``: neither drifts beyond
          :func:`drift_threshold` (Bonferroni over the run's members, family-wise 1 %);
        * ``T = protocol.temperature(hp, rho, sigma2)``;
        * ``P``: the protocol's pressure (:meth:`Protocol.pressure`): the weight decay
          ``wd`` (fixed LR/ELR) or the mean of the measured ``lambda_eff`` (fixed sphere).
        """
        key = ("window", type(window).__name__, window)
        if key in self._cache:
            return self._cache[key]
        steps = self.window_steps(window)
        ds = self._ds
        hps = list(self.hyperparameters)
        order = hps + ["seed"]
        win = ds.sel(step=steps)
        out: dict[str, xr.DataArray] = {}

        def mean(var: str, data: xr.Dataset, axis: str) -> xr.DataArray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices stay NaN
                return data[var].load().mean(axis, skipna=True).transpose(*order)

        def standard_error(var: str, data: xr.Dataset, axis: str) -> xr.DataArray:
            return batch_standard_error(data[var], axis).transpose(*order)

        out["U"] = mean("loss", win, "step")
        out["rho"] = mean("rho", win, "step")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rho_sq = win["rho"].load() ** 2
            out["rho_sq_rel_var"] = (rho_sq.var("step", skipna=True)
                                     / rho_sq.mean("step", skipna=True) ** 2).transpose(*order)
        errors = {"U_se": standard_error("loss", win, "step"), "rho_se": standard_error("rho", win, "step")}
        # the drift test: is the window stationary? (second half vs first half)
        drift = {f"drift_{name}": drift_z(win[var].load(), "step").transpose(*order)
                 for name, var in (("U", "loss"), ("rho", "rho"))}
        tests = int(sum(np.isfinite(d.values).sum() for d in drift.values()))
        threshold = drift_threshold(tests, dof=2 * (drift_batches(win.sizes["step"]) - 1))
        with np.errstate(invalid="ignore"):
            drifting = np.zeros(out["U"].shape, dtype=bool)
            for d in drift.values():
                drifting |= np.abs(d.values) > threshold
        out.update(drift)
        out["stationary"] = xr.DataArray(~drifting, dims=order, coords=out["U"].coords)
        pressure = [self.protocol.measured_pressure] if self.protocol.measured_pressure else []
        for var in ("sigma2", "trace_sigma", "grad_full_sq", "grad_norm_sq", *pressure):
            if var in ds.data_vars:
                out[var] = mean(var, win, "step")
        for var in ("trace_sigma", "grad_full_sq"):
            if var in ds.data_vars:
                errors[f"{var}_se"] = standard_error(var, win, "step")

        nan = xr.full_like(out["U"], np.nan)
        if "entropy_step" in ds.dims and ds.sizes["entropy_step"] > 0:
            chosen = self._entropy_window(steps)
            ewin = ds.sel(entropy_step=chosen)
            estimator_se = self._estimator_standard_error(ewin, order) if chosen.size else None
            for src, dst in (("entropy", "S"), ("entropy_sphere", "S_sphere")):
                have = src in ds.data_vars and chosen.size
                out[dst] = mean(src, ewin, "entropy_step") if have else nan
                error = standard_error(src, ewin, "entropy_step") if have else nan
                if have and estimator_se is not None:
                    error = np.fmax(error, estimator_se)  # NaN-aware: either one where the other is missing
                errors[f"{dst}_se"] = error
        else:
            out["S"] = nan
            out["S_sphere"] = nan
            errors["S_se"] = errors["S_sphere_se"] = nan
        out.update(errors)

        out["V"] = out["rho"] ** 2 / 2
        hp = {name: ds[name].broadcast_like(out["U"]).transpose(*order).values for name in hps}
        protocol = self.protocol
        T = protocol.temperature(hp, out["rho"].values, out["sigma2"].values)
        out["T"] = xr.DataArray(T, dims=order, coords=out["U"].coords)
        means = {name: out[name].values for name in out}
        P = protocol.pressure(hp, means) * np.ones(out["U"].shape)
        out["P"] = xr.DataArray(P, dims=order, coords=out["U"].coords)

        first = ["U", "S", "S_sphere", "T", "P", "V", "rho", "sigma2"]
        names = first + [k for k in out if k not in first]
        result = xr.Dataset({k: out[k] for k in names})
        version = int(ds.attrs.get("schema_version", 1))
        result.attrs = {
            "protocol": protocol.name,
            "kind": self.kind,
            "dim": self.dim,
            "window_first_step": int(steps[0]),
            "window_last_step": int(steps[-1]),
            "window_logs": int(steps.size),
            "steps_done": self.steps_done,
            "energy_average": "time" if version >= TIME_AVERAGED else "snapshot",
            "drift_threshold": threshold,
            "entropy_bound": entropy_bound_reason(ds.attrs),
        }
        self._cache[key] = result
        return result

    def diverged(self) -> list[dict]:
        """The members that diverged and were frozen: one dict per member with its
        hyperparameters, ``seed`` and the ``step`` it diverged at (empty without
        ``diverged_at`` or when none did). Their values are NaN from that step on, so the
        checks leave them out; :func:`format_diverged` says which."""
        if "diverged_at" not in self._ds.data_vars:
            return []
        at = self._ds["diverged_at"].load()
        out = []
        for index in zip(*np.nonzero(np.asarray(at.values) >= 0)):
            point = at[index]
            row = {h: float(point[h]) for h in self.hyperparameters}
            row.update(seed=int(point["seed"]), step=int(point))
            out.append(row)
        return out

    def group_stationary(self, window: float | int = 0.5) -> xr.Dataset:
        """Stationary state of every scale-invariant group of every member (window means).

        The same window as :meth:`stationary`. Returns a Dataset over (hyperparameters...,
        seed, group) with

        * ``rho`` (mean ``rho_group``), ``V = rho**2/2``; ``T`` (mean ``temperature_group``),
          ``sigma2``, ``trace_sigma``, ``grad_full_sq``, ``grad_norm_sq``, ``lr_eff``: window
          means of the per-group series;
        * ``T_ratio``: window mean of ``T_g / T_bar`` with ``T_bar`` the degrees-of-freedom
          weighted mean temperature of the groups at the same log
          (:meth:`thermonet.theory.groups.ProductOfSpheres.mean_temperature`; 1 for every
          group under equipartition);
        * ``S``, ``S_sphere``: mean ``entropy_group``, ``entropy_sphere_group`` over the
          entropy estimates in the window (NaN without them);
        * ``*_se`` of ``rho``, ``T``, ``T_ratio``, ``trace_sigma``, ``grad_full_sq``, ``S``:
          batch-means standard errors (:func:`batch_standard_error`).

        The coordinate ``group_dim`` holds D_g. :class:`StoreError` when the run has no groups.
        """
        key = ("groups", type(window).__name__, window)
        if key in self._cache:
            return self._cache[key]
        groups = self.groups
        if groups is None:
            raise StoreError("this run has no per-group variables (an isotropic run, or a network run written "
                             "before thermonet measured scale-invariant groups)")
        steps = self.window_steps(window)
        ds = self._ds
        order = [*self.hyperparameters, "seed", GROUP]
        win = ds.sel(step=steps)
        out: dict[str, xr.DataArray] = {}

        def mean(series: xr.DataArray, axis: str) -> xr.DataArray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return series.load().mean(axis, skipna=True).transpose(*order)

        series = {name: win[f"{name}_group"] for name in ("rho", "sigma2", "trace_sigma", "grad_full_sq",
                                                          "grad_norm_sq", "lr_eff") if f"{name}_group" in ds}
        series["T"] = win["temperature_group"]
        series["T_ratio"] = self._temperature_ratio(win["temperature_group"], groups)
        for name, values in series.items():
            out[name] = mean(values, STEP)
        for name in ("rho", "T", "T_ratio", "trace_sigma", "grad_full_sq"):
            if name in series:
                out[f"{name}_se"] = batch_standard_error(series[name], STEP).transpose(*order)
        out["V"] = out["rho"] ** 2 / 2
        nan = xr.full_like(out["rho"], np.nan)
        chosen = self._entropy_window(steps)
        for src, dst in (("entropy_group", "S"), ("entropy_sphere_group", "S_sphere")):
            if src in ds.data_vars and chosen.size:
                ewin = ds[src].sel(entropy_step=chosen)
                out[dst] = mean(ewin, ENTROPY_STEP)
                out[f"{dst}_se"] = batch_standard_error(ewin, ENTROPY_STEP).transpose(*order)
            else:
                out[dst], out[f"{dst}_se"] = nan, nan
        result = xr.Dataset(out)
        result = result.assign_coords({GROUP_DIM: ds[GROUP_DIM]})
        result.attrs = {"protocol": self.protocol.name, "kind": self.kind, "dim": self.dim,
                        "window_first_step": int(steps[0]), "window_last_step": int(steps[-1]),
                        "window_logs": int(steps.size), "steps_done": self.steps_done}
        self._cache[key] = result
        return result

    def _temperature_ratio(self, temperature: xr.DataArray, groups: dict[str, int]) -> xr.DataArray:
        """``T_g / T_bar`` at every log (NaN where a group has D_g < 2)."""
        from thermonet.theory.groups import ProductOfSpheres

        try:
            system = ProductOfSpheres(self.protocol, groups)
        except InputError:
            return xr.full_like(temperature, np.nan)
        t = temperature.load()
        axis = t.dims.index(GROUP)
        with np.errstate(invalid="ignore", divide="ignore"):
            bar = system.mean_temperature(t.values, axis=axis)
            return t / xr.DataArray(bar, dims=[d for d in t.dims if d != GROUP],
                                    coords={k: v for k, v in t.coords.items() if GROUP not in v.dims})

    def _estimator_standard_error(self, ewin: xr.Dataset, order: list[str]) -> xr.DataArray | None:
        """The entropy estimator's standard error of the window's mean entropy,
        ``rms(entropy_se)/√n`` over its ``n`` estimates, where the window has fewer than
        :data:`FEW_ENTROPY_ESTIMATES` of them (too few for batch means to measure the
        noise); None otherwise, and for stores written before ``entropy_se`` existed.

        Successive estimates share part of their queue; measured on vMF samples at D = 3
        and 10, two estimates whose queues share half their samples correlate by 0.33–0.44,
        so ``√n`` understates the error of a mean of overlapping estimates by at most
        ``√(1 + 2·0.44) ≈ 1.4``.
        """
        n = ewin.sizes.get(ENTROPY_STEP, 0)
        if "entropy_se" not in ewin.data_vars or n == 0 or n >= FEW_ENTROPY_ESTIMATES:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rms = np.sqrt((ewin["entropy_se"].load() ** 2).mean(ENTROPY_STEP, skipna=True))
        return (rms / np.sqrt(n)).transpose(*order)

    def _entropy_window(self, steps: np.ndarray) -> np.ndarray:
        """Entropy steps in the window of ``steps`` (at least the last finished one)."""
        ds = self._ds
        if ENTROPY_STEP not in ds.dims or ds.sizes[ENTROPY_STEP] == 0:
            return np.zeros(0, dtype=np.int64)
        esteps = np.asarray(ds[ENTROPY_STEP].values)
        done = esteps[esteps <= self.steps_done]
        chosen = done[done >= steps[0]]
        return done[-1:] if chosen.size == 0 and done.size else chosen

    def seed_mean(self, window: float | int = 0.5) -> xr.Dataset:
        """:meth:`stationary` averaged over seeds (NaN-skipping)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self.stationary(window).mean("seed", skipna=True, keep_attrs=True)
