"""Writing a run store: created whole and atomically, then filled log by log.

:meth:`RunStore.create` writes the all-missing Dataset of the schema
(:func:`thermonet.store.schema.empty_dataset`) into a temporary directory next to the
target, consolidates its metadata and renames it into place: a store either does not
exist yet or is complete and valid (``steps_done = 0``), whatever moment a process dies
at. Temporary directories of dead processes are removed by the next ``create``.

Then the driver writes, in this order at every flush: data (time series by log index,
entropies by entropy index, per-member status) -> checkpoint
(:mod:`thermonet.store.checkpoint`) -> the root attribute ``steps_done``. Every file
write of zarr-python's local store is atomic (temporary file + rename), so
``steps_done`` never runs ahead of the data. Metadata is consolidated once at creation
(array shapes never change; the root attributes live in the same ``zarr.json``), so
``xr.open_zarr`` opens the store without warnings.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from thermonet.errors import StoreError

__all__ = ["RunStore", "is_removable", "read_store_attrs"]

_CREATING = ".creating-"


@contextlib.contextmanager
def quiet_zarr():
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


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``.{name}.creating-PID`` folders of processes that are gone."""
    for candidate in path.parent.glob(f".{path.name}{_CREATING}*"):
        try:
            pid = int(candidate.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            continue


def every_chunk():
    """Zarr writes chunks that hold only the fill value (NaN) too: a finished step always has
    its chunk on disk, so a missing one is damage, not "no data"."""
    import zarr

    return zarr.config.set({"array.write_empty_chunks": True})


class RunStore:
    """Writer of one run store (see the module docstring)."""

    def __init__(self, path: str | Path):
        import zarr

        self.path = Path(path)
        with quiet_zarr():
            # Opened through the consolidated metadata so that attribute updates keep it
            # (the arrays' metadata never changes after creation).
            self.root = zarr.open_group(str(self.path), mode="r+")

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, *, kind: str, protocol, grid: Mapping[str, Sequence[float]],
               seeds: Sequence[int], log_steps: np.ndarray, entropy_steps: np.ndarray, attrs: Mapping,
               layout=None, groups: Sequence[tuple[str, int]] | None = None,
               creation_hook=None) -> "RunStore":
        """Write the all-missing store of the final shape atomically; return its writer.

        ``layout`` (:class:`thermonet.store.layout.Layout`) gives the chunks along the
        member dimensions: one chunk per shard (default: all members in one chunk).
        ``groups``: ``(name, D_g)`` of the engine's scale-invariant groups, or ``None`` (no
        per-group variables; :func:`thermonet.store.schema.empty_dataset`).

        ``creation_hook(stage)`` (tests) is called at ``"arrays"`` (arrays written, not yet
        consolidated) and ``"renamed"``; a hook that kills the process there shows that
        no stage leaves a store that cannot be resumed.
        """
        import zarr

        from thermonet.store.layout import Layout
        from thermonet.store.schema import dims_of, empty_dataset, variables_for

        path = Path(path)
        _remove_stale_temporaries(path)
        # chunks_complete: every chunk of a finished step is written, NaN-only ones too, so a
        # missing chunk means a damaged store (thermonet.store.verify)
        ds = empty_dataset(kind, protocol, grid=grid, seeds=seeds, log_steps=log_steps, entropy_steps=entropy_steps,
                           attrs={**dict(attrs), "chunks_complete": True}, groups=groups)
        lead = (*protocol.hyperparameters, "seed")
        if layout is None:
            layout = Layout(lead, [ds.sizes[d] for d in lead], [ds.sizes[d] for d in lead])
        encoding = {}
        for variable in variables_for(kind, protocol, grouped=groups is not None):
            encoding[variable.name] = {"chunks": layout.chunks(ds.sizes, dims_of(variable, protocol))}
        temporary = path.parent / f".{path.name}{_CREATING}{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        try:
            with quiet_zarr():
                ds.to_zarr(str(temporary), mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
                if creation_hook is not None:
                    creation_hook("arrays")
                zarr.consolidate_metadata(str(temporary))
            os.rename(temporary, path)
        except OSError as exc:
            shutil.rmtree(temporary, ignore_errors=True)
            if path.exists():
                raise StoreError(f"{path} appeared while this run was creating it; another process writes there")
            raise StoreError(f"cannot create the run store {path}: {exc.strerror or exc}") from None
        if creation_hook is not None:
            creation_hook("renamed")
        return cls(path)

    # ------------------------------------------------------------------ data
    # ``block``: slices along the member dimensions (hp…, seed), a shard's block of
    # :class:`thermonet.store.layout.Layout`; ``()`` is every member.
    def write_series(self, first: int, data: Mapping[str, np.ndarray], block: tuple[slice, ...] = ()) -> None:
        """Write time-series values for log indices ``first, first+1, …`` (last axis)."""
        with every_chunk():
            for name, values in data.items():
                values = np.asarray(values, dtype=np.float64)
                count = values.shape[-1]
                if count:
                    self.root[name][(*block, ..., slice(first, first + count))] = values

    def write_entropy(self, index: int, data: Mapping[str, np.ndarray], block: tuple[slice, ...] = ()) -> None:
        """Write the entropy estimates of entropy index ``index`` (one value per member)."""
        with every_chunk():
            for name, values in data.items():
                self.root[name][(*block, ..., index)] = np.asarray(values, dtype=np.float64)

    def write_members(self, data: Mapping[str, np.ndarray], block: tuple[slice, ...] = ()) -> None:
        """Write per-member variables (e.g. ``diverged_at``), shape (hp…, seed) of the block."""
        with every_chunk():
            for name, values in data.items():
                array = self.root[name]
                shape = tuple(s.stop - s.start for s in block) if block else array.shape
                array[block or ...] = np.asarray(values).reshape(shape).astype(array.dtype)

    def has(self, name: str) -> bool:
        """Whether the store holds the variable ``name`` (a store written before a variable
        existed, resumed by a newer thermonet, keeps its layout)."""
        return name in self.root

    def update_attrs(self, **values) -> None:
        self.root.attrs.update(values)

    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)
