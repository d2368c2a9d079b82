"""Distributions on spheres with exactly known entropy, for testing entropy estimators.

Every distribution here lives on ``S^{D−1}`` (or on a product of spheres) and has a
``sample(n, seed)`` method and an ``entropy()`` method that returns its entropy ``S₁``
(nats, w.r.t. surface measure) computed *without* sampling, to the stated precision.

Families
--------
:class:`VonMisesFisher`
    ``p(x) ∝ exp(κ μ·x)``. Entropy ``S₁ = −ln C_D(κ) − κ A_D(κ)`` with exponentially scaled
    Bessel functions (THEORY.md §7); agrees with ``scipy.stats.vonmises_fisher.entropy``.
    Samples by Wood's rejection algorithm (:func:`sample_vmf`, O(N D)).
:class:`TangentGaussian`
    ``z ~ N(0, diag(λ))`` in an orthonormal basis of the tangent space ``μ^⊥`` (``D − 1``
    variances ``λ``), mapped to the sphere by the exponential map
    ``x = cos‖z‖ μ + sin‖z‖ z/‖z‖`` (``chart="exp"``) or by the central (gnomonic)
    projection ``x = (μ + z)/‖μ + z‖`` (``chart="gnomonic"``). With ``r = ‖z‖`` the surface
    element is ``dσ = J(z) dz``,

        exp:       J = (sin r / r)^{D−2}        (one-to-one for r < π)
        gnomonic:  J = (1 + r²)^{−D/2}          (one-to-one onto the open hemisphere)

    so ``S₁ = H(z) + E[ln J(z)]`` with ``H(z) = ½ Σ ln(2πe λ_i)``. ``E[ln J]`` is a 1-D
    expectation over the weighted chi-square ``Q = r² = Σ λ_i χ²₁``:

    * gnomonic: ``E ln(1 + Q) = ∫₀^∞ e^{−t} (1 − Π_i (1 + 2tλ_i)^{−1/2}) dt / t``
      (Frullani's integral with the exact Laplace transform of ``Q``), by adaptive
      quadrature to ~1e-13 relative;
    * exp: ``ln(sin r/r) = −Σ_{n≥1} ζ(2n) r^{2n} / (n π^{2n})`` (from the product formula of
      sin), so ``E ln(sin r/r) = −Σ_n ζ(2n) E[Q^n]/(n π^{2n})`` with the exact moments of
      ``Q`` (from its cumulants ``κ_n = 2^{n−1}(n−1)! Σλ_i^n``). The series is summed until
      the terms are below 1e-15 relative (it is asymptotic: at most up to its smallest term,
      which must be below 1e-12 relative). The Gaussian puts mass beyond ``r = π`` (where the
      exponential map stops being one-to-one); its probability is bounded by a Chernoff
      bound and must be below 1e-12 (the class raises otherwise), so ignoring it changes
      ``S₁`` by far less than the quoted precision.
:class:`TangentStudentT`
    ``z = g/√W`` with ``g ~ N(0, diag(λ))``, ``W ~ χ²_ν/ν``: the multivariate t with shape
    ``diag(λ)`` (covariance ``ν/(ν−2) diag(λ)`` for ν > 2), heavy-tailed, mapped by the
    gnomonic chart (its support is unbounded, so the exponential map is not one-to-one).
    ``H(z) = ½ Σ ln λ_i + ln[(νπ)^{d/2} Γ(ν/2)/Γ((ν+d)/2)] + (ν+d)/2 [ψ((ν+d)/2) − ψ(ν/2)]``
    (closed form) and ``E ln(1 + Q) = E ln(W + Q_g) − E ln W`` with
    ``E ln W = ψ(ν/2) − ln(ν/2)`` and ``E ln(W + Q_g)`` by the same Frullani integral
    (Laplace transform ``(1 + 2t/ν)^{−ν/2} Π(1 + 2tλ_i)^{−1/2}``).
:class:`ProductOfSpheres`
    Independent factors on ``S^{D_1−1} × … × S^{D_L−1}``: samples are the concatenated unit
    vectors (shape ``(n, ΣD_g)``), the entropy is the sum of the factors' entropies
    (w.r.t. the product of the surface measures). ``groups`` gives ``(D_1, …, D_L)`` for
    :func:`thermonet.estimators.spherical_entropy`.

Spectra: :func:`power_law_spectrum` (``λ_i ∝ i^{−α}``) and :func:`stepped_spectrum`,
both normalised to a given total variance ``Σλ_i``.

The tangent basis is ``{H e_1, …, H e_{D−1}}`` with the Householder reflection ``H`` that
maps ``e_D`` to ``μ``; it is never formed as a matrix (``O(D)`` memory per sample).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import integrate
from scipy.special import digamma, erf, gammaln, ive, zeta

from thermonet.errors import InputError

__all__ = [
    "ProductOfSpheres",
    "TangentGaussian",
    "TangentStudentT",
    "TangentUniformBox",
    "VonMisesFisher",
    "expected_log1p_weighted_chi2",
    "expected_log_sinc_weighted_chi2",
    "gaussian_entropy",
    "power_law_spectrum",
    "sample_vmf",
    "stepped_spectrum",
    "student_t_entropy",
    "vmf_entropy",
    "vmf_mean_resultant",
]


# ------------------------------------------------------------------------- spectra


def power_law_spectrum(d: int, alpha: float, total: float) -> np.ndarray:
    """``λ_i ∝ i^{−α}``, ``i = 1..d``, scaled so that ``Σ λ_i = total``."""
    lam = np.arange(1, d + 1, dtype=np.float64) ** (-float(alpha))
    return lam * (float(total) / lam.sum())


def stepped_spectrum(d: int, fraction: float, ratio: float, total: float) -> np.ndarray:
    """The first ``ceil(fraction·d)`` variances are ``ratio`` times the others; ``Σ λ_i = total``."""
    m = max(1, int(math.ceil(fraction * d)))
    lam = np.ones(d)
    lam[:m] = float(ratio)
    return lam * (float(total) / lam.sum())


# --------------------------------------------------------------- 1-D expectations


def _frullani_log_expectation(log_laplace) -> float:
    """``E ln X = ∫₀^∞ (e^{−t} − E e^{−tX}) dt / t`` for a positive random X.

    ``log_laplace(t)`` returns ``ln E e^{−tX}``. The integrand is written as
    ``(e^{−t} − e^{L(t)})/t`` with ``expm1`` to keep precision near ``t = 0``.
    """

    def f(t: float) -> float:
        if t == 0.0:
            t = 1e-300
        a = -t
        b = log_laplace(t)
        # e^{a} − e^{b} = −e^{a} expm1(b − a) = e^{b} expm1(a − b)
        return -math.exp(a) * math.expm1(b - a) / t if a >= b else math.exp(b) * math.expm1(a - b) / t

    total = 0.0
    # split the range at scales where the integrand changes character
    edges = [0.0, 1e-6, 1e-4, 1e-2, 1.0, 10.0, 100.0, 1000.0, math.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        with warnings.catch_warnings():
            # quad reports "roundoff error" when 1e-13 is below what it can certify; the
            # tests compare these integrals with Monte Carlo and with each other
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            val, _err = integrate.quad(f, lo, hi, epsabs=0.0, epsrel=1e-13, limit=400)
        total += val
    return total


def expected_log1p_weighted_chi2(lam: np.ndarray) -> float:
    """``E ln(1 + Q)``, ``Q = Σ λ_i g_i²``, ``g_i ~ N(0, 1)`` i.i.d. (Frullani quadrature)."""
    lam = np.asarray(lam, dtype=np.float64)

    def log_laplace(t: float) -> float:  # ln E e^{−t(1+Q)}
        return -t - 0.5 * float(np.log1p(2.0 * t * lam).sum())

    return _frullani_log_expectation(log_laplace)


def _log1p_student_expectation(lam: np.ndarray, nu: float) -> float:
    """``E ln(1 + Q_g/W)``, ``W ~ χ²_ν/ν`` independent of ``Q_g = Σ λ_i g_i²``."""
    lam = np.asarray(lam, dtype=np.float64)

    def log_laplace(t: float) -> float:  # ln E e^{−t(W + Q_g)}
        return -0.5 * nu * math.log1p(2.0 * t / nu) - 0.5 * float(np.log1p(2.0 * t * lam).sum())

    e_log_w = float(digamma(0.5 * nu)) - math.log(0.5 * nu)
    return _frullani_log_expectation(log_laplace) - e_log_w


def _weighted_chi2_moments(lam: np.ndarray, order: int) -> np.ndarray:
    """Raw moments ``E[Q^n]``, ``n = 0..order``, from the cumulants ``2^{n−1}(n−1)! Σλ^n``."""
    cum = np.array(
        [0.0] + [2.0 ** (n - 1) * math.factorial(n - 1) * float(np.sum(lam**n)) for n in range(1, order + 1)]
    )
    mom = np.zeros(order + 1)
    mom[0] = 1.0
    for n in range(1, order + 1):
        # m_n = Σ_{j=1}^{n} C(n−1, j−1) κ_j m_{n−j}
        mom[n] = sum(math.comb(n - 1, j - 1) * cum[j] * mom[n - j] for j in range(1, n + 1))
    return mom


def _chernoff_tail(lam: np.ndarray, q: float) -> float:
    """Upper bound on ``P(Q ≥ q)`` by ``min_t e^{−tq} Π (1 − 2tλ_i)^{−1/2}``."""
    tmax = 0.5 / float(np.max(lam))
    best = 0.0  # log bound
    for frac in np.linspace(0.01, 0.999, 400):
        t = frac * tmax
        val = -t * q - 0.5 * float(np.log1p(-2.0 * t * lam).sum())
        best = min(best, val)
    return math.exp(best)


def expected_log_sinc_weighted_chi2(lam: np.ndarray, max_terms: int = 60) -> tuple[float, float]:
    """``E ln(sin r / r)`` with ``r² = Q = Σ λ_i g_i²`` and the tail bound ``P(r ≥ π)``.

    Series ``−Σ_n ζ(2n) E[Q^n] / (n π^{2n})`` with exact moments (see module docstring).
    Returns ``(value, tail_probability_bound)``.
    """
    lam = np.asarray(lam, dtype=np.float64)
    mom = _weighted_chi2_moments(lam, max_terms)
    total = 0.0
    prev = math.inf
    for n in range(1, max_terms + 1):
        term = float(zeta(2 * n)) * mom[n] / (n * math.pi ** (2 * n))
        if term > prev:
            # asymptotic series: the terms grow again past the smallest one, whose size
            # (kept below 1e-12 relative) bounds the truncation error
            break
        total -= term
        prev = term
        if term < 1e-15 * abs(total):
            break
    if prev > 1e-12 * abs(total):
        raise InputError(
            "expected_log_sinc_weighted_chi2: the series did not converge; the distribution "
            "is not concentrated enough for the exponential map (use chart='gnomonic')"
        )
    return total, _chernoff_tail(lam, math.pi**2)


def gaussian_entropy(lam: np.ndarray) -> float:
    """``½ Σ ln(2πe λ_i)``: entropy of ``N(0, diag(λ))``."""
    lam = np.asarray(lam, dtype=np.float64)
    return 0.5 * float(np.sum(np.log(2.0 * math.pi * math.e * lam)))


def student_t_entropy(lam: np.ndarray, nu: float) -> float:
    """Entropy of the multivariate t with shape ``diag(λ)`` and ``ν`` degrees of freedom."""
    lam = np.asarray(lam, dtype=np.float64)
    d = lam.size
    return (
        0.5 * float(np.sum(np.log(lam)))
        + 0.5 * d * math.log(nu * math.pi)
        + float(gammaln(0.5 * nu) - gammaln(0.5 * (nu + d)))
        + 0.5 * (nu + d) * float(digamma(0.5 * (nu + d)) - digamma(0.5 * nu))
    )


def vmf_entropy(dim: int, kappa: float) -> float:
    """``S₁ = −ln C_D(κ) − κ A_D(κ)`` of vMF on ``S^{D−1}`` (exponentially scaled Bessel)."""
    nu = 0.5 * dim - 1.0
    log_i = math.log(ive(nu, kappa)) + kappa
    log_c = nu * math.log(kappa) - 0.5 * dim * math.log(2.0 * math.pi) - log_i
    a_d = ive(0.5 * dim, kappa) / ive(nu, kappa)
    return -log_c - kappa * a_d


# ------------------------------------------------------------------ tangent charts


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    if not n > 0:
        raise InputError("the mean direction mu must be a nonzero vector")
    return v / n


def _householder_embed(z: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Rows ``z`` (n, D−1) in the basis ``H e_1..H e_{D−1}`` of ``μ^⊥`` → vectors in R^D.

    ``H`` is the reflection with ``H e_D = μ``: ``H = I − 2 v vᵀ``, ``v = (e_D − μ)/‖e_D − μ‖``
    (``H = I`` if ``μ = e_D``).
    """
    n, dm1 = z.shape
    out = np.zeros((n, dm1 + 1))
    out[:, :dm1] = z
    e = np.zeros(dm1 + 1)
    e[-1] = 1.0
    v = e - mu
    nv = np.linalg.norm(v)
    if nv < 1e-300:
        return out
    v /= nv
    return out - 2.0 * np.outer(out @ v, v)


def _map_to_sphere(z: np.ndarray, mu: np.ndarray, chart: str) -> np.ndarray:
    t = _householder_embed(z, mu)
    r = np.linalg.norm(z, axis=1, keepdims=True)
    if chart == "gnomonic":
        x = mu[None, :] + t
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    # exponential map; sin(r)/r → 1 at r = 0
    safe = np.where(r > 0, r, 1.0)
    sinc = np.where(r > 0, np.sin(safe) / safe, 1.0)
    return np.cos(r) * mu[None, :] + sinc * t


def _check_chart(chart: str) -> str:
    if chart not in ("exp", "gnomonic"):
        raise InputError(f"chart must be 'exp' or 'gnomonic', got {chart!r}")
    return chart


def sample_vmf(mu: np.ndarray, kappa: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of vMF(μ, κ) on ``S^{D−1}`` by Wood's (1994) rejection sampler, O(n D).

    ``w = μ·x`` is drawn from its marginal density ``∝ e^{κw}(1−w²)^{(D−3)/2}`` by
    rejection from a transformed Beta((D−1)/2, (D−1)/2) proposal, the tangent direction
    uniformly on ``S^{D−2}``; ``x = w μ + √(1−w²) v``. (``scipy.stats.vonmises_fisher``
    builds a D × D rotation, which takes minutes at D = 10⁴.)
    """
    dim = mu.size
    m = dim - 1.0
    # b = (−2κ + √(4κ² + m²))/m, written without cancellation
    b = m / (2.0 * kappa + math.sqrt(4.0 * kappa * kappa + m * m))
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + m * math.log(1.0 - x0 * x0)
    w = np.empty(n)
    filled = 0
    while filled < n:
        k = max(16, 2 * (n - filled))
        z = rng.beta(0.5 * m, 0.5 * m, size=k)
        ww = (1.0 - (1.0 + b) * z) / (1.0 - (1.0 - b) * z)
        u = rng.uniform(size=k)
        ok = kappa * ww + m * np.log1p(-x0 * ww) - c >= np.log(u)
        acc = ww[ok][: n - filled]
        w[filled : filled + acc.size] = acc
        filled += acc.size
    v = rng.standard_normal((n, dim - 1))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    t = _householder_embed(v, mu)  # unit vectors orthogonal to μ
    return w[:, None] * mu[None, :] + np.sqrt(np.clip(1.0 - w * w, 0.0, None))[:, None] * t


def vmf_mean_resultant(dim: int, kappa: float) -> float:
    """``A_D(κ) = E[μ·x] = I_{D/2}(κ)/I_{D/2−1}(κ)`` (exponentially scaled Bessel ratio)."""
    return float(ive(0.5 * dim, kappa) / ive(0.5 * dim - 1.0, kappa))


class _OneSphere:
    """A law on one sphere ``S^{D−1}`` around the unit vector ``mu``."""

    @property
    def dim(self) -> int:
        return self.mu.size

    @property
    def groups(self) -> tuple[int, ...]:
        return (self.dim,)


class _TangentLaw(_OneSphere):
    """A law given by its tangent coordinates at ``mu`` (``sample_tangent``), mapped to the
    sphere by the chart ``self.chart``."""

    def sample(self, n: int, seed: int | np.random.Generator) -> np.ndarray:
        return _map_to_sphere(self.sample_tangent(n, seed), self.mu, self.chart)


def _tangent_variances(variances, mu: np.ndarray) -> np.ndarray:
    """``variances`` as D − 1 positive float64 numbers, or InputError."""
    out = np.asarray(variances, dtype=np.float64)
    if out.shape != (mu.size - 1,) or not np.all(out > 0):
        raise InputError(f"variances must be D−1 = {mu.size - 1} positive numbers, got shape {out.shape}")
    return out


@dataclass
class VonMisesFisher(_OneSphere):
    """vMF(μ, κ) on ``S^{D−1}``: exact entropy (Bessel formula), Wood's sampler."""

    mu: np.ndarray
    kappa: float
    name: str = "vMF"

    def __post_init__(self) -> None:
        self.mu = _unit(self.mu)

    def sample(self, n: int, seed: int | np.random.Generator) -> np.ndarray:
        return sample_vmf(self.mu, float(self.kappa), n, np.random.default_rng(seed))

    def entropy(self) -> float:
        return vmf_entropy(self.dim, float(self.kappa))

    #: stated absolute precision of :meth:`entropy` (double-precision Bessel ratios)
    precision: float = 1e-8


@dataclass
class TangentGaussian(_TangentLaw):
    """``N(0, diag(λ))`` in the tangent space at ``μ``, mapped by ``chart`` (see module doc)."""

    mu: np.ndarray
    variances: np.ndarray
    chart: str = "exp"
    name: str = "tangent Gaussian"
    precision: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.mu = _unit(self.mu)
        self.variances = _tangent_variances(self.variances, self.mu)
        _check_chart(self.chart)
        self._entropy = None

    def sample_tangent(self, n: int, seed: int | np.random.Generator) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, self.variances.size)) * np.sqrt(self.variances)

    def entropy(self) -> float:
        if self._entropy is None:
            h = gaussian_entropy(self.variances)
            dim = self.dim
            if self.chart == "gnomonic":
                self._entropy = h - 0.5 * dim * expected_log1p_weighted_chi2(self.variances)
                self.precision = 1e-10 * abs(self._entropy) + 1e-10
            else:
                val, tail = expected_log_sinc_weighted_chi2(self.variances)
                if tail > 1e-12:
                    raise InputError(
                        f"TangentGaussian(chart='exp'): P(‖z‖ ≥ π) may be as large as {tail:.1e}; "
                        f"the exponential map is one-to-one only for ‖z‖ < π: use smaller "
                        f"variances or chart='gnomonic'"
                    )
                self._entropy = h + (dim - 2) * val
                self.precision = 1e-10 * abs(self._entropy) + 1e-10
        return self._entropy


@dataclass
class TangentStudentT(_TangentLaw):
    """Multivariate t (shape ``diag(λ)``, ``ν`` degrees of freedom), gnomonic chart."""

    mu: np.ndarray
    variances: np.ndarray
    nu: float
    name: str = "tangent Student t"
    precision: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.mu = _unit(self.mu)
        self.variances = _tangent_variances(self.variances, self.mu)
        if not self.nu > 0:
            raise InputError(f"nu must be positive, got {self.nu}")
        self._entropy = None

    chart = "gnomonic"

    def sample_tangent(self, n: int, seed: int | np.random.Generator) -> np.ndarray:
        rng = np.random.default_rng(seed)
        g = rng.standard_normal((n, self.variances.size)) * np.sqrt(self.variances)
        w = rng.chisquare(self.nu, size=(n, 1)) / self.nu
        return g / np.sqrt(w)

    def entropy(self) -> float:
        if self._entropy is None:
            h = student_t_entropy(self.variances, float(self.nu))
            self._entropy = h - 0.5 * self.dim * _log1p_student_expectation(self.variances, float(self.nu))
            self.precision = 1e-10 * abs(self._entropy) + 1e-10
        return self._entropy


def _log1p_box_expectation(half_widths: np.ndarray) -> float:
    """``E ln(1 + Q)``, ``Q = Σ x_i²``, ``x_i ~ U(−a_i, a_i)`` independent (Frullani)."""
    a = np.asarray(half_widths, dtype=np.float64)

    def log_laplace(t: float) -> float:  # ln E e^{−t(1+Q)}; E e^{−t x²} = √π erf(a√t)/(2a√t)
        y = a * math.sqrt(t)
        small = y < 1e-4
        val = np.where(small, -(y**2) / 3.0, np.log(np.sqrt(np.pi) * erf(np.where(small, 1.0, y)) / (2.0 * np.where(small, 1.0, y))))
        return -t + float(val.sum())

    return _frullani_log_expectation(log_laplace)


@dataclass
class TangentUniformBox(_TangentLaw):
    """Independent uniform tangent coordinates ``z_i ~ U(−a_i, a_i)``, gnomonic chart.

    Not elliptical (a box): a stress test for estimators that assume an elliptical
    tangent law. ``a_i = √(3 λ_i)`` gives variances ``λ_i``. ``H(z) = Σ ln(2 a_i)``.
    """

    mu: np.ndarray
    variances: np.ndarray
    name: str = "tangent uniform box"
    precision: float = field(default=0.0, init=False)
    chart = "gnomonic"

    def __post_init__(self) -> None:
        self.mu = _unit(self.mu)
        self.variances = _tangent_variances(self.variances, self.mu)
        self._entropy = None

    @property
    def half_widths(self) -> np.ndarray:
        return np.sqrt(3.0 * self.variances)

    def sample_tangent(self, n: int, seed: int | np.random.Generator) -> np.ndarray:
        rng = np.random.default_rng(seed)
        a = self.half_widths
        return rng.uniform(-1.0, 1.0, size=(n, a.size)) * a

    def entropy(self) -> float:
        if self._entropy is None:
            h = float(np.sum(np.log(2.0 * self.half_widths)))
            self._entropy = h - 0.5 * self.dim * _log1p_box_expectation(self.half_widths)
            self.precision = 1e-10 * abs(self._entropy) + 1e-10
        return self._entropy


@dataclass
class ProductOfSpheres:
    """Independent factors; samples are concatenated unit vectors, entropies add."""

    factors: Sequence
    name: str = "product"

    @property
    def groups(self) -> tuple[int, ...]:
        return tuple(int(f.dim) for f in self.factors)

    @property
    def dim(self) -> int:
        return sum(self.groups)

    @property
    def precision(self) -> float:
        return sum(f.precision for f in self.factors)

    def sample(self, n: int, seed: int | np.random.Generator) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.concatenate([f.sample(n, rng) for f in self.factors], axis=1)

    def entropy(self) -> float:
        return float(sum(f.entropy() for f in self.factors))
