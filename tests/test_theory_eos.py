"""Equations of state: solving, numerics and fits against closed forms and synthetic data."""

import numpy as np
import pytest
import sympy as sp

from thermonet.errors import InputError
from thermonet.theory.eos import EQUATIONS_OF_STATE, IdealGas, PowerLawCompressibility, VanDerWaals, Virial
from thermonet.theory.symbols import D, P, T, V

RNG = np.random.default_rng(1)
TEMPS = np.exp(RNG.uniform(np.log(1e-3), np.log(1e-1), 60))
VOLS = np.exp(RNG.uniform(np.log(0.1), np.log(10), 60))


def test_ideal_gas_solutions():
    gas = IdealGas()
    assert sp.simplify(gas.solve_for("P") - (D - 1) * T / (2 * V)) == 0
    assert sp.simplify(gas.solve_for("V") - (D - 1) * T / (2 * P)) == 0
    assert sp.simplify(gas.solve_for("T") - 2 * P * V / (D - 1)) == 0
    gas10 = IdealGas(dim=10)
    np.testing.assert_allclose(gas10.pressure(TEMPS, VOLS), 4.5 * TEMPS / VOLS, rtol=1e-14)
    assert IdealGas(n_r=2.0).gas_constant == 2


@pytest.mark.parametrize("eos", [Virial(dim=5, B=0.3, C=0.02), VanDerWaals(dim=5, a=1e-5, b=0.05),
                                 PowerLawCompressibility(dim=5, z0=1.2, alpha=0.1)])
def test_numeric_solutions_are_consistent(eos):
    p = eos.pressure(TEMPS, VOLS)
    assert np.all(p > 0)
    np.testing.assert_allclose(eos.volume(TEMPS, p), VOLS, rtol=1e-8)
    np.testing.assert_allclose(eos.temperature(p, VOLS), TEMPS, rtol=1e-8)
    # the relation itself vanishes
    f = sp.lambdify([P, V, T], eos.relation())
    np.testing.assert_allclose(f(p, VOLS, TEMPS), 0, atol=1e-12)


def test_van_der_waals_closed_form_pressure():
    eos = VanDerWaals(dim=3, a=0.02, b=0.1)
    np.testing.assert_allclose(eos.pressure(TEMPS, VOLS + 0.2), TEMPS / (VOLS + 0.2 - 0.1) - 0.02 / (VOLS + 0.2) ** 2,
                               rtol=1e-12)


def test_compressibility_factor():
    assert sp.simplify(Virial(B=0.5, C=0.25).compressibility() - (1 + sp.Rational(1, 2) / V + sp.Rational(1, 4) / V**2)) == 0
    assert sp.simplify(IdealGas().compressibility() - 1) == 0


@pytest.mark.parametrize("truth", [Virial(dim=9, B=0.4, C=0.05), VanDerWaals(dim=9, a=1e-5, b=0.03),
                                   PowerLawCompressibility(dim=9, z0=0.8, alpha=-0.15)])
def test_fit_recovers_parameters(truth):
    p = truth.pressure(TEMPS, VOLS) * np.exp(RNG.normal(0, 1e-3, TEMPS.size))
    result = type(truth)(dim=9).fit(p, VOLS, TEMPS)
    for name in truth.parameter_names:
        value, err = result.parameters[name], result.uncertainties[name]
        assert value == pytest.approx(getattr(truth, name), abs=5 * err + 1e-6)
        assert 0 < err < 0.1 * max(abs(getattr(truth, name)), 1e-2)
    assert result.r2 > 0.999
    ideal = IdealGas(dim=9).fit(p, VOLS, TEMPS)
    assert result.aic < ideal.aic and result.bic < ideal.bic


def test_fit_on_ideal_data_prefers_the_ideal_gas_by_bic():
    truth = IdealGas(dim=4)
    p = truth.pressure(TEMPS, VOLS) * np.exp(RNG.normal(0, 1e-2, TEMPS.size))
    fits = {name: cls(dim=4).fit(p, VOLS, TEMPS) for name, cls in EQUATIONS_OF_STATE.items()}
    assert min(fits, key=lambda n: fits[n].bic) == "ideal"
    assert fits["ideal"].n_parameters == 0
    assert np.std(fits["ideal"].residuals) == pytest.approx(1e-2, rel=0.3)


def test_fit_temperature_scale():
    truth = IdealGas(dim=4)
    p = truth.pressure(2.5 * TEMPS, VOLS)
    result = IdealGas(dim=4).fit(p, VOLS, TEMPS, temperature_scale=True)
    assert result.parameters["temperature_scale"] == pytest.approx(2.5, rel=1e-8)


def test_bad_input():
    with pytest.raises(InputError, match=">= 2"):
        IdealGas(dim=1)
    with pytest.raises(InputError, match="> 0"):
        IdealGas(n_r=-1)
    with pytest.raises(InputError, match="one of P, V, T"):
        IdealGas().solve_for("Q")
    with pytest.raises(InputError, match="needs dim"):
        IdealGas().pressure(1.0, 1.0)
    with pytest.raises(InputError, match="P > 0"):
        IdealGas(dim=3).fit([-1.0, 1, 1], [1.0, 1, 1], [1.0, 1, 1])
    with pytest.raises(InputError, match="equal sizes"):
        IdealGas(dim=3).fit([1.0, 1], [1.0], [1.0])
    with pytest.raises(InputError, match="more than 2"):
        Virial(dim=3).fit([1.0, 2.0], [1.0, 2.0], [1.0, 2.0])
