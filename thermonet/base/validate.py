"""attrs validators with messages that say what was wrong and what is allowed.

The message names the value the way the user wrote it: a field declared with
``metadata={"label": "--sigma"}`` is called ``--sigma``; otherwise ``Class.field``.
"""

from __future__ import annotations

import math
from typing import Any

from thermonet.errors import InputError

__all__ = ["dimension", "finite", "label", "nonnegative", "positive"]


def label(instance: Any, attribute: Any) -> str:
    """How a message names ``attribute`` of ``instance`` (an object or a class)."""
    given = getattr(attribute, "metadata", {}).get("label") if attribute is not None else None
    if given:
        return str(given)
    owner = instance.__name__ if isinstance(instance, type) else type(instance).__name__
    return f"{owner}.{attribute.name}"


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def positive(instance: Any, attribute: Any, value: Any) -> None:
    """Finite and > 0."""
    if value is None:
        return
    if not _is_number(value) or float(value) <= 0:
        raise InputError(f"{label(instance, attribute)} must be a finite number > 0, got {value!r}")


def nonnegative(instance: Any, attribute: Any, value: Any) -> None:
    """Finite and >= 0."""
    if value is None:
        return
    if not _is_number(value) or float(value) < 0:
        raise InputError(f"{label(instance, attribute)} must be a finite number >= 0, got {value!r}")


def finite(instance: Any, attribute: Any, value: Any) -> None:
    """Any finite number."""
    if value is None:
        return
    if not _is_number(value):
        raise InputError(f"{label(instance, attribute)} must be a finite number, got {value!r}")


def dimension(instance: Any, attribute: Any, value: Any) -> None:
    """A dimension D >= 2 (the sphere S^{D-1} needs at least a circle)."""
    if value is None:
        return
    if not _is_number(value) or float(value) < 2:
        raise InputError(f"{label(instance, attribute)} (the number of scale-invariant parameters D) must be a "
                         f"finite number >= 2, got {value!r}")
