"""Tests of ``thermonet simulate``: bad input (exit 2, one line), streaming, kill + resume.

The kill test starts a real ``python -m thermonet simulate`` process, waits until the
store says ``steps_done > 0``, reads the store while the run goes, SIGKILLs the process,
resumes it with ``--resume`` and compares every variable with an uninterrupted run of the
same settings: the counter-based random numbers make them identical, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from thermonet.cli import main
from thermonet.runs.isotropic import simulate

GOOD = ["simulate", "isotropic", "--protocol", "fixed-lr", "--dim", "3", "--lr", "0.01", "--wd", "0.01",
        "--steps", "5000", "--queue-size", "50", "--queue-every", "20", "--quiet"]


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _replace(argv, flag, value):
    argv = list(argv)
    if value is None:
        i = argv.index(flag)
        del argv[i:i + 2]
    elif flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


@pytest.fixture
def finished_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "done.zarr"
    assert main([*GOOD, "--out", str(out)]) == 0
    return out


def _bad_cases(tmp_path, finished_store):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a store")
    out = str(tmp_path / "new.zarr")
    base = [*GOOD, "--out", out]
    cases = {
        "unknown model": ["simulate", "mlp", *base[2:]],
        "unknown protocol": _replace(base, "--protocol", "fixed-temperature"),
        "wd <= 0 fixed-lr": _replace(base, "--wd", "0"),
        "wd <= 0 fixed-elr": _replace(_replace(_replace(base, "--protocol", "fixed-elr"), "--lr", None),
                                      "--wd", "-0.1") + ["--elr", "0.02"],
        "dim < 2": _replace(base, "--dim", "1"),
        "empty grid": _replace(base, "--lr", ""),
        "bad grid": _replace(base, "--lr", "1e-3:1e-1"),
        "unused hp": base + ["--elr", "0.1"],
        "missing hp": _replace(base, "--wd", None),
        "too few steps": _replace(base, "--steps", "999"),
        "bad steps": _replace(base, "--steps", "lots"),
        "bad seed": base + ["--seed", "a,b"],
        "no protocol": _replace(base, "--protocol", None),
        "no out": list(GOOD),
        "out exists": [*GOOD, "--out", str(finished_store)],
        "resume foreign": [*GOOD, "--out", str(foreign), "--resume"],
        "overwrite foreign": [*GOOD, "--out", str(foreign), "--overwrite"],
        "resume differs": [*GOOD, "--out", str(finished_store), "--resume", "--steps", "6000"],
        "bad method": base + ["--entropy-method", "knn"],
        "bad sigma": base + ["--sigma", "0"],
    }
    if not torch.cuda.is_available():
        cases["cuda without CUDA"] = base + ["--device", "cuda"]
    return cases


def test_bad_input_exits_2_with_one_line(tmp_path, finished_store, capsys):
    for name, argv in _bad_cases(tmp_path, finished_store).items():
        code, out, err = _run(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (name, code, err)
        assert len(lines) == 1 and lines[0].startswith("thermonet: error: "), (name, err)
        assert "Traceback" not in err, name
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "not a store"
    assert not (tmp_path / "new.zarr").exists()


def test_bad_input_real_process(tmp_path):
    """The same path through a real interpreter: status 2, one line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "thermonet", "simulate", "isotropic", "--protocol", "fixed-lr",
                           "--dim", "3", "--lr", "0.01", "--wd", "0", "--out", str(tmp_path / "x.zarr")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "wd" in proc.stderr
    assert "Traceback" not in proc.stderr


def _attrs(path: Path) -> dict:
    try:
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return {}


SETTINGS = dict(protocol="fixed-lr", dim=3, grid={"lr": [0.01, 0.02], "wd": [0.01, 0.03]}, seeds=[0, 1],
                steps=1_500_000, queue_size=100, queue_every=50, log_every=1500)


def _cli_args(out: Path) -> list[str]:
    return ["simulate", "isotropic", "--protocol", "fixed-lr", "--dim", "3", "--lr", "0.01,0.02",
            "--wd", "0.01,0.03", "--seed", "0,1", "--steps", "1500000", "--queue-size", "100", "--queue-every",
            "50", "--log-every", "1500", "--flush-seconds", "0.1", "--quiet", "--out", str(out)]


def test_streaming_kill_and_resume_equals_uninterrupted(tmp_path):
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "thermonet", *_cli_args(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if _attrs(out).get("steps_done", 0) > 0:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()}"
        # streaming: the store is readable while the run goes, valid up to steps_done
        live = xr.open_zarr(out)
        done = live.attrs["steps_done"]
        assert 0 < done < SETTINGS["steps"] and live.attrs["complete"] is False
        assert bool(np.isfinite(live.rho.sel(step=slice(None, done))).all())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed = _attrs(out)
    assert killed["complete"] is False and killed["steps_done"] < SETTINGS["steps"]
    later = xr.open_zarr(out).sel(step=slice(killed["steps_done"] + 1, None))
    assert later.sizes["step"] > 0  # there is something left to resume

    # resume: settings come from the store
    res = subprocess.run([sys.executable, "-m", "thermonet", "simulate", "isotropic", "--resume", "--quiet",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    resumed = xr.open_zarr(out).load()
    assert resumed.attrs["complete"] is True and resumed.attrs["steps_done"] == SETTINGS["steps"]
    assert len(resumed.attrs["resumed_at"]) == 1
    reference = xr.open_zarr(simulate(out=tmp_path / "reference.zarr", **SETTINGS)).load()
    assert set(resumed.data_vars) == set(reference.data_vars)
    xr.testing.assert_identical(resumed.drop_attrs(), reference.drop_attrs())
