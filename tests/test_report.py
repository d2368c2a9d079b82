"""Tests for thermonet.report and the ``check`` / ``report`` subcommands.

The CLI is driven in-process through thermonet.cli.main (the same entry point as the
console script), with its real command registry.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import xarray as xr

from thermonet import cli
from thermonet.store.synthetic import synthetic_run
from thermonet.reports.report import check_table, write_report


def _write(ds: xr.Dataset, path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), mode="w")
    return str(path)


def test_check_and_report_are_in_the_real_registry():
    """The CLI is tested unpatched: both commands must be registered."""
    assert cli.COMMANDS["check"][0] == "check" and cli.COMMANDS["report"][0] == "report"
    assert {"check", "report"} <= set(cli.COMMAND_MODULES)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    good = synthetic_run("fixed-lr", grid={"lr": np.geomspace(1e-3, 1e-1, 4), "wd": np.geomspace(1e-3, 1e-1, 4)},
                         n_logs=16, rng=5)
    bad = good.copy(deep=True)
    bad["rho"] = bad["rho"] * 1.2
    partial = synthetic_run("fixed-elr", grid={"elr": np.geomspace(1e-3, 1e-1, 4), "wd": np.geomspace(1e-3, 1e-1, 4)},
                            n_logs=16, steps_done=1200, rng=6)
    plain = root / "plain"
    plain.mkdir()
    return {
        "good": _write(good, root / "good.zarr"),
        "bad": _write(bad, root / "bad.zarr"),
        "partial": _write(partial, root / "partial.zarr"),
        "plain": str(plain),
        "missing": str(root / "missing.zarr"),
        "dataset": good,
    }


def _assert_one_line_error(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("thermonet: error:")
    assert "Traceback" not in err


# ---------------------------------------------------------------------- thermonet check
def test_check_passes_and_writes_json(stores, tmp_path, capsys):
    out = tmp_path / "result.json"
    code = cli.main(["check", stores["good"], "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    # the Maxwell relation holds by the rescaling symmetry: an identity, not counted as evidence
    assert re.search(r"^maxwell\s+identity\s+relation_max\s+\S+ ± \S+\s+0\.1\s+pass$", captured.out, re.M)
    assert re.search(r"^vmf-energy\s+theory\s+max_rel_error\s+\S+ ± \S+\s+0\.02\s+pass$", captured.out, re.M)
    assert "7 passed, 0 failed, 0 inconclusive, 0 skipped" in captured.out
    assert "evidence: 6 of 6 decided theory checks passed (identities are not counted)" in captured.out
    payload = json.loads(out.read_text())
    assert payload["passed"] is True
    assert payload["protocol"] == "fixed-lr" and payload["kind"] == "isotropic" and payload["window"] == 0.5
    names = [c["name"] for c in payload["checks"]]
    assert names == ["vmf-energy", "vmf-entropy", "stationary-radius", "potential-minimum", "maxwell", "adiabat",
                     "thermodynamic-temperature"]
    for c in payload["checks"]:
        assert c["verdict"] == "pass"
        assert c["evidence"] == ("identity" if c["name"] == "maxwell" else "theory") and c["evidence_reason"]
        assert c["key_se"] >= 0 and c["z"] == 3
        assert c["key_value"] <= c["tolerance"]
        assert set(c) >= {"numbers", "summary", "tolerance", "description", "context"}


def test_check_json_to_stdout(stores, capsys):
    assert cli.main(["check", stores["good"], "--json", "-", "--window", "8"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["window"] == 8
    assert payload["checks"][0]["context"]["window_logs"] == 8


def test_check_fails_with_exit_1(stores, capsys):
    code = cli.main(["check", stores["bad"]])
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"^stationary-radius\s+(theory|identity)\s+\S+\s+\S+( ± \S+)?\s+0\.05\s+fail$", out, re.M)
    assert "stationary-radius [fail]: radius vs theory prediction" in out


def test_check_tolerance_override(stores, capsys):
    assert cli.main(["check", stores["bad"], "--tolerance", "stationary-radius=0.5",
                     "--tolerance", "vmf-energy=1", "--tolerance", "vmf-entropy=1",
                     "--tolerance", "potential-minimum=1", "--tolerance", "maxwell=1", "--tolerance", "adiabat=1",
                     "--tolerance", "thermodynamic-temperature=1"]) == 0
    capsys.readouterr()


def test_check_partial_run_warns(stores, capsys):
    code = cli.main(["check", stores["partial"]])
    captured = capsys.readouterr()
    # the finished part (12 of 16 logs) of an exact-theory store with a fixed rng: the
    # checks are decided on it and pass, so the warning comes with exit 0, not a failure
    assert code == 0, captured.out + captured.err
    assert "7 passed, 0 failed, 0 inconclusive, 0 skipped" in captured.out
    assert "thermonet: warning:" in captured.err and "partial run" in captured.err
    assert "1200 of 1600 steps done" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "{missing}"], "does not exist"),
        (["check", "{plain}"], "not a Zarr store"),
        (["check", "{good}", "--window", "1.5"], "window"),
        (["check", "{good}", "--window", "0"], "window"),
        (["check", "{good}", "--window", "1000"], "logs are finished"),
        (["check", "{good}", "--tolerance", "maxwell"], "CHECK=VALUE"),
        (["check", "{good}", "--tolerance", "nonsense=1"], "unknown check"),
        (["check", "{good}", "--tolerance", "maxwell=-1"], ">= 0"),
        (["check", "{good}", "--json", "{good}/zarr.json/x.json"], "is a file, so it cannot hold a folder"),
        (["check", "{good}", "--json", "{plain}"], "is a folder, not a file"),
        (["check", "{good}", "--json", "{plain}/" + "x" * 300 + ".json"], "is too long"),
        (["check", "{plain}/" + "x" * 5000], "the path is too long"),
        (["report", "{good}", "--out", "{good}/zarr.json/sub"], "cannot hold a folder"),
        (["report", "{missing}", "--out", "{plain}/rep"], "does not exist"),
        (["report", "{good}", "--out", "{good}/zarr.json"], "is a file, not a folder"),
        (["report", "{good}", "--out", "{plain}/rep", "--window", "abc"], "window"),
    ],
)
def test_bad_input_exit_2(stores, capsys, argv, message):
    argv = [a.format(**stores) for a in argv]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    _assert_one_line_error(err)
    assert message in err


def test_check_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["check", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit status" in out and "0  no check failed" in out and "1  at least one check failed" in out
    assert "2  bad input" in out and "inconclusive" in out


# ---------------------------------------------------------------------- thermonet report
def test_report_command_writes_page_and_figures(stores, tmp_path, capsys):
    out = tmp_path / "report"
    code = cli.main(["report", stores["good"], stores["partial"], "--out", str(out), "--dpi", "40"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out
    page = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert len(images) >= 12
    for name in images:
        assert (out / name).is_file() and (out / name).stat().st_size > 1000
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stems = {re.sub(r"^\d+-[^_]+_", "", n) for n in images}
    for stem in ("a_energy_entropy.png", "b_radius.png", "c_entropy_vs_wd.png", "d_entropy_vs_lr.png",
                 "e_potential_maps.png", "f_maxwell.png", "g_adiabat.png"):
        assert stem in stems
    assert "| check | evidence | key figure | value ± s.e. | tolerance | verdict | summary |" in page
    assert page.count("## ") == 2
    assert "partial run" in captured.err


def test_write_report_from_datasets(stores, tmp_path):
    fail = stores["dataset"].copy(deep=True)
    fail["loss"] = fail["loss"] * 1.5
    page, results = write_report([stores["dataset"], fail], tmp_path / "r", dpi=40, labels=["good", "wrong energy"])
    text = page.read_text()
    assert "## good" in text and "## wrong energy" in text
    assert any(r.name == "vmf-energy" and r.verdict == "fail" for r in results[1])
    assert all(r.verdict == "pass" for r in results[0])
    assert "**fail**" in text


def test_check_table_plain(stores):
    from thermonet.checks import run_checks

    table = check_table(run_checks(stores["dataset"]), markdown=False)
    lines = table.splitlines()
    assert lines[0].split() == ["check", "evidence", "key", "figure", "value", "±", "s.e.", "tolerance", "verdict"]
    assert len(lines) == 8
