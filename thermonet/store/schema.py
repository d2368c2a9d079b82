"""The run-store schema, declared once: used by the writer, the reader, the validator and the fixtures.

A run store is one xarray Dataset in Zarr. Its dimensions are the protocol's
hyperparameters (``Protocol.hyperparameters``), ``seed``, and ``step`` (time series) or
``entropy_step`` (entropy series); per-member variables have no time axis. Network runs
also have ``group``, the model's scale-invariant groups (coordinate: their names; the
coordinate ``group_dim`` along it: their sizes D_g), between ``seed`` and the time axis
of every per-group variable (``grouped``). Every
variable a writer may create is a :class:`Variable` in :data:`VARIABLES`, with the run
kinds that write it and whether the reader requires it. ``docs/data-layout.md`` documents
each of them (``tests/test_store.py`` checks that it does).

* :func:`variables_for` -- the variables of a run of one kind and protocol, in store order;
* :func:`empty_dataset` -- the all-missing Dataset of the final shape (the writer stores
  it, :func:`thermonet.store.synthetic.synthetic_run` fills it);
* :func:`check_dataset` -- the validation :func:`thermonet.store.open_run` runs.

Versions: :data:`SCHEMA_VERSION` is written as the attribute ``schema_version``. Stores
without it were written by thermonet 0.1 (version 1); they have the same variables and
are read as they are. A store of a newer version is refused with a message that says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from thermonet.errors import InputError, StoreError

if TYPE_CHECKING:
    import xarray as xr

    from thermonet.theory.protocols import Protocol

__all__ = [
    "ENTROPY_VARIABLES",
    "GROUP",
    "GROUP_VARIABLES",
    "GROUP_DIM",
    "KINDS",
    "REQUIRED_ATTRIBUTES",
    "SCHEMA_VERSION",
    "TIME_SERIES_VARIABLES",
    "VARIABLES",
    "Variable",
    "check_dataset",
    "dims_of",
    "empty_dataset",
    "series_variables",
    "variables_for",
]

#: The version this thermonet writes (attribute ``schema_version``; absent = 1). Version 3:
#: ``loss`` is the time average over every step of a log interval (``loss_snapshot`` /
#: ``loss_full`` keep the value at the log step) and ``grad_norm_sq`` the mean over the
#: interval's training steps; versions 1 and 2 logged snapshots (see :data:`TIME_AVERAGED`).
SCHEMA_VERSION = 3
#: The first version whose ``loss`` is a time average.
TIME_AVERAGED = 3
#: Values of the ``kind`` attribute: the simulated isotropic test system, or trained networks.
KINDS = ("isotropic", "network")
#: Attributes every run holds.
REQUIRED_ATTRIBUTES = ("thermonet_version", "protocol", "kind", "dim", "steps_done")
#: The time axes: a variable's ``axis``.
STEP, ENTROPY_STEP = "step", "entropy_step"
#: The scale-invariant groups of a network: the dimension (coordinate: group names) and the
#: coordinate variable along it holding each group's size D_g.
GROUP, GROUP_DIM = "group", "group_dim"


@attrs.frozen
class Variable:
    """One variable of a run store.

    ``axis``: ``"step"`` (time series), ``"entropy_step"`` (entropy estimates) or ``None``
    (one value per member). ``kinds``: the run kinds that write it. ``required``: the
    reader refuses a store without it. ``pressure``: it holds the measured pressure of
    protocols whose ``measured_pressure`` names it (required for them). ``grouped``: one
    value per scale-invariant group (the dimension ``group`` before the time axis); only
    in runs that have groups, never required (stores written before groups existed are
    read as they are).
    """

    name: str
    axis: str | None
    meaning: str
    kinds: tuple[str, ...] = KINDS
    required: bool = False
    pressure: bool = False
    dtype: str = "float64"
    fill: Any = math.nan
    grouped: bool = False


#: Every variable a writer may create, in store order.
VARIABLES: tuple[Variable, ...] = (
    Variable("loss", STEP, "training loss averaged over every step of the log interval (internal energy)",
             required=True),
    Variable("loss_snapshot", STEP, "the energy at the log step", kinds=("isotropic",)),
    Variable("loss_full", STEP, "loss on the full training set at the log step", kinds=("network",)),
    Variable("rho", STEP, "weight norm ||w|| at the log step", required=True),
    Variable("grad_norm_sq", STEP, "mean ||g~||**2 of the training steps' stochastic gradients over the interval"),
    Variable("sigma2", STEP, "noise level at unit norm, trSigma(x)/(D-1)", required=True),
    Variable("trace_sigma", STEP, "trSigma(x) at unit norm"),
    Variable("grad_full_sq", STEP, "G1**2 = ||grad L(x)||**2 at unit norm"),
    Variable("lambda_eff", STEP, "measured effective weight decay eta E||g~||**2/(2 rho_0**2)", pressure=True),
    Variable("train_accuracy", STEP, "accuracy on the training set", kinds=("network",)),
    Variable("test_loss", STEP, "loss on the test set", kinds=("network",)),
    Variable("test_accuracy", STEP, "accuracy on the test set", kinds=("network",)),
    Variable("snr", STEP, "gradient signal-to-noise ratio ||g||/sqrt(trSigma(w))", kinds=("network",)),
    Variable("entropy_sphere", ENTROPY_STEP, "S1, entropy of the direction on S^(D-1) (nats)"),
    Variable("entropy", ENTROPY_STEP, "S = S1 + (D-1) ln rho_bar (nats)"),
    Variable("entropy_se", ENTROPY_STEP, "the entropy estimator's standard error of S1 (and of S) (nats)"),
    Variable("diverged_at", None, "step at which the member diverged and was frozen, -1 if never",
             kinds=("network",), dtype="int64", fill=-1),
    Variable("rho_group", STEP, "radius rho_g = ||w_g|| of each scale group at the log step", kinds=("network",),
             grouped=True),
    Variable("grad_norm_sq_group", STEP, "mean ||g~_g||**2 of the stochastic gradients' group part",
             kinds=("network",), grouped=True),
    Variable("trace_sigma_group", STEP, "trSigma_g(x_g) at the group's unit norm", kinds=("network",), grouped=True),
    Variable("sigma2_group", STEP, "group noise level trSigma_g(x_g)/(D_g-1)", kinds=("network",), grouped=True),
    Variable("grad_full_sq_group", STEP, "G1_g**2 = rho_g**2 ||g_bar_g||**2", kinds=("network",), grouped=True),
    Variable("lr_eff_group", STEP, "the group's effective learning rate eta_eff,g", kinds=("network",),
             grouped=True),
    Variable("temperature_group", STEP, "T_g = eta_eff,g sigma2_g / 2", kinds=("network",), grouped=True),
    Variable("entropy_sphere_group", ENTROPY_STEP, "S1_g, entropy of x_g on S^(D_g-1) (nats)", kinds=("network",),
             grouped=True),
    Variable("entropy_group", ENTROPY_STEP, "S_g = S1_g + (D_g-1) ln rho_bar_g (nats)", kinds=("network",),
             grouped=True),
)
_BY_NAME = {v.name: v for v in VARIABLES}

#: Names of every time-series and entropy variable (for readers that only need the names).
TIME_SERIES_VARIABLES = tuple(v.name for v in VARIABLES if v.axis == STEP)
ENTROPY_VARIABLES = tuple(v.name for v in VARIABLES if v.axis == ENTROPY_STEP)
#: Names of the per-group variables.
GROUP_VARIABLES = tuple(v.name for v in VARIABLES if v.grouped)


def _pressure_variable(protocol: "Protocol") -> Variable | None:
    name = protocol.measured_pressure
    if name is None:
        return None
    known = _BY_NAME.get(name)
    if known is not None:
        return known
    return Variable(name, STEP, f"measured pressure of {protocol.name}", pressure=True)


def variables_for(kind: str, protocol: "Protocol", grouped: bool = False) -> list[Variable]:
    """The variables a run of ``kind`` under ``protocol`` writes, in store order (the
    per-group ones only for a run with groups)."""
    if kind not in KINDS:
        raise InputError(f"run kind must be one of {', '.join(KINDS)}, got {kind!r}")
    pressure = _pressure_variable(protocol)
    out = [v for v in VARIABLES if kind in v.kinds and not v.pressure and (grouped or not v.grouped)]
    if pressure is not None:
        position = next(i for i, v in enumerate(out) if v.name == "grad_full_sq") + 1
        out.insert(position, attrs.evolve(pressure, required=True))
    return out


def series_variables(kind: str, protocol: "Protocol", grouped: bool = False) -> tuple[str, ...]:
    """Names of the time-series variables of a run (what an engine's logs hold)."""
    return tuple(v.name for v in variables_for(kind, protocol, grouped) if v.axis == STEP)


def dims_of(variable: Variable, protocol: "Protocol") -> tuple[str, ...]:
    """The dimensions of ``variable`` in a run under ``protocol``."""
    lead = (*protocol.hyperparameters, "seed") + ((GROUP,) if variable.grouped else ())
    return lead if variable.axis is None else (*lead, variable.axis)


def empty_dataset(kind: str, protocol: "Protocol", *, grid: Mapping[str, Sequence[float]], seeds: Sequence[int],
                  log_steps: Sequence[int], entropy_steps: Sequence[int], attrs: Mapping[str, Any],
                  groups: Sequence[tuple[str, int]] | None = None) -> "xr.Dataset":
    """The Dataset of a run with every entry missing (NaN, -1 for ``diverged_at``), final shape.

    ``groups``: ``(name, D_g)`` of every scale-invariant group (networks); with it the
    per-group variables and the ``group``/``group_dim`` coordinates are included. Values
    are lazily broadcast (no memory); the writer stores it, the synthetic runs fill copies
    of it.
    """
    import xarray as xr

    names = protocol.hyperparameters
    coords: dict[str, Any] = {n: np.asarray(grid[n], dtype=np.float64) for n in names}
    coords["seed"] = np.asarray(seeds, dtype=np.int64)
    coords[STEP] = np.asarray(log_steps, dtype=np.int64)
    coords[ENTROPY_STEP] = np.asarray(entropy_steps, dtype=np.int64)
    if groups is not None:
        groups = [(str(name), int(size)) for name, size in groups]
        coords[GROUP] = np.asarray([name for name, _ in groups], dtype=object)
        coords[GROUP_DIM] = (GROUP, np.asarray([size for _, size in groups], dtype=np.int64))
    data = {}
    for variable in variables_for(kind, protocol, grouped=groups is not None):
        dims = dims_of(variable, protocol)
        shape = tuple(np.size(coords[d]) for d in dims)
        data[variable.name] = (dims, np.broadcast_to(np.asarray(variable.fill, dtype=variable.dtype), shape))
    return xr.Dataset(data, coords=coords, attrs={**dict(attrs), "schema_version": SCHEMA_VERSION})


# ------------------------------------------------------------------------------ validation
def check_dataset(ds: "xr.Dataset", *, where: str = "dataset") -> "Protocol":
    """Raise :class:`StoreError` when ``ds`` does not follow the schema; return its protocol.

    Checks the schema version, the required attributes, the protocol name, ``dim``,
    ``kind``, that the required variables exist and that every known variable has the
    dimensions of its kind (in any order).
    """
    from thermonet.theory.protocols import Protocol

    missing = [a for a in REQUIRED_ATTRIBUTES if a not in ds.attrs]
    if missing:
        if "thermonet_version" in missing or "protocol" in missing:
            raise StoreError(f"{where}: not a thermonet run (no thermonet_version/protocol attributes)")
        raise StoreError(f"{where}: thermonet run lacks the attribute(s) {', '.join(missing)}")
    version = ds.attrs.get("schema_version", 1)
    if not isinstance(version, (int, np.integer)) or version > SCHEMA_VERSION:
        raise StoreError(f"{where}: written with run-store schema version {version!r}; this thermonet reads "
                         f"versions up to {SCHEMA_VERSION}: upgrade thermonet to read it")
    try:
        protocol = Protocol.get(str(ds.attrs["protocol"]))()
    except InputError as exc:
        raise StoreError(f"{where}: {exc}") from None
    try:
        dim = float(ds.attrs["dim"])
    except (TypeError, ValueError):
        dim = float("nan")
    if not (math.isfinite(dim) and dim >= 2):
        raise StoreError(f"{where}: attribute dim must be a number >= 2, got {ds.attrs['dim']!r}")
    kind = ds.attrs["kind"]
    if kind not in KINDS:
        raise StoreError(f"{where}: attribute kind must be one of {', '.join(KINDS)}, got {kind!r}")
    try:
        int(ds.attrs["steps_done"])
    except (TypeError, ValueError):
        raise StoreError(f"{where}: attribute steps_done must be an integer, got {ds.attrs['steps_done']!r}") from None

    hps = tuple(protocol.hyperparameters)
    expected = variables_for(kind, protocol)
    absent = [v.name for v in expected if v.required and v.name not in ds.data_vars]
    if absent:
        raise StoreError(f"{where}: a {protocol.name} run needs the variable(s) {', '.join(absent)}")
    for name in hps + ("seed", STEP):
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
    if STEP not in ds.coords:
        raise StoreError(f"{where}: dimension 'step' has no coordinate values")
    if ds.sizes[STEP] > 1 and np.any(np.diff(np.asarray(ds[STEP].values, dtype=float)) <= 0):
        raise StoreError(f"{where}: the step coordinate must increase")
    known = {v.name: v for v in (*VARIABLES, *expected)}
    for name, variable in known.items():
        if name not in ds.data_vars:
            continue
        dims = dims_of(variable, protocol)
        if set(ds[name].dims) != set(dims):
            raise StoreError(f"{where}: variable {name!r} has dims ({', '.join(map(str, ds[name].dims))}); a "
                             f"{protocol.name} run needs ({', '.join(dims)})")
    if any(v in ds.data_vars for v in ENTROPY_VARIABLES) and ENTROPY_STEP not in ds.coords:
        raise StoreError(f"{where}: dimension 'entropy_step' has no coordinate values")
    if any(v in ds.data_vars for v in GROUP_VARIABLES):
        _check_groups(ds, dim, where)
    return protocol


def _check_groups(ds: "xr.Dataset", dim: float, where: str) -> None:
    """The ``group`` coordinate (distinct names) and ``group_dim`` (sizes >= 1 summing to D)."""
    if GROUP not in ds.coords or GROUP_DIM not in ds.coords:
        raise StoreError(f"{where}: per-group variables need the coordinates {GROUP!r} (names) and {GROUP_DIM!r} "
                         f"(sizes D_g)")
    if tuple(ds[GROUP_DIM].dims) != (GROUP,):
        raise StoreError(f"{where}: coordinate {GROUP_DIM!r} must lie along {GROUP!r}")
    names = [str(n) for n in np.asarray(ds[GROUP].values)]
    if len(set(names)) != len(names):
        raise StoreError(f"{where}: group names must be distinct, got {names}")
    try:
        sizes = np.asarray(ds[GROUP_DIM].values, dtype=float)
    except (TypeError, ValueError):
        raise StoreError(f"{where}: {GROUP_DIM} must hold integers") from None
    if not (np.all(np.isfinite(sizes)) and np.all(sizes >= 1) and np.all(sizes == np.round(sizes))):
        raise StoreError(f"{where}: every {GROUP_DIM} must be an integer >= 1")
    if sizes.sum() != dim:
        raise StoreError(f"{where}: the group sizes sum to {int(sizes.sum())}, but the run has dim = {dim:g}")
