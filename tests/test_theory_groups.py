"""Per-group theory: the protocols' update coefficients, the group recursion and radii, the
product of spheres; each against an independent value (the torch update, the whole-vector
derivation, a simulation of a product of spheres)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from thermonet.errors import InputError
from thermonet.theory.groups import ProductOfSpheres
from thermonet.theory.protocols import Protocol, get_protocol
from thermonet.theory.symbols import grad_sq, rho, rho0, rho_g, step_grad_sq, trace_sigma

PROTOCOLS = ["fixed-lr", "fixed-elr", "fixed-sphere"]
HP = {"fixed-lr": {"lr": 0.05, "wd": 0.02}, "fixed-elr": {"elr": 0.03, "wd": 0.01},
      "fixed-sphere": {"lr": 0.05, "sphere_radius": 1.7}}


def _on_sphere(protocol: Protocol, expr: sp.Expr) -> sp.Expr:
    """The whole radius of the fixed sphere is rho_0."""
    return expr.subs(rho, protocol.fixed_radius()) if protocol.fixed_radius() is not None else expr


@pytest.mark.parametrize("name", PROTOCOLS)
def test_update_coefficients_give_the_protocols_own_radius_balance(name):
    """alpha**2 rho**2 + beta**2 E q equals the protocol's expected_next_radius_sq()."""
    p = get_protocol(name)
    alpha, beta = p.update_coefficients()
    mean_q = (trace_sigma + grad_sq) / rho**2
    from_coefficients = (alpha**2 * rho**2 + beta**2 * step_grad_sq).subs(step_grad_sq, mean_q)
    difference = _on_sphere(p, from_coefficients - p.expected_next_radius_sq())
    assert sp.simplify(difference) == 0


@pytest.mark.parametrize("name", PROTOCOLS)
def test_group_effective_lr_is_the_raw_step_over_the_group_radius(name):
    """The default derivation eta_eff rho**2/rho_g**2 equals beta(q -> 0)/rho_g**2, the
    gradient multiplier of the update itself."""
    p = get_protocol(name)
    _, beta = p.update_coefficients()
    difference = _on_sphere(p, p.group_effective_lr() - beta.subs(step_grad_sq, 0) / rho_g**2)
    assert sp.simplify(difference) == 0
    assert ProductOfSpheres(p, {"a": 3, "b": 5}).coarse_weight_expr() == 1


@pytest.mark.parametrize("name", PROTOCOLS)
def test_one_torch_step_follows_the_group_recursion_exactly(name):
    """||w_g'||**2 = alpha**2 ||w_g||**2 + beta**2 ||g_g||**2 for the protocol's own torch update."""
    p = get_protocol(name)
    gen = torch.Generator().manual_seed(0)
    sizes = [4, 7, 13]
    members = 5
    w = torch.randn(members, sum(sizes), dtype=torch.float64, generator=gen)
    g = torch.randn(members, sum(sizes), dtype=torch.float64, generator=gen)
    parts_w, parts_g = torch.split(w, sizes, -1), list(torch.split(g, sizes, -1))
    for i, (a, b) in enumerate(zip(parts_w, parts_g)):  # each group's gradient is orthogonal to its weights
        parts_g[i] = b - (a * b).sum(-1, keepdim=True) / (a * a).sum(-1, keepdim=True) * a
    g = torch.cat(parts_g, -1)
    hp = {k: torch.full((members, 1), v, dtype=torch.float64) for k, v in HP[name].items()}
    if p.fixed_radius() is not None:
        w = w * (HP[name]["sphere_radius"] / w.norm(dim=-1, keepdim=True))
    new = p.step(w, g, hp)
    alpha, beta = p.update_coefficients()
    symbols = list(p.symbols.values())
    coefficient = sp.lambdify([*symbols, rho, step_grad_sq], [alpha**2, beta**2], "numpy")
    a2, b2 = coefficient(*HP[name].values(), w.norm(dim=-1).numpy(), (g**2).sum(-1).numpy())
    for part_new, part_w, part_g in zip(torch.split(new, sizes, -1), torch.split(w, sizes, -1), parts_g):
        expected = a2 * (part_w**2).sum(-1).numpy() + b2 * (part_g**2).sum(-1).numpy()
        np.testing.assert_allclose((part_new**2).sum(-1).numpy(), expected, rtol=1e-13)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_one_group_is_the_whole_vector(name):
    """With one group (rho_g = rho, the same noise) the group radii are the whole-vector radii."""
    p = get_protocol(name)
    hp = {k: np.array(v) for k, v in HP[name].items()}
    trace, g1 = np.array([2.0, 5.0]), np.array([0.3, 0.1])
    whole = p.predicted_radius_discrete(hp, trace, g1)
    group = p.predicted_group_radius_discrete(hp, whole, trace, g1, trace, g1)
    np.testing.assert_allclose(group, whole, rtol=1e-12)
    sigma2, dim = np.array([0.7, 1.3]), 9
    sde = p.predicted("rho", hp, sigma2, dim)
    pressure = p.predicted("P", hp, sigma2, dim) if p.pressure_expr() is None else None
    np.testing.assert_allclose(p.predicted_group_radius_sde(hp, sde, sigma2, np.array(dim), pressure), sde,
                               rtol=1e-12)


def test_a_protocol_without_coefficients_says_so():
    class NoCoefficients(get_protocol("fixed-lr").__class__):
        def update_coefficients(self):
            return None

    with pytest.raises(InputError, match="update_coefficients"):
        NoCoefficients().group_radius_discrete()


def test_product_of_spheres_structure_and_temperatures():
    system = ProductOfSpheres("fixed-lr", {"conv": 6, "fc": 30, "head": 11})
    assert system.dim == 47 and system.sphere_dimension == 44
    np.testing.assert_allclose(system.gas_constants(), [2.5, 14.5, 5.0])
    t = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]])
    np.testing.assert_allclose(system.mean_temperature(t), [(5 + 58 + 40) / 44, 3.0])
    np.testing.assert_allclose(system.coarse_temperature(t), [(5 + 58 + 40) / 46, 3.0 * 44 / 46])
    with pytest.raises(InputError, match="D_g >= 2"):
        ProductOfSpheres("fixed-lr", {"a": 1, "b": 4})
    with pytest.raises(InputError, match="expected 3 groups"):
        system.mean_temperature(np.ones((2, 2)))


# ---------------------------------------------------------------------- a simulated product of spheres
def _simulate(name: str, hp: dict, sizes: list[int], sigmas: list[float], steps: int, replicas: int, seed: int):
    """Per-group isotropic test systems (THEORY §7) trained as one vector with the protocol's own
    update: group g has L_g = 1 + <mu_g, x_g> and noise sigma_g P_g xi / rho_g. Returns the
    time-averaged rho_g**2, ||grad_g||**2 rho_g**2 (G1sq_g) and the whole radius over the second half."""
    p = get_protocol(name)
    rng = np.random.default_rng(seed)
    total = sum(sizes)
    edges = np.cumsum([0, *sizes])
    mu = np.zeros(total)
    for a in edges[:-1]:
        mu[a] = 1.0
    w = rng.standard_normal((replicas, total))
    for a, b in zip(edges[:-1], edges[1:]):  # every group starts at radius 1, near its stationary radius
        w[:, a:b] /= np.linalg.norm(w[:, a:b], axis=1, keepdims=True)
    radius0 = hp.get("sphere_radius")
    if radius0 is not None:
        w *= radius0 / np.linalg.norm(w, axis=1, keepdims=True)
    hp_t = {k: torch.full((replicas, 1), v, dtype=torch.float64) for k, v in hp.items()}
    acc = {"rho2": np.zeros((replicas, len(sizes))), "g1": np.zeros((replicas, len(sizes))), "rho": np.zeros(replicas)}
    count = 0
    for t in range(steps):
        grad = np.empty_like(w)
        full = np.empty((replicas, len(sizes)))
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
            wg = w[:, a:b]
            r = np.linalg.norm(wg, axis=1, keepdims=True)
            x = wg / r
            m = mu[a:b]
            gx = m - (x @ m)[:, None] * x  # grad of <mu, x> on the sphere, at unit norm
            xi = rng.standard_normal(wg.shape)
            xi -= (xi * x).sum(1, keepdims=True) * x
            grad[:, a:b] = (gx + sigmas[i] * xi) / r
            full[:, i] = (gx**2).sum(1)
        w = p.step(torch.from_numpy(w), torch.from_numpy(grad), hp_t).numpy()
        if t >= steps // 2:
            for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
                acc["rho2"][:, i] += (w[:, a:b] ** 2).sum(1)
            acc["g1"] += full
            acc["rho"] += np.linalg.norm(w, axis=1)
            count += 1
    return {k: v.mean(0) / count for k, v in acc.items()}


@pytest.mark.parametrize("name,hp", [("fixed-lr", {"lr": 0.02, "wd": 0.02}),
                                     ("fixed-elr", {"elr": 0.01, "wd": 0.02}),
                                     ("fixed-sphere", {"lr": 0.02, "sphere_radius": 2.0})])
def test_group_radii_of_a_simulated_product_of_spheres(name, hp):
    """Two groups with different noise: the group recursion's radius (with the measured full
    gradient) within 1 %, and sum rho_g**2 = rho**2."""
    sizes, sigmas = [5, 20], [1.0, 0.4]
    out = _simulate(name, hp, sizes, sigmas, steps=6000, replicas=40, seed=1)
    p = get_protocol(name)
    hpa = {k: np.array(v) for k, v in hp.items()}
    trace_g = np.array(sigmas) ** 2 * (np.array(sizes) - 1)
    rho_g2 = out["rho2"]
    # the whole vector's noise at its unit norm: trSigma(x) = rho**2 sum_g trSigma_g(x_g)/rho_g**2
    rho2 = rho_g2.sum()
    trace = rho2 * (trace_g / rho_g2).sum()
    g1 = rho2 * (out["g1"] / rho_g2).sum()
    predicted = p.predicted_group_radius_discrete(hpa, math.sqrt(rho2), trace, g1, trace_g, out["g1"])
    np.testing.assert_allclose(np.sqrt(rho_g2), predicted, rtol=0.01)  # measured: <= 0.25 %
    assert out["rho"] ** 2 == pytest.approx(rho2, rel=1e-3)
    # the groups' temperatures differ: sigma_g**2/(D_g - 1) differs, no equipartition here
    system = ProductOfSpheres(p, {"small": sizes[0], "large": sizes[1]})
    t = p.group_temperature(hpa, math.sqrt(rho2), np.sqrt(rho_g2), np.array(sigmas) ** 2)
    assert t[0] / t[1] > 1.5
    pressure = None if p.pressure_expr() is not None else p.pressure_series(hpa, (trace + g1) / rho2)  # lambda_eff
    ideal = system.radius_sde(hpa, math.sqrt(rho2), np.array(sigmas) ** 2, pressure)
    # each group's ideal gas (no full-gradient term: small here, G1sq_g << trSigma_g); measured <= 0.4 %
    np.testing.assert_allclose(ideal, np.sqrt(rho_g2), rtol=0.01)
