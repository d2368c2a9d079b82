"""Processes: paths, first-law bookkeeping and a user-defined process class."""

import attrs
import numpy as np
import pytest
import sympy as sp

from thermonet.errors import InputError
from thermonet.theory.processes import Adiabatic, Isobaric, Isochoric, Isothermal, Process, State
from thermonet.theory.symbols import P, V
from thermonet.theory.system import IsotropicNoiseSystem

DIM = 5
N_R = (DIM - 1) / 2


@pytest.fixture(scope="module")
def ideal():
    """High-concentration vMF: C_V = N_R exactly, an ideal gas with gamma = 2."""
    return IsotropicNoiseSystem.create("fixed-lr", dim=DIM, high_concentration=True)


@attrs.frozen
class Polytropic(Process):
    """P V**n = const: a user-defined process is one constraint."""

    n: float = 1.5

    def constraint(self):
        return P * V ** sp.nsimplify(self.n)


def test_isothermal_closed_form(ideal):
    path = Isothermal().path(ideal, State(T=0.01, P=0.02), to={"V": 3.0}, num=200)
    v0, v1 = float(path.states.V[0]), 3.0
    np.testing.assert_allclose(path.states.T, 0.01, rtol=1e-10)
    assert path.work == pytest.approx(N_R * 0.01 * np.log(v1 / v0), rel=1e-6)
    assert path.delta_U == pytest.approx(0, abs=1e-12)
    assert path.heat == pytest.approx(path.work, rel=1e-6)
    assert path.delta_S == pytest.approx(N_R * np.log(v1 / v0), rel=1e-9)


def test_isobaric_and_isochoric_closed_forms(ideal):
    path = Isobaric().path(ideal, State(T=0.01, P=0.02), to={"T": 0.04})
    np.testing.assert_allclose(path.states.P, 0.02, rtol=1e-10)
    dv = float(path.states.V[-1] - path.states.V[0])
    assert path.work == pytest.approx(0.02 * dv, rel=1e-9)
    assert path.heat == pytest.approx((N_R + N_R) * 0.03, rel=1e-6)  # C_P dT with C_P = 2 N_R
    path = Isochoric().path(ideal, State(T=0.01, V=0.5), to={"T": 0.03})
    assert path.work == pytest.approx(0, abs=1e-14)
    assert path.heat == pytest.approx(N_R * 0.02, rel=1e-9)  # C_V dT


def test_adiabat_is_eta_constant_under_fixed_lr(ideal):
    path = Adiabatic().path(ideal, State(T=0.01, P=0.01), to={"P": 0.1}, num=201)
    np.testing.assert_allclose(path.states.S, path.states.S[0], atol=1e-9)
    np.testing.assert_allclose(path.states.lr, path.states.lr[0], rtol=1e-8)  # eta = const
    assert float(path.states.wd[-1]) == pytest.approx(0.1)
    pv2 = path.states.P * path.states.V**2  # gamma = 2
    np.testing.assert_allclose(pv2, pv2[0], rtol=1e-8)
    assert abs(path.heat) < 1e-6 * abs(path.work)


def test_adiabat_with_the_exact_energy_is_solved_not_assumed():
    exact = IsotropicNoiseSystem.create("fixed-lr", dim=3)
    path = Adiabatic().path(exact, State(T=0.5, P=0.01), to={"P": 0.1}, num=50)
    np.testing.assert_allclose(path.states.S, path.states.S[0], atol=1e-9)
    # at high temperature C_V < N_R: the adiabat is not eta = const any more
    assert float(path.states.lr[-1] / path.states.lr[0]) > 1.5


def test_polytropic_user_process(ideal):
    path = Polytropic(n=1.5).path(ideal, State(T=0.01, P=0.02), to={"V": 2.0})
    c = path.states.P * path.states.V**1.5
    np.testing.assert_allclose(c, c[0], rtol=1e-9)
    # n = gamma is the adiabat, n = 1 the isotherm
    adiabat = Polytropic(n=2).path(ideal, State(T=0.01, P=0.02), to={"V": 2.0})
    np.testing.assert_allclose(adiabat.states.S, adiabat.states.S[0], atol=1e-9)
    isotherm = Polytropic(n=1).path(ideal, State(T=0.01, P=0.02), to={"V": 2.0})
    np.testing.assert_allclose(isotherm.states.T, 0.01, rtol=1e-9)


def test_hyperparameter_path_reproduces_the_states(ideal):
    path = Isothermal().path(ideal, State(T=0.01, P=0.02), to={"P": 0.05}, num=5)
    pred = ideal.protocol.predicted("T", {"lr": path.states.lr.values, "wd": path.states.wd.values}, 1.0, DIM)
    np.testing.assert_allclose(pred, 0.01, rtol=1e-9)


def test_bad_input(ideal):
    with pytest.raises(InputError, match="> 0"):
        State(T=-1.0, P=0.1)
    with pytest.raises(InputError, match="exactly two"):
        Isothermal().path(ideal, State(T=0.1), to={"V": 1.0})
    with pytest.raises(InputError, match="exactly one of T, P, V"):
        Isothermal().path(ideal, State(T=0.1, P=0.1), to={"S": 1.0})
    with pytest.raises(InputError, match="no state"):
        Isothermal().path(ideal, State(T=0.1, P=0.1), to={"T": 0.2})  # T cannot change on an isotherm
