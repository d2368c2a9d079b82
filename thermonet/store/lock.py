"""One writer per run store: an operating-system lock that dies with its process.

A writer holds ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the file ``.lock`` inside the store
for as long as it writes (a new store: taken inside its temporary folder before the
atomic rename, so it moves with the store). The kernel releases the lock when the process
ends, however it ends (``kill -9`` included), so a dead writer never blocks a resume. The
file records the holder (PID, host, start time, command) for the message a second writer
gets: plain, ``--resume`` and ``--overwrite`` are all refused while the lock is held, and
``--overwrite`` never deletes a store another process holds. Readers (``check``,
``report``) do not lock: they read finished steps only.

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

__all__ = ["LOCK_NAME", "StoreLock", "holder"]

LOCK_NAME = ".lock"

try:  # pragma: no cover - platform
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def holder(store: str | Path) -> dict | None:
    """What the lock file of ``store`` says about its last holder (``None`` if there is none)."""
    try:
        return json.loads((Path(store) / LOCK_NAME).read_text() or "null")
    except (OSError, ValueError):
        return None


def _describe(info: dict | None) -> str:
    if not info:
        return "another process"
    return (f"PID {info.get('pid', '?')} on {info.get('host', '?')} (since {info.get('since', '?')}: "
            f"{info.get('command', '?')})")


class StoreLock:
    """The exclusive writer lock of one store folder; a context manager.

    ``acquire()`` raises :class:`StoreError` naming the holder when another process holds
    it. ``release()`` (or leaving the ``with`` block, or the process ending) frees it.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, purpose: str = "write") -> "StoreLock":
        if self._fd is not None or fcntl is None:
            return self
        try:
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
