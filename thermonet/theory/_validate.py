"""attrs validators with messages that say what was wrong and what is allowed."""

from __future__ import annotations

import math
from typing import Any

from thermonet.errors import InputError


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def positive(instance: Any, attribute: Any, value: Any) -> None:
    """Finite and > 0."""
    if value is None:
        return
    if not _is_number(value) or float(value) <= 0:
        raise InputError(
            f"{type(instance).__name__}.{attribute.name} must be a finite number > 0, got {value!r}"
        )


def nonnegative(instance: Any, attribute: Any, value: Any) -> None:
    """Finite and >= 0."""
    if value is None:
        return
    if not _is_number(value) or float(value) < 0:
        raise InputError(
            f"{type(instance).__name__}.{attribute.name} must be a finite number >= 0, got {value!r}"
        )


def finite(instance: Any, attribute: Any, value: Any) -> None:
    """Any finite number."""
    if value is None:
        return
    if not _is_number(value):
        raise InputError(
            f"{type(instance).__name__}.{attribute.name} must be a finite number, got {value!r}"
        )


def dimension(instance: Any, attribute: Any, value: Any) -> None:
    """A dimension D >= 2 (the sphere S^{D-1} needs at least a circle)."""
    if value is None:
        return
    if not _is_number(value) or float(value) < 2:
        raise InputError(
            f"{type(instance).__name__}.{attribute.name} (the number of scale-invariant "
            f"parameters D) must be >= 2, got {value!r}"
        )
