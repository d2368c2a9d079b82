"""The run-store schema: declared once (thermonet.store.schema), documented, readable across
versions, and created atomically.

tests/data/v1/ holds three tiny stores written by thermonet 0.1.0 (schema version 1, before
the store was a package) and the stationary states 0.1.0 computed from them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import thermonet
from thermonet.errors import StoreError
from thermonet.store.schema import SCHEMA_VERSION, VARIABLES, check_dataset, variables_for
from thermonet.theory.protocols import get_protocol

ROOT = Path(__file__).resolve().parents[1]
V1 = ROOT / "tests" / "data" / "v1"


def _open(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return thermonet.open_run(path)


@pytest.mark.parametrize("name", ["iso-fixed-lr.zarr", "iso-fixed-sphere.zarr", "net-fixed-lr.zarr"])
def test_version_1_stores_open_and_give_the_same_states(name):
    expected = json.loads((V1 / "expected_stationary.json").read_text())[name]
    ds = _open(V1 / name)
    assert "schema_version" not in ds.attrs  # written before versions were recorded
    states = ds.thermo.stationary(0.5)
    for key, values in expected.items():
        np.testing.assert_allclose(np.asarray(states[key].values, float).ravel(), values, rtol=1e-12, equal_nan=True,
                                   err_msg=key)


def test_version_1_stores_pass_through_check_and_report(tmp_path):
    from thermonet.cli import main

    code = main(["check", str(V1 / "iso-fixed-lr.zarr"), "--json", str(tmp_path / "c.json")])
    payload = json.loads((tmp_path / "c.json").read_text())
    assert [c["name"] for c in payload["checks"]][:2] == ["vmf-energy", "vmf-entropy"]
    assert code == (1 if any(c["verdict"] == "fail" for c in payload["checks"]) else 0)
    assert main(["report", str(V1 / "net-fixed-lr.zarr"), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.md").is_file()


def test_the_same_command_writes_the_same_numbers_as_thermonet_0_1(tmp_path):
    """The counter-based RNG makes a run a pure function of its settings: today's simulator
    reproduces the 0.1 store bit for bit. Schema 3 renamed one variable: 0.1's ``loss`` was
    the loss at the log step, now ``loss_snapshot``; ``loss`` is the interval's time average
    (a new number, checked against the snapshots' mean)."""
    from thermonet.runs import simulate

    old = xr.open_zarr(V1 / "iso-fixed-lr.zarr")
    attrs = old.attrs
    new_path = simulate(protocol="fixed-lr", dim=3, grid={"lr": old.lr.values, "wd": old.wd.values},
                        seeds=attrs["seeds"], steps=attrs["steps"], queue_size=attrs["queue_size"],
                        queue_every=attrs["queue_every"], log_every=attrs["log_every"], out=tmp_path / "new.zarr")
    new = xr.open_zarr(new_path)
    assert new.attrs["schema_version"] == SCHEMA_VERSION
    assert set(new.data_vars) == set(old.data_vars) | {"loss_snapshot", "entropy_se"}  # entropy_se: added since
    for name in old.data_vars:
        np.testing.assert_allclose(new["loss_snapshot" if name == "loss" else name].values, old[name].values,
                                   rtol=1e-12, atol=0, equal_nan=True, err_msg=name)
    # the time average and the snapshots estimate the same mean energy
    late = dict(step=slice(new.sizes["step"] // 2, None))
    average, snapshot = float(new["loss"].isel(late).mean()), float(new["loss_snapshot"].isel(late).mean())
    assert average == pytest.approx(snapshot, rel=0.3)
    assert not np.allclose(new["loss"].values, new["loss_snapshot"].values)


def test_a_store_from_a_newer_thermonet_is_refused_with_its_version(tmp_path):
    from thermonet.store.synthetic import synthetic_run

    ds = synthetic_run("fixed-lr")
    ds.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}; this thermonet reads versions up "
                                         rf"to {SCHEMA_VERSION}: upgrade thermonet"):
        check_dataset(ds)


def test_every_schema_variable_is_documented():
    text = (ROOT / "docs" / "data-layout.md").read_text()
    for variable in VARIABLES:
        assert f"`{variable.name}`" in text, variable.name


def test_the_protocol_adds_its_measured_pressure_and_the_kind_its_variables():
    sphere, lr = get_protocol("fixed-sphere"), get_protocol("fixed-lr")
    names = lambda kind, p: [v.name for v in variables_for(kind, p)]  # noqa: E731
    assert names("isotropic", lr) == ["loss", "loss_snapshot", "rho", "grad_norm_sq", "sigma2", "trace_sigma",
                                      "grad_full_sq", "entropy_sphere", "entropy", "entropy_se"]
    assert "loss_full" in names("network", lr) and "loss_snapshot" not in names("network", lr)
    assert "lambda_eff" in names("isotropic", sphere) and "lambda_eff" not in names("isotropic", lr)
    assert {"train_accuracy", "diverged_at"} <= set(names("network", lr))
    required = [v.name for v in variables_for("isotropic", sphere) if v.required]
    assert required == ["loss", "rho", "sigma2", "lambda_eff"]


_KILL_SCRIPT = """
import os, sys
from thermonet.runs import simulate

def hook(stage):
    if stage == sys.argv[2]:
        os._exit(17)  # dies here, as kill -9 would

simulate(protocol="fixed-lr", dim=3, grid={"lr": [0.02], "wd": [0.02]}, seeds=[0], steps=400, queue_size=10,
         queue_every=10, log_every=50, out=sys.argv[1], creation_hook=hook)
"""


@pytest.mark.parametrize("stage", ["arrays", "renamed"])
def test_a_run_killed_while_creating_its_store_leaves_nothing_or_a_resumable_store(tmp_path, stage):
    from thermonet.runs import simulate

    out = tmp_path / "run.zarr"
    done = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(out), stage], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 17, done.stderr
    run = dict(protocol="fixed-lr", dim=3, grid={"lr": [0.02], "wd": [0.02]}, seeds=[0], steps=400, queue_size=10,
               queue_every=10, log_every=50)
    if stage == "arrays":  # before the rename: no store at all, only a temporary folder
        assert not out.exists()
        leftovers = list(tmp_path.glob(".run.zarr.creating-*"))
        assert len(leftovers) == 1
        simulate(out=out, **run)  # a plain run works and clears the dead process's folder
        assert not any(tmp_path.glob(".run.zarr.creating-*"))
    else:  # after the rename: a valid, empty store that --resume completes
        with pytest.raises(StoreError, match="already exists; pass --resume"):
            simulate(out=out, **run)
        simulate(out=out, resume=True, **run)
    reference = simulate(out=tmp_path / "ref.zarr", **run)
    a, b = xr.open_zarr(out), xr.open_zarr(reference)
    assert a.attrs["complete"] is True
    for name in ("loss", "rho", "entropy"):
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name


def test_the_temporary_folder_of_a_live_process_is_kept(tmp_path):
    from thermonet.store.writer import _remove_stale_temporaries

    mine = tmp_path / f".x.zarr.creating-{os.getpid()}"
    dead = tmp_path / ".x.zarr.creating-999999999"
    mine.mkdir()
    dead.mkdir()
    _remove_stale_temporaries(tmp_path / "x.zarr")
    assert mine.exists() and not dead.exists()
