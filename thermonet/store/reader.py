"""Opening run stores: :func:`open_run` and :func:`validate_run`.

* :func:`open_run` opens a store lazily and checks it against the schema
  (:func:`thermonet.store.schema.check_dataset`); problems a user can fix raise
  :class:`~thermonet.errors.StoreError` with one line saying what is wrong.
* The ``ds.thermo`` accessor (:mod:`thermonet.store.accessor`) turns the time series into
  stationary thermodynamic states.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import xarray as xr

from thermonet.errors import StoreError
from thermonet.store.accessor import done_steps  # importing the accessor registers ds.thermo
from thermonet.store.schema import ENTROPY_STEP, GROUP, STEP, check_dataset

__all__ = ["PartialRunWarning", "done_steps", "open_run", "validate_run"]


class PartialRunWarning(UserWarning):
    """The store belongs to a run that did not finish (``complete`` is not true)."""


def _is_zarr_store(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def validate_run(ds: xr.Dataset, *, where: str = "dataset") -> None:
    """Raise :class:`StoreError` when ``ds`` does not follow the run-store schema."""
    check_dataset(ds, where=where)


def open_run(path: str | Path, *, validate: bool = True, verify: bool | tuple[str, ...] = False) -> xr.Dataset:
    """Open a run store lazily and check it against the schema.

    With ``validate`` the store is also checked for damage without reading its data (every
    variable's metadata on disk, every chunk of a finished step present; see
    :mod:`thermonet.store.verify`); ``verify`` decodes chunks too: ``True`` all of them, a
    tuple of names those variables' (the command-line readers pass the variables the
    stationary states use). Damage raises :class:`StoreError` naming the variable and chunk.

    Raises :class:`StoreError` (one line) when the path is missing, is not a Zarr store,
    is a Zarr store that is not a thermonet run, has no finished steps, or does not
    match the schema of its protocol. Warns with :class:`PartialRunWarning` when the
    run did not finish (``complete`` false): only logs up to ``steps_done`` are used by
    :meth:`~thermonet.store.accessor.ThermoAccessor.stationary`.
    """
    from thermonet.base.paths import readable
    from thermonet.errors import InputError

    try:
        p = readable(path, "run store")
    except InputError as exc:
        raise StoreError(str(exc)) from None
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
    if validate or verify:
        from thermonet.store.verify import verify_run

        verify_run(p, read=verify)
    if validate:
        protocol = check_dataset(ds, where=str(path))
        steps_done = int(ds.attrs["steps_done"])
        if steps_done <= 0:
            raise StoreError(f"{path}: the run has no finished steps (steps_done = {steps_done}); nothing to read yet")
        if not done_steps(ds, steps_done).size:
            raise StoreError(f"{path}: no log is finished yet (steps_done = {steps_done}, first log at step "
                             f"{int(ds[STEP].values[0])})")
        order = [*protocol.hyperparameters, "seed", GROUP, STEP, ENTROPY_STEP]
        ds = ds.transpose(*[d for d in order if d in ds.dims], *[d for d in ds.dims if d not in order])
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
