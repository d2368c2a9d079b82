"""Hyperparameter grids from the command line: ``A:B:N`` (N log-spaced values) or ``a,b,c``."""

from __future__ import annotations

import numpy as np

from thermonet.errors import InputError


def parse_grid(text: str, name: str = "value") -> np.ndarray:
    """Parse ``"1e-3:1e-1:17"`` (17 log-spaced values from 1e-3 to 1e-1) or ``"0.1,0.2"``.

    A single number gives a one-point grid. Raises :class:`InputError` with the
    offending text for anything else, for non-finite values and for empty grids.
    """
    text = str(text).strip()
    if not text:
        raise InputError(f"--{name}: empty grid; give A:B:N (N log-spaced values) or a comma list")
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            if count < 1:
                raise InputError(f"--{name} {text!r}: N must be >= 1")
            if start <= 0 or stop <= 0:
                raise InputError(f"--{name} {text!r}: log-spaced grids need A > 0 and B > 0")
            values = np.geomspace(start, stop, count)
        else:
            values = np.array([float(x) for x in text.split(",") if x.strip() != ""])
    except InputError:
        raise
    except ValueError:
        raise InputError(
            f"--{name} {text!r} is not a grid; use A:B:N (N log-spaced values from A to B) or a comma list"
        ) from None
    if values.size == 0:
        raise InputError(f"--{name}: empty grid")
    if not np.all(np.isfinite(values)):
        raise InputError(f"--{name} {text!r}: values must be finite")
    return values
