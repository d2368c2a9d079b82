"""Pieces shared by the two run drivers, :func:`thermonet.simulation.simulate` (isotropic
model) and :func:`thermonet.ensemble.train` (networks).

* :class:`RunSettings`, the base of both settings classes (members, entropy schedule);
* option validation: :func:`as_int`, :func:`as_positive`, :func:`parse_seeds`,
  :func:`unused_hyperparameters`, :func:`resolve_log_every`, :func:`check_queue_fills`,
  :func:`resolve_entropy_every`, :func:`resolve_entropy_k`, :func:`resolve_device`;
* the run store: :func:`prepare_store` (new / resume / overwrite), :func:`check_resumable`
  (the ``--resume`` settings comparison), :func:`read_store_settings`,
  :func:`new_store_attrs`, :func:`mark_resumed`;
* attributes: :func:`now` (timestamps), :func:`command_line`.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from thermonet.errors import InputError, StoreError, ThermonetError

__all__ = [
    "RunSettings",
    "as_int",
    "as_positive",
    "check_queue_fills",
    "check_resumable",
    "command_line",
    "mark_resumed",
    "new_store_attrs",
    "now",
    "parse_seeds",
    "prepare_store",
    "read_store_settings",
    "resolve_device",
    "resolve_entropy_every",
    "resolve_entropy_k",
    "resolve_log_every",
    "unused_hyperparameters",
]


# ------------------------------------------------------------------------------ validation
def as_int(value, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (integral numbers and numeric strings such as ``"3"`` or
    ``"1e6"``); :class:`InputError` naming ``name`` otherwise or below ``minimum``."""
    if isinstance(value, (int, np.integer)):
        out = int(value)
    else:
        try:
            as_float = float(value)
            out = int(as_float)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{name} must be an integer, got {value!r}") from None
        if out != as_float:
            raise InputError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and out < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {out}")
    return out


def as_positive(value, name: str) -> float:
    """``value`` as a finite float > 0; :class:`InputError` naming ``name`` otherwise."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return out


def parse_seeds(seeds, flag: str) -> tuple[int, ...]:
    """Distinct seeds >= 0 from an int, a comma list or a sequence; errors name ``flag``."""
    if isinstance(seeds, (int, np.integer)):
        seeds = [seeds]
    if isinstance(seeds, str):
        seeds = [s for s in seeds.split(",") if s.strip()]
    out = tuple(as_int(s, flag, 0) for s in seeds)
    if not out:
        raise InputError(f"{flag}: give at least one seed")
    if len(set(out)) != len(out):
        raise InputError(f"{flag}: seeds must be distinct, got {list(out)}")
    return out


def unused_hyperparameters(proto, grid: Mapping) -> None:
    """Raise :class:`InputError` when ``grid`` names hyperparameters ``proto`` does not use."""
    extra = [k for k in grid if k not in proto.hyperparameters]
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        need = ", ".join("--" + k.replace("_", "-") for k in proto.hyperparameters)
        raise InputError(f"{proto.name} does not use {flags}; it takes {need}")


def resolve_log_every(log_every, steps: int, logs: int) -> int:
    """``--log-every``, by default about ``logs`` logs per run; at most ``steps``."""
    log_every = max(1, steps // logs) if log_every is None else as_int(log_every, "--log-every", 1)
    if log_every > steps:
        raise InputError(f"--log-every {log_every} exceeds --steps {steps}")
    return log_every


def check_queue_fills(steps: int, queue_size: int, queue_every: int) -> None:
    """Raise :class:`InputError` when the run is too short to fill the entropy queue once."""
    if queue_size * queue_every > steps:
        raise InputError(
            f"--steps {steps} is too few to fill the entropy queue: queue-size x queue-every = "
            f"{queue_size} x {queue_every} = {queue_size * queue_every} steps are needed"
        )


def resolve_entropy_every(entropy_every, steps: int, log_every: int) -> int:
    """``--entropy-every``, by default ~``steps/20`` (~10 estimates in the last half of the
    run), rounded down to a multiple of ``log_every`` where it is at least that."""
    if entropy_every is None:
        entropy_every = max(1, steps // 20)
        if entropy_every >= log_every:
            entropy_every -= entropy_every % log_every
    return as_int(entropy_every, "--entropy-every", 1)


def resolve_entropy_k(entropy_k, queue_size: int) -> int:
    """``--entropy-k``: an int in ``1 .. queue_size - 1``."""
    entropy_k = as_int(entropy_k, "--entropy-k", 1)
    if entropy_k >= queue_size:
        raise InputError(f"--entropy-k {entropy_k} must be smaller than --queue-size {queue_size}")
    return entropy_k


def resolve_device(device: str | None) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available); ``None`` is ``cpu``."""
    import torch

    device = "cpu" if device is None else str(device).strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
        if ":" in device:
            index = as_int(device.split(":", 1)[1], "--device cuda:N", 0)
            if index >= torch.cuda.device_count():
                raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise InputError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}")


# ------------------------------------------------------------------------------ settings
class RunSettings:
    """Base of the drivers' (attrs) settings classes, which define ``grid``, ``seeds``,
    ``steps``, ``queue_size``, ``queue_every`` and ``entropy_every``."""

    __slots__ = ()

    @property
    def members(self) -> int:
        return int(np.prod([len(v) for v in self.grid.values()])) * len(self.seeds)

    def entropy_steps(self) -> np.ndarray:
        """Steps at which the queue entropy is computed: every ``entropy_every`` once the
        queue is full (step ``queue_size * queue_every``), plus the last step."""
        fill = self.queue_size * self.queue_every
        first = -(-fill // self.entropy_every) * self.entropy_every
        steps = list(range(first, self.steps + 1, self.entropy_every))
        if not steps or steps[-1] != self.steps:
            steps.append(self.steps)
        return np.asarray(steps, dtype=np.int64)


# ------------------------------------------------------------------------------ the store
def read_store_settings(path, kind: str, what: str, build: Callable[[dict, dict], dict]) -> dict:
    """``build(attrs, grid)`` for the run store ``path``: its attributes and its
    hyperparameter grid (name -> list of floats). :class:`StoreError` when the store is
    not of ``kind`` or its attributes are incomplete (``what``: the kind of run, for the
    message)."""
    import zarr

    from thermonet.simulation.writer import read_store_attrs
    from thermonet.theory.protocols import get_protocol

    attrs_ = read_store_attrs(path)
    if attrs_.get("kind") != kind:
        raise StoreError(f"{path} is a thermonet run of kind {attrs_.get('kind')!r}, not {kind!r}")
    try:
        proto = get_protocol(attrs_["protocol"])
        root = zarr.open_group(str(path), mode="r", use_consolidated=False)
        grid = {name: [float(x) for x in np.asarray(root[name][...])] for name in proto.hyperparameters}
        return build(attrs_, grid)
    except (KeyError, TypeError, ValueError, ThermonetError) as exc:
        raise StoreError(f"{path}: incomplete thermonet {what} attributes ({exc})") from None


def check_resumable(path: Path, ours: Mapping, theirs: Mapping) -> dict:
    """Compare the settings of this call (``ours``) with the store's (``theirs``, both
    ``comparable()`` dicts); :class:`StoreError` listing the first differences, else the
    store's attributes."""
    from thermonet.simulation.writer import read_store_attrs

    diffs = [k for k in ours if ours[k] != theirs.get(k)]
    if diffs:
        shown = "; ".join(f"{k}: store {theirs.get(k)!r} vs now {ours[k]!r}" for k in diffs[:3])
        raise StoreError(f"--resume: {path} was made with different settings ({shown}"
                         f"{'; …' if len(diffs) > 3 else ''})")
    return read_store_attrs(path)


def prepare_store(out: Path, *, resume: bool, overwrite: bool, progress: bool,
                  check: Callable[[Path], dict]) -> str:
    """What to do with the run store ``out`` before a run.

    Returns ``"new"`` (nothing there), ``"resume"`` (there and ``check(out)``, which
    returns its attributes, accepted it), ``"complete"`` (resumable and already finished)
    or ``"overwrite"`` (there, removable; the caller deletes it). Raises
    :class:`StoreError` for a store that is there without ``resume`` or ``overwrite``,
    or that ``overwrite`` must not delete.
    """
    from thermonet.simulation.writer import is_removable

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


def new_store_attrs(*, kind: str, protocol: str, hyperparameters, dim: int, fields: Mapping,
                    command: str | None) -> dict:
    """The attributes of a new run store: version, kind, protocol, hyperparameter names and
    D, then the driver's ``fields``, then the command line, creation time and progress."""
    from thermonet import __version__

    return {
        "thermonet_version": __version__, "kind": kind, "protocol": protocol,
        "hyperparameters": list(hyperparameters), "dim": dim, **fields,
        "command": command_line(command), "created": now(), "steps_done": 0, "complete": False,
    }


def mark_resumed(store) -> None:
    """Append this session's start to the store's ``resumed_at`` list."""
    store.update_attrs(resumed_at=[*store.attrs.get("resumed_at", []), now()])


# ------------------------------------------------------------------------------ attributes
def now() -> str:
    """The current UTC time, ISO 8601 to the second (store timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command_line(command: str | None = None) -> str:
    """``command``, or this process's command line, shell-quoted (the ``command`` attribute)."""
    return command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
