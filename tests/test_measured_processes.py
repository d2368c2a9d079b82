"""Tests for thermonet.analysis.processes: processes followed through measured states."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
import sympy as sp
import xarray as xr
from matplotlib.figure import Figure

from thermonet.store.synthetic import synthetic_run
from thermonet.errors import InputError
from thermonet.analysis.processes import measure_process, measured_along
from thermonet.theory.processes import Adiabatic, Isobaric, Isothermal, Process, State
from thermonet.theory.symbols import P, V
from thermonet.theory.system import IsotropicNoiseSystem

GRID = {"lr": np.geomspace(1e-3, 1e-1, 5), "wd": np.geomspace(1e-3, 1e-1, 5)}
NUM = 8


@pytest.fixture(scope="module")
def run() -> xr.Dataset:
    return synthetic_run("fixed-lr", GRID, seeds=2, n_logs=16, rng=21)


@pytest.fixture(scope="module")
def adiabat(run):
    return measure_process(Adiabatic(), run, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1}, num=NUM)


def test_fixed_lr_adiabat_keeps_entropy_while_wd_changes_100x(adiabat):
    lr = adiabat.path.states["lr"].values
    wd = adiabat.path.states["wd"].values
    np.testing.assert_allclose(lr, 0.01, rtol=1e-3)  # eta constant is the adiabat (THEORY §6)
    assert wd[-1] / wd[0] == pytest.approx(100)
    measured, predicted = adiabat.delta_S
    assert abs(predicted) < 1e-6
    assert abs(measured) < 0.05  # nats, with S itself changing by ~ 2 nats per decade of lr elsewhere
    assert adiabat.verdict == "pass"
    # U rises along the adiabat (T grows like sqrt(wd)): measured as predicted
    dU_m, dU_p = adiabat.delta_U
    assert dU_p > 0.01 and dU_m == pytest.approx(dU_p, rel=0.05)
    # no heat along an adiabat: Q = dU + W vanishes in the theory; measured T dS ~ 0 too
    assert abs(adiabat.numbers["Q_predicted"]) < 1e-2 * dU_p  # Simpson on 8 points
    assert abs(adiabat.numbers["TdS_measured"]) < 0.05 * dU_p


def test_isotherm_has_the_predicted_entropy_change(run):
    m = measure_process(Isothermal(), run, start={"lr": 0.1, "wd": 0.001}, to={"wd": 0.1}, num=NUM)
    # fixed LR at constant T: eta*lambda fixed, rho^2 = (D-1) T / lambda -> dS = -(D-1)/2 ln 100
    dS_m, dS_p = m.delta_S
    assert dS_p == pytest.approx(-np.log(100), rel=1e-6)
    assert dS_m == pytest.approx(dS_p, abs=0.1)
    assert m.verdict == "pass"
    assert m.path.states["lr"].values[-1] == pytest.approx(1e-3, rel=1e-6)
    assert abs(m.numbers["delta_U_measured"]) < 0.05 * np.abs(m.path.states["U"].values).max()


def test_wrong_entropy_fails_the_adiabat(run):
    wrong = run.copy(deep=True)
    wrong["entropy"] = wrong["entropy"] + 0.5 * np.log(wrong["wd"])  # S now grows along eta = const
    m = measure_process(Adiabatic(), wrong, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1}, num=NUM)
    assert m.verdict == "fail"
    assert m.numbers["delta_S_measured"] == pytest.approx(0.5 * np.log(100), abs=0.1)
    assert m.numbers["delta_S_error_over_nr"] - m.z * m.numbers["delta_S_error_over_nr_se"] > 0.1
    assert m.passed is False and "fail" in m.summary()
    wrong_energy = run.copy(deep=True)
    wrong_energy["loss"] = wrong_energy["loss"] * np.sqrt(wrong_energy["wd"] / 1e-3)
    m = measure_process(Adiabatic(), wrong_energy, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1}, num=NUM)
    assert m.verdict == "fail" and m.numbers["delta_U_rel_error"] > 0.5
    assert measure_process(Adiabatic(), wrong_energy, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1}, num=NUM,
                           energy_tolerance=None).verdict == "pass"


@pytest.mark.parametrize("method", ["linear", "cubic", "nearest", "surface"])
def test_methods_agree_on_the_isobar(run, method):
    # from lr = 1e-3 to lr = 0.1 at wd = 0.01: both ends on grid points ('nearest' snaps to them)
    system = IsotropicNoiseSystem.create("fixed-lr", 3)  # sigma = 1 exactly, as the store was generated
    end = system.predict({"lr": [0.1], "wd": [0.01]})
    m = measure_process(Isobaric(), run, start={"lr": 0.001, "wd": 0.01}, to={"T": float(end["T"].values.ravel()[0])},
                        num=NUM, method=method, system=system)
    assert m.path.states["lr"].values[-1] == pytest.approx(0.1, rel=1e-6)
    np.testing.assert_allclose(m.path.states["wd"].values, 0.01, rtol=1e-6)
    assert m.numbers["delta_S_measured"] == pytest.approx(m.numbers["delta_S_predicted"], abs=0.1)
    assert m.measured.attrs["method"] == method
    if method == "nearest":  # selection: values of grid points only
        assert set(np.round(m.measured["lr_grid"].values, 12)) <= set(np.round(GRID["lr"], 12))


def test_user_defined_process(run):
    @attrs.frozen
    class Polytropic(Process):
        n: float = 2.0

        def constraint(self):
            return P * V ** sp.nsimplify(self.n)

    # n = gamma = 2 is the high-concentration adiabat: eta constant again
    m = measure_process(Polytropic(), run, start={"lr": 0.01, "wd": 0.001}, to={"P": 0.1}, num=NUM)
    assert abs(m.numbers["delta_S_measured"]) < 0.06
    assert m.verdict == "pass"


def test_start_as_state_and_custom_system(run):
    system = IsotropicNoiseSystem.create("fixed-lr", 3)
    start = system.predict({"lr": [0.1], "wd": [0.001]})
    state = State(T=float(start["T"].values.ravel()[0]), P=0.001)
    m = measure_process(Isothermal(), run.thermo, start=state, to={"P": 0.1}, system=system, num=NUM)
    assert m.delta_S[1] == pytest.approx(-np.log(100), rel=1e-6)


def test_bad_inputs(run):
    with pytest.raises(InputError, match="leaves the measured grid"):
        measure_process(Isothermal(), run, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1}, num=NUM)
    with pytest.raises(InputError, match="'to'"):
        measure_process(Adiabatic(), run, start={"lr": 0.01, "wd": 0.001}, to={"lr": 0.1})
    with pytest.raises(InputError, match="start must give"):
        measure_process(Adiabatic(), run, start={"lr": 0.01}, to={"wd": 0.1})
    with pytest.raises(InputError, match="method"):
        measure_process(Adiabatic(), run, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1}, method="spline")
    with pytest.raises(InputError, match="protocol"):
        measure_process(Adiabatic(), run, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1},
                        system=IsotropicNoiseSystem.create("fixed-elr", 3))
    no_entropy = run.drop_vars(["entropy", "entropy_sphere"])
    with pytest.raises(InputError, match="entropy"):
        measure_process(Adiabatic(), no_entropy, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1}, num=NUM)


def test_measured_along_interpolates_exactly_linear_fields(run):
    st = run.thermo.stationary()
    field = np.log(st["lr"]) * 2 + np.log(st["wd"]) + 0 * st["U"]
    st = st.assign(S=field)
    out = measured_along(st, ("lr", "wd"), {"lr": np.array([2e-3, 0.05]), "wd": np.array([0.003, 0.07])})
    np.testing.assert_allclose(out["S"].values, 2 * np.log([2e-3, 0.05]) + np.log([0.003, 0.07]), rtol=1e-10)


def test_result_serialises_and_plots(adiabat):
    payload = json.loads(json.dumps(adiabat.to_dict(), allow_nan=False))
    assert payload["process"] == "Adiabatic" and payload["verdict"] == "pass"
    assert len(payload["path"]["lr"]) == NUM
    assert "dS measured" in adiabat.summary()
    fig = adiabat.plot()
    assert isinstance(fig, Figure) and len(fig.axes) >= 3


def test_a_process_the_noise_cannot_decide_is_inconclusive(run):
    """Entropy estimates with noise far beyond the tolerance: neither pass nor fail."""
    noisy = run.copy(deep=True)
    rng = np.random.default_rng(3)
    noisy["entropy"] = noisy["entropy"] + rng.normal(0, 3.0, noisy["entropy"].shape)
    m = measure_process(Adiabatic(), noisy, start={"lr": 0.01, "wd": 0.001}, to={"wd": 0.1}, num=NUM)
    assert m.verdict == "inconclusive" and m.passed is None
    assert "would decide it" in m.to_decide and m.to_dict()["to_decide"] == m.to_decide
