"""The one checkpoint format of every engine: ``_checkpoint/state.npz`` inside the run store.

(A sharded run keeps one per shard, ``_checkpoint/shard-0003.npz``: the ``name`` argument,
:func:`thermonet.store.layout.checkpoint_name`.)

An engine's :meth:`state_dict` (numpy arrays and numbers; see
:class:`thermonet.engines.common.Engine`) is saved as one uncompressed ``.npz`` file,
written to a temporary file, flushed to disk and renamed over the old one: a checkpoint
is always either the previous one or the new one, never half of each. ``--resume``
loads it and the driver continues from its step; the data written after it are
recomputed identically (the random numbers are counter-based).

Stores written by thermonet 0.1 kept checkpoints in other places (a Zarr group
``_checkpoint/slot*`` or ``_train_checkpoint/state.pt``); they are not read. Resuming
such a store starts again from step 0 and rewrites the same numbers.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from thermonet.errors import StoreError

__all__ = ["DIRECTORY", "FILE", "drop", "load", "path_of", "save"]

DIRECTORY = "_checkpoint"
NAME = "state"
FILE = f"{NAME}.npz"


def path_of(store: str | Path, name: str = NAME) -> Path:
    """Where the checkpoint ``name`` of ``store`` lives."""
    return Path(store) / DIRECTORY / f"{name}.npz"


def save(store: str | Path, state: Mapping[str, object], name: str = NAME) -> None:
    """Write ``state`` (name -> array or number) atomically (temporary file, fsync, rename)."""
    path = path_of(store, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **{name: np.asarray(value) for name, value in state.items()})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(store: str | Path, name: str = NAME) -> dict[str, np.ndarray] | None:
    """The saved state, or ``None`` when the store has no checkpoint."""
    path = path_of(store, name)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StoreError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc}); "
                         f"use --overwrite to start again") from None


def drop(store: str | Path, name: str = NAME) -> None:
    """Delete the checkpoint (the run is complete)."""
    path_of(store, name).unlink(missing_ok=True)
