"""The network ideal-gas study (``studies/network_ideal_gas.py``) runs end to end on the
CPU in a shortened quick mode, rewrites its report from the store, and flags unstable
members."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("mnist1d")


@pytest.mark.timeout(300)
def test_quick_study_and_report_only(tmp_path, capsys, load_script):
    study = load_script("studies/network_ideal_gas.py")
    out, runs = tmp_path / "report", tmp_path / "runs"
    args = ["--quick", "--steps", "600", "--width", "1", "--out", str(out), "--runs", str(runs)]
    assert study.main(args) == 0
    page = (out / "network.md").read_text()
    assert "| stationary-radius |" in page and "net_a_sigma2_temperature.png" in page
    assert "| noise-trend |" in page and "| adiabat-noise-trend |" in page  # the optional checks a network needs
    assert (out / "report.md").is_file() and (out / "net_e_training_curves.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    names = ["stationary-radius", "potential-minimum", "maxwell", "adiabat", "thermodynamic-temperature",
             "group-radius", "group-equipartition", "noise-trend", "adiabat-noise-trend"]
    assert [c["name"] for c in summary["checks"]] == names  # seven default checks, then the optional two
    table = [line for line in page.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in names]
    assert len(table) == len(names)
    for c in summary["checks"]:
        assert c["verdict"] in ("pass", "fail", "inconclusive") and np.isfinite(c["key_value"]), c["name"]
        assert np.isfinite(c["key_se"]) and c["key_se"] >= 0, c["name"]

    # the numbers of the run (convnet-si at width 1: 129 parameters; 3 x 3 grid x seed 0;
    # 600 steps, 12 logs). Ranges measured over seeds 0..3 of the same quick run (each
    # reproduces itself exactly): sigma2 0.012..0.43, T 1.9e-4..2.0e-3, rho 2.33..8.35,
    # U 2.42..4.68 (above ln 10: not yet trained), rho(lr max, wd min)/rho(lr min, wd max)
    # 2.42..3.57 (the SDE gives (100)**(1/4) = 3.16); seed 0: sigma2 0.037..0.154,
    # T 5.7e-4..1.3e-3, rho 2.34..8.35, U 2.71..3.65, corner ratio 3.57.
    import thermonet

    assert summary["dim"] == 129
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = thermonet.open_run(runs / "network-ideal-gas-quick.zarr")
    assert dict(ds.sizes) == {"lr": 3, "wd": 3, "seed": 1, "step": 12, "entropy_step": 2, "group": 4}
    assert (ds["diverged_at"].values == -1).all()
    st = ds.thermo.stationary(0.5)
    sigma2, T, rho, U = (st[v].transpose("lr", "wd", "seed").values[..., 0] for v in ("sigma2", "T", "rho", "U"))
    lr = ds["lr"].values[:, None]
    assert np.all((0.005 < sigma2) & (sigma2 < 1.0)), sigma2
    np.testing.assert_allclose(T, lr * sigma2 / (2 * rho**2), rtol=1e-12)  # T = eta sigma2 / (2 rho^2)
    assert np.all((5e-5 < T) & (T < 5e-3)), T
    assert np.all((2.0 < rho) & (rho < 10.0)), rho
    assert np.all((2.0 < U) & (U < 5.0)), U
    assert 2.0 < rho[-1, 0] / rho[0, -1] < 4.5, rho  # more radius at large lr and small wd
    assert np.all(np.isfinite(st["S"].values)) and np.all(st["S"].values > st["S_sphere"].values)
    # the unstable-members table lists exactly the members with CV(rho^2) > 0.15 or U > ln 10
    flagged = int(((np.sqrt(st["rho_sq_rel_var"]) > 0.15) | (st["U"] > np.log(10))).sum())
    rows = [line for line in page.splitlines() if line.startswith(("| 0.", "| 1 "))]
    assert flagged == 9 and len(rows) == flagged

    (out / "network.md").unlink()
    assert study.main(args + ["--report-only"]) == 0  # no training: the page comes back from the store
    assert "| stationary-radius |" in (out / "network.md").read_text()
    again = json.loads((out / "summary.json").read_text())
    assert [(c["name"], c["verdict"], c["key_value"], c["key_se"]) for c in again["checks"]] == \
        [(c["name"], c["verdict"], c["key_value"], c["key_se"]) for c in summary["checks"]]
    capsys.readouterr()
    assert study.main(["--quick", "--report-only", "--runs", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no run store" in capsys.readouterr().err


def test_unstable_members_are_listed(load_script):
    from thermonet.store.synthetic import synthetic_run

    study = load_script("studies/network_ideal_gas.py")
    ds = synthetic_run("fixed-lr", n_logs=20, rng=2)
    assert study.unstable_members(ds, 0.5)[0].startswith("Every member is in the stable regime")
    wild = ds.copy(deep=True)
    rho = wild["rho"].values
    rho[0, 0, 0, 10:] *= np.where(np.arange(rho.shape[-1] - 10) % 2, 2.0, 0.5)  # one member's radius jumps
    lines = study.unstable_members(wild, 0.5)
    rows = [line for line in lines if line.startswith("| 0.")]
    assert len(rows) == 1 and lines[0].startswith("Members outside the stable regime")
