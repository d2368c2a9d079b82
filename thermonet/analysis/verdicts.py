"""Verdicts on a measured disagreement: ``pass``, ``fail`` or ``inconclusive``.

A comparison is decided only when the run's noise allows it: ``z`` standard errors of the
key figure must not exceed the tolerance (issue 11's rule). :func:`decide` judges one key
figure, :func:`decide_points` a grid of them (every member or grid point with its own
standard error). An inconclusive verdict comes with how many more seeds or steps would
decide it: the standard error falls as ``1/sqrt(n)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["VERDICTS", "decide", "decide_points"]

#: A check's verdicts: decided either way, undecidable from this run, or not applicable.
VERDICTS = ("pass", "fail", "inconclusive", "skip")


def decide(key: float, key_se: float, tolerance: float, z: float) -> tuple[str, str]:
    """The verdict on a key figure (a size of disagreement, ``>= 0``) and what would decide it.

    * ``fail`` when the key figure exceeds the tolerance by more than ``z`` standard errors
      (decided, however noisy the run);
    * else ``inconclusive`` when the key figure is not a number, or when ``z`` standard
      errors of it exceed the tolerance: this run cannot tell a pass from a fail. The second
      value then says how many more seeds or steps would decide it: the standard error
      falls as ``1/sqrt(n)``, so about ``(z s.e. / tolerance)**2`` times as many;
    * otherwise ``pass`` when the key figure is within the tolerance, else ``fail``.

    An unknown standard error (NaN) counts as zero: the figure is judged as it is.
    """
    if not math.isfinite(key):
        return "inconclusive", "the key figure is not a number (missing or non-finite data)"
    noise = z * key_se if math.isfinite(key_se) else 0.0
    if key - noise > tolerance:
        return "fail", ""  # beyond the tolerance by more than its noise: decided, however noisy
    if noise > tolerance:
        factor = (noise / tolerance) ** 2 if tolerance > 0 else math.inf
        shown = f"{factor:.1f}" if factor < 100 else f"{factor:.3g}"
        return "inconclusive", (f"{z:g} s.e. of the key figure ({noise:.3g}) exceed the tolerance {tolerance:g}: about "
                                f"{shown}x the seeds or the steps would decide it")
    return ("pass" if key <= tolerance else "fail"), ""


def decide_points(errors: np.ndarray, errors_se: np.ndarray, tolerance: float, z: float, *, signed: bool = False
                  ) -> tuple[str, str, float, float]:
    """The verdict on a grid of disagreements (e.g. relative errors per member) with their
    standard errors: ``(verdict, to_decide, key, key_se)``, key = the largest disagreement.

    The disagreements are compared by size (``abs``) unless ``signed``: then a negative
    value is a margin on the safe side (e.g. how far a state's own potential lies below its
    best competitor's) and counts as such. Each point is

    * beyond the tolerance when ``e - z se > tolerance``: then the verdict is ``fail``;
    * undecided when its ``z`` standard errors exceed the tolerance and its interval
      ``e + z se`` reaches above the tolerance (the run cannot tell on which side it lies);
    * otherwise decided by its value.

    ``inconclusive`` when some point is undecided (or none is finite), else ``pass`` when
    every point is within the tolerance and ``fail`` otherwise. The key figure's standard
    error is the largest point's.
    """
    e = np.asarray(errors, dtype=float).ravel()
    e = e if signed else np.abs(e)
    se = np.asarray(errors_se, dtype=float).ravel() * np.ones(e.shape)
    se = np.where(np.isfinite(se), np.abs(se), 0.0)
    good = np.isfinite(e)
    if not good.any():
        return "inconclusive", "no finite value to compare", math.nan, math.nan
    e, se = e[good], se[good]
    worst = int(np.argmax(e))
    key, key_se = float(e[worst]), float(se[worst])
    if signed:
        key = max(key, 0.0)
    if np.any(e - z * se > tolerance):
        return "fail", "", key, key_se
    undecided = (z * se > tolerance) & (e + z * se > tolerance)
    if undecided.any():
        noisiest = float(np.max(se[undecided]))
        _, to_decide = decide(key, noisiest, tolerance, z)
        count = int(undecided.sum())
        return "inconclusive", f"{count} of {e.size} points undecided; {to_decide}", key, key_se
    return ("pass" if key <= tolerance else "fail"), "", key, key_se
