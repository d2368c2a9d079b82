"""The one driver loop: an engine's ensemble into a run store, for every kind of run.

:func:`run` is what :func:`thermonet.runs.simulate` (isotropic model) and
:func:`thermonet.runs.train` (networks) call with their settings and an engine factory:

1. decide what to do with ``out`` (:func:`prepare_store`): create it, ``--resume`` it
   (after :func:`check_resumable` compared its settings with these), nothing (it is
   complete) or ``--overwrite`` it;
2. build the engine (which refuses a run that will not fit before it allocates much);
3. create the store atomically (:meth:`thermonet.store.writer.RunStore.create`) or load
   the checkpoint (:mod:`thermonet.store.checkpoint`);
4. advance the engine in chunks of about ``flush_seconds`` that end exactly at every
   entropy step; after each chunk write its logs, the entropies due, the members' status,
   a checkpoint when ``checkpoint_every`` seconds have passed, and then ``steps_done``
   (:func:`drive`, the loop).

A shard of a sharded run (:mod:`thermonet.runs.shards`) is the same loop on an engine
of one block of members (:func:`run_shard`): it writes that block's chunks, its own
checkpoint and its own state file instead of ``steps_done``.

SIGINT/SIGTERM (Ctrl-C, a scheduler's kill) stop the run at the next chunk boundary
with a checkpoint, so ``--resume`` continues exactly; a second Ctrl-C stops at once.
A run killed harder keeps everything up to its last ``steps_done``; ``--resume``
recomputes from its last checkpoint (the random numbers are counter-based: the same
numbers come out).
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from thermonet.errors import InputError, StoreError

__all__ = ["check_resumable", "command_line", "create_store", "drive", "now", "prepare_store", "progress_bar", "run",
           "run_shard", "stored_settings"]


# ------------------------------------------------------------------------------ attributes
def now() -> str:
    """The current UTC time, ISO 8601 to the second (store timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command_line(command: str | None = None) -> str:
    """``command``, or this process's command line, shell-quoted (the ``command`` attribute)."""
    return command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)


# ------------------------------------------------------------------------------ the store
def stored_settings(path: str | Path, kind: str, settings_cls) -> dict:
    """Keyword arguments of ``settings_cls.resolve`` from the run store ``path``.

    :class:`StoreError` when the store is not a thermonet run of ``kind`` or its attributes
    are incomplete.
    """
    from thermonet.store.writer import read_store_attrs
    from thermonet.theory.protocols import Protocol

    attrs_ = read_store_attrs(path)
    if attrs_.get("kind") != kind:
        raise StoreError(f"{path} is a thermonet run of kind {attrs_.get('kind')!r}, not {kind!r}")
    try:
        grid = _stored_grid(path, Protocol.get(attrs_["protocol"])())
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise StoreError(f"{path}: incomplete thermonet {kind} run attributes ({exc})") from None
    return settings_cls.stored(attrs_, grid)


def _stored_grid(path: Path, protocol) -> dict[str, list[float]]:
    """The hyperparameter coordinates of the store ``path``."""
    import zarr

    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return {name: [float(x) for x in np.asarray(root[name][...])] for name in protocol.hyperparameters}


def check_resumable(path: Path, settings) -> dict:
    """The store's attributes, after checking that its settings are these (``resume="match"``
    options and the grid); :class:`StoreError` listing the first differences otherwise."""
    from thermonet.store.writer import read_store_attrs

    attrs_ = read_store_attrs(path)
    stored = type(settings).legacy(dict(attrs_))
    ours = {**settings.comparable(), **settings.grid_comparable()}
    options = type(settings).options()
    if stored.get("protocol") != settings.protocol:
        raise StoreError(f"--resume: {path} was made with different settings (--protocol: store "
                         f"{stored.get('protocol')!r} vs now {settings.protocol!r})")
    theirs = {}
    for name in settings.comparable():
        value = stored.get(name)
        compare = options[name].compare
        theirs[name] = compare(value) if compare is not None and value is not None else value
    try:
        grid = _stored_grid(path, settings.protocol_object())
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read the store's grid ({exc})") from None
    theirs.update({f"grid:{k}": v for k, v in grid.items()})
    diffs = [k for k in ours if ours[k] != theirs.get(k)]
    if diffs:
        def label(k: str) -> str:
            return options[k].label(k) if k in options else k

        shown = "; ".join(f"{label(k)}: store {theirs.get(k)!r} vs now {ours[k]!r}" for k in diffs[:3])
        raise StoreError(f"--resume: {path} was made with different settings ({shown}"
                         f"{'; …' if len(diffs) > 3 else ''})")
    return attrs_


def prepare_store(out: Path, *, resume: bool, overwrite: bool, progress: bool,
                  check: Callable[[Path], dict]) -> str:
    """What to do with the run store ``out`` before a run.

    Returns ``"new"`` (nothing there), ``"resume"`` (there and ``check(out)``, which
    returns its attributes, accepted it), ``"complete"`` (resumable and already finished)
    or ``"overwrite"`` (there, removable; the caller deletes it). Raises
    :class:`StoreError` for a store that is there without ``resume`` or ``overwrite``,
    or that ``overwrite`` must not delete.
    """
    from thermonet.store.writer import is_removable

    if not (out.exists() or out.is_symlink()):
        return "new"
    if resume:
        if check(out).get("complete"):
            if progress:
                print(f"thermonet: {out} is already complete", file=sys.stderr)
            return "complete"
        return "resume"
    if overwrite:
        if not is_removable(out):
            raise StoreError(f"--overwrite: refusing to delete {out}: it is not a thermonet run store")
        return "overwrite"
    raise StoreError(f"{out} already exists; pass --resume to continue it or --overwrite to replace it")


# ------------------------------------------------------------------------------ signals
class _InterruptFlag:
    """SIGINT/SIGTERM handlers that only record the signal, so the driver can stop at a
    chunk boundary with a consistent checkpoint (main thread only; elsewhere a no-op).
    The handlers that were there before are put back afterwards, whatever they were."""

    def __init__(self):
        self.signal = None
        self._old: dict = {}

    def install(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # pragma: no cover - unusual embedding
                pass

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self) -> None:
        import signal

        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()


def _next_chunk(planned: int, done: int, elapsed: float, target: float, total: int) -> int:
    """Steps for the next chunk: ``target`` seconds at the last chunk's rate (``done``
    steps in ``elapsed`` s), growing at most 8x per chunk."""
    limit = max(planned, done) * 8
    if elapsed <= 0:
        return int(max(1, min(total, limit)))
    return int(max(1, min(total, limit, done * target / elapsed)))


# ------------------------------------------------------------------------------ the store
def create_store(settings, out: Path, *, kind: str, attrs: Mapping[str, Any], command: str | None = None,
                 layout=None, groups=None, creation_hook=None):
    """Create the run store ``out`` of ``settings`` atomically (every value missing) with the
    attributes ``attrs`` beyond the settings'; return its writer
    (:class:`thermonet.store.writer.RunStore`). ``layout``: the member blocks of a sharded
    run (:class:`thermonet.store.layout.Layout`); ``groups``: the engine's scale-invariant
    groups ``(name, D_g)`` (networks), for the per-group variables."""
    from thermonet.base.version import __version__
    from thermonet.engines.common import log_steps
    from thermonet.store.writer import RunStore

    if not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    protocol = settings.protocol_object()
    attrs_ = {
        "thermonet_version": __version__, "kind": kind, "protocol": protocol.name,
        "hyperparameters": list(protocol.hyperparameters), **settings.store_attrs(), **attrs,
        "command": command_line(command), "created": now(), "steps_done": 0, "complete": False,
    }
    return RunStore.create(out, kind=kind, protocol=protocol, grid=settings.grid, seeds=settings.seeds,
                           log_steps=log_steps(settings.steps, settings.log_every),
                           entropy_steps=settings.entropy_steps(), attrs=attrs_, layout=layout,
                           groups=groups, creation_hook=creation_hook)


def progress_bar(settings, done: int, describe: str, progress: bool):
    """The one progress bar of a run, in member-steps (``done`` of them finished)."""
    from tqdm import tqdm

    return tqdm(total=settings.steps * settings.members, initial=done, unit="member-step", unit_scale=True,
                dynamic_ncols=True, disable=not progress, file=sys.stderr,
                desc=f"{describe} x{settings.members}")


# ------------------------------------------------------------------------------ the loop
def run(settings, out: str | Path, *, kind: str, build_engine: Callable[..., Any],
        store_attrs: Callable[[Any], Mapping[str, Any]], describe: str, resume: bool = False,
        overwrite: bool = False, progress: bool = False, command: str | None = None,
        stop_after: int | None = None, creation_hook=None, flush_hook=None) -> Path:
    """Run ``settings`` into the store ``out`` in this process (see the module docstring); return its path.

    ``build_engine(block)`` returns the engine (:class:`thermonet.engines.common.Engine`)
    of the members in ``block`` (``()``: all of them); ``store_attrs(engine)`` the
    attributes beyond the settings that a new store records (D, the energy's parameters,
    the dataset, ...). ``stop_after`` ends the run early at that step with the store left
    resumable, as if it had been killed there; ``flush_hook(step, shard)`` is called after
    every flush (tests).
    """
    from thermonet.store import checkpoint
    from thermonet.store.writer import RunStore

    from thermonet.base.paths import writable

    out = writable(out, "--out", kind="dir")
    action = prepare_store(out, resume=resume, overwrite=overwrite, progress=progress,
                           check=lambda path: check_resumable(path, settings))
    if action == "complete":
        return out
    engine = build_engine(())
    if action == "overwrite":  # only once the run is known to fit
        shutil.rmtree(out)
    if action == "resume":
        store = RunStore(out)
        state = checkpoint.load(out)
        if state is not None:
            engine.load_state_dict(state)
        store.update_attrs(resumed_at=[*store.attrs.get("resumed_at", []), now()])
    else:
        store = create_store(settings, out, kind=kind, attrs=store_attrs(engine), command=command,
                             groups=getattr(engine, "groups", None), creation_hook=creation_hook)

    def record(steps_done: int, timing: Mapping[str, float] | None = None) -> None:
        if timing is None:
            store.update_attrs(steps_done=steps_done)
        else:
            store.update_attrs(steps_done=steps_done, complete=True, finished=now(), timing_s=dict(timing))

    bar = progress_bar(settings, int(engine.t) * settings.members, describe, progress)
    try:
        drive(engine, settings, store, record=record, bar=bar, stop_after=stop_after,
              flush_hook=None if flush_hook is None else lambda step: flush_hook(step, None))
    finally:
        bar.close()
    return out


def run_shard(settings, out: str | Path, index: int, *, build_engine: Callable[..., Any], worker: str = "local",
              bar=None, stop_after: int | None = None, flush_hook=None) -> dict:
    """Run shard ``index`` of the sharded store ``out`` (created by the client) in this
    process, from its checkpoint if it has one; return its final state.

    The shard writes only its block of members (its chunks), its checkpoint and its state
    file (:mod:`thermonet.store.layout`), never the root attributes. ``bar``: a progress
    bar to advance (in member-steps), if any.
    """
    import os
    import socket

    from thermonet.store import checkpoint, layout
    from thermonet.store.writer import RunStore

    out = Path(out)
    plan = layout.Layout.of_store(out, (*settings.grid, "seed"))
    block = plan.block(index)
    name = layout.checkpoint_name(index)
    previous = layout.read_state(out, index) or {}
    store = RunStore(out)
    engine = build_engine(block)
    saved = checkpoint.load(out, name)
    if saved is not None:
        engine.load_state_dict(saved)
    state = {"shard": index, "region": plan.region(index), "members": plan.members(index),
             "steps_done": int(previous.get("steps_done", 0)), "status": "running",
             "attempts": int(previous.get("attempts", 0)) + 1, "started_from": int(engine.t), "worker": worker,
             "host": socket.gethostname(), "pid": os.getpid(), "error": None, "updated": now()}
    layout.write_state(out, index, state)

    def record(steps_done: int, timing: Mapping[str, float] | None = None) -> None:
        state.update(steps_done=steps_done, updated=now())
        if timing is not None:
            state.update(status="complete", finished=now(), timing_s=dict(timing))
        layout.write_state(out, index, state)

    try:
        drive(engine, settings, store, record=record, bar=bar, block=block, checkpoint_name=name,
              stop_after=stop_after, flush_hook=None if flush_hook is None else lambda step: flush_hook(step, index))
    except KeyboardInterrupt:
        state.update(status="stopped", updated=now())
        layout.write_state(out, index, state)
        raise
    except Exception as exc:
        state.update(status="failed", error=f"{type(exc).__name__}: {exc}", updated=now())
        layout.write_state(out, index, state)
        raise
    if state["status"] == "running":  # stopped early (stop_after)
        state.update(status="stopped", updated=now())
        layout.write_state(out, index, state)
    return state


def drive(engine, settings, store, *, record: Callable[..., None], bar=None, block: tuple[slice, ...] = (),
          checkpoint_name: str | None = None, stop_after: int | None = None,
          flush_hook: Callable[[int], None] | None = None) -> int:
    """The loop: advance ``engine`` (the members of ``block``) in chunks up to
    ``settings.steps`` (or ``stop_after``), writing each chunk into ``store``; return the
    step reached.

    After each chunk: its logs, the entropies due, the members' status, a checkpoint when
    ``checkpoint_every`` seconds have passed, then ``record(step)`` (the store's
    ``steps_done`` or a shard's state); at the end ``record(steps, timing)``.
    """
    from thermonet.store import checkpoint

    out = store.path
    name = checkpoint_name or checkpoint.NAME
    lead = tuple(s.stop - s.start for s in block) if block else settings.lead_shape
    members = int(engine.members)
    entropy_steps = settings.entropy_steps()
    entropy_index = {int(s): i for i, s in enumerate(entropy_steps)}
    end = settings.steps if stop_after is None else min(settings.steps, int(stop_after))
    t = int(engine.t)
    chunk = max(1, min(settings.steps, 100_000 // max(1, members * max(1, int(engine.dim) // 3))))
    timing = {"engine": 0.0, "entropy": 0.0, "store": 0.0}
    session_start, cpu_start = time.perf_counter(), time.process_time()
    last_checkpoint = time.monotonic()
    interrupted = _InterruptFlag()
    try:
        interrupted.install()
        while t < end:
            if interrupted.signal is not None:
                checkpoint.save(out, engine.state_dict(), name)
                record(t)
                print(f"thermonet: interrupted at step {t}; checkpoint written, continue with --resume",
                      file=sys.stderr)
                raise KeyboardInterrupt
            next_entropy = entropy_steps[np.searchsorted(entropy_steps, t, side="right")]
            stop = int(min(end, t + chunk, next_entropy))
            tick = time.perf_counter()
            first, logs = engine.advance(stop - t)
            elapsed = time.perf_counter() - tick
            timing["engine"] += elapsed
            entropy = None
            if stop in entropy_index:
                tick = time.perf_counter()
                entropy = engine.entropies()
                timing["entropy"] += time.perf_counter() - tick
            tick = time.perf_counter()
            # members first, then any per-group axis (and the logs' axis); variables the store
            # lacks (it was created before they existed) are not written
            store.write_series(first, {k: v.reshape(*lead, *v.shape[1:]) for k, v in logs.items() if store.has(k)},
                               block)
            if entropy is not None:
                store.write_entropy(entropy_index[stop], {k: v.reshape(*lead, *v.shape[1:])
                                                          for k, v in entropy.items() if store.has(k)}, block)
            status = engine.member_status()
            if status:
                store.write_members(status, block)
            if stop < settings.steps and time.monotonic() - last_checkpoint >= settings.checkpoint_every:
                checkpoint.save(out, engine.state_dict(), name)
                last_checkpoint = time.monotonic()
            record(stop)
            timing["store"] += time.perf_counter() - tick
            if bar is not None:
                bar.update((stop - t) * members)
            if flush_hook is not None:
                flush_hook(stop)
            chunk = _next_chunk(chunk, stop - t, elapsed, settings.flush_seconds, settings.steps)
            t = stop
        if t >= settings.steps:
            timing["total"] = time.perf_counter() - session_start
            timing["cpu"] = time.process_time() - cpu_start  # all threads: below total x threads on a busy machine
            record(settings.steps, {k: round(v, 3) for k, v in timing.items()})
            checkpoint.drop(out, name)
        else:
            checkpoint.save(out, engine.state_dict(), name)
            record(t)
    finally:
        interrupted.restore()
    return t
