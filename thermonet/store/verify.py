"""Damaged run stores are named, never read as data.

A store can be damaged after it was written: a chunk overwritten with random bytes, a
chunk file or a variable's folder deleted. Zarr reads a missing chunk as its fill value
(NaN), so a deleted chunk would silently become "no data" and a check would skip instead of
failing; a corrupted chunk raises a codec error from deep inside the reader.
:func:`verify_run` turns both into one :class:`~thermonet.errors.StoreError`,
``"<path>: damaged: variable rho, chunk c/0/0/0/1 (steps 655-999): <reason>"``:

* every variable the consolidated metadata lists must have its own metadata on disk;
* in stores written with every chunk (``attrs["chunks_complete"]``: the writer since
  schema 3 writes chunks even when they hold only NaN), every chunk of a time series
  (``step`` or ``entropy_step``) that covers a finished step must exist;
* the variables in ``read`` (all of them with ``read=True``) are decoded chunk by chunk.

``thermonet check`` reads the variables it uses this way before computing anything;
``thermonet check --verify`` reads every chunk of every variable.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from thermonet.errors import StoreError

__all__ = ["verify_run"]

#: Dimensions along which a run fills its arrays as it goes.
_TIME_AXES = ("step", "entropy_step")


def _finished(group, axis: str, steps_done: int) -> int:
    """How many entries along ``axis`` are finished (values <= steps_done)."""
    try:
        values = np.asarray(group[axis][...])
    except Exception:  # the coordinate itself is damaged: every chunk counts
        return -1
    return int(np.sum(values <= steps_done))


def _chunk_ranges(shape, chunks):
    return [range(-(-s // c)) if s else range(0) for s, c in zip(shape, chunks)]


def verify_run(path: str | Path, *, read: bool | Iterable[str] = False) -> None:
    """Raise :class:`StoreError` naming the variable and chunk when the store at ``path`` is
    damaged (see the module docstring); return ``None`` when it is sound.

    ``read``: ``True`` decodes every chunk of every variable; an iterable of names decodes
    those variables (missing names are ignored: the schema check reports them); ``False``
    checks metadata and chunk presence only.
    """
    import zarr

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            listed = zarr.open_group(str(path), mode="r")
            actual = zarr.open_group(str(path), mode="r", use_consolidated=False)
            listed_names = set(listed.array_keys())
            actual_names = set(actual.array_keys())
        except Exception as exc:
            raise StoreError(f"{path}: damaged: cannot read the store's metadata ({_reason(exc)})") from None
        for name in sorted(listed_names - actual_names):
            raise StoreError(f"{path}: damaged: variable {name}: its folder or metadata is missing")
        attrs = dict(actual.attrs)
        steps_done = int(attrs.get("steps_done", 0) or 0)
        complete_chunks = bool(attrs.get("chunks_complete", False))
        wanted = actual_names if read is True else set() if read is False else set(read) & actual_names
        finished = {axis: _finished(actual, axis, steps_done) for axis in _TIME_AXES if axis in actual_names}
        for name in sorted(actual_names):
            array = actual[name]
            dims = tuple(array.metadata.dimension_names or ())
            if complete_chunks and any(d in finished for d in dims):
                _check_presence(path, name, array, dims, finished)
            if name in wanted:
                _decode_all(path, name, array, dims)


def _check_presence(path: Path, name: str, array, dims, finished) -> None:
    ranges = _chunk_ranges(array.shape, array.chunks)
    axes = [i for i, d in enumerate(dims) if d in finished]
    for coords in itertools.product(*ranges):
        if any(finished[dims[i]] >= 0 and coords[i] * array.chunks[i] >= finished[dims[i]] for i in axes):
            continue  # not finished yet: may legitimately be unwritten
        key = array.metadata.encode_chunk_key(coords)
        if not (path / name / key).is_file():
            raise StoreError(f"{path}: damaged: variable {name}, chunk {key}{_where(array, dims, coords)} is missing")


def _decode_all(path: Path, name: str, array, dims) -> None:
    for coords in itertools.product(*_chunk_ranges(array.shape, array.chunks)):
        try:
            array.get_block_selection(coords)
        except Exception as exc:
            key = array.metadata.encode_chunk_key(coords)
            raise StoreError(f"{path}: damaged: variable {name}, chunk {key}{_where(array, dims, coords)} cannot be "
                             f"decoded ({_reason(exc)})") from None


def _where(array, dims, coords) -> str:
    for i, d in enumerate(dims):
        if d in _TIME_AXES:
            start = coords[i] * array.chunks[i]
            stop = min(array.shape[i], start + array.chunks[i]) - 1
            return f" ({d} indices {start}-{stop})"
    return ""


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
