"""One power-law fit, ``y = prefactor · x**slope``, by least squares in log-log space.

:func:`fit_power_law` is used for the noise trend (``sigma2`` against eta*lambda,
:mod:`thermonet.analysis.noise`) and, with per-point log-space standard deviations, for
the free-energy temperature (``T`` against the learning rate, :func:`fit_hull_power_law`,
whose points are the hull's temperature intervals). It returns a :class:`PowerLaw`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from thermonet.errors import InputError

if TYPE_CHECKING:
    from thermonet.analysis.hull import HullTemperatures

__all__ = ["PowerLaw", "fit_hull_power_law", "fit_power_law", "least_squares"]

_SQRT12 = math.sqrt(12.0)
#: Floor of a point's log-space standard deviation (a degenerate, collinear hull interval).
_MIN_LOG_SD = 1e-3


@attrs.frozen(kw_only=True)
class PowerLaw:
    """``y = prefactor * x**slope`` fitted in log-log space.

    ``slope_se``: the slope's standard error, from the given per-point standard deviations
    when the fit was weighted, else from the scatter about the line.
    ``slope_se_scatter``: always from the scatter (NaN with fewer than 3 points).
    ``x_ref`` (the weighted geometric mean of the x used) is where the prefactor and slope
    are uncorrelated; ``y_ref ± y_ref_se`` the fitted y there. ``r2`` and
    ``residual_std`` are those of the log-log fit (r2 NaN when ln y does not vary);
    ``chi2_red`` the reduced chi-square of a weighted fit (NaN unweighted).

    The free-energy names (``alpha``, ``alpha_err``, ``alpha_err_scatter``,
    ``prefactor_err``, ``lr_ref``, ``T_ref``, ``T_ref_err``, ``lr_used``) read the same
    numbers.
    """

    slope: float
    slope_se: float
    slope_se_scatter: float
    prefactor: float
    prefactor_se: float
    x_ref: float
    y_ref: float
    y_ref_se: float
    r2: float
    residual_std: float
    chi2_red: float
    n: int
    x_used: tuple[float, ...]
    weighted: bool

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=float) ** self.slope

    __call__ = predict

    # the names of the free-energy temperature fit
    alpha = property(lambda self: self.slope)
    alpha_err = property(lambda self: self.slope_se)
    alpha_err_scatter = property(lambda self: self.slope_se_scatter)
    prefactor_err = property(lambda self: self.prefactor_se)
    lr_ref = property(lambda self: self.x_ref)
    T_ref = property(lambda self: self.y_ref)
    T_ref_err = property(lambda self: self.y_ref_se)
    lr_used = property(lambda self: self.x_used)

    def as_dict(self) -> dict[str, float]:
        return {"slope": self.slope, "slope_se": self.slope_se, "prefactor": self.prefactor,
                "prefactor_se": self.prefactor_se, "r2": self.r2, "residual_std": self.residual_std,
                "n": float(self.n)}

    def to_dict(self) -> dict[str, Any]:
        """The free-energy names (JSON-safe: NaN -> None)."""
        def number(v: float):
            return None if isinstance(v, float) and math.isnan(v) else v

        return {"alpha": number(self.alpha), "alpha_err": number(self.alpha_err),
                "alpha_err_scatter": number(self.alpha_err_scatter), "prefactor": number(self.prefactor),
                "prefactor_err": number(self.prefactor_err), "lr_ref": number(self.lr_ref),
                "T_ref": number(self.T_ref), "T_ref_err": number(self.T_ref_err),
                "chi2_red": number(self.chi2_red), "n": self.n, "lr_used": [float(v) for v in self.lr_used]}

    def describe(self, x_name: str = "LR", y_name: str = "T", exponent: str = "alpha") -> str:
        """One line: the law, the exponent with its errors, the value at ``x_ref``, the fit quality."""
        scatter = (f", ± {self.slope_se_scatter:.2g} (scatter)"
                   if self.weighted and math.isfinite(self.slope_se_scatter) else "")
        source = "intervals" if self.weighted else "scatter"
        chi2 = f"{self.chi2_red:.4g}" if math.isfinite(self.chi2_red) else "-"
        return (f"{y_name} = {self.prefactor:.4g} * {x_name}^{self.slope:.4f}   {exponent} = {self.slope:.4f} ± "
                f"{self.slope_se:.2g} ({source}){scatter}; {y_name}({x_name}={self.x_ref:.3g}) = {self.y_ref:.4g} ± "
                f"{self.y_ref_se:.2g}; {self.n} runs, chi2/dof = {chi2}")


def least_squares(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Coefficients, their standard errors, R2 and the residual std of an OLS fit."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    n, k = design.shape
    rss = float(resid @ resid)
    tss = float(((y - y.mean()) ** 2).sum())
    dof = n - k
    scale = rss / dof if dof > 0 else math.nan
    cov = np.linalg.pinv(design.T @ design) * scale
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    # a relative tolerance: ln y constant to rounding counts as constant
    r2 = 1.0 - rss / tss if tss > 1e-24 * max(1.0, float(y @ y)) else math.nan
    return coef, se, r2, math.sqrt(scale) if dof > 0 else math.nan


def fit_power_law(x: Sequence[float], y: Sequence[float], *, log_sd: Sequence[float] | None = None) -> PowerLaw:
    """Fit ``y = A x**slope`` to the finite, positive pairs.

    Without ``log_sd``: ordinary least squares of ``ln y`` on ``ln x`` (standard errors
    from the scatter). With ``log_sd`` (the standard deviation of each ``ln y``):
    weighted least squares with weights ``1/log_sd**2``. Raises :class:`InputError` with
    fewer than 2 distinct x (3 points unweighted) or mismatched lengths.
    """
    x, y = (np.asarray(a, dtype=float).ravel() for a in (x, y))
    if x.shape != y.shape:
        raise InputError(f"x and y must have equal sizes, got {x.size} and {y.size}")
    sd = None if log_sd is None else np.asarray(log_sd, dtype=float).ravel()
    if sd is not None and sd.shape != x.shape:
        raise InputError(f"log_sd must have the size of x, got {sd.size} and {x.size}")
    with np.errstate(invalid="ignore"):
        good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        if sd is not None:
            good &= np.isfinite(sd) & (sd > 0)
    lx, ly = np.log(x[good]), np.log(y[good])
    minimum = 2 if sd is not None else 3
    if lx.size < minimum:
        raise InputError(f"a power-law fit needs at least {minimum} points with finite positive values, "
                         f"got {lx.size}")
    if np.unique(np.round(lx, 9)).size < 2:
        raise InputError("a power-law fit needs at least 2 distinct values of x")
    w = np.ones_like(lx) if sd is None else 1.0 / sd[good] ** 2
    x_ref = float(np.sum(w * lx) / np.sum(w))
    xc = lx - x_ref
    sxx = float(np.sum(w * xc**2))
    slope = float(np.sum(w * xc * ly) / sxx)
    level = float(np.sum(w * ly) / np.sum(w))  # ln y at x_ref
    resid = ly - (level + slope * xc)
    dof = lx.size - 2
    chi2 = float(np.sum(w * resid**2) / dof) if dof > 0 else math.nan
    var_slope, var_level = 1.0 / sxx, 1.0 / float(np.sum(w))
    scatter = math.sqrt(var_slope * chi2) if dof > 0 else math.nan
    if sd is None:  # OLS: the scatter is the only error there is
        var_slope, var_level = var_slope * chi2, var_level * chi2
    ln_a = level - slope * x_ref
    var_ln_a = var_level + x_ref**2 * var_slope
    rss = float(resid @ resid)
    tss = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - rss / tss if tss > 1e-24 * max(1.0, float(ly @ ly)) else math.nan
    prefactor = math.exp(ln_a)
    y_ref = math.exp(level)
    return PowerLaw(slope=slope, slope_se=math.sqrt(var_slope) if math.isfinite(var_slope) else math.nan,
                    slope_se_scatter=scatter, prefactor=prefactor,
                    prefactor_se=prefactor * math.sqrt(var_ln_a) if math.isfinite(var_ln_a) else math.nan,
                    x_ref=math.exp(x_ref), y_ref=y_ref,
                    y_ref_se=y_ref * math.sqrt(var_level) if math.isfinite(var_level) else math.nan,
                    r2=float(r2), residual_std=math.sqrt(rss / dof) if dof > 0 else math.nan,
                    chi2_red=chi2 if sd is not None else math.nan, n=int(lx.size),
                    x_used=tuple(float(v) for v in np.exp(lx)), weighted=sd is not None)


def fit_hull_power_law(result: "HullTemperatures | None" = None, *, lr: Sequence[float] | None = None,
                       T_low: Sequence[float] | None = None, T_high: Sequence[float] | None = None) -> PowerLaw:
    """``T = A · LR^alpha`` fitted to the bounded free-energy temperature intervals.

    Give a :class:`~thermonet.analysis.hull.HullTemperatures` or the arrays ``lr``,
    ``T_low``, ``T_high``. Only runs with ``0 < T_low <= T_high < inf`` are used, at the
    point estimate ``sqrt(T_low T_high)`` with a log-space standard deviation of
    ``ln(T_high/T_low)/sqrt(12)`` (the true ``ln T`` taken uniform in its interval; floored
    at 1e-3 for a degenerate interval): a weighted :func:`fit_power_law`. Raises
    :class:`InputError` with fewer than 2 such runs at different learning rates.
    """
    if result is not None:
        lr_a, lo, hi = result.lr, result.column("T_low"), result.column("T_high")
        use = result.bounded
    else:
        if lr is None or T_low is None or T_high is None:
            raise InputError("fit_hull_power_law needs a HullTemperatures or lr, T_low and T_high")
        lr_a, lo, hi = (np.asarray(v, dtype=float).ravel() for v in (lr, T_low, T_high))
        if not lr_a.size == lo.size == hi.size:
            raise InputError("lr, T_low and T_high must have the same length")
        with np.errstate(invalid="ignore"):
            use = np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi >= lo) & np.isfinite(lr_a) & (lr_a > 0)
    lr_u, lo_u, hi_u = lr_a[use], lo[use], hi[use]
    if lr_u.size < 2 or np.unique(lr_u).size < 2:
        raise InputError(
            f"a power-law fit needs at least 2 runs with a bounded temperature interval at different learning "
            f"rates; this sweep has {int(np.sum(use))}"
        )
    sd = np.maximum(np.log(hi_u / lo_u) / _SQRT12, _MIN_LOG_SD)
    return fit_power_law(lr_u, np.sqrt(lo_u * hi_u), log_sd=sd)
