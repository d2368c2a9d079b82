"""Sweeps beyond one process: a run's grid as shards, on Dask workers or one after another here.

``thermonet simulate isotropic … --workers N [--shards K]``, ``--scheduler ADDRESS`` (the
same for ``thermonet train``; in Python the ``workers``, ``shards`` and ``scheduler``
options of :func:`thermonet.runs.simulate` and :func:`thermonet.runs.train`):

1. this process, the *client*, creates the whole store, schema and coordinates, with the
   member grid cut into K blocks of one chunk each (:class:`thermonet.store.layout.Layout`).
   It is the only process that writes the store's root attributes;
2. each block is a *shard*: :func:`thermonet.runs.driver.run_shard` runs the one driver
   loop on an engine of the block's members only and writes the block's chunks, its
   checkpoint and its state file. Shards run on Dask workers (``--workers``: a
   ``distributed.LocalCluster`` of N processes; ``--scheduler``: a running scheduler, e.g.
   dask-jobqueue's ``SLURMCluster`` or dask-cuda's ``LocalCUDACluster``) or, with
   ``--shards`` alone, one after another in this process;
3. the client follows the shards' state files: one progress bar over all shards (in
   member-steps/s) and the root attributes ``shard_state``, ``steps_done`` (the steps
   every shard has finished) and ``complete``
   (:func:`thermonet.store.layout.merge_states`).

A member's numbers do not depend on which members run beside it (counter-based random
numbers and batches keyed per member), so the store holds the same values as the run of
the same command in one process. A shard whose task raises is run again
(:data:`RETRIES`), one whose worker dies is run again by the scheduler (Dask's
``distributed.scheduler.allowed-failures``); either way it continues from its
checkpoint. ``--resume`` runs the shards that are not complete. Dask is optional:
``pip install 'thermonet[distributed]'``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from thermonet.errors import InputError, RunError, StoreError
from thermonet.runs import driver

__all__ = ["INSTALL", "RETRIES", "run"]

#: How to get Dask, for the message when it is missing.
INSTALL = "install thermonet[distributed] (pip install 'thermonet[distributed]')"
#: Times a shard whose task raised is run again (a dead worker is the scheduler's business).
RETRIES = 2
#: Seconds between looks at the shards' state files, and between merges into the root attributes.
POLL_SECONDS = 0.5
MERGE_SECONDS = 5.0
#: Environment variables that set the threads of numba, OpenMP (torch) and BLAS in a local worker.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def run(settings, out: str | Path, *, kind: str, build_engine: Callable[..., Any],
        store_attrs: Callable[[Any], Mapping[str, Any]], describe: str, resume: bool = False,
        overwrite: bool = False, progress: bool = False, command: str | None = None,
        stop_after: int | None = None, creation_hook=None, flush_hook=None) -> Path:
    """Run ``settings`` into ``out``: as shards when the settings ask for them or the store
    to resume is sharded, else in this process (:func:`thermonet.runs.driver.run`, whose
    arguments these are). Raises :class:`RunError` when a shard failed (after the others
    finished), :class:`InputError` when Dask is needed and missing."""
    from thermonet.base.paths import writable
    from thermonet.store.lock import StoreLock

    out = writable(out, "--out", kind="dir")
    purpose = "resume" if resume else "overwrite" if overwrite else "write"
    with StoreLock(out).acquire(purpose):  # one writer per store, released when this process ends
        return _run_locked(settings, out, kind=kind, build_engine=build_engine, store_attrs=store_attrs,
                           describe=describe, resume=resume, overwrite=overwrite, progress=progress, command=command,
                           stop_after=stop_after, creation_hook=creation_hook, flush_hook=flush_hook)


def _run_locked(settings, out: Path, **arguments) -> Path:
    from thermonet.store.writer import read_store_attrs

    resume = arguments["resume"]
    stored = read_store_attrs(out) if resume and (out.exists() or out.is_symlink()) else None
    if stored is not None and "shard_state" not in stored:
        if settings.sharded:
            raise StoreError(f"--resume: {out} was written by one process; continue it without --workers, --shards "
                             f"and --scheduler")
        return driver.run(settings, out, **arguments)
    if stored is None and not settings.sharded:
        return driver.run(settings, out, **arguments)
    return _run_sharded(settings, out, **arguments)


# ------------------------------------------------------------------------------ the client
def _run_sharded(settings, out: Path, *, kind, build_engine, store_attrs, describe, resume, overwrite, progress,
                 command, stop_after, creation_hook, flush_hook) -> Path:
    from thermonet.store import layout
    from thermonet.store.writer import RunStore

    action = driver.prepare_store(out, resume=resume, overwrite=overwrite, progress=progress,
                                  check=lambda path: driver.check_resumable(path, settings))
    if action == "complete":
        return out
    dims = (*settings.grid, "seed")
    with _executor(settings) as executor:
        if action == "resume":
            plan = layout.Layout.of_store(out, dims)
            if settings.shards is not None and layout.Layout.plan(dims, settings.lead_shape, settings.shards) != plan:
                raise InputError(f"--shards {settings.shards}: {out} was cut into {plan.count} shards when it was "
                                 f"created; leave --shards out to continue it")
            store = RunStore(out)
            store.update_attrs(resumed_at=[*store.attrs.get("resumed_at", []), driver.now()])
        else:
            plan = layout.Layout.plan(dims, settings.lead_shape, settings.shards or executor.workers)
            # the first block is the largest: building it refuses a run that will not fit
            probed, groups = _probe_attrs(build_engine, store_attrs, plan.block(0))
            attrs_ = {**probed, "shard_state": layout.initial_states(plan)}
            if action == "overwrite":
                shutil.rmtree(out)
            store = driver.create_store(settings, out, kind=kind, attrs=attrs_, command=command, layout=plan,
                                        groups=groups, creation_hook=creation_hook)
        follow = _Follower(store, settings)
        todo = [s["shard"] for s in follow.merge()["shard_state"] if s["status"] != "complete"]
        bar = driver.progress_bar(settings, follow.member_steps(), f"{describe} ({plan.count} shards)", progress)
        started = time.perf_counter()
        failures: dict[int, str] = {}
        try:
            failures = executor.run(todo, settings, out, build_engine=build_engine, stop_after=stop_after,
                                    flush_hook=flush_hook, bar=bar, follow=follow)
        finally:
            bar.close()
            merged = follow.merge(failures, write=True)
        if merged["complete"]:
            store.update_attrs(finished=driver.now(), timing_s=_timing(merged["shard_state"],
                                                                       time.perf_counter() - started))
    if failures:
        first = min(failures)
        raise RunError(f"{len(failures)} of {plan.count} shards failed (shard {first}: {failures[first]}); the "
                       f"store keeps what every shard finished: continue with --resume once the cause is fixed")
    return out


def _probe_attrs(build_engine, store_attrs, block) -> tuple[dict, list | None]:
    """The store attributes that come from an engine, and its scale-invariant groups (or
    ``None``), from the engine of ``block``, then released."""
    import gc

    engine = build_engine(block)
    attrs_ = dict(store_attrs(engine))
    groups = getattr(engine, "groups", None)
    del engine
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # give the device's memory back to the workers
        torch.cuda.empty_cache()
    return attrs_, groups


def _timing(states, wall: float) -> dict[str, float]:
    """``timing_s`` of a sharded run: the client's wall time and each part summed over the shards."""
    out = {"total": round(wall, 3)}
    for state in states:
        for key, value in (state.get("timing_s") or {}).items():
            if key != "total":
                out[key] = round(out.get(key, 0.0) + float(value), 3)
    return out


class _Follower:
    """The client's view of the shards: merges their state files into the root attributes
    (at most every :data:`MERGE_SECONDS`, and when asked) and counts member-steps done."""

    def __init__(self, store, settings):
        self.store = store
        self.steps = int(settings.steps)
        self.recorded = list(store.attrs["shard_state"])
        self.last: dict | None = None
        self.written_at = -math.inf

    def merge(self, failures: Mapping[int, str] | None = None, write: bool = False) -> dict:
        from thermonet.store import layout

        merged = layout.merge_states(self.store.path, self.recorded, failures)
        due = time.monotonic() - self.written_at >= MERGE_SECONDS
        if merged != self.last and (write or due):
            self.store.update_attrs(**merged)
            self.written_at = time.monotonic()
            self.last = merged
        return merged

    def member_steps(self, merged: Mapping | None = None) -> int:
        states = (merged or self.merge())["shard_state"]
        return sum(min(int(s.get("steps_done", 0)), self.steps) * int(s["members"]) for s in states)


# ------------------------------------------------------------------------------ executors
class _Here:
    """Shards one after another in this process (``--shards`` without Dask)."""

    workers = 1

    def run(self, todo, settings, out, *, build_engine, stop_after, flush_hook, bar, follow) -> dict[int, str]:
        failures = {}
        for index in todo:
            try:
                driver.run_shard(settings, out, index, build_engine=build_engine, bar=bar, stop_after=stop_after,
                                 flush_hook=flush_hook)
            except Exception as exc:  # noqa: BLE001 - any failure of one shard: the others still run
                failures[index] = f"{type(exc).__name__}: {exc}"
            follow.merge(failures, write=True)
        return failures


class _OnDask:
    """Shards as tasks of a Dask client; the bar and the attributes follow their state files."""

    def __init__(self, client):
        self.client = client

    @property
    def workers(self) -> int:
        return max(1, len(self.client.nthreads()))

    def run(self, todo, settings, out, *, build_engine, stop_after, flush_hook, bar, follow) -> dict[int, str]:
        from distributed import wait

        token = uuid.uuid4().hex[:8]
        where = str(Path(out).absolute())  # workers may start elsewhere: the store must be on a shared path
        futures = {self.client.submit(_shard_task, settings, where, index, build_engine, stop_after, flush_hook,
                                      key=f"thermonet-shard-{index}-{token}", retries=RETRIES, pure=False): index
                   for index in todo}
        pending = set(futures)
        failures: dict[int, str] = {}
        try:
            while pending:
                try:
                    done, pending = wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                for future in done:
                    if future.status == "error":
                        exc = future.exception()
                        failures[futures[future]] = f"{type(exc).__name__}: {exc}"
                    elif future.status != "finished":
                        failures[futures[future]] = f"the Dask task was {future.status}"
                total = follow.member_steps(follow.merge(failures))
                if total > bar.n:
                    bar.update(total - bar.n)
        except BaseException:
            self.client.cancel(list(pending))
            raise
        return failures


def _shard_task(settings, out: str, index: int, build_engine, stop_after, flush_hook) -> dict:
    """One shard on a Dask worker."""
    from distributed import get_worker

    try:
        worker = get_worker().address
    except ValueError:  # pragma: no cover - not on a worker
        worker = "dask"
    return driver.run_shard(settings, out, index, build_engine=build_engine, worker=worker, stop_after=stop_after,
                            flush_hook=flush_hook)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _worker_threads(workers: int) -> dict[str, str]:
    """The environment of a local worker: the CPUs shared out (``cpus // workers`` threads
    each), unless this process's environment sets a variable itself."""
    threads = str(max(1, _cpus() // workers))
    return {name: os.environ.get(name, threads) for name in THREAD_VARIABLES}


@contextlib.contextmanager
def _executor(settings) -> Iterator[Any]:
    """Where the shards run: a local Dask cluster (``--workers``), a running scheduler
    (``--scheduler``) or this process."""
    if settings.workers is None and settings.scheduler is None:
        yield _Here()
        return
    flag = "--workers" if settings.workers is not None else "--scheduler"
    try:
        import distributed
    except ImportError:
        raise InputError(f"{flag} runs the shards on Dask, which is not installed: {INSTALL}") from None
    import logging

    if settings.workers is not None:
        with distributed.LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True,
                                      env=_worker_threads(settings.workers), dashboard_address=":0",
                                      silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
            yield _OnDask(client)
        return
    address = settings.scheduler
    where = {"scheduler_file": address} if Path(address).is_file() else {"address": address}
    try:
        client = distributed.Client(**where, timeout="30s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--scheduler {address}: cannot connect to a Dask scheduler ({exc})") from None
    with client:
        if settings.shards is None and not client.nthreads():
            raise InputError(f"--scheduler {address} has no workers yet: give --shards (the number of blocks)")
        yield _OnDask(client)
