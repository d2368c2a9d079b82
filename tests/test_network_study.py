"""The network ideal-gas study (``studies/network_ideal_gas.py``) runs end to end on the
CPU in a shortened quick mode, rewrites its report from the store, and flags unstable
members."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mnist1d")
pytest.importorskip("matplotlib")




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
    assert summary["dim"] > 0 and {c["name"] for c in summary["checks"]} >= {"stationary-radius", "maxwell"}

    (out / "network.md").unlink()
    assert study.main(args + ["--report-only"]) == 0  # no training: the page comes back from the store
    assert "| stationary-radius |" in (out / "network.md").read_text()
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
