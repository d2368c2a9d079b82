"""One writer per run store: an operating-system lock that dies with its process.

A writer holds ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the lock file ``.NAME.lock`` next to
the store ``NAME`` for as long as it writes, taken before it looks at the store: so two
runs starting together on a new store, a resume and an overwrite all meet at the same
lock, and the lock outlives an ``--overwrite``'s delete. The kernel releases it when the
process ends, however it ends (``kill -9`` included), so a dead writer never blocks a
resume. The file records the holder (PID, host, start time, command) for the message a
second writer gets: plain, ``--resume`` and ``--overwrite`` are all refused while the lock
is held, and ``--overwrite`` never deletes a store another process holds. Readers
(``check``, ``report``) do not lock: they read finished steps only. A sharded run's client
holds the lock; its shard tasks write only their own chunks and never take it.

On systems without ``fcntl`` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from thermonet.errors import StoreError

__all__ = ["StoreLock", "holder", "lock_path"]

try:  # pragma: no cover - platform
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def lock_path(store: str | Path) -> Path:
    """The lock file of ``store``: ``.NAME.lock`` in the same folder."""
    store = Path(store)
    return store.parent / f".{store.name}.lock"


def holder(store: str | Path) -> dict | None:
    """What the lock file of ``store`` says about its last holder (``None`` if there is none)."""
    try:
        return json.loads(lock_path(store).read_text() or "null")
    except (OSError, ValueError):
        return None


def _describe(info: dict | None) -> str:
    if not info:
        return "another process"
    return (f"PID {info.get('pid', '?')} on {info.get('host', '?')} (since {info.get('since', '?')}: "
            f"{info.get('command', '?')})")


class StoreLock:
    """The exclusive writer lock of one store (existing or not yet created); a context manager.

    ``acquire()`` raises :class:`StoreError` naming the holder when another process holds
    it. ``release()`` (or leaving the ``with`` block, or the process ending) frees it.
    """

    def __init__(self, store: str | Path):
        self.folder = Path(store)
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return lock_path(self.folder)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, purpose: str = "write") -> "StoreLock":
        if self._fd is not None or fcntl is None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.folder}: cannot open its lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.folder} is being written by {_describe(holder(self.folder))}; refusing to "
                             f"{purpose} it while that process runs (wait for it, or stop it first)") from None
        except OSError as exc:  # e.g. a file system without locks
            os.close(fd)
            raise StoreError(f"{self.folder}: cannot lock it ({exc.strerror})") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
