"""Tests for thermonet.analysis.noise: T from the measured noise, the sigma2 trend and its check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from thermonet.checks import OPTIONAL_CHECKS, default_checks, get_check, run_checks
from thermonet.store.synthetic import synthetic_run
from thermonet.errors import InputError
from thermonet.checks.noise_trend import NoiseTrendCheck
from thermonet.analysis.noise import (
    fit_power_law,
    measured_temperature,
    noise_trend,
    trend_variable,
    unit_noise_temperature,
)


def _with_noise_trend(ds: xr.Dataset, prefactor: float, slope: float, variable) -> xr.Dataset:
    """Multiply the logged noise level (sigma2 and trSigma) by prefactor * variable(ds)**slope."""
    out = ds.copy(deep=True)
    factor = prefactor * variable(out) ** slope
    out["sigma2"] = out["sigma2"] * factor
    out["trace_sigma"] = out["trace_sigma"] * factor
    return out


@pytest.mark.parametrize("protocol, variable, name", [
    ("fixed-lr", lambda d: d["lr"] * d["wd"], "lr*wd"),
    ("fixed-elr", lambda d: d["elr"], "elr"),
    ("fixed-sphere", lambda d: d["lr"] / d["sphere_radius"] ** 2, "lr/sphere_radius**2"),
])
def test_trend_recovers_a_known_power_law(protocol, variable, name):
    ds = _with_noise_trend(synthetic_run(protocol, n_logs=12, rng=1), 0.8, 0.25, variable)
    trend = noise_trend(ds)
    assert trend.variable == name
    t = trend.trend
    assert t.slope == pytest.approx(0.25, abs=0.01)
    assert abs(t.slope - 0.25) < 5 * t.slope_se + 1e-3
    assert t.prefactor == pytest.approx(0.8, rel=0.05)
    assert t.r2 > 0.99
    assert t.n == 5 * 5 * 2
    if protocol == "fixed-lr":  # depends on the product only: equal exponents of lr and wd
        assert trend.exponents["lr"] == pytest.approx(trend.exponents["wd"], abs=0.01)
    if protocol == "fixed-elr":
        assert trend.exponents["wd"] == pytest.approx(0, abs=0.01)


def test_trend_of_constant_noise_is_flat():
    trend = noise_trend(synthetic_run("fixed-lr", n_logs=12, rng=2))
    assert abs(trend.trend.slope) < 0.005
    assert trend.trend.prefactor == pytest.approx(1.0, rel=0.01)


def test_fit_power_law_errors_and_exact_values():
    x = np.geomspace(1e-4, 1e-1, 7)
    fit = fit_power_law(x, 3 * x**-0.5)
    assert fit.slope == pytest.approx(-0.5) and fit.prefactor == pytest.approx(3)
    assert fit.slope_se < 1e-10 and fit.r2 == pytest.approx(1)
    rng = np.random.default_rng(0)
    noisy = fit_power_law(x, 3 * x**-0.5 * np.exp(0.05 * rng.standard_normal(7)))
    assert 0 < noisy.slope_se < 0.05 and abs(noisy.slope + 0.5) < 4 * noisy.slope_se
    with pytest.raises(InputError, match="at least 3"):
        fit_power_law([1, 2], [1, 2])
    with pytest.raises(InputError, match="distinct"):
        fit_power_law([1, 1, 1], [1, 2, 3])
    with pytest.raises(InputError):
        fit_power_law([1, 2, 3], [1, 2])


def test_temperature_from_measured_noise():
    base = synthetic_run("fixed-elr", n_logs=12, rng=3)
    ds = _with_noise_trend(base, 0.5, 0.3, lambda d: d["elr"])
    T = measured_temperature(ds)
    T0 = measured_temperature(base)
    # T = elr sigma2 / 2 with each member's own sigma2: scales with the imposed noise trend
    ratio = (T / T0).transpose("elr", "wd", "seed")
    expected = (0.5 * ds["elr"] ** 0.3).broadcast_like(ratio).transpose("elr", "wd", "seed")
    np.testing.assert_allclose(ratio.values, expected.values, rtol=0.02)
    unit = unit_noise_temperature(ds.thermo.protocol, ds.thermo.stationary())
    np.testing.assert_allclose(unit.values, (ds["elr"] / 2).broadcast_like(unit).values)
    name, x = trend_variable(ds.thermo.protocol, {"elr": np.array([0.1]), "wd": np.array([0.5])})
    assert name == "elr" and x[0] == pytest.approx(0.1)


def test_noise_trend_check_pass_fail_and_registry():
    assert "noise-trend" in OPTIONAL_CHECKS
    assert isinstance(get_check("noise-trend"), NoiseTrendCheck)
    assert get_check("noise-trend", tolerance=0.2).tolerance == 0.2
    ds = synthetic_run("fixed-lr", n_logs=12, rng=4)
    assert "noise-trend" not in [c.name for c in default_checks(ds)]  # opt-in, not a default
    ok = NoiseTrendCheck().run(ds)
    assert ok.verdict == "pass" and ok.numbers["abs_slope"] <= 0.05 and ok.evidence == "theory"
    assert ok.key == "abs_slope" and 0 < ok.key_se < 0.05 / 3
    trended = _with_noise_trend(ds, 1.0, 0.2, lambda d: d["lr"] * d["wd"])
    bad = run_checks(trended, [get_check("noise-trend")])[0]
    assert bad.verdict == "fail"
    assert bad.numbers["slope"] == pytest.approx(0.2, abs=0.01)
    assert "lr*wd" in bad.summary
    assert NoiseTrendCheck(tolerance=0.5).run(trended).verdict == "pass"
    payload = json.loads(json.dumps(bad.to_dict(), allow_nan=False))
    assert payload["name"] == "noise-trend" and payload["context"]["variable"] == "lr*wd"
    assert isinstance(bad.plot(), Figure)
    assert isinstance(noise_trend(trended).plot(), Figure)


def test_noise_trend_check_skips_without_a_sweep():
    ds = synthetic_run("fixed-elr", grid={"elr": [0.01], "wd": [0.01, 0.02]}, n_logs=8, seeds=1)
    result = NoiseTrendCheck().run(ds)
    assert result.verdict == "skip" and "at least" in result.summary


@pytest.mark.parametrize("protocol, beta", [("fixed-lr", -0.3), ("fixed-elr", -0.5)])
def test_adiabat_with_the_noise_trend_follows_a_varying_noise_level(protocol, beta):
    """States generated from the exact theory with sigma2 ∝ x**beta at each grid point: the
    constant-noise adiabat is off, the one with the measured trend is right."""
    variable = {"fixed-lr": lambda hp: hp["lr"] * hp["wd"], "fixed-elr": lambda hp: hp["elr"]}[protocol]
    ds = synthetic_run(protocol, sigma=lambda hp: np.sqrt(0.5 * (variable(hp) / 1e-3) ** beta), n_logs=12, rng=3,
                       dim=5, noise=1e-3, entropy_noise=1e-3)
    assert float(ds["sigma2"].max() / ds["sigma2"].min()) > 2
    plain = get_check("adiabat").run(ds)
    trend = get_check("adiabat-noise-trend").run(ds)
    assert trend.passed and trend.numbers["slope_ratio_mean"] < 0.05, trend.summary
    assert not plain.passed and plain.numbers["slope_ratio_mean"] > 3 * trend.numbers["slope_ratio_mean"]
    exponents = trend.context["noise_trend_exponents"]
    if protocol == "fixed-lr":
        assert exponents == pytest.approx([beta, beta], abs=0.01)
    assert "noise trend sigma2" in trend.summary
    assert "adiabat-noise-trend" in OPTIONAL_CHECKS


def test_adiabat_with_the_noise_trend_equals_the_plain_one_for_constant_noise():
    ds = synthetic_run("fixed-lr", n_logs=12, rng=4)
    plain, trend = get_check("adiabat").run(ds), get_check("adiabat-noise-trend").run(ds)
    # states from the exact theory: both checks must pass, not merely agree (both failing
    # would agree too)
    assert plain.verdict == "pass" and plain.passed, plain.summary
    assert trend.verdict == "pass" and trend.passed, trend.summary
    assert plain.numbers["slope_ratio_mean"] < 0.005
    # With constant noise the fitted trend is only the logged noise (0.4 %), so the two
    # checks' numbers agree closely. Measured over rng 4..9: |trend - plain| of
    # slope_ratio_mean <= 1.0e-4, of slope_ratio_max <= 3.0e-4, of angle_deg_mean <= 6e-3
    # (slope_ratio_mean itself 0.0008..0.0018, its s.e. ~1.5e-3); tolerances ~3x those.
    assert trend.numbers["slope_ratio_mean"] == pytest.approx(plain.numbers["slope_ratio_mean"], abs=3e-4)
    assert trend.numbers["slope_ratio_max"] == pytest.approx(plain.numbers["slope_ratio_max"], abs=1e-3)
    assert trend.numbers["angle_deg_mean"] == pytest.approx(plain.numbers["angle_deg_mean"], abs=0.02)
    for key in ("spread_ratio", "r2", "heat_capacity_mean"):
        assert trend.numbers[key] == pytest.approx(plain.numbers[key], rel=1e-9), key
