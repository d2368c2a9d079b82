"""How a run's members map onto chunks and shards, declared once; the shards' state files.

A run's members form the grid ``(hp₁, hp₂, …, seed)``. A *sharded* run cuts that grid
into blocks (:meth:`Layout.plan`): pieces of equal size along ``hp₁`` first, then along
``hp₂``, …, then along ``seed`` (the last piece of a dimension may be smaller). Every
variable of the store is chunked along the member dimensions by exactly those blocks,
so **one shard is one chunk along the member dimensions**: a shard writes only its own
chunks and two shards never write the same chunk. A run of one process is the case of
one block (the whole grid in one chunk, the layout stores have always had).

Shard ``i`` keeps its state in ``_shards/shard-{i:04d}.json`` (written by the process
running it, atomically, after its data and checkpoint, like ``steps_done``) and its
checkpoint in ``_checkpoint/shard-{i:04d}.npz`` (:mod:`thermonet.store.checkpoint`).
The process that created the store merges the state files into the root attribute
``shard_state`` (:func:`merge_states`); it is the only writer of the root attributes.
xarray ignores both folders.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from thermonet.errors import StoreError
from thermonet.store.schema import STEP

__all__ = [
    "STATE_DIRECTORY",
    "STATUSES",
    "Layout",
    "checkpoint_name",
    "describe_shards",
    "initial_states",
    "merge_states",
    "read_state",
    "step_chunk",
    "write_state",
]

#: Folder of the shards' state files inside a store.
STATE_DIRECTORY = "_shards"
#: A shard's ``status``: not started, running (or died running), stopped early (resumable),
#: failed with an error, or complete.
STATUSES = ("pending", "running", "stopped", "failed", "complete")
#: Values per chunk of a time series (float64: 1 MiB).
CHUNK_VALUES = 2**17


def step_chunk(block_members: int, log_count: int) -> int:
    """Log steps per chunk of a time series whose chunks hold ``block_members`` members."""
    return int(max(1, min(log_count, CHUNK_VALUES // max(1, block_members))))


@attrs.frozen
class Layout:
    """The member grid ``shape`` (dimensions ``dims``) cut into blocks of ``tile`` members.

    Blocks are numbered in C order over the grid of blocks; block ``i`` is shard ``i``.
    """

    dims: tuple[str, ...] = attrs.field(converter=tuple)
    shape: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    tile: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))

    @classmethod
    def plan(cls, dims: Sequence[str], shape: Sequence[int], shards: int = 1) -> "Layout":
        """At least ``shards`` blocks (fewer only when the grid has fewer members): the
        dimensions are cut in order, each into the fewest equal pieces that, with the
        pieces of the dimensions before it, give ``shards`` blocks."""
        remaining = max(1, int(shards))
        tile = []
        for n in shape:
            if remaining <= 1:
                tile.append(n)
                continue
            size = math.ceil(n / min(n, remaining))
            tile.append(size)
            remaining = math.ceil(remaining / math.ceil(n / size))
        return cls(dims, shape, tile)

    @property
    def counts(self) -> tuple[int, ...]:
        """Blocks along each member dimension."""
        return tuple(math.ceil(n / t) for n, t in zip(self.shape, self.tile))

    @property
    def count(self) -> int:
        """Number of blocks (shards)."""
        return int(np.prod(self.counts))

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def block(self, index: int) -> tuple[slice, ...]:
        """The slices of block ``index`` along the member dimensions."""
        position = np.unravel_index(int(index), self.counts)
        return tuple(slice(int(p) * t, min((int(p) + 1) * t, n)) for p, t, n in zip(position, self.tile, self.shape))

    def blocks(self) -> list[tuple[slice, ...]]:
        return [self.block(i) for i in range(self.count)]

    def members(self, index: int) -> int:
        """Members of block ``index``."""
        return int(np.prod([s.stop - s.start for s in self.block(index)]))

    def region(self, index: int) -> dict[str, list[int]]:
        """Block ``index`` as ``{dimension: [start, stop]}`` (JSON; the ``region`` of a shard's state)."""
        return {d: [s.start, s.stop] for d, s in zip(self.dims, self.block(index))}

    def chunks(self, sizes: Mapping[str, int], dims: Sequence[str]) -> tuple[int, ...]:
        """Chunk shape of a variable with dimensions ``dims``: the block along the member
        dimensions, :func:`step_chunk` log steps along ``step``, whole along the others."""
        tile = dict(zip(self.dims, self.tile))
        members = int(np.prod(self.tile))
        out = []
        for d in dims:
            if d in tile:
                out.append(tile[d])
            elif d == STEP:
                out.append(step_chunk(members, sizes[d]))
            else:
                out.append(sizes[d])
        return tuple(max(1, c) for c in out)

    @classmethod
    def of_store(cls, path: str | Path, dims: Sequence[str]) -> "Layout":
        """The layout of an existing store, read from the chunks of its ``loss`` array."""
        meta_path = Path(path) / "loss" / "zarr.json"
        try:
            meta = json.loads(meta_path.read_text())
            shape = meta["shape"][: len(dims)]
            tile = meta["chunk_grid"]["configuration"]["chunk_shape"][: len(dims)]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{path}: cannot read the chunk layout of 'loss' ({exc})") from None
        return cls(dims, shape, tile)


# ------------------------------------------------------------------------------ state files
def checkpoint_name(index: int) -> str:
    """The checkpoint name of shard ``index`` (:mod:`thermonet.store.checkpoint`)."""
    return f"shard-{int(index):04d}"


def _state_path(store: str | Path, index: int) -> Path:
    return Path(store) / STATE_DIRECTORY / f"{checkpoint_name(index)}.json"


def write_state(store: str | Path, index: int, state: Mapping[str, Any]) -> None:
    """Write shard ``index``'s state atomically (temporary file, rename)."""
    path = _state_path(store, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(state)))
    os.replace(tmp, path)


def read_state(store: str | Path, index: int) -> dict | None:
    """Shard ``index``'s state file, or ``None`` when it has none (never started)."""
    path = _state_path(store, index)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read the shard's state ({exc})") from None


def initial_states(layout: Layout) -> list[dict]:
    """``shard_state`` of a new sharded store: every shard pending."""
    return [{"shard": i, "region": layout.region(i), "members": layout.members(i), "steps_done": 0,
             "status": "pending", "attempts": 0, "worker": None, "error": None} for i in range(layout.count)]


def merge_states(store: str | Path, recorded: Sequence[Mapping[str, Any]],
                 failures: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The root attributes of a sharded store from its shards' state files.

    ``recorded`` is the store's ``shard_state``; each shard's file, where it has one,
    replaces its entry, and ``failures`` (shard -> message, from the process that ran
    them) mark shards that died without saying so. Returns ``shard_state``,
    ``steps_done`` (the steps every shard has finished) and ``complete``.
    """
    merged = []
    for entry in recorded:
        index = int(entry["shard"])
        state = {**entry, **(read_state(store, index) or {})}
        if failures and index in failures and state.get("status") != "complete":
            state["status"], state["error"] = "failed", failures[index]
        merged.append(state)
    done = min((int(s.get("steps_done", 0)) for s in merged), default=0)
    complete = bool(merged) and all(s.get("status") == "complete" for s in merged)
    return {"shard_state": merged, "steps_done": done, "complete": complete}


def describe_shards(attrs_: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``("shard i", its status)`` for every shard of a sharded run that is not complete
    (empty when the run is not sharded or every shard is complete): what the headers of
    ``thermonet check`` and ``thermonet report`` show."""
    states = attrs_.get("shard_state")
    if not states or all(s.get("status") == "complete" for s in states):
        return []
    total = attrs_.get("steps", "?")
    rows = []
    for s in states:
        region = ", ".join(f"{d} {a}:{b}" for d, (a, b) in (s.get("region") or {}).items())
        text = f"{s.get('status')}, {s.get('steps_done')} of {total} steps; {s.get('members')} members ({region})"
        if s.get("worker"):
            text += f"; worker {s['worker']}"
        if s.get("error"):
            text += f"; {s['error']}"
        rows.append((f"shard {s.get('shard')}", text))
    return rows
