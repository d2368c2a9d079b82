"""Exact thermodynamics of the isotropic test system: the von Mises–Fisher distribution.

The stationary direction ``x = w/‖w‖`` of the isotropic model (THEORY.md §7) is
distributed as ``vMF(−μ, κ)`` on the unit sphere ``S^{D−1}``, with density

    p(x) = C_D(κ) exp(−κ ⟨μ, x⟩),    C_D(κ) = κ^{D/2−1} / ((2π)^{D/2} I_{D/2−1}(κ)).

Conventions used throughout this module:

* ``κ = 1/T`` is the concentration (inverse temperature), ``D`` the ambient dimension
  (``D ≥ 2``, need not be an integer), ``ν = D/2 − 1`` the Bessel order;
* the energy is ``L(x) = 1 + ⟨μ, x⟩``; ``U = E[L] = 1 − A_D(κ)``;
* densities and entropies are w.r.t. the surface measure of ``S^{D−1}``; entropies in nats;
* every function takes ``(kappa, dim)``, broadcasts them against each other with numpy and
  returns float64 (a numpy scalar for scalar input).

Numerical method (against 30-digit mpmath over ``1e-3 ≤ κ ≤ 1e7, 2 ≤ D ≤ 1e6``: relative
error below 3e-13 for ``A_D``, ``U`` and ``C_V``, absolute error below 3e-14·max(1, |S|) for the
entropy; warning-free and finite for every finite κ > 0 and D ≥ 2):

* For orders ``ν ≥ 24`` the Bessel functions come from the uniform (Debye) asymptotic
  expansion ``I_ν(x) ≈ e^{νη} / ((2π)^{1/2} (ν²+x²)^{1/4}) Σ_k u_k(p)/ν^k`` with
  ``p = ν/√(ν²+x²)``, 13 terms. The log-ratio ``ln(I_{ν+1}/I_ν)`` is assembled from
  differences that are rewritten analytically (no subtraction of large, nearly equal
  numbers), so ``A = exp(ln r)`` and ``U = −expm1(ln r)`` are both relatively accurate, even
  when ``U ≈ (D−1)/(2κ)`` is tiny.
* For smaller orders the ratio is carried down from ``ν + N ≥ 24`` with the three-term
  recurrence ``r_{m−1} = x / (2m + x r_m)`` (backward, hence stable), propagating ``r``,
  ``1 − r``, the derivative ``x² r'`` and ``ln I_m e^{−x}`` together.
* The heat capacity ``C_V = κ² A'(κ)`` comes from differentiating the expansion analytically
  and the recurrence step by step, not from the identity ``A' = 1 − A² − (D−1)A/κ``, which
  in floating point cancels up to ~``log10(max(D, κ))`` digits.

No scipy Bessel routine is used: ``scipy.special.ive`` underflows for large order and small
argument (``ive(5e5, 1e-3) == 0``), and the quotient of two ``ive`` values cannot resolve
``1 − A`` when ``A → 1``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import numpy as np

from thermonet.errors import InputError

__all__ = [
    "mean_resultant_length",
    "energy",
    "log_normalizer",
    "entropy",
    "energy_high_concentration",
    "entropy_high_concentration",
    "heat_capacity",
]

_LN_2PI = float(np.log(2.0 * np.pi))

# Smallest order at which the Debye expansion is used directly; lower orders recur down.
_DEBYE_MIN_ORDER = 24.0
# Number of Debye terms u_0 .. u_{K-1}. At ν ≥ 24 the first omitted term is < 1e-16.
_DEBYE_TERMS = 13


# --------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------


def _as_float_array(value: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a real number or an array of them, got {value!r}") from None
    return array


def _validated(kappa: object, dim: object) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast ``kappa`` and ``dim`` to float64 arrays and check their ranges."""
    k = _as_float_array(kappa, "kappa")
    d = _as_float_array(dim, "dim")
    if not np.all(np.isfinite(k) & (k > 0)):
        bad = k[~(np.isfinite(k) & (k > 0))].ravel()[0]
        raise InputError(
            f"kappa (the concentration 1/T) must be finite and > 0, got {bad!r}"
        )
    if not np.all(np.isfinite(d) & (d >= 2)):
        bad = d[~(np.isfinite(d) & (d >= 2))].ravel()[0]
        raise InputError(
            f"dim (the dimension D of the sphere's ambient space) must be finite and >= 2, "
            f"got {bad!r}"
        )
    try:
        k, d = np.broadcast_arrays(k, d)
    except ValueError:
        raise InputError(
            f"kappa and dim must broadcast against each other, got shapes {k.shape} and {d.shape}"
        ) from None
    return k, d


def _out(array: np.ndarray) -> np.ndarray | np.float64:
    """0-d arrays become numpy float64 scalars; other arrays are returned as they are."""
    return array[()] if array.ndim == 0 else array


# --------------------------------------------------------------------------------------
# Debye polynomials u_k(p)
# --------------------------------------------------------------------------------------


def _debye_polynomials(count: int) -> np.ndarray:
    """Coefficients ``c[k, j]`` of ``u_k(p) = Σ_j c[k, j] p^j`` (DLMF 10.41.9–10).

    ``u_0 = 1``,  ``u_{k+1}(p) = ½ p² (1 − p²) u_k'(p) + ⅛ ∫_0^p (1 − 5t²) u_k(t) dt``,
    computed in exact rational arithmetic.
    """
    degree = 3 * (count - 1)
    polys = [[Fraction(1)] + [Fraction(0)] * degree]
    for _ in range(count - 1):
        u = polys[-1]
        new = [Fraction(0)] * (degree + 1)
        for j, c in enumerate(u):
            if c == 0:
                continue
            # ½ p² (1 − p²) · j c p^{j−1} = ½ j c (p^{j+1} − p^{j+3})
            if j > 0:
                new[j + 1] += Fraction(j, 2) * c
                new[j + 3] -= Fraction(j, 2) * c
            # ⅛ ∫_0^p (t^j − 5 t^{j+2}) c dt = ⅛ c (p^{j+1}/(j+1) − 5 p^{j+3}/(j+3))
            new[j + 1] += c / (8 * (j + 1))
            new[j + 3] -= 5 * c / (8 * (j + 3))
        polys.append(new)
    return np.array([[float(c) for c in u] for u in polys])


_U_COEF = _debye_polynomials(_DEBYE_TERMS)
_DU_COEF = _U_COEF[:, 1:] * np.arange(1, _U_COEF.shape[1])  # coefficients of u_k'(p)


def _poly(coef: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Evaluate ``Σ_j coef[j] p^j`` by Horner's rule."""
    out = np.zeros_like(p)
    for c in coef[::-1]:
        out = out * p + c
    return out


def _asinh_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``asinh(a/b)`` for a, b > 0 without overflow of ``a/b``."""
    huge = a * 1e-150 > b
    y = a / np.where(huge, a, b)
    return np.where(huge, np.log(2.0 * a) - np.log(b), np.arcsinh(y))


class _DebyeOrder(NamedTuple):
    s: np.ndarray  # √(n² + x²)
    log_ive: np.ndarray  # ln(I_n(x) e^{−x})
    log_series: np.ndarray  # ln Σ_k u_k(p)/n^k
    x2_dlog_series: np.ndarray  # x² d/dx ln Σ_k u_k(p)/n^k


def _debye(n: np.ndarray, x: np.ndarray) -> _DebyeOrder:
    """Uniform expansion of ``I_n(x)`` for large order ``n`` (any ``x > 0``).

    ``ln I_n(x) = √(n²+x²) − n asinh(n/x) − ½ ln 2π − ¼ ln(n²+x²) + ln Σ_k u_k(p)/n^k``,
    ``p = n/√(n²+x²)``; the first two terms minus ``x`` are written as
    ``n²/(√(n²+x²) + x) − n asinh(n/x)`` so that ``ln ive`` has no cancellation.
    """
    s = np.hypot(n, x)
    p = n / s
    q = x / s
    inv_n = 1.0 / n
    series = np.zeros_like(x)
    dseries = np.zeros_like(x)
    for k in range(_DEBYE_TERMS - 1, 0, -1):
        series = (series + _poly(_U_COEF[k], p)) * inv_n
        dseries = (dseries + _poly(_DU_COEF[k], p)) * inv_n
    log_series = np.log1p(series)
    # d p/dx = −n x / s³, so x² d/dx ln S = −(S'(p)/S) n q³.
    x2_dlog_series = -dseries / (1.0 + series) * n * q**3
    log_ive = (
        n * ((0.5 * n) / (0.5 * s + 0.5 * x)) - n * _asinh_ratio(n, x) - 0.5 * _LN_2PI - 0.5 * np.log(s) + log_series
    )
    return _DebyeOrder(s, log_ive, log_series, x2_dlog_series)


class _Bessel(NamedTuple):
    ratio: np.ndarray  # r = A_D(κ) = I_{ν+1}(κ)/I_ν(κ)
    one_minus_ratio: np.ndarray  # 1 − r
    x2_dratio: np.ndarray  # κ² dr/dκ
    log_ive: np.ndarray  # ln(I_ν(κ) e^{−κ})


def _debye_ratio(nu: np.ndarray, x: np.ndarray) -> _Bessel:
    """``r = I_{ν+1}(x)/I_ν(x)``, ``1 − r``, ``x² r'`` and ``ln ive_ν(x)`` from the expansion.

    ``ln r = [f(ν+1) − f(ν)] − ¼ ln(s_{ν+1}²/s_ν²) + ln S_{ν+1} − ln S_ν`` with
    ``f(n) = s_n − n asinh(n/x)``, ``s_n = √(n²+x²)``; the bracket is rewritten as
    ``(2ν+1)/(s_ν + s_{ν+1}) − asinh((ν+1)/x) − ν asinh((2ν+1)/((ν+1)s_ν + ν s_{ν+1}))``,
    and ``d f(n)/dx = s_n/x``.
    """
    lo = _debye(nu, x)
    hi = _debye(nu + 1.0, x)
    two_nu1 = 2.0 * nu + 1.0
    bracket = (
        (0.5 * two_nu1) / (0.5 * lo.s + 0.5 * hi.s)
        - _asinh_ratio(nu + 1.0, x)
        - nu * np.arcsinh((two_nu1 / lo.s) / ((nu + 1.0) + nu * (hi.s / lo.s)))
    )
    log_r = (
        bracket
        - 0.25 * np.log1p((two_nu1 / lo.s) / lo.s)
        + hi.log_series
        - lo.log_series
    )
    # x² d(ln r)/dx, term by term.
    x2_dlog_r = (
        two_nu1 * ((0.5 * x) / (0.5 * lo.s + 0.5 * hi.s))
        + 0.5 * two_nu1 * (x / lo.s) ** 2 * ((x / hi.s) / hi.s)
        + hi.x2_dlog_series
        - lo.x2_dlog_series
    )
    ratio = np.exp(log_r)
    return _Bessel(ratio, -np.expm1(log_r), ratio * x2_dlog_r, lo.log_ive)


def _bessel(kappa: np.ndarray, dim: np.ndarray) -> _Bessel:
    """All Bessel quantities needed for order ``ν = D/2 − 1`` at argument ``κ``.

    Orders below ``_DEBYE_MIN_ORDER`` start at ``m = ν + N`` (``N`` the smallest integer
    reaching it) and step down with ``r_{m−1} = x/(2m + x r_m)``, i.e.
    ``1 − r_{m−1} = (2m − x(1 − r_m))/(2m + x r_m)``,
    ``x² r'_{m−1} = r_{m−1}² (2m − x² r'_m)`` and ``ln ive_{m−1} = ln ive_m − ln r_{m−1}``.
    """
    x = kappa.ravel()
    nu = dim.ravel() / 2.0 - 1.0
    steps = np.maximum(np.ceil(_DEBYE_MIN_ORDER - nu), 0.0)
    r, u, v, log_ive = _debye_ratio(nu + steps, x)
    for j in range(int(steps.max(initial=0.0)), 0, -1):
        active = steps >= j
        m = nu + j
        r_new = x / (2.0 * m + x * r)
        u_new = (2.0 * m - x * u) / (2.0 * m + x * r)
        v_new = r_new**2 * (2.0 * m - v)
        log_ive_new = log_ive - np.log(r_new)
        r = np.where(active, r_new, r)
        u = np.where(active, u_new, u)
        v = np.where(active, v_new, v)
        log_ive = np.where(active, log_ive_new, log_ive)
    shape = kappa.shape
    return _Bessel(r.reshape(shape), u.reshape(shape), v.reshape(shape), log_ive.reshape(shape))


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def mean_resultant_length(kappa, dim):
    """Mean resultant length ``A_D(κ) = I_{D/2}(κ) / I_{D/2−1}(κ) = E[⟨−μ, x⟩]``.

    Increases from ``κ/D`` (``κ → 0``) to ``1 − (D−1)/(2κ)`` (``κ → ∞``).
    """
    k, d = _validated(kappa, dim)
    return _out(_bessel(k, d).ratio)


def energy(kappa, dim):
    """Mean energy ``U = E[1 + ⟨μ, x⟩] = 1 − A_D(κ)`` under ``vMF(−μ, κ)``.

    Computed directly (not as ``1 − A``), so it is relatively accurate also when
    ``U ≈ (D−1)/(2κ) ≪ 1``.
    """
    k, d = _validated(kappa, dim)
    return _out(_bessel(k, d).one_minus_ratio)


def _log_normalizer(k: np.ndarray, d: np.ndarray, log_ive: np.ndarray) -> np.ndarray:
    nu = d / 2.0 - 1.0
    # ln C = ν ln κ − (ν+1) ln 2π − ln I_ν(κ),  ln I_ν(κ) = ln ive_ν(κ) + κ
    return nu * np.log(k) - (nu + 1.0) * _LN_2PI - log_ive - k


def log_normalizer(kappa, dim):
    """``ln C_D(κ)``, ``C_D(κ) = κ^{D/2−1} / ((2π)^{D/2} I_{D/2−1}(κ))``.

    ``C_D`` normalises ``exp(κ⟨−μ, x⟩)`` w.r.t. the surface measure of ``S^{D−1}``.
    """
    k, d = _validated(kappa, dim)
    return _out(_log_normalizer(k, d, _bessel(k, d).log_ive))


def entropy(kappa, dim):
    """Differential entropy ``S₁ = −ln C_D(κ) − κ A_D(κ)`` in nats (surface measure).

    Evaluated as ``−ν ln κ + (ν+1) ln 2π + ln(I_ν(κ) e^{−κ}) + κ (1 − A_D(κ))``,
    ``ν = D/2 − 1``, which avoids the cancellation of the two ``O(κ)`` terms. Tends to
    ``ln |S^{D−1}| = ln(2 π^{D/2} / Γ(D/2))`` as ``κ → 0``.
    """
    k, d = _validated(kappa, dim)
    b = _bessel(k, d)
    nu = d / 2.0 - 1.0
    return _out(-nu * np.log(k) + (nu + 1.0) * _LN_2PI + b.log_ive + k * b.one_minus_ratio)


def energy_high_concentration(kappa, dim):
    """Leading high-concentration energy ``U ≈ (D−1)/(2κ) = (D−1)T/2`` (equipartition)."""
    k, d = _validated(kappa, dim)
    return _out((d - 1.0) / (2.0 * k))


def entropy_high_concentration(kappa, dim):
    """Leading high-concentration entropy ``S₁ ≈ ((D−1)/2) ln(2πe/κ) = ((D−1)/2) ln(2πeT)``.

    The entropy of a ``(D−1)``-dimensional Gaussian of variance ``T`` per direction.
    """
    k, d = _validated(kappa, dim)
    return _out(0.5 * (d - 1.0) * (_LN_2PI + 1.0 - np.log(k)))


def heat_capacity(kappa, dim):
    """Heat capacity ``C_V = dU/dT = −κ² dU/dκ = κ² A_D'(κ)`` with ``T = 1/κ``.

    ``A'(κ) = 1 − A² − (D−1)A/κ = Var⟨μ, x⟩`` (so ``C_V = κ² Var L``); it is evaluated
    from the differentiated expansion and recurrence rather than from this identity,
    which cancels badly. Tends to ``κ²/D`` as ``κ → 0`` and to ``(D−1)/2`` as ``κ → ∞``.
    """
    k, d = _validated(kappa, dim)
    return _out(_bessel(k, d).x2_dratio)
