"""Memory estimate of an ensemble run, checked against the device before anything big is allocated."""

from __future__ import annotations

import os

from thermonet.errors import InputError

__all__ = ["check_memory", "estimate_memory", "format_bytes", "memory_budget", "parse_bytes"]

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def format_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def parse_bytes(text: str | int | float, label: str = "--max-memory") -> int:
    """``"12GiB"``, ``"500M"``, ``1e9`` -> bytes (int); :class:`InputError` naming ``label`` otherwise."""
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        s = str(text).strip().upper().replace(" ", "")
        i = len(s)
        while i and not (s[i - 1].isdigit() or s[i - 1] == "."):
            i -= 1
        value_text, unit = s[:i], s[i:]
        try:
            value = float(value_text)
        except ValueError:
            raise InputError(f"{label} {text!r}: give a size such as 8GiB, 500MiB or 2e9") from None
    if unit not in _UNITS or not value > 0 or value == float("inf"):
        raise InputError(f"{label} {text!r}: give a positive size such as 8GiB, 500MiB or 2e9")
    return int(value * _UNITS[unit])


def _host_available() -> int:
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        pass
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:  # pragma: no cover - non-Linux
        pass
    candidates = [int(0.5 * total)] if total else []
    if available:
        candidates.append(int(0.9 * available))
    return min(candidates) if candidates else 1 << 62


def memory_budget(device: str) -> tuple[int, str]:
    """Bytes the run may use on ``device`` and a description of where the number comes from.

    CUDA: 90 % of the device's free memory now. CPU: the smaller of half the physical
    RAM and 90 % of the RAM available now.
    """
    if str(device).startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(0.9 * free), f"90% of the {format_bytes(free)} free of {format_bytes(total)} on {device}"
    budget = _host_available()
    return budget, f"{format_bytes(budget)} of host RAM (half the RAM, at most 90% of what is available)"


def estimate_memory(*, members: int, dim: int, queue_size: int, batch_size: int, eval_batch_size: int,
                    grad_chunk: int, activations_per_example: int, dataset_bytes: int, dtype_bytes: int,
                    checkpoint_queue: bool, device_type: str, group_entropy_dim: int = 0) -> dict[str, int]:
    """Bytes per component (device side; on the CPU the checkpoint copy counts as well).

    * ``state``: weights, gradient, update, full-data gradient and work arrays, 8 × E × D;
    * ``queue``: the entropy queue E × N × D;
    * ``activations``: 4 values (saved activation, its gradient, temporaries) per activation
      element per example, for the larger of a training call (E × B × grad_chunk) and an
      evaluation call (2 values, E × eval batch);
    * ``entropy``: float64 unit vectors and a copy of one member's queue (N × D) plus the
      estimator's 256 MiB distance blocks;
    * ``group_entropy`` (with ``group_entropy_dim``, the largest group's D_g): the group's
      columns gathered from a block of members (at most one more 256 MiB block);
    * ``data``: the dataset tensors; ``checkpoint``: a host copy of the state and queue.
    """
    b = int(dtype_bytes)
    out = {
        "state": 8 * members * dim * b,
        "queue": members * queue_size * dim * b,
        "activations": max(4 * members * batch_size * max(1, grad_chunk), 2 * members * eval_batch_size)
        * activations_per_example * b,
        "entropy": 2 * queue_size * dim * 8 + 256 * 2**20,
        "group_entropy": min(members * queue_size * int(group_entropy_dim) * 8, 256 * 2**20),
        "data": int(dataset_bytes),
    }
    if device_type == "cpu":
        out["checkpoint"] = members * dim * b + (members * queue_size * dim * b if checkpoint_queue else 0)
    out["total"] = sum(out.values())
    return out


def check_memory(estimate: dict[str, int], budget: int, where: str, *, members: int, queue_size: int,
                 dim: int) -> None:
    """Raise :class:`InputError` when the estimate exceeds the budget, naming the largest parts."""
    need = estimate["total"]
    if need <= budget:
        return
    parts = sorted(((v, k) for k, v in estimate.items() if k != "total"), reverse=True)[:2]
    biggest = ", ".join(f"{k} {format_bytes(v)}" for v, k in parts)
    raise InputError(
        f"{members} members with D={dim} and a queue of {queue_size} need about {format_bytes(need)} "
        f"({biggest}), more than the {where}; use fewer members (grid points x seeds), a smaller --queue-size, "
        f"--batch-size or model, or split the grid over several runs"
    )
