"""Reading run stores: :func:`open_run`, schema validation and the ``ds.thermo`` accessor.

A run store is an xarray Dataset kept in Zarr (the layout is specified in
``docs/data-layout.md``). This module is the reading side only; the simulator and the
network trainer write stores.

* :func:`open_run` opens a store lazily and checks that it is a thermonet run with the
  dimensions its protocol needs; problems a user can fix raise
  :class:`~thermonet.errors.StoreError` with one line saying what is wrong.
* ``ds.thermo`` (:class:`ThermoAccessor`, registered when :mod:`thermonet` is imported)
  turns the time series into stationary thermodynamic states: U, S, T, P, V per member.
* :class:`MeasuredStates` is the structural type the checks accept, so that any
  experiment object with ``protocol``, ``dim`` and ``stationary(window)`` (optionally
  ``kind`` and ``energy``) can be checked, not only a Zarr-backed Dataset.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from thermonet.errors import InputError, StoreError

if TYPE_CHECKING:
    from thermonet.theory.protocols import Protocol

__all__ = [
    "ENTROPY_VARIABLES",
    "MeasuredStates",
    "PartialRunWarning",
    "REQUIRED_ATTRIBUTES",
    "ThermoAccessor",
    "TIME_SERIES_VARIABLES",
    "VMF_ENERGIES",
    "as_measured",
    "batch_standard_error",
    "exact_vmf_applies",
    "measured_kind",
    "open_run",
    "parse_window",
    "validate_run",
]

#: Time-series variables, dims (hyperparameters..., seed, step).
TIME_SERIES_VARIABLES = ("loss", "rho", "grad_norm_sq", "sigma2", "trace_sigma", "grad_full_sq", "lambda_eff")
#: Entropy variables, dims (hyperparameters..., seed, entropy_step).
ENTROPY_VARIABLES = ("entropy_sphere", "entropy")
#: Variables every run must hold (``lambda_eff`` too for the fixed sphere).
REQUIRED_VARIABLES = ("loss", "rho", "sigma2")
#: Attributes every run must hold.
REQUIRED_ATTRIBUTES = ("thermonet_version", "protocol", "kind", "dim", "steps_done")
#: Values of the ``kind`` attribute.
KINDS = ("isotropic", "network")


class PartialRunWarning(UserWarning):
    """The store belongs to a run that did not finish (``complete`` is not true)."""


# ---------------------------------------------------------------------- the structural type
# Defined with the theory objects it is compared against; re-exported here for readers.
from thermonet.theory.system import MeasuredStates  # noqa: E402


def measured_kind(measured: object) -> str:
    """``measured.kind`` when it has one, else ``"network"``."""
    return str(getattr(measured, "kind", "network"))


#: Names of simulated energies whose stationary direction is vMF(-mu, 1/T) (THEORY §7).
VMF_ENERGIES = ("linear", "vmf")


def exact_vmf_applies(measured: object) -> bool:
    """True for isotropic runs of an energy with exact vMF statistics (or no energy named)."""
    energy = getattr(measured, "energy", None)
    return measured_kind(measured) == "isotropic" and (energy is None or str(energy) in VMF_ENERGIES)


def as_measured(obj: object) -> MeasuredStates:
    """``obj`` itself when it is :class:`MeasuredStates`, ``obj.thermo`` for a Dataset."""
    if isinstance(obj, xr.Dataset):
        return obj.thermo
    if isinstance(obj, MeasuredStates):
        return obj
    raise InputError(
        f"expected a run Dataset or an object with protocol, dim and stationary(); "
        f"got {type(obj).__name__}"
    )


# ---------------------------------------------------------------------- opening
def _is_zarr_store(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def open_run(path: str | Path, *, validate: bool = True) -> xr.Dataset:
    """Open a run store lazily and check it against the schema.

    Raises :class:`StoreError` (one line) when the path is missing, is not a Zarr store,
    is a Zarr store that is not a thermonet run, has no finished steps, or does not
    match the schema of its protocol. Warns with :class:`PartialRunWarning` when the
    run did not finish (``complete`` false): only logs up to ``steps_done`` are used by
    :meth:`ThermoAccessor.stationary`.
    """
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{path}: no such run store (the path does not exist)")
    if not p.is_dir() or not _is_zarr_store(p):
        what = "a file" if p.is_file() else "a directory without zarr.json or .zgroup"
        raise StoreError(f"{path}: not a Zarr store ({what})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = xr.open_dataset(p, engine="zarr", chunks=None, consolidated=None)
    except Exception as exc:  # zarr/xarray raise many types for damaged stores
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{path}: cannot read the Zarr store ({message})") from None
    if "thermonet_version" not in ds.attrs or "protocol" not in ds.attrs:
        raise StoreError(f"{path}: a Zarr store but not a thermonet run (no thermonet_version/protocol attributes)")
    if validate:
        validate_run(ds, where=str(path))
        steps_done = int(ds.attrs["steps_done"])
        if steps_done <= 0:
            raise StoreError(f"{path}: the run has no finished steps (steps_done = {steps_done}); nothing to read yet")
        if not _done_steps(ds, steps_done).size:
            raise StoreError(f"{path}: no log is finished yet (steps_done = {steps_done}, first log at step "
                             f"{int(ds['step'].values[0])})")
        ds = ds.transpose(*_canonical_order(ds))
    if ds.attrs.get("complete") is not True:
        done = ds.attrs.get("steps_done", "?")
        total = ds.attrs.get("steps", "?")
        warnings.warn(
            f"{path}: partial run (complete = {ds.attrs.get('complete')!r}, {done} of {total} steps done); "
            "using the finished steps only",
            PartialRunWarning,
            stacklevel=2,
        )
    return ds


def _canonical_order(ds: xr.Dataset) -> list[str]:
    from thermonet.theory.protocols import get_protocol

    hps = list(get_protocol(str(ds.attrs["protocol"])).hyperparameters)
    order = hps + ["seed", "step", "entropy_step"]
    return [d for d in order if d in ds.dims] + [d for d in ds.dims if d not in order]


def validate_run(ds: xr.Dataset, *, where: str = "dataset") -> None:
    """Raise :class:`StoreError` when ``ds`` does not follow the run-store schema.

    Checks the required attributes, the protocol name, ``dim``, ``kind``, that the
    required variables exist and that every known variable has the dimensions
    (protocol hyperparameters..., seed, step) or (..., seed, entropy_step), in any order.
    """
    from thermonet.theory.protocols import get_protocol

    missing = [a for a in REQUIRED_ATTRIBUTES if a not in ds.attrs]
    if missing:
        if "thermonet_version" in missing or "protocol" in missing:
            raise StoreError(f"{where}: not a thermonet run (no thermonet_version/protocol attributes)")
        raise StoreError(f"{where}: thermonet run lacks the attribute(s) {', '.join(missing)}")
    try:
        protocol = get_protocol(str(ds.attrs["protocol"]))
    except InputError as exc:
        raise StoreError(f"{where}: {exc}") from None
    try:
        dim = float(ds.attrs["dim"])
    except (TypeError, ValueError):
        dim = float("nan")
    if not (math.isfinite(dim) and dim >= 2):
        raise StoreError(f"{where}: attribute dim must be a number >= 2, got {ds.attrs['dim']!r}")
    if ds.attrs["kind"] not in KINDS:
        raise StoreError(f"{where}: attribute kind must be one of {', '.join(KINDS)}, got {ds.attrs['kind']!r}")
    try:
        int(ds.attrs["steps_done"])
    except (TypeError, ValueError):
        raise StoreError(f"{where}: attribute steps_done must be an integer, got {ds.attrs['steps_done']!r}") from None

    hps = tuple(protocol.hyperparameters)
    required = list(REQUIRED_VARIABLES) + (["lambda_eff"] if protocol.name == "fixed-sphere" else [])
    absent = [v for v in required if v not in ds.data_vars]
    if absent:
        raise StoreError(f"{where}: a {protocol.name} run needs the variable(s) {', '.join(absent)}")
    for name in hps + ("seed", "step"):
        if name not in ds.dims:
            raise StoreError(
                f"{where}: a {protocol.name} run needs the dimension {name!r} (dims are {', '.join(hps)}, seed, "
                f"step); the store has {', '.join(map(str, ds.dims)) or 'none'}"
            )
    for name in hps:
        if name not in ds.coords:
            raise StoreError(f"{where}: dimension {name!r} has no coordinate values")
        values = np.asarray(ds[name].values, dtype=float)
        if not np.all(np.isfinite(values) & (values > 0)):
            raise StoreError(f"{where}: every {name} coordinate must be finite and > 0")
    if "step" not in ds.coords:
        raise StoreError(f"{where}: dimension 'step' has no coordinate values")
    if ds.sizes["step"] > 1 and np.any(np.diff(np.asarray(ds["step"].values, dtype=float)) <= 0):
        raise StoreError(f"{where}: the step coordinate must increase")
    for group, last in ((TIME_SERIES_VARIABLES, "step"), (ENTROPY_VARIABLES, "entropy_step")):
        expected = set(hps) | {"seed", last}
        for var in group:
            if var in ds.data_vars and set(ds[var].dims) != expected:
                raise StoreError(
                    f"{where}: variable {var!r} has dims ({', '.join(map(str, ds[var].dims))}); a {protocol.name} "
                    f"run needs ({', '.join(hps)}, seed, {last})"
                )
    if any(v in ds.data_vars for v in ENTROPY_VARIABLES) and "entropy_step" not in ds.coords:
        raise StoreError(f"{where}: dimension 'entropy_step' has no coordinate values")


def _done_steps(ds: xr.Dataset, steps_done: int) -> np.ndarray:
    steps = np.asarray(ds["step"].values)
    return steps[steps <= steps_done]


# ---------------------------------------------------------------------- the accessor
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
        validate_run(ds)
        self._ds = ds
        self._cache: dict[object, xr.Dataset] = {}

    # ------------------------------------------------------------------ metadata
    @property
    def protocol(self) -> "Protocol":
        from thermonet.theory.protocols import get_protocol

        return get_protocol(str(self._ds.attrs["protocol"]))

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

    # ------------------------------------------------------------------ stationary states
    def window_steps(self, window: float | int = 0.5) -> np.ndarray:
        """The logged steps the window selects (finished logs only)."""
        done = _done_steps(self._ds, self.steps_done)
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

        * ``U``: mean loss; ``rho``: mean radius; ``V = rho**2 / 2`` of that mean radius
          (the same mean radius that enters ``S = S_1 + (D-1) ln rho``);
        * ``S``: mean ``entropy``; ``S_sphere``: mean ``entropy_sphere`` (both NaN when
          the store has no entropy);
        * ``sigma2``, and where stored ``trace_sigma``, ``grad_full_sq``,
          ``grad_norm_sq``, ``lambda_eff``: window means;
        * ``rho_sq_rel_var``: ``Var(ρ²)/E[ρ²]²`` over the window, the radius fluctuation
          that the moment-corrected discrete radius needs
          (:meth:`~thermonet.theory.protocols.Protocol.predicted_radius_fluctuating`);
        * ``U_se``, ``rho_se``, ``S_se``, ``S_sphere_se`` (and ``trace_sigma_se``,
          ``grad_full_sq_se`` where stored): standard errors of those window means by
          batch means (:func:`batch_standard_error`, 10 batches);
        * ``T = protocol.temperature(hp, rho, sigma2)``;
        * ``P``: the weight decay ``wd`` (fixed LR/ELR) or the mean ``lambda_eff``
          (fixed sphere).
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
        for var in ("sigma2", "trace_sigma", "grad_full_sq", "grad_norm_sq", "lambda_eff"):
            if var in ds.data_vars:
                out[var] = mean(var, win, "step")
        for var in ("trace_sigma", "grad_full_sq"):
            if var in ds.data_vars:
                errors[f"{var}_se"] = standard_error(var, win, "step")

        nan = xr.full_like(out["U"], np.nan)
        if "entropy_step" in ds.dims and ds.sizes["entropy_step"] > 0:
            esteps = np.asarray(ds["entropy_step"].values)
            done = esteps[esteps <= self.steps_done]
            chosen = done[done >= steps[0]]
            if chosen.size == 0 and done.size:
                chosen = done[-1:]
            ewin = ds.sel(entropy_step=chosen)
            for src, dst in (("entropy", "S"), ("entropy_sphere", "S_sphere")):
                have = src in ds.data_vars and chosen.size
                out[dst] = mean(src, ewin, "entropy_step") if have else nan
                errors[f"{dst}_se"] = standard_error(src, ewin, "entropy_step") if have else nan
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
        if protocol.pressure_expr() is None:
            out["P"] = out["lambda_eff"].copy()
        else:
            import sympy as sp

            from thermonet.theory.symbols import HYPERPARAMETER_SYMBOLS

            fn = sp.lambdify([HYPERPARAMETER_SYMBOLS[n] for n in hps], protocol.pressure_expr(), "numpy")
            P = np.asarray(fn(*[hp[n] for n in hps]), dtype=float) * np.ones(out["U"].shape)
            out["P"] = xr.DataArray(P, dims=order, coords=out["U"].coords)

        first = ["U", "S", "S_sphere", "T", "P", "V", "rho", "sigma2"]
        names = first + [k for k in out if k not in first]
        result = xr.Dataset({k: out[k] for k in names})
        result.attrs = {
            "protocol": protocol.name,
            "kind": self.kind,
            "dim": self.dim,
            "window_first_step": int(steps[0]),
            "window_last_step": int(steps[-1]),
            "window_logs": int(steps.size),
            "steps_done": self.steps_done,
        }
        self._cache[key] = result
        return result

    def seed_mean(self, window: float | int = 0.5) -> xr.Dataset:
        """:meth:`stationary` averaged over seeds (NaN-skipping)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self.stationary(window).mean("seed", skipna=True, keep_attrs=True)
