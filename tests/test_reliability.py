"""Reliability (issue 16): every failure is one line on stderr and exit status 2, decided
before any work; damaged stores are named; a store is never counted twice; diverged members
are named. The store's single-writer lock and atomic creation are tested in
tests/test_store_lock.py and tests/test_schema.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from thermonet import cli

V1 = Path(__file__).resolve().parent / "data" / "v1"


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("thermonet: warning")]
    assert len(lines) == 1, err
    assert lines[0].startswith("thermonet: error:") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A small finished isotropic run written by today's writer (every chunk on disk)."""
    from thermonet.runs import simulate

    return simulate(protocol="fixed-lr", dim=3, grid={"lr": [0.01, 0.02, 0.03], "wd": [0.01, 0.02]}, seeds=[0],
                    steps=6000, log_every=100, queue_size=20, queue_every=50, entropy_every=2000,
                    out=tmp_path_factory.mktemp("rel") / "run.zarr")


@pytest.fixture
def damaged(store, tmp_path):
    def make(how: str) -> Path:
        copy = tmp_path / f"{how}.zarr"
        shutil.copytree(store, copy)
        if how == "corrupt-rho":
            chunk = sorted((copy / "rho" / "c").rglob("*"))[-1]
            chunk.write_bytes(np.random.default_rng(0).bytes(120))
        elif how == "corrupt-snapshot":
            chunk = sorted(p for p in (copy / "loss_snapshot" / "c").rglob("*") if p.is_file())[0]
            chunk.write_bytes(np.random.default_rng(1).bytes(120))
        elif how == "no-rho":
            shutil.rmtree(copy / "rho")
        elif how == "no-loss-chunk":
            next(p for p in (copy / "loss" / "c").rglob("*") if p.is_file()).unlink()
        return copy
    return make


# ---------------------------------------------------------------------- paths, before any work
def _simulate(out: str) -> list[str]:
    return ["simulate", "isotropic", "--protocol", "fixed-lr", "--lr", "0.01", "--wd", "0.01", "--steps", "1000",
            "--queue-size", "10", "--quiet", "--out", out]


@pytest.mark.parametrize(("make_out", "message"), [
    (lambda d: str(d / "FILE" / "x.zarr"), "is a file, so it cannot hold a folder"),
    (lambda d: str(d / ("a" * 300 + ".zarr")), "is too long"),
    (lambda d: str(d) + "/" + "/".join(["c" * 200] * 25), "the path is too long"),
])
def test_unwritable_out_is_refused_before_any_work(tmp_path, capsys, make_out, message):
    (tmp_path / "FILE").write_text("x")
    assert cli.main(_simulate(make_out(tmp_path))) == 2
    assert message in _one_line(capsys.readouterr().err)
    assert not any(tmp_path.glob("**/*.zarr"))


def test_read_only_folder_is_refused(tmp_path, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path else real(p, mode, **kw))
    assert cli.main(_simulate(str(tmp_path / "x.zarr"))) == 2
    assert "cannot write in" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv", [
    ["report", "{run}", "--out", "{file}/sub"],
    ["temperature", "{run}", "--plot", "{file}/t.png"],
    ["fit-eos", "{run}", "--plot", "{file}/t.png"],
    ["fit-eos", "{run}", "--json", "{file}/t.json"],
    ["check", "{run}", "--json", "{file}/c.json"],
])
def test_readers_refuse_unwritable_outputs(tmp_path, capsys, argv):
    file = tmp_path / "FILE"
    file.write_text("x")
    argv = [a.format(run=V1 / "iso-fixed-lr.zarr", file=file) for a in argv]
    assert cli.main(argv) == 2
    assert "cannot hold a folder" in _one_line(capsys.readouterr().err)


def test_an_os_error_during_a_command_is_one_line(monkeypatch, capsys, store, tmp_path):
    """The safety net: an OSError nobody checked for (disk full) is exit 2, not a traceback."""
    import thermonet.reports.report as report

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "r" / "report.md"))

    monkeypatch.setattr(report, "write_report", full)
    assert cli.main(["report", str(store), "--out", str(tmp_path / "r")]) == 2
    assert "No space left on device" in _one_line(capsys.readouterr().err)


# ---------------------------------------------------------------------- sizes, before any allocation
def test_huge_isotropic_dimension_is_refused_at_once(tmp_path, capsys):
    import time

    start = time.perf_counter()
    assert cli.main(_simulate(str(tmp_path / "x.zarr"))[:-2] + ["--dim", "1000000000000", "--out",
                                                                  str(tmp_path / "x.zarr")]) == 2
    assert "GiB" in _one_line(capsys.readouterr().err)
    assert time.perf_counter() - start < 10


def test_huge_network_is_refused_before_it_is_built(tmp_path, capsys, monkeypatch):
    """The estimate comes from a model on torch's meta device: building the real model would
    try to allocate terabytes."""
    import thermonet.models as models

    built = []
    real = models.build_model

    def watch(name, **kwargs):
        built.append(str(kwargs.get("device", "cpu")))
        return real(name, **kwargs)

    monkeypatch.setattr(models, "build_model", watch)
    argv = ["train", "--model", "mlp-si", "--width", "100000", "--protocol", "fixed-lr", "--lr", "0.1", "--wd",
            "0.01", "--steps", "20", "--queue-size", "5", "--dataset", "mnist1d:num_samples=300", "--out",
            str(tmp_path / "w.zarr")]
    assert cli.main(argv) == 2
    assert "TiB" in _one_line(capsys.readouterr().err)
    assert built == ["meta"]  # never on the CPU


# ---------------------------------------------------------------------- damaged stores
@pytest.mark.parametrize(("how", "message"), [
    ("corrupt-rho", "damaged: variable rho, chunk c/"),
    ("no-rho", "damaged: variable rho: its folder or metadata is missing"),
    ("no-loss-chunk", "damaged: variable loss, chunk c/"),
])
@pytest.mark.parametrize("command", [["check"], ["report", "--out", "{tmp}/r"], ["fit-eos"],
                                     ["temperature", "--at", "wd=0.01"]])
def test_damaged_store_is_named_by_every_reader(damaged, tmp_path, capsys, how, message, command):
    path = damaged(how)
    argv = [command[0], str(path), *[a.format(tmp=tmp_path) for a in command[1:]]]
    assert cli.main(argv) == 2  # never 1: exit 1 means only "a check failed"
    assert message in _one_line(capsys.readouterr().err)


def test_check_verify_decodes_what_check_does_not_use(damaged, capsys):
    path = damaged("corrupt-snapshot")
    sound = cli.main(["check", str(damaged("none"))])
    assert sound in (0, 1)  # the short run's own verdicts; what matters is that the damage does not change it
    assert cli.main(["check", str(path)]) == sound  # loss_snapshot is not used by any check
    capsys.readouterr()
    assert cli.main(["check", str(path), "--verify"]) == 2
    assert "damaged: variable loss_snapshot, chunk c/" in _one_line(capsys.readouterr().err)


def test_a_sound_store_verifies_and_old_stores_still_open(store):
    from thermonet.store.verify import verify_run

    verify_run(store, read=True)
    for name in ("iso-fixed-lr.zarr", "iso-fixed-sphere.zarr", "net-fixed-lr.zarr"):
        verify_run(V1 / name, read=True)  # written before chunks_complete: presence is not required


# ---------------------------------------------------------------------- smaller items
def test_fit_eos_counts_a_store_given_twice_once(store, capsys):
    run = str(store)
    assert cli.main(["fit-eos", run, "--json", "-"]) == 0
    once = json.loads(capsys.readouterr().out)
    assert cli.main(["fit-eos", run, run + "/", "--json", "-"]) == 0
    captured = capsys.readouterr()
    twice = json.loads(captured.out)
    assert "is the same store as" in captured.err and "counted once" in captured.err
    assert len(twice["runs"]) == 1
    assert twice == once


def test_check_and_report_name_diverged_members(tmp_path, capsys):
    from thermonet.runs import train

    path = train(out=tmp_path / "div.zarr", model="mlp-si", width=1, dataset="mnist1d:num_samples=300",
                 protocol="fixed-lr", grid={"lr": [0.1, 1e37], "wd": [0.01]}, seeds=[0], steps=40, batch_size=16,
                 grad_samples=2, log_every=10, queue_size=5, threads=1)
    # exit 1: group-equipartition is a decided fail on the one surviving member (max |ln T_g/T_bar|
    # 0.44 +/- 0.02 against 0.1: its layers run at different temperatures); exit 2 would mean
    # the diverged member broke the reader
    assert cli.main(["check", str(path), "--json", str(tmp_path / "c.json")]) == 1
    out = capsys.readouterr().out
    assert "1 member(s) diverged and were frozen (left out of the checks): lr=1e+37, wd=0.01, seed=0 at step" in out
    diverged = json.loads((tmp_path / "c.json").read_text())["diverged"]
    assert len(diverged) == 1 and diverged[0]["lr"] == 1e37 and 1 <= diverged[0]["step"] <= 40
    assert cli.main(["report", str(path), "--out", str(tmp_path / "r")]) == 0
    assert "| diverged members | 1 member(s) diverged" in (tmp_path / "r" / "report.md").read_text()
