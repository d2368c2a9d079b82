"""Systems, potentials, Legendre transforms, Maxwell relations, heat capacities, adiabats."""

import numpy as np
import pytest
import sympy as sp
from scipy.stats import vonmises_fisher

from thermonet.errors import InputError
from thermonet.theory.energy import ConstantHeatCapacity, VMFEnergy
from thermonet.theory.eos import IdealGas, VanDerWaals
from thermonet.theory.potentials import gibbs, helmholtz
from thermonet.theory.protocols import FixedLR
from thermonet.theory.symbols import D, P, S, T, V, eta, eta_tilde
from thermonet.theory.system import IsotropicNoiseSystem, ThermodynamicSystem


def hc(protocol, dim=3):
    return IsotropicNoiseSystem.create(protocol, dim=dim, high_concentration=True)


def test_entropy_convention_is_s1_plus_d_minus_1_log_rho():
    system = IsotropicNoiseSystem.create("fixed-lr", dim=5)
    t, rho = 0.013, 1.7
    expected = VMFEnergy(dim=5).entropy(t) + 4 * np.log(rho)
    assert float(system.entropy(t, rho**2 / 2)) == pytest.approx(float(expected), rel=1e-12)


def test_predictions_match_scipy_vmf():
    system = IsotropicNoiseSystem.create("fixed-elr", dim=10, sigma=1.0)
    pred = system.predict({"elr": [0.02], "wd": [0.01]}).squeeze()
    kappa = 1 / float(pred["T"])
    ref = vonmises_fisher(np.eye(10)[0], kappa)
    assert float(pred["S_sphere"]) == pytest.approx(ref.entropy(), abs=1e-8)
    x = ref.rvs(200_000, random_state=np.random.default_rng(0))
    assert float(pred["U"]) == pytest.approx(1 - x[:, 0].mean(), rel=0.01)  # U = 1 + <mu,x>, x ~ vMF(-mu)
    assert float(pred["G"]) == pytest.approx(float(pred["U"] - pred["T"] * pred["S"] + pred["P"] * pred["V"]))


def test_legendre_round_trips():
    system = hc("fixed-lr", dim=6)
    f = system.helmholtz()
    g = system.gibbs()
    back = g.legendre(P, "F")
    assert sp.simplify(back.expr - f.expr) == 0
    u = system.internal_energy()
    assert u.variables == (S, V)
    assert sp.simplify(u.legendre(S, "F").expr - f.expr) == 0
    # U(S, V) has T = dU/dS and P = -dU/dV consistent with the ideal gas
    t_of = u.conjugate(S)
    p_of = u.conjugate(V)
    assert sp.simplify(p_of * V - sp.Rational(5, 2) * t_of) == 0


def test_maxwell_relations_against_independent_derivatives():
    system = IsotropicNoiseSystem.create("fixed-lr", dim=4)  # exact vMF energy
    g = system.gibbs()
    rel = g.maxwell_relation()
    assert rel.lhs == "(dS/dP)_T" and rel.rhs == "-(dV/dT)_P"
    t0, p0, h = 0.02, 0.05, 1e-6
    eos = IdealGas(dim=4)

    def s_of(t, p):
        return float(system.entropy(t, eos.volume(np.array(t), np.array(p))))

    ds_dp = (s_of(t0, p0 * (1 + h)) - s_of(t0, p0 * (1 - h))) / (2 * p0 * h)
    dv_dt = (float(eos.volume(np.array(t0 * (1 + h)), np.array(p0))) - float(eos.volume(np.array(t0 * (1 - h)), np.array(p0)))) / (2 * t0 * h)
    value = float(rel.value.subs({T: t0, P: p0}))
    assert ds_dp == pytest.approx(-dv_dt, rel=1e-6)
    assert value == pytest.approx(ds_dp, rel=1e-6)  # rel.value = (dS/dP)_T
    fr = system.helmholtz().maxwell_relation()
    assert (fr.lhs, fr.rhs) == ("(dS/dV)_T", "(dP/dT)_V")


def test_vdw_system_entropy_and_energy_integrals():
    system = ThermodynamicSystem.__subclasses__()[0]  # IsotropicNoiseSystem
    vdw = VanDerWaals(dim=3, a=0.1, b=0.05)
    s = system(protocol=FixedLR(), eos=vdw, energy=ConstantHeatCapacity(dim=3, c_v=1.0), dim=3)
    # (dS/dV)_T = (dP/dT)_V = N_R/(V - b); U picks up -a/V + a/V_ref
    assert sp.simplify(sp.diff(s.entropy_expr(), V) - 1 / (V - sp.Rational(1, 20))) == 0
    assert sp.simplify(s.internal_energy_expr() - (T - sp.Rational(1, 10) / V + sp.Rational(1, 5))) == 0


def test_heat_capacities_and_gamma():
    caps = hc("fixed-lr", dim=11).heat_capacities()
    assert caps["C_V"] == 5 and caps["C_P"] == 10 and caps["gamma"] == 2
    exact = IsotropicNoiseSystem.create("fixed-lr", dim=11)
    # C_V of the exact vMF energy equals the numerical derivative of U(T), and gamma -> 2 at small T
    for t in (1e-4, 1e-2, 1.0):
        h = 1e-5 * t
        numeric = (exact.energy.energy(t + h) - exact.energy.energy(t - h)) / (2 * h)
        assert float(exact.energy.heat_capacity(t)) == pytest.approx(float(numeric), rel=1e-5)
    gamma = lambda t: 1 + 5 / float(exact.energy.heat_capacity(t))  # C_P - C_V = N_R = 5
    assert gamma(1e-5) == pytest.approx(2, abs=1e-3)
    assert abs(gamma(1.0) - 2) > 0.05


def test_adiabats_come_out_of_the_derivation():
    assert hc("fixed-lr").adiabat()["invariant"] == eta
    assert hc("fixed-elr").adiabat()["invariant"] == eta_tilde**2 / sp.Symbol("lambda", positive=True)
    lr = hc("fixed-lr", dim=7).adiabat()
    assert lr["dS_dv"] == 0 and lr["dS_du"] == 3  # S = ((D-1)/2) ln eta + const


def test_symbolic_dimension_kept():
    system = IsotropicNoiseSystem.create("fixed-lr", dim=3, high_concentration=True)
    free = IdealGas().solve_for("P").free_symbols
    assert D in free
    assert system.dim == 3


def test_bad_input():
    with pytest.raises(InputError, match="unknown protocol"):
        IsotropicNoiseSystem.create("sgd", dim=3)
    with pytest.raises(InputError, match=">= 2"):
        IsotropicNoiseSystem.create("fixed-lr", dim=1)
    with pytest.raises(InputError, match="> 0"):
        IsotropicNoiseSystem.create("fixed-lr", dim=3, sigma=0)
    with pytest.raises(InputError, match="needs a grid"):
        hc("fixed-lr").predict({"lr": [0.1]})
    with pytest.raises(InputError, match="closed-form"):
        IsotropicNoiseSystem.create("fixed-lr", dim=3).internal_energy()  # Bessel S1(T) cannot be inverted
    with pytest.raises(InputError):
        gibbs(T * P).legendre(V, "X")


# ---------------------------------------------------------------- fitted (non-rational) power-law gases
@pytest.mark.timeout(60)
@pytest.mark.parametrize("alpha", [0.25, -0.43, 0.4312345])
@pytest.mark.parametrize("protocol", ["fixed-lr", "fixed-elr"])
def test_power_law_gas_system_derives_quickly_and_correctly(protocol, alpha):
    """A fitted exponent (any float) used to make sympy.solve run for minutes; the closed
    forms must agree with an independent numeric root of the equation of state."""
    from scipy.optimize import brentq

    from thermonet.theory.energy import VMFEnergy
    from thermonet.theory.eos import PowerLawCompressibility
    from thermonet.theory.protocols import get_protocol

    dim, z0 = 50, 1.2
    eos = PowerLawCompressibility(dim=dim, z0=z0, alpha=alpha)
    system = ThermodynamicSystem(protocol=get_protocol(protocol), eos=eos, energy=VMFEnergy(dim=dim), dim=dim)
    name = system.protocol.hyperparameters[0]
    h1, lam_ = 0.05, 3e-3
    pred = system.predict({name: [h1], "wd": [lam_]}).squeeze()
    n_r = (dim - 1) / 2

    def relation(log_rho):  # P V - N_R T Z(T) with this protocol's T(rho) and P = lambda (sigma2 = 1)
        r = np.exp(log_rho)
        t = (h1 / r**2 if protocol == "fixed-lr" else h1) / 2
        return lam_ * r**2 / 2 - n_r * t * z0 * t**alpha

    root = np.exp(brentq(relation, -20, 20, xtol=1e-14))
    assert float(pred["rho"]) == pytest.approx(root, rel=1e-9)
    assert np.isfinite(float(pred["S"])) and np.isfinite(float(pred["U"]))

    # the inverse map returns the hyperparameters
    inverse = system.protocol.hyperparameters_of_state(eos)
    point = {T: float(pred["T"]), P: float(pred["P"]), V: float(pred["V"]), sp.Symbol("sigma2", positive=True): 1}
    for key, expected in ((name, h1), ("wd", lam_)):
        assert float(inverse[key].subs(point)) == pytest.approx(expected, rel=1e-9)

    # the adiabat direction is the null direction of the numerical entropy gradient
    adiabat = system.adiabat()
    du, dv = (float(sp.sympify(x).subs(point).subs({sp.Symbol(s, positive=True): v for s, v in
                                                  (("eta", h1), ("eta_tilde", h1), ("lambda", lam_))}))
              for x in adiabat["direction"])
    eps = 1e-4
    norm = np.hypot(du, dv)

    def s_at(u_shift, v_shift):
        grid = {name: [h1 * np.exp(u_shift)], "wd": [lam_ * np.exp(v_shift)]}
        return float(system.predict(grid)["S"].squeeze())

    along = (s_at(eps * du / norm, eps * dv / norm) - s_at(-eps * du / norm, -eps * dv / norm)) / (2 * eps)
    across = (s_at(eps * dv / norm, -eps * du / norm) - s_at(-eps * dv / norm, eps * du / norm)) / (2 * eps)
    assert abs(along) < 1e-5 * abs(across)
