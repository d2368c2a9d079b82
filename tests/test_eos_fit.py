"""Tests for thermonet.analysis.eos_fit and ``thermonet fit-eos``.

Synthetic stores (thermonet.store.synthetic) are built from the exact theory; a known
real gas is imposed by moving the stationary radius onto the virial equation of state.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from thermonet import cli
from thermonet.store.synthetic import synthetic_run
from thermonet.analysis.eos_fit import collect_states, fit_equations_of_state, parse_eos_names
from thermonet.errors import InputError
from thermonet.theory.eos import Virial

N_R = 1.0  # D = 3
GRID_ELR = {"elr": np.geomspace(1e-2, 1e-1, 5), "wd": np.geomspace(1e-2, 1e-1, 5)}
B_TRUE = 0.02
SIGMA0_SQ = 1.3


def _virial_store(B: float = B_TRUE, noise: float = 0.002, rng: int = 3) -> xr.Dataset:
    """Fixed ELR (T = elr sigma^2/2 does not depend on rho): put V on the virial gas."""
    ds = synthetic_run("fixed-elr", GRID_ELR, sigma=np.sqrt(SIGMA0_SQ), discrete=False, noise=noise, seeds=2,
                       n_logs=20, rng=rng)
    elr, wd = np.meshgrid(ds["elr"].values, ds["wd"].values, indexing="ij")
    T = elr * SIGMA0_SQ / 2
    V = Virial(dim=3, B=B).volume(T, wd)
    rho_sde = np.sqrt(elr * SIGMA0_SQ * 2 / (2 * wd))  # rho^2 = elr sigma^2 (D-1) / (2 wd)
    factor = np.sqrt(2 * V) / rho_sde
    ds["rho"] = ds["rho"] * xr.DataArray(factor, dims=("elr", "wd"))
    return ds


@pytest.fixture(scope="module")
def virial_comparison():
    return fit_equations_of_state([_virial_store()])


@pytest.fixture(scope="module")
def ideal_ds():
    grid = {"lr": np.geomspace(1e-3, 1e-1, 5), "wd": np.geomspace(1e-3, 1e-1, 5)}
    return synthetic_run("fixed-lr", grid, sigma=np.sqrt(SIGMA0_SQ), discrete=False, noise=0.005, seeds=2,
                         n_logs=20, rng=11)


# ---------------------------------------------------------------------- recovering a known gas
def test_virial_store_recovers_B_and_beats_ideal(virial_comparison):
    fits = virial_comparison.fits
    virial = fits["virial"]
    assert virial.ok and not virial.scale_absorbed
    B, B_se = virial.parameters["B"], virial.uncertainties["B"]
    assert B == pytest.approx(B_TRUE, rel=0.15)
    assert abs(B - B_TRUE) < 4 * B_se
    assert virial.noise_level == pytest.approx(SIGMA0_SQ, rel=0.02)
    # the real gas wins clearly on AIC (and on BIC) and predicts held-out states better
    assert fits["ideal"].aic - virial.aic > 20
    assert virial_comparison.best("aic") != "ideal"
    assert virial.loo_rmse < fits["ideal"].loo_rmse / 2
    # Z of the data is 1 + B/V: far from 1 at small V; the virial curve follows it
    st = virial_comparison.states
    assert st["Z"].max() > 1.1
    z_fit = virial_comparison.z_predicted("virial")
    assert np.max(np.abs(z_fit - st["Z"].values)) < 0.05


def test_ideal_store_ideal_gas_wins_on_bic(ideal_ds):
    comparison = fit_equations_of_state([ideal_ds])
    assert comparison.best("bic") == "ideal"
    ideal = comparison.fits["ideal"]
    assert ideal.k == 1
    assert ideal.noise_level == pytest.approx(SIGMA0_SQ, rel=0.01)
    assert abs(ideal.noise_level - SIGMA0_SQ) < 4 * ideal.noise_level_se
    delta = comparison.delta("bic")
    assert delta["ideal"] == 0 and all(d > 0 for n, d in delta.items() if n != "ideal")
    assert np.all(np.abs(comparison.states["Z"].values - 1) < 0.02)


def test_power_law_scale_is_absorbed(ideal_ds):
    comparison = fit_equations_of_state([ideal_ds], ["ideal", "power-law"], loo=False)
    power = comparison.fits["power-law"]
    assert power.scale_absorbed and np.isnan(power.noise_level)
    assert power.k == 2  # z0 and alpha; sigma0^2 is not a separate parameter
    assert power.parameters["alpha"] == pytest.approx(0, abs=0.01)
    # z0 = sigma0^2 ** (1 + alpha): the scale lives in z0
    assert power.parameters["z0"] == pytest.approx(SIGMA0_SQ, rel=0.03)
    assert np.isfinite(power.uncertainties["z0"]) and power.uncertainties["z0"] > 0


def test_leave_one_out_matches_a_manual_refit(ideal_ds):
    comparison = fit_equations_of_state([ideal_ds], ["virial"])
    fit = comparison.fits["virial"]
    st = comparison.states
    P, V, T = (st[k].values for k in ("P", "V", "T_unit"))
    i = 7
    keep = np.arange(P.size) != i
    sub = Virial(dim=3).fit(P[keep], V[keep], T[keep], temperature_scale=True)
    Vi, Ti = V[i], T[i] * sub.parameters["temperature_scale"]
    p_i = N_R * Ti / Vi * (1 + sub.parameters["B"] / Vi + sub.parameters["C"] / Vi**2)
    assert fit.loo_errors[i] == pytest.approx(np.log(p_i) - np.log(P[i]), abs=1e-6)
    assert np.isfinite(fit.loo_errors).all()
    # out-of-sample errors exceed the in-sample residuals
    assert fit.loo_rmse > np.sqrt(fit.result.rss / fit.result.n_observations)


def test_leave_one_out_flags_an_outlier(ideal_ds):
    ds = ideal_ds.copy(deep=True)
    ds["rho"][2, 3] = ds["rho"][2, 3] * 1.3  # lr index 2, wd index 3, both seeds
    comparison = fit_equations_of_state([ds], ["ideal"])
    st = comparison.states
    worst = int(np.argmax(np.abs(comparison.fits["ideal"].loo_errors)))
    assert st["lr"].values[worst] == pytest.approx(ds["lr"].values[2])
    assert st["wd"].values[worst] == pytest.approx(ds["wd"].values[3])


def test_pooling_two_stores(ideal_ds):
    other = synthetic_run("fixed-lr", {"lr": [2e-3, 2e-2], "wd": [5e-3, 5e-2, 8e-2]}, sigma=np.sqrt(SIGMA0_SQ),
                          discrete=False, noise=0.005, rng=4, n_logs=12)
    states = collect_states([ideal_ds, other], labels=["a", "b"])
    assert states.sizes["state"] == 25 + 6
    assert list(np.unique(states["run"].values)) == ["a", "b"]
    comparison = fit_equations_of_state(states, ["ideal"], loo=False)
    assert comparison.fits["ideal"].noise_level == pytest.approx(SIGMA0_SQ, rel=0.01)
    with pytest.raises(InputError, match="different protocols"):
        collect_states([ideal_ds, synthetic_run("fixed-elr", n_logs=8)])
    with pytest.raises(InputError, match="dimension D"):
        collect_states([ideal_ds, synthetic_run("fixed-lr", dim=4, n_logs=8)])


def test_discrete_correction_removes_the_apparent_real_gas():
    # large steps on the sphere: lambda_eff carries the full-gradient term, Z ~ 1 + G1^2/trSigma
    grid = {"lr": np.geomspace(1e-2, 0.4, 5), "sphere_radius": np.geomspace(1.0, 2.0, 4)}
    ds = synthetic_run("fixed-sphere", grid, noise=0.002, n_logs=16, rng=2)
    raw = fit_equations_of_state([ds], ["ideal", "power-law"], loo=False)
    corrected = fit_equations_of_state([ds], ["ideal", "power-law"], loo=False, discrete_correction=True)
    assert raw.states["Z_measured_T"].max() > 1.1
    assert raw.best("bic") == "power-law"
    assert np.all(np.abs(corrected.states["Z_measured_T"].values - 1) < 0.01)
    assert corrected.best("bic") == "ideal"
    with pytest.raises(InputError, match="grad_full_sq"):
        collect_states([ds.drop_vars("grad_full_sq")], discrete_correction=True)


def test_results_serialise_and_plot(virial_comparison):
    payload = virial_comparison.to_dict()
    text = json.dumps(payload, allow_nan=False)
    back = json.loads(text)
    assert back["fits"]["virial"]["parameters"]["B"] == pytest.approx(virial_comparison.fits["virial"].parameters["B"])
    assert back["best"]["aic"] == virial_comparison.best("aic")
    table = virial_comparison.table()
    assert table.splitlines()[0].split()[:3] == ["eos", "k", "R2"]
    assert "absorbed" in table  # the power law
    fig = virial_comparison.plot()
    assert len([ax for ax in fig.axes if ax.lines]) == 4


def test_parse_eos_names():
    assert parse_eos_names(None) == ["ideal", "virial", "van-der-waals", "power-law"]
    assert parse_eos_names("virial, ideal,virial") == ["virial", "ideal"]
    with pytest.raises(InputError, match="unknown equation of state 'gas'"):
        parse_eos_names("ideal,gas")
    with pytest.raises(InputError):
        parse_eos_names(" , ")


# ---------------------------------------------------------------------- command line
@pytest.fixture()
def fit_eos_cli():
    """The real command line, unpatched: ``fit-eos`` must be in its registry."""
    assert cli.COMMANDS["fit-eos"][0] == "fit_eos" and "fit_eos" in cli.COMMAND_MODULES
    return cli.main


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("eos")
    paths = {}
    for name, ds in (("virial", _virial_store()), ("virial2", _virial_store(rng=5)),
                     ("elr", synthetic_run("fixed-elr", GRID_ELR, n_logs=8, rng=1)),
                     ("lr", synthetic_run("fixed-lr", n_logs=8, rng=1))):
        path = root / f"{name}.zarr"
        ds.to_zarr(path, mode="w", consolidated=False)
        paths[name] = str(path)
    paths["missing"] = str(root / "missing.zarr")
    paths["root"] = root
    return paths


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("thermonet: error:") and "Traceback" not in err
    return lines[0]


def test_cli_fit_eos_table_json_and_plot(fit_eos_cli, stores, capsys):
    plot = stores["root"] / "z.png"
    out = stores["root"] / "fit.json"
    code = fit_eos_cli(["fit-eos", stores["virial"], stores["virial2"], "--eos", "ideal,virial", "--plot", str(plot),
                        "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "50 states (fixed-elr, D=3, 2 run(s)" in captured.out
    assert "one fitted sigma0^2" in captured.out
    rows = {line.split()[0]: line for line in captured.out.splitlines() if line.split()[:1] in (["ideal"], ["virial"])}
    assert set(rows) == {"ideal", "virial"}
    assert plot.stat().st_size > 1000
    payload = json.loads(out.read_text())
    assert payload["states"] == 50 and set(payload["fits"]) == {"ideal", "virial"}
    assert payload["best"]["aic"] == "virial"


def test_cli_json_to_stdout(fit_eos_cli, stores, capsys):
    assert fit_eos_cli(["fit-eos", stores["lr"], "--json", "-", "--no-loo", "--eos", "ideal"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["protocol"] == "fixed-lr" and payload["best"]["bic"] == "ideal"
    assert payload["fits"]["ideal"]["loo_rmse"] is None


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such run store"),
    ("mixed", "different protocols"),
    ("unknown", "unknown equation of state"),
    ("window", "window"),
    ("plot", "is a file, so it cannot hold a folder"),
])
def test_cli_bad_input_exits_2_with_one_line(fit_eos_cli, stores, capsys, case, expected):
    argv = {
        "missing": ["fit-eos", stores["missing"]],
        "mixed": ["fit-eos", stores["lr"], stores["elr"]],
        "unknown": ["fit-eos", stores["lr"], "--eos", "ideal,steam"],
        "window": ["fit-eos", stores["lr"], "--window", "1.5"],
        "plot": ["fit-eos", stores["lr"], "--plot", str(Path(stores["lr"]) / "zarr.json" / "z.png")],
    }[case]
    assert fit_eos_cli(argv) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert expected in line
