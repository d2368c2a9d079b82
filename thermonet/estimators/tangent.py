"""Model-based entropy of directions, computed in log-map (tangent) coordinates.

Used by :func:`thermonet.estimators.spherical_entropy` for the methods ``"elliptical"``
(the default where it is defined), ``"gauss"``, ``"gauss-knn"`` and
``"isotropic-bound"``; see ``docs/entropy-estimators.md`` for the derivation and the
measured biases.

Tangent coordinates
    For each group (factor sphere ``S^{D_g−1}``) the unit vectors are mapped to the
    tangent space at their normalised mean ``μ̂`` by the logarithm map
    ``z = θ v/‖v‖``, ``v = x − (x·μ̂) μ̂``, ``θ = atan2(‖v‖, x·μ̂)``, written in an orthonormal
    basis of ``μ̂^⊥`` (Householder reflection, ``d_g = D_g − 1`` coordinates). The surface
    element is ``dσ = (sin θ/θ)^{D_g−2} dz``, so the entropy on the sphere is
    ``S₁ = H(z) + E[(D_g − 2) ln(sin θ/θ)]`` exactly; only ``H(z)`` is estimated.

``"gauss"``
    ``H(z)`` of the Gaussian fitted to the tangent coordinates: ``½ ln det(2πe Σ)``, with
    ``E ln det Σ̂ = ln det Σ + Σ_{i=1}^{d} ψ((N−i)/2) + d ln(2/(N−1))`` (exact for Gaussian
    samples, ``Σ̂`` the unbiased sample covariance) subtracted. An upper bound on ``H(z)``
    for any law with that covariance; exact (unbiased) for Gaussian tangent laws of any
    spectrum.

``"elliptical"``
    ``z = m + R V^{1/2} u`` with ``u`` uniform on ``S^{d−1}`` independent of ``R``:
    ``H(z) = ½ ln det V + ln|S^{d−1}| + H(ln R) + d E[ln R]``. ``V`` is Tyler's shape
    M-estimator (affine equivariant, a function of the directions ``z_i/‖z_i‖`` only), so
    ``½ ln det V̂ + d·mean ln R̂_i`` is half the minimum of Tyler's objective and its
    finite-sample bias is the same for every elliptical law (it depends on the ``u_i``
    only). That bias is removed by running the same computation on a standard Gaussian
    sample of the same ``N, d`` (a *calibration draw*, cached per ``(N, d)``) and
    comparing with the Gaussian formula above. ``H(ln R)`` is a 1-D Kozachenko–Leonenko
    estimate. With groups: the Gaussian part is fitted jointly (it captures linear
    dependence between groups) and the elliptical correction is applied per group.

``"gauss-knn"``
    Gaussian reference plus the kNN difference between the *whitened* sample and a
    whitened synthetic Gaussian sample of the same ``N, d``; both have identity sample
    covariance, so the kNN bias cancels exactly for every Gaussian (a synthetic draw from
    ``N(0, Σ̂)`` does not: its spectrum is spread further than ``Σ̂``'s).

``"isotropic-bound"``
    ``(d/2) ln(2πe tr Σ̂ / d)``: the entropy of the isotropic Gaussian with the same total
    tangent variance, an upper bound on ``H(z)`` for every law with that variance. It is
    all that can be estimated without a model when ``N − 1 <= d`` (the sample covariance
    has rank ``N − 1 < d`` and ``ln det Σ`` is not identifiable).

Standard errors: ``se² = ¼ Σ_{i=1}^{d} ψ′((N−i)/2) + [Var_i(s_i) − Var_i(s_i^ref)]/N``:
the exact variance of the Gaussian log-determinant estimate plus the excess of the
variance of the per-sample surprisal ``s_i = −ln p̂(x_i)`` of the data over that of a
Gaussian sample (same N, d, same procedure), summed over groups for ``"elliptical"``;
see :func:`entropy_one_set`.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
from scipy.special import digamma, polygamma

from thermonet.errors import InputError
from thermonet.estimators.knn import _kl_from_distances, _knn_batched

__all__ = ["EstimabilityWarning", "MODEL_METHODS"]

MODEL_METHODS = ("elliptical", "gauss", "gauss-knn", "isotropic-bound")

#: Tyler iterations stop when the estimated remaining change of the objective (nats) is
#: below this; the entropy is stationary in the shape, so the error is far smaller.
TYLER_TOL = 1e-4
TYLER_MAX_ITER = 1000


class EstimabilityWarning(UserWarning):
    """The entropy is not identifiable from the given samples; the value returned is a bound."""


# ------------------------------------------------------------------- coordinates


def log_map_coordinates(
    u: torch.Tensor, groups: tuple[int, ...], basis: bool = True, per_group: bool = False
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Tangent coordinates per group and the per-sample log-Jacobian.

    ``u``: (N, D) float64, rows unit vectors *per group*. Returns ``([T_g (N, D_g − 1)],
    logjac (N,))`` with ``logjac = Σ_g (D_g − 2) ln(sin θ_g/θ_g)``. With ``basis=False``
    the tangent vectors are returned in ``R^{D_g}`` (orthogonal to ``μ̂_g``; same norms and
    traces, no basis change). With ``per_group=True`` the log-Jacobian is returned per
    group, shape (L, N).
    """
    n = u.shape[0]
    logjac = torch.zeros(len(groups), n, dtype=u.dtype, device=u.device)
    out = []
    start = 0
    for gi, g in enumerate(groups):
        x = u[:, start : start + g]
        start += g
        mu = x.mean(dim=0)
        mnorm = torch.linalg.vector_norm(mu)
        if not bool(mnorm > 0):
            raise InputError(
                "spherical_entropy: the samples' mean direction is undefined (their mean is "
                "the zero vector); the tangent-space methods need it: use method='chord'"
            )
        mu = mu / mnorm
        c = x @ mu
        v = x - c[:, None] * mu[None, :]
        s = torch.linalg.vector_norm(v, dim=1)
        theta = torch.atan2(s, c)
        if bool(((s == 0) & (c < 0)).any()):
            raise InputError(
                "spherical_entropy: a sample is exactly antipodal to the mean direction, "
                "where the logarithm map is undefined; use method='chord'"
            )
        pos = s > 0
        scale = torch.where(pos, theta / torch.where(pos, s, torch.ones_like(s)), torch.ones_like(s))
        z = v * scale[:, None]
        if basis:
            # orthonormal basis of μ^⊥: reflect μ onto e_last, drop the last coordinate
            h = -mu.clone()
            h[-1] += 1.0
            hn = torch.linalg.vector_norm(h)
            if bool(hn > 1e-12):
                h = h / hn
                z = z - 2.0 * (z @ h)[:, None] * h[None, :]
            z = z[:, : g - 1]
        out.append(z)
        if g > 2:
            sinc = torch.where(pos, torch.sin(theta) / torch.where(pos, theta, torch.ones_like(theta)), torch.ones_like(theta))
            logjac[gi] = (g - 2) * torch.log(sinc)
    return out, (logjac if per_group else logjac.sum(dim=0))


# --------------------------------------------------------------- Gaussian pieces


def logdet_wishart_bias(n: int, d: int) -> float:
    """``E ln det Σ̂ − ln det Σ = Σ_{i=1}^{d} ψ((N−i)/2) + d ln(2/(N−1))`` (Gaussian, N−1 >= d)."""
    i = torch.arange(1, d + 1, dtype=torch.float64).numpy()
    return float(digamma((n - i) / 2.0).sum()) + d * math.log(2.0 / (n - 1))


def logdet_wishart_var(n: int, d: int) -> float:
    """``Var ln det Σ̂ = Σ_{i=1}^{d} ψ′((N−i)/2)`` (Gaussian samples)."""
    i = torch.arange(1, d + 1, dtype=torch.float64).numpy()
    return float(polygamma(1, (n - i) / 2.0).sum())


def _gauss_fit(t: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred coordinates and the Cholesky factor of ``Tcᵀ Tc`` (d × d)."""
    n, d = t.shape
    if n - 1 <= d:
        raise InputError(
            f"{what} needs N − 1 > d = D − (number of groups) (here N = {n}, d = {d}): with "
            f"fewer samples the tangent covariance is singular and the entropy is not "
            f"identifiable; use more samples, groups, or method='isotropic-bound' for a bound"
        )
    tc = t - t.mean(dim=0, keepdim=True)
    gram = tc.T @ tc
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:
        raise InputError(
            f"{what}: the tangent covariance is singular (the samples lie in a lower-"
            f"dimensional subspace); the entropy w.r.t. surface measure is -inf or undefined"
        )
    return tc, chol


def _gauss_entropy(chol: torch.Tensor, n: int) -> float:
    """Bias-corrected ``½ ln det(2πe Σ)`` from the Cholesky factor of ``Tcᵀ Tc``."""
    d = chol.shape[0]
    logdet_scatter = 2.0 * float(torch.log(torch.diagonal(chol)).sum())
    # ln det Σ̂ = ln det(TcᵀTc) − d ln(N−1); subtract the Wishart bias
    logdet = logdet_scatter - d * math.log(n - 1) - logdet_wishart_bias(n, d)
    return 0.5 * logdet + 0.5 * d * math.log(2.0 * math.pi * math.e)


def _mahalanobis(tc: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """``(N−1) t_iᵀ (TcᵀTc)^{-1} t_i`` = squared Mahalanobis distance w.r.t. Σ̂, (N,)."""
    x = torch.linalg.solve_triangular(chol, tc.T, upper=False)
    return (tc.shape[0] - 1) * (x * x).sum(dim=0)


# ------------------------------------------------------------------ elliptical


def _radial_entropy_terms(log_r: torch.Tensor) -> torch.Tensor:
    """Per-sample 1-D KL terms ``−ln f̂(ln R_i)`` (N,); their mean is ``Ĥ(ln R)``."""
    n = log_r.shape[0]
    k = max(1, min(n - 1, int(round(math.sqrt(n) / 4.0))))
    r = _knn_batched(log_r.reshape(1, n, 1).cpu(), k, None, 2**26).reshape(n).to(log_r.device)
    if bool((r <= 0).any()):
        raise InputError(
            f"spherical_entropy: {int((r <= 0).sum())} sample(s) share their whitened radius "
            f"with {k} or more others (coinciding samples?); the elliptical method needs "
            f"distinct samples"
        )
    const = float(digamma(n) - digamma(k)) + math.log(2.0)
    return const + torch.log(r)


def _tyler_iterate(
    u: torch.Tensor, w: torch.Tensor, tol: float, max_iter: int
) -> tuple[float, torch.Tensor, torch.Tensor, int, bool]:
    """Fixed-point iterations of Tyler's estimator on rows ``u`` (N, d), from weights ``w``.

    ``V ← Σ w_i u_i u_iᵀ``, ``R_i² = u_iᵀ V^{-1} u_i``, ``w_i ← 1/R_i²``. The objective
    ``L(V) = ln det V + d·mean ln R_i²`` (scale invariant) decreases monotonically; the
    iterations stop when the geometric-series estimate of its remaining decrease is below
    ``tol``. Returns ``(L, R², w, iterations, converged)``.
    """
    d = u.shape[1]
    prev = prev_delta = None
    it = 0
    while True:
        m = (u * w[:, None]).T @ u
        chol, info = torch.linalg.cholesky_ex(m)
        if int(info) != 0:
            raise InputError(
                "spherical_entropy(method='elliptical'): Tyler's shape estimator failed (the "
                "tangent samples concentrate on a lower-dimensional subspace); use "
                "method='gauss' or 'chord'"
            )
        x = torch.linalg.solve_triangular(chol, u.T, upper=False)
        r2 = (x * x).sum(dim=0)
        obj = 2.0 * float(torch.log(torch.diagonal(chol)).sum()) + d * float(torch.log(r2).mean())
        it += 1
        if prev is not None:
            delta = prev - obj
            if delta <= 0:  # converged to rounding
                return obj, r2, w, it, True
            rate = delta / prev_delta if prev_delta else 0.5
            rate = min(max(rate, 0.0), 0.999)
            if delta * rate / (1.0 - rate) < tol:
                return obj, r2, w, it, True
            prev_delta = delta
        if it >= max_iter:
            return obj, r2, w, it, False
        prev = obj
        w = 1.0 / r2


def _tyler(tc: torch.Tensor, chol0: torch.Tensor) -> tuple[float, torch.Tensor, int]:
    """Tyler's shape M-estimator of the centred coordinates ``tc`` (N, d).

    Minimises ``L(V) = ln det V + (d/N) Σ ln(t_iᵀ V^{-1} t_i)`` over shapes ``V``. Tyler's
    estimator is affine equivariant, so it is computed on the whitened rows
    ``u_i = L₀^{-1} t_i`` (``L₀ Lₒᵀ = TcᵀTc``, so ``Σ u_i u_iᵀ = I`` and the problem is well
    conditioned), in float64, to ``TYLER_TOL`` (8–14 iterations at d/N = 0.5; a float32
    first phase was tried and saved under 20 %). Returns ``(L(V̂) for the whitened rows, ln R̂_i,
    iterations)``; ``R̂_i`` and ``L`` differ from those of ``tc`` only by the constant
    ``ln det(TcᵀTc)``, which cancels in the entropy.
    """
    n, d = tc.shape
    u = torch.linalg.solve_triangular(chol0, tc.T, upper=False).T
    w = torch.ones(n, dtype=torch.float64, device=tc.device)
    obj, r2, _, its, ok = _tyler_iterate(u, w, TYLER_TOL, TYLER_MAX_ITER)
    if not ok:
        warnings.warn(
            f"Tyler's shape estimator did not converge in {TYLER_MAX_ITER} iterations "
            f"(N = {n}, d = {d}); the elliptical entropy may be off by more than "
            f"{TYLER_TOL} nats", RuntimeWarning, stacklevel=3)
    return obj, 0.5 * torch.log(r2), its


def _elliptical_terms(tc: torch.Tensor, chol0: torch.Tensor) -> tuple[float, torch.Tensor]:
    """``F = ½ L_U(V̂) + Ĥ(ln R̂)`` (affine invariant) and the per-sample terms.

    ``L_U`` is Tyler's objective on the whitened rows (see :func:`_tyler`). The per-sample
    surprisal part ``d ln R̂_i − ln f̂(ln R̂_i)`` is returned for the standard error.
    """
    d = tc.shape[1]
    obj, log_r, _ = _tyler(tc, chol0)
    radial = _radial_entropy_terms(log_r)
    f = 0.5 * obj + float(radial.mean())
    return f, d * log_r + radial


@functools.lru_cache(maxsize=64)
def _calibration(n: int, d: int, device: str) -> tuple[float, float]:
    """``(E F, Var of the per-sample surprisal)`` on a standard Gaussian sample of size (n, d).

    One draw with a seed fixed by ``(n, d)``, so the estimator is deterministic and all
    estimates with the same ``(N, d)`` share the same calibration. The draw's own error on
    ``F`` is measured below 0.03 nats for d = 100 and 0.001 for d = 1000.
    """
    gen = torch.Generator().manual_seed(1_000_003 * n + d)
    z = torch.randn(n, d, generator=gen, dtype=torch.float64).to(device)
    tc = z - z.mean(dim=0, keepdim=True)
    chol0 = torch.linalg.cholesky(tc.T @ tc)
    f, s = _elliptical_terms(tc, chol0)
    return f, float(s.var())


@functools.lru_cache(maxsize=64)
def _white_knn_calibration(n: int, d: int, k: int, device: str) -> float:
    """Mean ``KL`` entropy of a whitened standard Gaussian sample (n, d) (one fixed draw)."""
    gen = torch.Generator().manual_seed(2_000_003 * n + 17 * d + k)
    z = torch.randn(n, d, generator=gen, dtype=torch.float64).to(device)
    tc = z - z.mean(dim=0, keepdim=True)
    return _whitened_kl(tc, torch.linalg.cholesky(tc.T @ tc), k)[0]


def _whitened_kl(
    tc: torch.Tensor, chol: torch.Tensor, k: int, search_dtype: torch.dtype = torch.float32
) -> tuple[float, torch.Tensor]:
    """KL entropy of ``tc`` whitened by its own sample covariance, and the per-sample terms."""
    n, d = tc.shape
    white = torch.linalg.solve_triangular(chol, tc.T, upper=False).T * math.sqrt(n - 1)
    r = _knn_batched(white.unsqueeze(0), k, None, 256 * 2**20, search_dtype).reshape(n)
    h = float(_kl_from_distances(r, k, d, "spherical_entropy(method='gauss-knn')"))
    return h, d * torch.log(r)


# ------------------------------------------------------------------- one set


def _gauss_mahalanobis_var(n: int, d: int) -> float:
    """``Var(½ m_i)`` of the in-sample squared Mahalanobis distance of a Gaussian sample.

    ``N m_i/(N−1)² ~ Beta(d/2, (N−d−1)/2)``.
    """
    return d * (n - d - 1) * (n - 1) ** 2 / (2.0 * n**2 * (n + 1))


def entropy_one_set(
    u: torch.Tensor, groups: tuple[int, ...], method: str, k: int, search_dtype: torch.dtype = torch.float32
) -> tuple[float, float]:
    """Entropy and standard error (nats) of one set of unit vectors (N, D) by ``method``."""
    n = u.shape[0]
    what = f"spherical_entropy(method={method!r})"
    coords, logjac_g = log_map_coordinates(u, groups, basis=method != "isotropic-bound", per_group=True)
    logjac = logjac_g.sum(dim=0)
    t = torch.cat(coords, dim=1) if len(coords) > 1 else coords[0]
    d = u.shape[1] - len(groups)
    jac = float(logjac.mean())
    if method == "isotropic-bound":
        # traces need no basis: the vectors in R^{D_g} lie in the d_g-dim tangent spaces
        tc = t - t.mean(dim=0, keepdim=True)
        sq = (tc * tc).sum(dim=1)
        trace = float(sq.sum()) / (n - 1)
        if not trace > 0:
            raise InputError(f"{what}: all samples coincide; the entropy is -inf")
        h = 0.5 * d * math.log(2.0 * math.pi * math.e * trace / d)
        s = 0.5 * d * sq / trace + logjac
        return h + jac, math.sqrt(float(s.var()) / n)

    tc, chol = _gauss_fit(t, what)
    h_gauss = _gauss_entropy(chol, n)
    base_var = 0.25 * logdet_wishart_var(n, d)
    if method == "gauss":
        s = 0.5 * _mahalanobis(tc, chol) + logjac
        excess = max(0.0, float(s.var()) - _gauss_mahalanobis_var(n, d)) / n
        return h_gauss + jac, math.sqrt(base_var + excess)

    if method == "gauss-knn":
        h_white, s = _whitened_kl(tc, chol, k, search_dtype)
        ref = _white_knn_calibration(n, d, k, str(u.device))
        s = s + logjac
        se = math.sqrt(base_var + 2.0 * float(s.var()) / n)
        return h_gauss + (h_white - ref) + jac, se

    # elliptical: joint Gaussian, per-group elliptical correction. Standard error: the
    # joint Gaussian log-determinant variance plus, per group, the excess variance of the
    # group's surprisal over a Gaussian group's (covariances between groups' non-Gaussian
    # parts are not counted: exact for independent groups).
    correction = 0.0
    excess = 0.0
    start = 0
    for gi, g in enumerate(groups):
        dg = g - 1
        if len(groups) == 1:
            tcg, cholg = tc, chol
        else:
            tcg, cholg = _gauss_fit(t[:, start : start + dg], what)
        f, sg = _elliptical_terms(tcg, cholg)
        f_ref, v_ref = _calibration(n, dg, str(u.device))
        correction += f - f_ref
        excess += max(0.0, float((sg + logjac_g[gi]).var()) - v_ref) / n
        start += dg
    return h_gauss + correction + jac, math.sqrt(base_var + excess)
