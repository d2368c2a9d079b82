"""Paths checked before any work starts: a folder or file that cannot be created or written
is refused with one line naming the flag, never a traceback after minutes of work.

:func:`writable` checks what the operating system would refuse later: a name or path too
long for the file system, a file where a folder must be (``FILE/x.zarr``), a folder where
a file must be, a folder without write permission, a read-only file system. Nothing is
created. :func:`readable` does the same for a path to read (a 5000-character path is
"too long", not an ``OSError`` from deep inside zarr).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from thermonet.errors import InputError

__all__ = ["describe_os_error", "readable", "writable"]

#: Fallbacks where ``os.pathconf`` is not available.
NAME_MAX = 255
PATH_MAX = 4096


def _limits(existing: Path) -> tuple[int, int]:
    try:
        return os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX, PATH_MAX


def _nearest_existing(path: Path) -> Path:
    current = path
    while True:
        try:
            if current.exists() or current.is_symlink():
                return current
        except OSError:  # e.g. a component too long to stat
            pass
        if current.parent == current:
            return current
        current = current.parent


def _check_lengths(path: Path, label: str) -> None:
    anchor = _nearest_existing(path.parent)
    name_max, path_max = _limits(anchor if anchor.is_dir() else Path("/"))
    if len(os.fsencode(str(path))) >= path_max:
        raise InputError(f"{label} {_short(path)}: the path is too long ({len(str(path))} characters; the file system "
                         f"allows {path_max - 1})")
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise InputError(f"{label} {_short(path)}: the name {_short(Path(part))} is too long "
                             f"({len(part)} characters; the file system allows {name_max})")


def _short(path: Path, keep: int = 60) -> str:
    text = str(path)
    return text if len(text) <= keep else f"{text[:keep // 2]}…{text[-keep // 2:]}"


def writable(path: str | os.PathLike, label: str, *, kind: str = "file") -> Path:
    """``path`` as a :class:`Path` if it can be created (or overwritten) as a ``kind``
    (``"file"`` or ``"dir"``); else :class:`InputError` starting with ``label`` (the flag,
    e.g. ``"--out"``). Missing parent folders are fine when they can be created."""
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    text = os.fspath(path)
    if not str(text).strip():
        raise InputError(f"{label}: give a path, not an empty string")
    path = Path(text).expanduser()
    _check_lengths(path.absolute(), label)
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise InputError(f"{label} {_short(path)}: exists and is a file, not a folder")
        if kind == "file" and path.is_dir():
            raise InputError(f"{label} {_short(path)}: exists and is a folder, not a file")
        target = path if kind == "dir" else path.parent
    else:
        target = _nearest_existing(path.absolute().parent)
        if not target.is_dir():
            raise InputError(f"{label} {_short(path)}: {_short(target)} is a file, so it cannot hold a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        why = "the file system is read-only" if _read_only(target) else "no permission to write there"
        raise InputError(f"{label} {_short(path)}: cannot write in {_short(target)} ({why})")
    return path


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def readable(path: str | os.PathLike, label: str) -> Path:
    """``path`` as a :class:`Path` if its length is possible on this file system (whether it
    exists is for the caller to say); else :class:`InputError`."""
    text = os.fspath(path)
    path = Path(text).expanduser()
    _check_lengths(path.absolute(), label)
    return path


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError`` that escaped the up-front checks."""
    where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)
    return f"cannot access{where}: {reason}"
