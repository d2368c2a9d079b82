"""Tests for thermonet.estimators (Kozachenko–Leonenko entropy, Euclidean and spherical).

References are independent of the code under test: closed-form Gaussian entropies
(scipy.stats.multivariate_normal), scipy.stats.vonmises_fisher entropies and samples,
the surface area of the sphere, and scipy.spatial.cKDTree for neighbour distances.

Tolerances: the KL estimator has a bias of order N^{-1/d} plus a sampling standard
deviation of roughly 1/sqrt(N) times the spread of ln p. The seeds are fixed; the
tolerances below are 2-4 times the deviations measured over several seeds (see
docs/entropy-estimators.md), so they are not tuned to one lucky draw.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.special import gammaln
from scipy.stats import multivariate_normal, ortho_group, vonmises_fisher

from thermonet.errors import InputError
from thermonet.estimators import (
    hyperspherical_angles,
    kl_entropy,
    knn_distances,
    log_unit_ball_volume,
    spherical_entropy,
)

METHODS = ("angles", "chord")


def log_sphere_area(dim: int) -> float:
    """ln |S^{D-1}| = ln(2 π^{D/2} / Γ(D/2))."""
    return math.log(2.0) + 0.5 * dim * math.log(math.pi) - float(gammaln(0.5 * dim))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def random_direction(dim: int, seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=dim))


# --------------------------------------------------------------------------- helpers


def test_log_unit_ball_volume():
    assert log_unit_ball_volume(1) == pytest.approx(math.log(2.0))
    assert log_unit_ball_volume(2) == pytest.approx(math.log(math.pi))
    assert log_unit_ball_volume(3) == pytest.approx(math.log(4.0 * math.pi / 3.0))


def test_hyperspherical_angles_roundtrip():
    rng = np.random.default_rng(0)
    dim = 7
    x = rng.normal(size=(50, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    phi = hyperspherical_angles(3.0 * x)  # scale does not matter
    assert phi.shape == (50, dim - 1)
    assert np.all(phi[:, : dim - 2] >= 0) and np.all(phi[:, : dim - 2] <= np.pi)
    assert np.all(phi[:, -1] > -np.pi) and np.all(phi[:, -1] <= np.pi)
    rec = np.empty_like(x)
    s = np.ones(len(x))
    for j in range(dim - 2):
        rec[:, j] = s * np.cos(phi[:, j])
        s = s * np.sin(phi[:, j])
    rec[:, dim - 2] = s * np.cos(phi[:, -1])
    rec[:, dim - 1] = s * np.sin(phi[:, -1])
    np.testing.assert_allclose(rec, x, atol=1e-14)


# ------------------------------------------------------------------- knn distances


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dim", [1, 4, 30])
def test_knn_distances_match_ckdtree(k, dim):
    rng = np.random.default_rng(dim + 10 * k)
    x = rng.normal(size=(300, dim)) * rng.uniform(0.1, 3.0, size=dim) + 5.0
    ref = cKDTree(x).query(x, k=k + 1)[0][:, k]  # column 0 is the point itself
    got = knn_distances(x, k=k)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)


def test_knn_distances_close_pairs_are_exact():
    # Points far from the origin with tiny separations: the Gram form alone would lose
    # all digits; the exact recomputation keeps them.
    rng = np.random.default_rng(1)
    base = rng.normal(size=(200, 5)) * 1e-6 + 1e3
    ref = cKDTree(base).query(base, k=2)[0][:, 1]
    np.testing.assert_allclose(knn_distances(base), ref, rtol=1e-6)


def test_knn_block_size_does_not_change_result():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(257, 6))
    full = knn_distances(x, k=2)
    for bs in (1, 7, 64, 256, 257, 10_000):
        np.testing.assert_array_equal(knn_distances(x, k=2, block_size=bs), full)
    # a small memory budget forces many blocks
    np.testing.assert_array_equal(knn_distances(x, k=2, memory_bytes=1), full)


def test_knn_batched_leading_dims():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 100, 4))
    got = knn_distances(x, k=1)
    assert got.shape == (2, 3, 100)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(got[i, j], knn_distances(x[i, j], k=1))


# ------------------------------------------------------------------- Euclidean KL


@pytest.mark.parametrize("dim,k,tol", [(1, 1, 0.1), (2, 1, 0.1), (5, 1, 0.15), (5, 4, 0.15)])
def test_kl_entropy_gaussian(dim, k, tol):
    # measured |bias| over 3 seeds, N = 2000: <= 0.034 (d = 1), 0.05 (d = 2), 0.05 (d = 5)
    rng = np.random.default_rng(100 + dim)
    a = rng.normal(size=(dim, dim))
    cov = a @ a.T + 0.5 * np.eye(dim)
    mean = rng.normal(size=dim)
    x = rng.multivariate_normal(mean, cov, size=2000)
    exact = multivariate_normal(mean, cov).entropy()
    assert float(kl_entropy(x, k=k)) == pytest.approx(exact, abs=tol)


def test_kl_entropy_scaling_law():
    # H(c X) = H(X) + d ln c holds exactly for the estimator
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 3))
    assert float(kl_entropy(7.0 * x)) == pytest.approx(float(kl_entropy(x)) + 3 * math.log(7.0), abs=1e-10)


def test_kl_entropy_return_types():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 3))
    h_np = kl_entropy(x)
    assert isinstance(h_np, np.ndarray) and h_np.shape == () and h_np.dtype == np.float64
    h_t = kl_entropy(torch.from_numpy(x).float())
    assert isinstance(h_t, torch.Tensor) and h_t.shape == () and h_t.dtype == torch.float64
    # float32 input: same value up to float32 rounding of the samples
    assert float(h_t) == pytest.approx(float(h_np), abs=1e-4)
    h_t64 = kl_entropy(torch.from_numpy(x))
    assert float(h_t64) == pytest.approx(float(h_np), abs=1e-12)
    # lists work too
    assert float(kl_entropy(x.tolist())) == pytest.approx(float(h_np), abs=1e-12)


def test_kl_entropy_batched():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 150, 3))
    got = kl_entropy(x, k=2)
    assert got.shape == (4,)
    for i in range(4):
        assert got[i] == pytest.approx(float(kl_entropy(x[i], k=2)), abs=1e-12)


# ------------------------------------------------------------------ spherical KL


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dim,tol", [(3, 0.1), (10, 0.35)])
def test_spherical_entropy_uniform(method, dim, tol):
    # measured bias over 3 seeds, N = 2000: |.| <= 0.04 (D = 3); +0.05..+0.19 (D = 10)
    x = np.random.default_rng(dim).normal(size=(2000, dim))
    assert float(spherical_entropy(x, method=method)) == pytest.approx(log_sphere_area(dim), abs=tol)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dim,kappa,tol", [(3, 20.0, 0.1), (3, 300.0, 0.1), (10, 50.0, 0.3), (10, 1000.0, 0.3)])
def test_spherical_entropy_vmf(method, dim, kappa, tol):
    # measured |bias| over 5 seeds, N = 2000, this mean direction: <= 0.05 (D = 3),
    # <= 0.08 chord and <= 0.12 angles (D = 10). The mean direction is all-ones, which
    # keeps away from every singular set of the angle chart (random directions gave
    # angle-method biases up to 0.29 at D = 10, N = 2000).
    mu = unit(np.ones(dim))
    dist = vonmises_fisher(mu, kappa)
    x = dist.rvs(2000, random_state=dim + int(kappa))
    est = float(spherical_entropy(x, method=method))
    assert est == pytest.approx(dist.entropy(), abs=tol)


@pytest.mark.parametrize("method", METHODS)
def test_spherical_entropy_scale_free(method):
    # directions only: rescaling each sample does not change the estimate
    rng = np.random.default_rng(7)
    x = vonmises_fisher(random_direction(5, 7), 30.0).rvs(300, random_state=7)
    scales = rng.uniform(0.1, 10.0, size=(300, 1))
    assert float(spherical_entropy(x * scales, method=method)) == pytest.approx(
        float(spherical_entropy(x, method=method)), abs=1e-10
    )


def test_chord_rotation_invariant_angles_not():
    dim = 6
    x = vonmises_fisher(random_direction(dim, 8), 40.0).rvs(1000, random_state=8)
    rot = ortho_group.rvs(dim, random_state=9)
    xr = x @ rot.T
    chord, chord_r = (float(spherical_entropy(v, method="chord")) for v in (x, xr))
    assert abs(chord - chord_r) < 1e-8
    ang, ang_r = (float(spherical_entropy(v, method="angles")) for v in (x, xr))
    assert abs(ang - ang_r) > 1e-3


def test_orientation_effect_documented_numbers():
    """D = 10, κ = 500, N = 4000 (docs/entropy-estimators.md).

    Exact S₁ = −15.227. Measured over seeds 0-3: the angle method with mean direction e₁
    (a pole of the chart) reads −13.84..−13.71 (bias +1.38..+1.52); with a generic mean
    direction it is within ~0.1 (mean +0.02, sd 0.09 over 20 random directions; a
    direction with a small trailing tail ‖μ_{8:}‖ gave +0.36); the chord method is within
    0.1 for both orientations.
    """
    dim, kappa, n = 10, 500.0, 4000
    e1 = np.eye(dim)[0]
    mu = random_direction(dim, 1003)  # min tail norm ‖μ_{j:}‖ = 0.22
    exact = vonmises_fisher(e1, kappa).entropy()
    assert exact == pytest.approx(-15.2268, abs=1e-3)
    x_pole = vonmises_fisher(e1, kappa).rvs(n, random_state=0)
    x_gen = vonmises_fisher(mu, kappa).rvs(n, random_state=3)

    ang_pole = float(spherical_entropy(x_pole, method="angles"))
    assert ang_pole == pytest.approx(-13.8, abs=0.15)
    assert ang_pole - exact > 1.0
    assert float(spherical_entropy(x_gen, method="angles")) == pytest.approx(exact, abs=0.1)
    for x in (x_pole, x_gen):
        assert float(spherical_entropy(x, method="chord")) == pytest.approx(exact, abs=0.12)


@pytest.mark.parametrize("method", METHODS)
def test_spherical_torch_numpy_and_batches_agree(method):
    dim = 4
    x = np.stack(
        [vonmises_fisher(random_direction(dim, s), 25.0).rvs(200, random_state=s) for s in range(3)]
    ).reshape(3, 1, 200, dim)
    h = spherical_entropy(x, method=method, k=2)
    assert isinstance(h, np.ndarray) and h.shape == (3, 1) and h.dtype == np.float64
    ht = spherical_entropy(torch.from_numpy(x), method=method, k=2)
    assert isinstance(ht, torch.Tensor) and ht.dtype == torch.float64 and ht.shape == (3, 1)
    np.testing.assert_allclose(ht.numpy(), h, atol=1e-12, rtol=0)
    for i in range(3):
        assert h[i, 0] == pytest.approx(float(spherical_entropy(x[i, 0], method=method, k=2)), abs=1e-12)
    hb = spherical_entropy(x, method=method, k=2, block_size=13)
    np.testing.assert_allclose(hb, h, atol=1e-12, rtol=0)


def test_spherical_d2_circle():
    # D = 2: uniform on the circle has entropy ln(2π)
    theta = np.random.default_rng(11).uniform(-np.pi, np.pi, size=2000)
    x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    for method in METHODS:
        assert float(spherical_entropy(x, method=method)) == pytest.approx(math.log(2 * math.pi), abs=0.05)


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: spherical_entropy(x, method="geodesic"), "unknown method"),
        (lambda x: spherical_entropy(x, k=0), "k must"),
        (lambda x: spherical_entropy(x, k=50), "k must"),
        (lambda x: spherical_entropy(x, k=1.5), "k must"),
        (lambda x: kl_entropy(x, k=-1), "k must"),
        (lambda x: spherical_entropy(x[:1]), "N >= 2"),
        (lambda x: kl_entropy(x[:1]), "N >= 2"),
        (lambda x: spherical_entropy(x[:, :1]), "dimension >= 2"),
        (lambda x: spherical_entropy(x[0]), "at least 2 dimensions"),
        (lambda x: kl_entropy(x, block_size=0), "block_size"),
    ],
)
def test_bad_input(call, match):
    x = np.random.default_rng(12).normal(size=(50, 3))
    with pytest.raises(InputError, match=match):
        call(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_rejected(bad):
    x = np.random.default_rng(13).normal(size=(50, 3))
    x[4, 1] = bad
    with pytest.raises(InputError, match="non-finite"):
        spherical_entropy(x)
    with pytest.raises(InputError, match="non-finite"):
        kl_entropy(torch.from_numpy(x))


def test_zero_norm_rejected():
    x = np.random.default_rng(14).normal(size=(50, 3))
    x[7] = 0.0
    for method in METHODS:
        with pytest.raises(InputError, match="zero norm"):
            spherical_entropy(x, method=method)


def test_coinciding_samples_rejected():
    x = np.random.default_rng(15).normal(size=(50, 3))
    x[3] = x[9]
    with pytest.raises(InputError, match="coincide"):
        kl_entropy(x)
    with pytest.raises(InputError, match="coincide"):
        spherical_entropy(x, method="chord")
    # same direction, different length: coinciding directions
    y = x.copy()
    y[3] = 2.0 * y[9]
    with pytest.raises(InputError, match="coincide"):
        spherical_entropy(y, method="chord")
    # k = 2 needs two copies at distance 0 to fail
    assert np.isfinite(float(kl_entropy(x, k=2)))


def test_angle_chart_singularity_rejected():
    x = np.random.default_rng(16).normal(size=(50, 4))
    x[5] = [1.0, 0.0, 0.0, 0.0]  # the pole e1: sin φ₁ = 0
    with pytest.raises(InputError, match="singular"):
        spherical_entropy(x, method="angles")
    assert np.isfinite(float(spherical_entropy(x, method="chord")))


def test_non_numeric_rejected():
    with pytest.raises(InputError, match="real numbers"):
        kl_entropy(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InputError, match="real numbers"):
        kl_entropy(torch.zeros(10, 2, dtype=torch.complex64))


# -------------------------------------------------------------------------- CUDA


def _device_matches_cpu(device: str, monkeypatch=None) -> None:
    """Estimates on ``device`` against the CPU's default path (the k-d tree at d <= 8).

    Everything is float64 inside (float32 input is converted before any arithmetic), so
    the two differ by float64 rounding only: measured on the CPU, the distance-matrix path
    against the k-d tree differs by <= 4.4e-16; the tolerance is 1e-9 absolute.
    With ``monkeypatch`` on the CPU the k-d tree is switched off for the ``device`` half,
    so that half runs the distance-matrix code that CUDA runs.
    """
    import thermonet.estimators.knn as knn_module

    dim = 10
    x = torch.from_numpy(vonmises_fisher(random_direction(dim, 17), 500.0).rvs((2, 1000), random_state=17))
    y = torch.from_numpy(np.random.default_rng(18).normal(size=(500, 7)))
    reference = {method: spherical_entropy(x, method=method) for method in METHODS}
    kl_ref, knn_ref = kl_entropy(y, k=3), knn_distances(y.float())
    assert knn_ref.shape == (500,) and bool((knn_ref > 0).all())
    if monkeypatch is not None:
        monkeypatch.setattr(knn_module, "KD_TREE_MAX_DIM", 0)
    for method in METHODS:
        h = spherical_entropy(x.to(device), method=method, block_size=300)
        assert h.device.type == device and h.dtype == torch.float64 and h.shape == (2,)
        torch.testing.assert_close(h.cpu(), reference[method], atol=1e-9, rtol=0)
    kl = kl_entropy(y.to(device), k=3)
    assert kl.device.type == device
    torch.testing.assert_close(kl.cpu(), kl_ref, atol=1e-9, rtol=0)
    distances = knn_distances(y.to(device).float())
    assert distances.device.type == device and distances.dtype == torch.float64
    torch.testing.assert_close(distances.cpu(), knn_ref, atol=1e-9, rtol=0)


def test_distance_matrix_path_matches_the_cpu_default(monkeypatch):
    """The CPU half of :func:`test_cuda_matches_cpu`: the CUDA code path run on the CPU."""
    _device_matches_cpu("cpu", monkeypatch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    _device_matches_cpu("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tangent_methods_and_float32_search_match_cpu():
    dim = 10
    x = torch.from_numpy(vonmises_fisher(random_direction(dim, 17), 500.0).rvs((2, 1000), random_state=17))
    xg = x.to("cuda")
    for method in NEW_METHODS:
        h_cpu, se_cpu = spherical_entropy(x, method=method, return_se=True)
        h_gpu, se_gpu = spherical_entropy(xg, method=method, return_se=True)
        assert h_gpu.device.type == "cuda" and h_gpu.dtype == torch.float64
        torch.testing.assert_close(h_gpu.cpu(), h_cpu, atol=1e-6, rtol=0)
        torch.testing.assert_close(se_gpu.cpu(), se_cpu, atol=1e-6, rtol=0)
    y = torch.from_numpy(np.random.default_rng(18).normal(size=(500, 7)))
    torch.testing.assert_close(kl_entropy(y.cuda(), k=3).cpu(), kl_entropy(y, k=3), atol=1e-9, rtol=0)
    # float32 candidate search on the GPU (TF32 off and on): same distances as float64
    z = torch.from_numpy(np.random.default_rng(19).normal(size=(800, 3000))).cuda()
    ref64 = knn_distances(z, search_dtype="float64")
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.testing.assert_close(knn_distances(z, search_dtype="float32"), ref64, atol=0, rtol=0)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    torch.testing.assert_close(knn_distances(y.cuda().float()).cpu(), knn_distances(y.float()), atol=1e-6, rtol=0)


# ===================================================================================
# Issue 12: exact references, shape-independent estimator, standard errors, float32
# candidate search. References below are checked against independent values (Monte
# Carlo, scipy, quadrature on the sphere) before they are used to judge estimators.
# ===================================================================================

from scipy.stats import multivariate_t  # noqa: E402

from thermonet.estimators import EstimabilityWarning  # noqa: E402
from thermonet.estimators import references as ref  # noqa: E402
from thermonet.estimators.knn import _gram_error_bound  # noqa: E402
from thermonet.estimators.tangent import logdet_wishart_bias, logdet_wishart_var  # noqa: E402

NEW_METHODS = ("auto", "elliptical", "gauss", "gauss-knn", "isotropic-bound")


# ------------------------------------------------------------------ references


@pytest.mark.parametrize(
    "lam",
    [ref.power_law_spectrum(9, 0.0, 0.1), ref.power_law_spectrum(300, 1.5, 0.1),
     ref.stepped_spectrum(40, 0.1, 100.0, 0.5)],
    ids=["iso9", "pl300", "step40"],
)
def test_weighted_chi2_expectations_match_monte_carlo(lam):
    rng = np.random.default_rng(20)
    q = (rng.standard_normal((100_000, lam.size)) ** 2) @ lam
    r = np.sqrt(q)
    for exact, samples in (
        (ref.expected_log1p_weighted_chi2(lam), np.log1p(q)),
        (ref.expected_log_sinc_weighted_chi2(lam)[0], np.log(np.sin(r) / r)),
    ):
        se = samples.std() / math.sqrt(samples.size)
        assert abs(exact - samples.mean()) < 5 * se


def test_student_and_box_expectations_match_monte_carlo():
    rng = np.random.default_rng(21)
    lam = ref.power_law_spectrum(20, 1.0, 0.2)
    n = 100_000
    for nu in (3.0, 5.0, 20.0):
        g = rng.standard_normal((n, 20)) * np.sqrt(lam) / np.sqrt(rng.chisquare(nu, (n, 1)) / nu)
        s = np.log1p((g * g).sum(1))
        assert abs(ref._log1p_student_expectation(lam, nu) - s.mean()) < 5 * s.std() / math.sqrt(n)
    a = np.sqrt(3 * lam)
    s = np.log1p(((rng.uniform(-1, 1, (n, 20)) * a) ** 2).sum(1))
    assert abs(ref._log1p_box_expectation(a) - s.mean()) < 5 * s.std() / math.sqrt(n)


def test_closed_forms_match_scipy():
    lam = ref.power_law_spectrum(20, 1.0, 0.1)
    for nu in (3.0, 5.0, 20.0):
        want = multivariate_t(np.zeros(20), np.diag(lam), df=nu).entropy()
        assert ref.student_t_entropy(lam, nu) == pytest.approx(want, abs=1e-9)
    assert ref.gaussian_entropy(lam) == pytest.approx(multivariate_normal(np.zeros(20), np.diag(lam)).entropy(), abs=1e-9)
    for dim, kappa in ((3, 30.0), (100, 1000.0), (1000, 1e4)):
        mu = np.eye(dim)[0]
        assert ref.vmf_entropy(dim, kappa) == pytest.approx(vonmises_fisher(mu, kappa).entropy(), abs=1e-7)


def _density_on_s2(dist, x):
    """Density w.r.t. surface measure of ``dist`` at unit vectors ``x`` (D = 3), written
    here independently: inverse chart, tangent density, and the area element of the chart
    computed by finite differences (not the library's Jacobian formula)."""
    mu = dist.mu
    basis = ref._householder_embed(np.eye(2), mu)  # rows: tangent basis vectors
    c = x @ mu
    v = x - c[:, None] * mu
    s = np.linalg.norm(v, axis=1)
    if dist.chart == "exp":
        z = (v @ basis.T) * (np.arctan2(s, c) / s)[:, None]
    else:
        z = (x @ basis.T) / c[:, None]

    def chart(zz):
        return ref._map_to_sphere(zz, mu, dist.chart)

    h = 1e-6
    e1 = np.array([h, 0.0])
    e2 = np.array([0.0, h])
    d1 = (chart(z + e1) - chart(z - e1)) / (2 * h)
    d2 = (chart(z + e2) - chart(z - e2)) / (2 * h)
    area = np.linalg.norm(np.cross(d1, d2), axis=1)  # dσ = area dz
    if isinstance(dist, ref.TangentStudentT):
        pz = multivariate_t(np.zeros(2), np.diag(dist.variances), df=dist.nu).pdf(z)
    elif isinstance(dist, ref.TangentUniformBox):
        a = dist.half_widths
        pz = np.where(np.all(np.abs(z) <= a, axis=1), 1.0 / np.prod(2 * a), 0.0)
    else:
        pz = multivariate_normal(np.zeros(2), np.diag(dist.variances)).pdf(z)
    return pz / area


@pytest.mark.parametrize(
    "make",
    [
        lambda mu: ref.TangentGaussian(mu, [0.09, 0.02], chart="exp"),
        lambda mu: ref.TangentGaussian(mu, [0.09, 0.02], chart="gnomonic"),
        lambda mu: ref.TangentStudentT(mu, [0.05, 0.01], nu=4.0),
    ],
    ids=["gauss-exp", "gauss-gnomonic", "student"],
)
def test_reference_entropy_by_quadrature_on_s2(make):
    """D = 3: the density integrates to 1 over the sphere and −∫ p ln p dσ = entropy()."""
    mu = unit(np.array([0.3, -0.5, 0.8]))
    dist = make(mu)
    basis = ref._householder_embed(np.eye(2), mu)
    # p is negligible beyond θ = 1.45 here (mass < 2e-6; checked by the mass assertion)
    theta = np.linspace(1e-6, 1.45, 1500)
    phi = np.linspace(0, 2 * math.pi, 721)[:-1]
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.cos(ph).ravel()[:, None] * basis[0] + np.sin(ph).ravel()[:, None] * basis[1]
    x = np.cos(th).ravel()[:, None] * mu + np.sin(th).ravel()[:, None] * dirs
    p = _density_on_s2(dist, x).reshape(th.shape)
    w = np.sin(th) * (theta[1] - theta[0]) * (phi[1] - phi[0])
    mass = float((p * w).sum())
    ent = float(-(p * np.log(np.maximum(p, 1e-300)) * w).sum())
    assert mass == pytest.approx(1.0, abs=1e-5)
    assert ent == pytest.approx(dist.entropy(), abs=5e-3)


@pytest.mark.parametrize("chart", ["exp", "gnomonic"])
def test_reference_samples_and_entropy_agree_by_monte_carlo(chart):
    """D = 3: −mean ln p(x) over the class's own samples (density from the test's
    independent inverse chart) equals entropy() within 5 standard errors."""
    mu = unit(np.array([1.0, 2.0, -0.5]))
    for dist in (ref.TangentGaussian(mu, [0.08, 0.03], chart=chart),
                 ref.TangentStudentT(mu, [0.02, 0.01], nu=5.0) if chart == "gnomonic" else None,
                 ref.TangentUniformBox(mu, [0.05, 0.02]) if chart == "gnomonic" else None):
        if dist is None:
            continue
        x = dist.sample(40_000, 22)
        s = -np.log(_density_on_s2(dist, x))
        assert abs(s.mean() - dist.entropy()) < 5 * s.std() / math.sqrt(s.size)


@pytest.mark.parametrize("dim,kappa", [(3, 2.0), (3, 30.0), (10, 100.0), (1000, 1e4)])
def test_vmf_sampler_against_exact_moments_and_scipy(dim, kappa):
    """Wood's sampler: mean of μ·x equals A_D(κ) and −mean ln p(x) equals the entropy
    (both within 5 SE); at D = 3 the law of μ·x matches scipy's sampler (KS test)."""
    from scipy.special import ive
    from scipy.stats import ks_2samp

    mu = random_direction(dim, dim)
    n = 20_000 if dim < 1000 else 4000
    x = ref.sample_vmf(mu, kappa, n, np.random.default_rng(24))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-12)
    w = x @ mu
    a = ref.vmf_mean_resultant(dim, kappa)
    assert abs(w.mean() - a) < 5 * w.std() / math.sqrt(n)
    nu = dim / 2 - 1
    log_c = nu * math.log(kappa) - dim / 2 * math.log(2 * math.pi) - (math.log(ive(nu, kappa)) + kappa)
    s = -log_c - kappa * w
    assert abs(s.mean() - ref.vmf_entropy(dim, kappa)) < 5 * s.std() / math.sqrt(n)
    if dim == 3:
        w_scipy = vonmises_fisher(mu, kappa).rvs(n, random_state=25) @ mu
        assert ks_2samp(w, w_scipy).pvalue > 1e-3
        # the tangent direction is uniform: its mean is ~0
        t = x - w[:, None] * mu
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        assert np.linalg.norm(t.mean(axis=0)) < 5 / math.sqrt(n)


def test_product_reference_and_exp_chart_guard():
    mu = unit(np.ones(6))
    f1 = ref.VonMisesFisher(mu, 50.0)
    f2 = ref.TangentGaussian(unit(np.arange(1.0, 5.0)), [0.1, 0.05, 0.02])
    prod = ref.ProductOfSpheres([f1, f2])
    assert prod.groups == (6, 4) and prod.dim == 10
    assert prod.entropy() == pytest.approx(f1.entropy() + f2.entropy(), abs=1e-12)
    x = prod.sample(5, 0)
    np.testing.assert_allclose(np.linalg.norm(x[:, :6], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(x[:, 6:], axis=1), 1.0)
    with pytest.raises(InputError, match="exponential map"):
        ref.TangentGaussian(mu, [2.0] * 5, chart="exp").entropy()


def test_wishart_logdet_bias_and_variance_formulas():
    """E and Var of ln det of the sample covariance against direct simulation."""
    rng = np.random.default_rng(23)
    n, d, reps = 12, 5, 40_000
    z = rng.standard_normal((reps, n, d))
    z -= z.mean(axis=1, keepdims=True)
    logdet = np.linalg.slogdet(np.einsum("rni,rnj->rij", z, z) / (n - 1))[1]
    assert logdet.mean() == pytest.approx(logdet_wishart_bias(n, d), abs=5 * logdet.std() / math.sqrt(reps))
    assert logdet.var() == pytest.approx(logdet_wishart_var(n, d), rel=0.04)


# -------------------------------------------------------------- new estimators


def _cases(dim, names):
    sys_path = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "studies" / "benchmarks")
    import sys

    if sys_path not in sys.path:
        sys.path.insert(0, sys_path)
    from entropy_bias import shape_cases

    return shape_cases(dim, 0.1, 0, names)


def test_default_is_shape_independent_reduced_benchmark():
    """Reduced issue-12 benchmark, D = 200, N = 1000, one draw per shape.

    Measured over 6 draws (docs): elliptical errors −0.6…+0.4 nats on the Gaussian-like
    shapes (sd 0.23–0.41, reported SE 0.33–0.54) and sd 2.3 (SE 2.0) for the Student t;
    the chord method is off by +43 (isotropic) to +168 nats (stepped spectrum). Asserted:
    every |error| <= 4 reported SEs, spread over shapes <= 10 nats, and the chord spread
    > 100 nats (the effect the issue reports, so this test can tell the two apart).
    """
    names = ["vMF", "Gauss a=0", "Gauss a=1.5", "stepped", "t5 a=1", "product"]
    errs, chord = [], []
    for name, dist in _cases(200, names):
        x = dist.sample(1000, 1000)
        groups = None if len(dist.groups) == 1 else dist.groups
        h, se = spherical_entropy(x, groups=groups, return_se=True)
        err = float(h) - dist.entropy()
        assert abs(err) <= 4 * float(se), (name, err, float(se))
        errs.append(err)
        chord.append(float(spherical_entropy(x, method="chord", groups=groups)) - dist.entropy())
    assert max(errs) - min(errs) <= 10.0
    assert max(chord) - min(chord) > 100.0


def test_gauss_methods_exact_for_gaussian_but_not_heavy_tails():
    (_, gauss), (_, student) = _cases(100, ["Gauss a=1", "t5 a=0"])
    xg = gauss.sample(1000, 3)
    xt = student.sample(1000, 3)
    for m in ("gauss", "gauss-knn", "elliptical"):
        h, se = spherical_entropy(xg, method=m, return_se=True)
        assert float(h) == pytest.approx(gauss.entropy(), abs=4 * float(se))
    # heavy tails: the Gaussian fit is an upper bound (+D_KL ≈ 8 nats, measured +7.8 ± 1.7),
    # whitened kNN overcorrects (measured −10.9 ± 1.3), elliptical is unbiased (−0.8 ± 1.6)
    assert float(spherical_entropy(xt, method="gauss")) - student.entropy() > 3.0
    assert float(spherical_entropy(xt, method="gauss-knn")) - student.entropy() < -5.0
    h, se = spherical_entropy(xt, method="elliptical", return_se=True)
    assert float(h) == pytest.approx(student.entropy(), abs=4 * float(se))


@pytest.mark.parametrize("method", ["elliptical", "chord"])
def test_standard_error_is_calibrated(method):
    """Spread over 30 independent draws vs the mean reported SE (D = 30, N = 300).

    Measured with 60 draws at D = 50, N = 300: sd/SE = 0.93–1.25 (elliptical) and
    0.90–1.22 (chord, split-half) over vMF, Gauss α = 1.5, Student t and a product.
    Asserted: 0.65 <= sd/SE <= 1.5 (30 draws: sd itself scatters by ±13 %).
    """
    (_, dist), = _cases(30, ["t5 a=1"])
    est, ses = [], []
    for s in range(30):
        h, se = spherical_entropy(dist.sample(300, 500 + s), method=method, return_se=True)
        est.append(float(h))
        ses.append(float(se))
    ratio = np.std(est, ddof=1) / np.mean(ses)
    assert 0.65 <= ratio <= 1.5, ratio


def test_n_not_above_d_is_reported_not_guessed():
    """N − 1 <= d: the model methods refuse, the default warns and returns an upper bound."""
    (_, aniso), (_, iso) = _cases(300, ["Gauss a=1", "Gauss a=0"])
    x = aniso.sample(200, 4)
    for m in ("elliptical", "gauss", "gauss-knn"):
        with pytest.raises(InputError, match="N − 1 > d"):
            spherical_entropy(x, method=m)
    with pytest.warns(EstimabilityWarning, match="not identifiable"):
        h = float(spherical_entropy(x))
    assert h == pytest.approx(float(spherical_entropy(x, method="isotropic-bound")), abs=1e-9)
    # an upper bound: far above the truth for an anisotropic spectrum ...
    assert h - aniso.entropy() > 50.0
    # ... and tight for an isotropic one
    hb, se = spherical_entropy(iso.sample(200, 4), method="isotropic-bound", return_se=True)
    assert float(hb) == pytest.approx(iso.entropy(), abs=4 * float(se) + 1.0)


def test_groups_per_layer_fallback_when_joint_not_estimable():
    """N − 1 <= D − L but every layer has N − 1 > D_g − 1: sum of per-layer estimates."""
    facs = [ref.TangentGaussian(random_direction(40, s), ref.power_law_spectrum(39, 1.0, 0.1)) for s in range(3)]
    prod = ref.ProductOfSpheres(facs)
    x = prod.sample(100, 5)
    with pytest.warns(EstimabilityWarning):
        h = float(spherical_entropy(x, groups=prod.groups))
    parts = sum(float(spherical_entropy(x[:, 40 * i : 40 * (i + 1)])) for i in range(3))
    assert h == pytest.approx(parts, abs=1e-9)
    assert h == pytest.approx(prod.entropy(), abs=5.0)


@pytest.mark.parametrize("method", NEW_METHODS + ("chord",))
def test_new_methods_containers_batches_rotation_and_scale(method):
    dim = 8
    x = np.stack([vonmises_fisher(random_direction(dim, s), 200.0).rvs(150, random_state=s) for s in range(3)])
    h, se = spherical_entropy(x, method=method, return_se=True)
    assert isinstance(h, np.ndarray) and h.shape == (3,) and se.shape == (3,) and np.all(se > 0)
    ht, set_ = spherical_entropy(torch.from_numpy(x), method=method, return_se=True)
    assert isinstance(ht, torch.Tensor) and ht.dtype == torch.float64
    np.testing.assert_allclose(ht.numpy(), h, atol=1e-9, rtol=0)
    np.testing.assert_allclose(set_.numpy(), se, atol=1e-9, rtol=0)
    for i in range(3):
        assert h[i] == pytest.approx(float(spherical_entropy(x[i], method=method)), abs=1e-9)
    rot = ortho_group.rvs(dim, random_state=31)
    scales = np.random.default_rng(32).uniform(0.5, 3.0, size=(3, 150, 1))
    np.testing.assert_allclose(spherical_entropy(x @ rot.T * scales, method=method), h, atol=1e-7, rtol=0)


def test_default_method_is_auto_elliptical():
    x = vonmises_fisher(random_direction(5, 40), 100.0).rvs(400, random_state=40)
    assert float(spherical_entropy(x)) == float(spherical_entropy(x, method="elliptical"))
    # float32 input: same up to the rounding of the samples
    assert float(spherical_entropy(torch.from_numpy(x).float())) == pytest.approx(float(spherical_entropy(x)), abs=2e-3)


def test_uniform_sphere_and_circle_with_elliptical():
    # rotationally symmetric about any point: the elliptical model holds exactly
    for dim, tol in ((2, 0.05), (3, 0.1), (10, 0.3)):
        x = np.random.default_rng(dim).normal(size=(2000, dim))
        assert float(spherical_entropy(x)) == pytest.approx(log_sphere_area(dim), abs=tol)


@pytest.mark.parametrize(
    "groups,match",
    [((3, 4), "add up"), ((5, 1), "integer block sizes >= 2"), ((2.5, 3.5), "integer"), ("ab", "groups")],
)
def test_bad_groups(groups, match):
    x = np.random.default_rng(41).normal(size=(50, 6))
    with pytest.raises(InputError, match=match):
        spherical_entropy(x, groups=groups)


def test_bad_search_dtype():
    with pytest.raises(InputError, match="search_dtype"):
        knn_distances(np.zeros((5, 2)), search_dtype="float16")


# -------------------------------------------------------- float32 candidate search


def test_gram_error_bound_holds():
    """The bound used for the float32 margin covers the observed float32 error."""
    rng = np.random.default_rng(42)
    for d in (3, 100, 3000):
        a = rng.normal(size=(64, d)) * rng.uniform(0.1, 10, size=(1, d)) + 3.0
        exact = a @ a.T
        low = (torch.from_numpy(a).float() @ torch.from_numpy(a).float().T).double().numpy()
        norms = np.linalg.norm(a, axis=1)
        bound = _gram_error_bound(d, 2.0**-24) * np.outer(norms, norms)
        assert np.all(np.abs(low - exact) <= bound)


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize(
    "kind", ["concentrated-high-d", "isotropic-low-d", "close-pairs", "grid-ties"]
)
def test_float32_candidate_search_gives_identical_neighbours(kind, k):
    rng = np.random.default_rng(43)
    if kind == "concentrated-high-d":
        mu = unit(rng.normal(size=800))
        x = mu + 0.3 * rng.normal(size=(600, 800)) / math.sqrt(800)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    elif kind == "isotropic-low-d":
        x = rng.normal(size=(700, 12))
    elif kind == "close-pairs":
        base = rng.normal(size=(300, 20)) * 1e3
        x = np.concatenate([base, base + 1e-6 * rng.normal(size=base.shape)])
    else:  # many exactly tied distances
        g = np.stack(np.meshgrid(*[np.arange(4.0)] * 4, indexing="ij"), -1).reshape(-1, 4)
        x = np.concatenate([g, np.zeros((g.shape[0], 6))], axis=1)
    r64 = knn_distances(x, k=k, search_dtype="float64", block_size=97)
    r32 = knn_distances(x, k=k, search_dtype="float32", block_size=97)
    np.testing.assert_array_equal(r32, r64)
    ref_d = cKDTree(x).query(x, k=k + 1)[0][:, k]
    # close pairs at 1e3 from the origin: both sides round the coordinates (~1e-13 absolute)
    np.testing.assert_allclose(r32, ref_d, rtol=1e-6 if kind == "close-pairs" else 1e-9, atol=0)


def test_runs_offer_every_estimator_by_its_name():
    """``--entropy-method`` takes exactly the estimator's method names (one list each side)."""
    from thermonet.estimators.sphere import METHODS as ESTIMATOR_METHODS
    from thermonet.runs.options import ENTROPY_METHODS

    assert set(ENTROPY_METHODS) == set(ESTIMATOR_METHODS)


def test_a_float32_block_with_too_many_candidates_is_searched_again_in_float64(monkeypatch):
    """Nearly equidistant samples (scaled basis vectors): float32 rounding cannot separate any
    neighbour, every row needs all N - 1 candidates (> the cap), and the block is searched
    again in float64; the distances equal the float64 search's exactly."""
    import thermonet.estimators.knn as knn_module

    x = 3.0 * np.eye(400) + 1e-9 * np.random.default_rng(0).normal(size=(400, 400))
    expected = knn_distances(x, k=2, search_dtype="float64", block_size=97)
    dtypes = []
    block = knn_module._knn_block

    def spy(*args):
        dtypes.append(args[2].dtype)
        return block(*args)

    monkeypatch.setattr(knn_module, "_knn_block", spy)
    got = knn_distances(x, k=2, search_dtype="float32", block_size=97)
    assert torch.float64 in dtypes and torch.float32 in dtypes  # the re-search happened
    np.testing.assert_array_equal(got, expected)
