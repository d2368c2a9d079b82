"""Tests for thermonet.theory.vmf against independent references.

References: mpmath Bessel functions at 30 digits (with a direct quadrature of the vMF
marginal where mpmath's hypergeometric series does not converge), scipy.stats'
vonmises_fisher (entropy and sampling), the κ → 0 and κ → ∞ limits, closed forms for
D = 3, and a finite-difference derivative for the heat capacity.
"""

from __future__ import annotations

import functools
import warnings

import mpmath as mp
import numpy as np
import pytest
from scipy.stats import vonmises_fisher
from scipy.special import gammaln

from thermonet.errors import InputError
from thermonet.theory import vmf

KAPPAS = [1e-3, 1e-1, 1.0, 10.0, 1e3, 1e5, 1e7]
DIMS = [2, 3, 10, 100, 1e4, 1e6]
# non-integer dimensions and the switch between recurrence and direct expansion (D ≈ 50)
EXTRA_DIMS = [2.5, 47.3, 49.0, 50.0, 51.0, 52.0]
GRID = [(k, d) for d in DIMS + EXTRA_DIMS for k in KAPPAS]

PUBLIC = [
    vmf.mean_resultant_length,
    vmf.energy,
    vmf.log_normalizer,
    vmf.entropy,
    vmf.energy_high_concentration,
    vmf.entropy_high_concentration,
    vmf.heat_capacity,
]


# --------------------------------------------------------------------------------------
# high-precision references
# --------------------------------------------------------------------------------------


def _quadrature_reference(dim: float, kappa: float) -> tuple[mp.mpf, mp.mpf]:
    """``(1 − A, ln ive_ν)`` from the marginal of ``t = ⟨−μ, x⟩``, density ∝ (1−t²)^a e^{κt}.

    ``I_ν(κ) = (κ/2)^ν / (√π Γ(ν+½)) ∫_{−1}^{1} (1−t²)^{ν−½} e^{κt} dt``, ``a = ν − ½``;
    integrated piecewise over ±60 standard deviations around the mode. Needs a > 0.
    """
    nu = mp.mpf(dim) / 2 - 1
    x = mp.mpf(kappa)
    a = nu - mp.mpf(1) / 2
    mode = 2 * x / (2 * a + mp.sqrt(4 * a * a + 4 * x * x))
    sigma = 1 / mp.sqrt(2 * a * (1 + mode**2) / (1 - mode**2) ** 2)

    def log_weight(t):
        return a * mp.log1p(-t * t) + x * t

    peak = log_weight(mode)

    def weight(t):
        return mp.exp(log_weight(t) - peak) if t < 1 else mp.mpf(0)

    points = sorted({max(min(mode + c * sigma, mp.mpf(1)), mp.mpf(-1)) for c in range(-60, 61, 2)})
    z = mp.quad(weight, points)
    first = mp.quad(lambda t: (1 - t) * weight(t), points)
    log_ive = (
        nu * mp.log(x / 2) - mp.log(mp.pi) / 2 - mp.loggamma(nu + mp.mpf(1) / 2) + peak - x + mp.log(z)
    )
    return first / z, log_ive


@functools.lru_cache(maxsize=None)
def reference(kappa: float, dim: float) -> dict[str, float]:
    """A, U, ln C, S and C_V at 30 significant digits."""
    with mp.workdps(30):
        nu = mp.mpf(dim) / 2 - 1
        x = mp.mpf(kappa)
        try:
            i_nu = mp.besseli(nu, x)
            a = mp.besseli(nu + 1, x) / i_nu
            u = 1 - a
            log_ive = mp.log(i_nu) - x
        except mp.libmp.NoConvergence:  # large order and large argument together
            u, log_ive = _quadrature_reference(dim, kappa)
            a = 1 - u
        log_c = nu * mp.log(x) - (nu + 1) * mp.log(2 * mp.pi) - log_ive - x
        s = -log_c - x * a
        cv = x**2 * (1 - a**2 - (2 * nu + 1) * a / x)
        return {"A": float(a), "U": float(u), "lnC": float(log_c), "S": float(s), "C": float(cv)}


def _rel(value, ref):
    return abs(float(value) - ref) / abs(ref)


def _abs_scaled(value, ref):
    return abs(float(value) - ref) / max(1.0, abs(ref))


# --------------------------------------------------------------------------------------
# accuracy against mpmath
# --------------------------------------------------------------------------------------


def test_quadrature_reference_matches_mpmath_bessel():
    # the fallback reference must agree with mpmath.besseli where both work
    for dim, kappa in [(1e4, 1e3), (1e6, 1e5), (100, 10.0)]:
        with mp.workdps(30):
            nu = mp.mpf(dim) / 2 - 1
            u_bessel = 1 - mp.besseli(nu + 1, kappa) / mp.besseli(nu, kappa)
            log_ive_bessel = mp.log(mp.besseli(nu, kappa)) - kappa
            u_quad, log_ive_quad = _quadrature_reference(dim, kappa)
            assert abs(u_quad / u_bessel - 1) < 1e-20
            assert abs(log_ive_quad - log_ive_bessel) < 1e-18 * max(1, abs(log_ive_bessel))


@pytest.mark.parametrize("kappa,dim", GRID)
def test_against_mpmath(kappa, dim):
    ref = reference(kappa, dim)
    assert _rel(vmf.mean_resultant_length(kappa, dim), ref["A"]) <= 1e-10
    assert _rel(vmf.energy(kappa, dim), ref["U"]) <= 1e-10
    assert _abs_scaled(vmf.entropy(kappa, dim), ref["S"]) <= 1e-8
    assert _abs_scaled(vmf.log_normalizer(kappa, dim), ref["lnC"]) <= 1e-8
    assert _rel(vmf.heat_capacity(kappa, dim), ref["C"]) <= 1e-9


def test_vectorised_evaluation_matches_scalar_grid():
    kappa = np.array(KAPPAS)[:, None]
    dim = np.array(DIMS)[None, :]
    energy = vmf.energy(kappa, dim)
    assert energy.shape == (len(KAPPAS), len(DIMS))
    for i, k in enumerate(KAPPAS):
        for j, d in enumerate(DIMS):
            assert _rel(energy[i, j], reference(k, d)["U"]) <= 1e-10


def test_d3_closed_form():
    # D = 3: A = coth κ − 1/κ, so U = 1/κ − 2/(e^{2κ} − 1); ln C = ln(κ / (4π sinh κ))
    kappa = np.array([1e-3, 0.1, 1.0, 10.0, 100.0, 300.0])
    u_exact = 1 / kappa - 2 / np.expm1(2 * kappa)
    np.testing.assert_allclose(vmf.energy(kappa, 3), u_exact, rtol=1e-12)
    log_c_exact = np.log(kappa) - np.log(4 * np.pi) - kappa - np.log(-np.expm1(-2 * kappa) / 2)
    np.testing.assert_allclose(vmf.log_normalizer(kappa, 3), log_c_exact, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# against scipy.stats.vonmises_fisher
# --------------------------------------------------------------------------------------


def _mu(dim: int) -> np.ndarray:
    mu = np.zeros(dim)
    mu[0] = 1.0
    return mu


@pytest.mark.parametrize("dim", [3, 10, 50])
@pytest.mark.parametrize("kappa", [0.01, 0.5, 5.0, 50.0, 500.0])
def test_entropy_matches_scipy(dim, kappa):
    expected = vonmises_fisher(-_mu(dim), kappa).entropy()
    assert abs(vmf.entropy(kappa, dim) - expected) <= 1e-9 * max(1.0, abs(expected))


@pytest.mark.parametrize("dim", [3, 10])
@pytest.mark.parametrize("kappa", [0.3, 3.0, 30.0])
def test_energy_matches_monte_carlo(dim, kappa):
    mu = _mu(dim)
    rng = np.random.default_rng(20240 + dim)
    x = vonmises_fisher(-mu, kappa, seed=rng).rvs(200_000)
    loss = 1.0 + x @ mu
    standard_error = loss.std(ddof=1) / np.sqrt(loss.size)
    assert abs(loss.mean() - vmf.energy(kappa, dim)) <= 5 * standard_error
    # the variance of L is C_V / κ² (fluctuation–response)
    var = vmf.heat_capacity(kappa, dim) / kappa**2
    assert abs(loss.var(ddof=1) / var - 1) <= 0.03


# --------------------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", DIMS + [2.5])
def test_low_concentration_limit(dim):
    log_area = np.log(2.0) + (dim / 2) * np.log(np.pi) - gammaln(dim / 2)
    for kappa in [1e-12, 1e-8]:
        assert abs(vmf.entropy(kappa, dim) - log_area) <= 1e-10 * max(1.0, abs(log_area))
        assert abs(vmf.log_normalizer(kappa, dim) + log_area) <= 1e-10 * max(1.0, abs(log_area))
        # A ≈ κ/D, C_V ≈ κ²/D
        assert _rel(vmf.mean_resultant_length(kappa, dim), kappa / dim) <= 1e-8
        assert _rel(vmf.heat_capacity(kappa, dim), kappa**2 / dim) <= 1e-8


@pytest.mark.parametrize("dim", [2, 3, 10, 100])
def test_high_concentration_forms(dim):
    kappas = np.array([1e3, 1e4, 1e5, 1e6, 1e7])
    u = vmf.energy(kappas, dim)
    s = vmf.entropy(kappas, dim)
    u_hc = vmf.energy_high_concentration(kappas, dim)
    s_hc = vmf.entropy_high_concentration(kappas, dim)
    np.testing.assert_allclose(u_hc, (dim - 1) / (2 * kappas), rtol=1e-15)
    np.testing.assert_allclose(s_hc, (dim - 1) / 2 * np.log(2 * np.pi * np.e / kappas), rtol=1e-15)
    # relative differences vanish like 1/κ, with the known next-order coefficients
    # U = (D−1)/(2κ) (1 − (D−3)/(4κ) + …),  S = S_hc − (D−1)(D−3)/(4κ) + …
    rel_u = u / u_hc - 1
    diff_s = s - s_hc
    if dim == 3:
        assert np.all(np.abs(rel_u) <= 1e-12) and np.all(np.abs(diff_s) <= 1e-12)
    else:
        np.testing.assert_allclose(kappas * rel_u, -(dim - 3) / 4, rtol=0.1)
        np.testing.assert_allclose(kappas * diff_s, -(dim - 1) * (dim - 3) / 4, rtol=0.1)
        assert np.all(np.diff(np.abs(rel_u)) < 0)
        assert np.all(np.diff(np.abs(diff_s / s_hc)) < 0)
    np.testing.assert_allclose(vmf.heat_capacity(kappas, dim), (dim - 1) / 2, rtol=dim / kappas[0])


# --------------------------------------------------------------------------------------
# heat capacity
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3, 10, 1000])
@pytest.mark.parametrize("kappa", [0.01, 1.0, 100.0, 1e5])
def test_heat_capacity_is_derivative_of_energy_in_temperature(dim, kappa):
    temperature = 1.0 / kappa
    h = 1e-4 * temperature
    numeric = (vmf.energy(1 / (temperature + h), dim) - vmf.energy(1 / (temperature - h), dim)) / (2 * h)
    assert _rel(vmf.heat_capacity(kappa, dim), numeric) <= 1e-6


def test_heat_capacity_identity():
    # C_V = κ² (1 − A² − (D−1)A/κ), checked where the identity is well conditioned
    for kappa, dim in [(0.5, 2), (2.0, 3), (5.0, 10), (30.0, 20)]:
        a = vmf.mean_resultant_length(kappa, dim)
        identity = kappa**2 * (1 - a**2 - (dim - 1) * a / kappa)
        assert _rel(vmf.heat_capacity(kappa, dim), identity) <= 1e-12


# --------------------------------------------------------------------------------------
# input handling and numerical hygiene
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__name__)
@pytest.mark.parametrize("kappa", [0.0, -1.0, np.inf, np.nan, [1.0, -2.0], "hot"])
def test_bad_kappa(func, kappa):
    with pytest.raises(InputError, match=r"kappa.*(> 0|real number)"):
        func(kappa, 3)


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dim", [1, 1.5, 0, -3, np.inf, np.nan, [3, 1], None])
def test_bad_dim(func, dim):
    with pytest.raises(InputError, match=r"dim.*(>= 2|real number)"):
        func(1.0, dim)


def test_shapes_and_scalars():
    out = vmf.entropy(np.ones((3, 1)), np.array([2, 3, 10, 100]))
    assert out.shape == (3, 4)
    scalar = vmf.energy(1.0, 3)
    assert isinstance(scalar, np.floating) and np.ndim(scalar) == 0
    assert vmf.heat_capacity([1.0, 2.0], 3).shape == (2,)
    with pytest.raises(InputError, match="broadcast"):
        vmf.energy(np.ones(3), np.full(2, 3.0))


def test_no_warnings_and_finite_at_extremes():
    kappa = np.array([1e-300, 1e-20, 1e-3, 1.0, 1e7, 1e20, 1e300])[:, None]
    dim = np.array([2, 2.001, 3, 49.5, 1e6, 1e12])[None, :]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            for func in PUBLIC:
                if func is vmf.energy_high_concentration:
                    continue  # (D−1)/(2κ) itself exceeds the float range at κ = 1e-300, D = 1e12
                assert np.all(np.isfinite(func(kappa, dim))), func.__name__
            a = vmf.mean_resultant_length(kappa, dim)
            u = vmf.energy(kappa, dim)
    assert np.all((a > 0) & (a <= 1) & (u > 0) & (u <= 1))
    np.testing.assert_allclose(a + u, 1.0, rtol=1e-14)
