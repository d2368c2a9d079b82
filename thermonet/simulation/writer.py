"""Streaming Zarr run store of the isotropic simulator, with checkpoints for ``--resume``.

Layout (one Zarr v3 group, written through xarray, readable with ``xr.open_zarr``):

* dimensions: the protocol's hyperparameters (e.g. ``lr``, ``wd``), ``seed``, then
  ``step`` (time series) or ``entropy_step`` (entropy series); coordinates hold the
  values (float64 hyperparameters, int64 seeds and steps);
* time-series variables (hp…, seed, step), float64: ``loss``, ``rho``, ``grad_norm_sq``,
  ``sigma2``, ``trace_sigma``, ``grad_full_sq`` and, for protocols whose pressure is
  measured (fixed sphere), ``lambda_eff``;
* entropy variables (hp…, seed, entropy_step): ``entropy_sphere``, ``entropy``;
* every entry not yet written is NaN; the attribute ``steps_done`` says up to which step
  the store is valid and ``complete`` is True once the run has finished;
* ``_checkpoint/slot0`` and ``_checkpoint/slot1``: engine state (``w``, ``queue``,
  ``acc``) written alternately; a slot's attribute ``step`` is set to −1 before its arrays
  are rewritten and to the step afterwards, so a run killed mid-write still leaves the
  other slot intact. xarray ignores the subgroup.

Every file write of zarr-python's local store is atomic (temporary file + rename). The
order of a flush is: data → checkpoint → root attributes (``steps_done``), so
``steps_done`` never runs ahead of the data. Metadata is consolidated once at creation
(array shapes never change; the root attributes live in the same ``zarr.json``), so
``xr.open_zarr`` opens the store without warnings.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from thermonet.errors import StoreError

__all__ = ["ENTROPY_VARIABLES", "RunStore", "read_store_attrs", "series_variables"]

#: Entropy variables, in store order.
ENTROPY_VARIABLES = ("entropy_sphere", "entropy")
_BASE_SERIES = ("loss", "rho", "grad_norm_sq", "sigma2", "trace_sigma", "grad_full_sq")
_SLOTS = ("slot0", "slot1")
_CHECKPOINT = "_checkpoint"


def series_variables(measured_pressure: bool) -> tuple[str, ...]:
    """Time-series variable names; ``lambda_eff`` only when the pressure is measured."""
    return _BASE_SERIES + (("lambda_eff",) if measured_pressure else ())


@contextlib.contextmanager
def _quiet():
    """Silence zarr's note that consolidated metadata is not in the v3 spec (yet)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def read_store_attrs(path: str | Path) -> dict:
    """Root attributes of a thermonet run store; :class:`StoreError` if it is not one."""
    path = Path(path)
    meta_path = path / "zarr.json"
    if not path.is_dir() or not meta_path.is_file():
        raise StoreError(f"{path} is not a Zarr v3 store (no zarr.json); not a thermonet run")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read zarr.json ({exc})") from None
    attrs = meta.get("attributes", {}) if isinstance(meta, dict) else {}
    if "thermonet_version" not in attrs or "kind" not in attrs:
        raise StoreError(f"{path} is a Zarr store but not a thermonet run (no thermonet_version/kind attributes)")
    return attrs


def is_removable(path: Path) -> bool:
    """True for an empty directory or a thermonet run store (what --overwrite may delete)."""
    if path.is_dir() and not any(path.iterdir()):
        return True
    try:
        read_store_attrs(path)
    except StoreError:
        return False
    return True


class RunStore:
    """Writer of one run store (see the module docstring)."""

    def __init__(self, path: str | Path):
        import zarr

        self.path = Path(path)
        with _quiet():
            # Opened through the consolidated metadata so that attribute updates keep it
            # (the arrays' metadata never changes after creation).
            self.root = zarr.open_group(str(self.path), mode="r+")

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, *, hp_coords: Mapping[str, np.ndarray], seeds: Sequence[int],
               log_steps: np.ndarray, entropy_steps: np.ndarray, series: Sequence[str],
               attrs: Mapping, checkpoint_shapes: Mapping[str, tuple[int, ...]]) -> "RunStore":
        """Write an all-NaN store of the final shape; return its writer."""
        import xarray as xr
        import zarr

        path = Path(path)
        hp_dims = tuple(hp_coords)
        lead = tuple(len(v) for v in hp_coords.values()) + (len(seeds),)
        members = int(np.prod(lead))
        coords = {name: np.asarray(values, dtype=np.float64) for name, values in hp_coords.items()}
        coords["seed"] = np.asarray(seeds, dtype=np.int64)
        coords["step"] = np.asarray(log_steps, dtype=np.int64)
        coords["entropy_step"] = np.asarray(entropy_steps, dtype=np.int64)
        nlog, nent = len(log_steps), len(entropy_steps)
        data = {name: ((*hp_dims, "seed", "step"), np.broadcast_to(np.nan, (*lead, nlog))) for name in series}
        data.update({name: ((*hp_dims, "seed", "entropy_step"), np.broadcast_to(np.nan, (*lead, nent)))
                     for name in ENTROPY_VARIABLES})
        ds = xr.Dataset(data, coords=coords, attrs=dict(attrs))
        step_chunk = int(max(1, min(nlog, 2**17 // max(1, members))))
        encoding = {name: {"chunks": (*lead, step_chunk)} for name in series}
        encoding.update({name: {"chunks": (*lead, max(1, nent))} for name in ENTROPY_VARIABLES})
        with _quiet():
            ds.to_zarr(str(path), mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
            root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
            ck = root.create_group(_CHECKPOINT)
            for slot in _SLOTS:
                group = ck.create_group(slot)
                for name, shape in checkpoint_shapes.items():
                    chunks = _checkpoint_chunks(shape)
                    group.create_array(name, shape=shape, chunks=chunks, dtype="float64", fill_value=np.nan)
                group.attrs.update({"step": -1})
            zarr.consolidate_metadata(str(path))
        return cls(path)

    # ------------------------------------------------------------------ data
    def write_series(self, first: int, data: Mapping[str, np.ndarray]) -> None:
        """Write time-series values for log indices ``first, first+1, …`` (last axis)."""
        for name, values in data.items():
            values = np.asarray(values, dtype=np.float64)
            count = values.shape[-1]
            if count:
                self.root[name][..., first:first + count] = values

    def write_entropy(self, index: int, data: Mapping[str, np.ndarray]) -> None:
        for name, values in data.items():
            self.root[name][..., index] = np.asarray(values, dtype=np.float64)

    def update_attrs(self, **values) -> None:
        self.root.attrs.update(values)

    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    # ------------------------------------------------------------------ checkpoint
    def _slot_steps(self) -> dict[str, int]:
        import zarr

        steps = {}
        for slot in _SLOTS:
            try:
                group = zarr.open_group(str(self.path / _CHECKPOINT / slot), mode="r", use_consolidated=False)
                steps[slot] = int(group.attrs.get("step", -1))
            except Exception:  # noqa: BLE001 - a damaged slot is simply not usable
                steps[slot] = -1
        return steps

    def save_checkpoint(self, state: Mapping[str, np.ndarray]) -> None:
        """Write the engine state into the older slot (``state['t']`` is its step)."""
        import zarr

        steps = self._slot_steps()
        slot = min(_SLOTS, key=lambda s: steps[s])
        group = zarr.open_group(str(self.path / _CHECKPOINT / slot), mode="r+", use_consolidated=False)
        group.attrs.update({"step": -1})
        for name, value in state.items():
            if name == "t":
                continue
            group[name][...] = np.asarray(value, dtype=np.float64)
        group.attrs.update({"step": int(state["t"])})

    def load_checkpoint(self) -> dict[str, np.ndarray] | None:
        """The newest complete checkpoint, or ``None`` when there is none."""
        import zarr

        steps = self._slot_steps()
        slot = max(_SLOTS, key=lambda s: steps[s])
        if steps[slot] < 0:
            return None
        group = zarr.open_group(str(self.path / _CHECKPOINT / slot), mode="r", use_consolidated=False)
        state = {name: np.asarray(group[name][...]) for name in group.array_keys()}
        state["t"] = np.int64(steps[slot])
        return state

    def drop_checkpoint(self) -> None:
        """Mark both slots empty (the run is complete; frees nothing but states intent)."""
        import zarr

        for slot in _SLOTS:
            group = zarr.open_group(str(self.path / _CHECKPOINT / slot), mode="r+", use_consolidated=False)
            group.attrs.update({"step": -1})
            for name in list(group.array_keys()):
                # delete the chunk files; the (empty, NaN-filled) arrays stay for schema stability
                shutil.rmtree(self.path / _CHECKPOINT / slot / name / "c", ignore_errors=True)


def _checkpoint_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of at most ~16 MiB along the first axis."""
    per_row = 8 * int(np.prod(shape[1:])) if len(shape) > 1 else 8
    rows = max(1, min(shape[0], (16 * 2**20) // max(1, per_row)))
    return (rows, *shape[1:])
