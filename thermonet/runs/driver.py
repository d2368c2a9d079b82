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
   a checkpoint when ``checkpoint_every`` seconds have passed, and then ``steps_done``.

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

__all__ = ["check_resumable", "command_line", "now", "prepare_store", "run", "stored_settings"]


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


# ------------------------------------------------------------------------------ the loop
def run(settings, out: str | Path, *, kind: str, build_engine: Callable[[], Any],
        store_attrs: Callable[[Any], Mapping[str, Any]], describe: str, resume: bool = False,
        overwrite: bool = False, progress: bool = False, command: str | None = None,
        stop_after: int | None = None, creation_hook=None) -> Path:
    """Run ``settings`` into the store ``out`` (see the module docstring); return its path.

    ``build_engine()`` returns the engine (:class:`thermonet.engines.common.Engine`);
    ``store_attrs(engine)`` the attributes beyond the settings that a new store records
    (D, the energy's parameters, the dataset, ...). ``stop_after`` ends the run early at
    that step with the store left resumable, as if it had been killed there (tests).
    """
    from tqdm import tqdm

    from thermonet.base.version import __version__
    from thermonet.store import checkpoint
    from thermonet.store.writer import RunStore

    out = Path(out)
    action = prepare_store(out, resume=resume, overwrite=overwrite, progress=progress,
                           check=lambda path: check_resumable(path, settings))
    if action == "complete":
        return out
    engine = build_engine()
    protocol = settings.protocol_object()
    if action == "overwrite":  # only once the run is known to fit
        shutil.rmtree(out)
    if action == "resume":
        store = RunStore(out)
        state = checkpoint.load(out)
        if state is not None:
            engine.load_state_dict(state)
        store.update_attrs(resumed_at=[*store.attrs.get("resumed_at", []), now()])
    else:
        if not out.parent.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
        from thermonet.engines.common import log_steps

        attrs_ = {
            "thermonet_version": __version__, "kind": kind, "protocol": protocol.name,
            "hyperparameters": list(protocol.hyperparameters), **settings.store_attrs(), **store_attrs(engine),
            "command": command_line(command), "created": now(), "steps_done": 0, "complete": False,
        }
        store = RunStore.create(out, kind=kind, protocol=protocol, grid=settings.grid, seeds=settings.seeds,
                                log_steps=log_steps(settings.steps, settings.log_every),
                                entropy_steps=settings.entropy_steps(), attrs=attrs_,
                                groups=getattr(engine, "groups", None), creation_hook=creation_hook)

    lead = settings.lead_shape
    members = settings.members
    entropy_steps = settings.entropy_steps()
    entropy_index = {int(s): i for i, s in enumerate(entropy_steps)}
    end = settings.steps if stop_after is None else min(settings.steps, int(stop_after))
    t = int(engine.t)
    chunk = max(1, min(settings.steps, 100_000 // max(1, members * max(1, int(engine.dim) // 3))))
    timing = {"engine": 0.0, "entropy": 0.0, "store": 0.0}
    session_start = time.perf_counter()
    last_checkpoint = time.monotonic()
    interrupted = _InterruptFlag()
    bar = tqdm(total=settings.steps * members, initial=t * members, unit="member-step", unit_scale=True,
               dynamic_ncols=True, disable=not progress, file=sys.stderr, desc=f"{describe} x{members}")
    try:
        interrupted.install()
        while t < end:
            if interrupted.signal is not None:
                checkpoint.save(out, engine.state_dict())
                store.update_attrs(steps_done=t)
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
            store.write_series(first, {k: v.reshape(*lead, *v.shape[1:]) for k, v in logs.items() if store.has(k)})
            if entropy is not None:
                store.write_entropy(entropy_index[stop], {k: v.reshape(*lead, *v.shape[1:])
                                                          for k, v in entropy.items() if store.has(k)})
            status = engine.member_status()
            if status:
                store.write_members(status)
            if stop < settings.steps and time.monotonic() - last_checkpoint >= settings.checkpoint_every:
                checkpoint.save(out, engine.state_dict())
                last_checkpoint = time.monotonic()
            store.update_attrs(steps_done=stop)
            timing["store"] += time.perf_counter() - tick
            bar.update((stop - t) * members)
            chunk = _next_chunk(chunk, stop - t, elapsed, settings.flush_seconds, settings.steps)
            t = stop
        if t >= settings.steps:
            timing["total"] = time.perf_counter() - session_start
            store.update_attrs(steps_done=settings.steps, complete=True, finished=now(),
                               timing_s={k: round(v, 3) for k, v in timing.items()})
            checkpoint.drop(out)
        else:
            checkpoint.save(out, engine.state_dict())
            store.update_attrs(steps_done=t)
    finally:
        interrupted.restore()
        bar.close()
    return out
