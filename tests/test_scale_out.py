"""Sweeps beyond one process (docs/scale-out.md): a grid cut into shards, one chunk each, run
on Dask workers or one after another, into one store that equals the run of one process.

The Dask tests share one LocalCluster of 2 worker processes (one thread each); the test of
``--workers`` starts its own. They skip when Dask is not installed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from thermonet.cli import main
from thermonet.errors import InputError, RunError, StoreError
from thermonet.runs import driver, simulate, train
from thermonet.runs.shards import THREAD_VARIABLES
from thermonet.store.layout import Layout, read_state

pytestmark = pytest.mark.usefixtures("one_thread")

#: 3 x 2 grid x 2 seeds = 12 members; entropy every 200 steps, so 20 flushes at least.
RUN = dict(protocol="fixed-lr", dim=3, grid={"lr": [0.01, 0.02, 0.03], "wd": [0.01, 0.02]}, seeds=[0, 1], steps=4000,
           queue_size=10, queue_every=10, log_every=50)
#: 2 x 2 grid x 2 seeds = 8 tiny networks (as tests/data/v1/net-fixed-lr.zarr).
NET = dict(model="mlp-si", width=1, dataset="teacher:n_train=200,n_test=50,dim=8,classes=3,hidden=8",
           protocol="fixed-lr", grid={"lr": [0.1, 0.2], "wd": [0.01, 0.02]}, seeds=[0, 1], steps=40, queue_size=10,
           queue_every=2, log_every=10, grad_samples=2, batch_size=16)
DIMS = ("lr", "wd", "seed")


# ------------------------------------------------------------------------------ helpers
def assert_same_values(path, reference) -> None:
    """Every variable and coordinate of the two stores is equal, NaN where the other is NaN."""
    a, b = xr.open_zarr(path), xr.open_zarr(reference)
    assert set(a.data_vars) == set(b.data_vars)
    for name in b.data_vars:
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name
    for name in b.coords:
        assert np.array_equal(a[name].values, b[name].values), name
    assert np.isfinite(b["loss"].values).all()  # the comparison is not between two empty stores


def attributes(path) -> dict:
    return json.loads((Path(path) / "zarr.json").read_text())["attributes"]


class Gate:
    """A flush hook: shard ``shard`` waits at the first flush at or after ``step`` (writing its
    process id to ``folder/waiting``) until ``folder/released`` exists."""

    def __init__(self, folder, shard: int, step: int):
        self.folder, self.shard, self.step = str(folder), shard, step

    def __call__(self, step, shard):
        folder = Path(self.folder)
        if shard != self.shard or step < self.step or (folder / "released").exists():
            return
        tmp = folder / f".waiting.{os.getpid()}"
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, folder / "waiting")
        while not (folder / "released").exists():
            time.sleep(0.02)


class Fail:
    """A flush hook: shard ``shard`` raises at the first flush at or after ``step``."""

    def __init__(self, shard: int, step: int):
        self.shard, self.step = shard, step

    def __call__(self, step, shard):
        if shard == self.shard and step >= self.step:
            raise RuntimeError(f"boom at step {step}")


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes with one thread each."""
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hooks travel to the workers
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR, env={v: "1" for v in THREAD_VARIABLES}) as local:
        yield local
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The isotropic run of RUN in one process."""
    return simulate(out=tmp_path_factory.mktemp("ref") / "one.zarr", **RUN)


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """RUN as 2 shards in this process; shard 1 fails at step 2000 (checkpoint there)."""
    out = tmp_path_factory.mktemp("failed") / "run.zarr"
    with pytest.raises(RunError, match=r"^1 of 2 shards failed \(shard 1: RuntimeError: boom at step 2000\); the "
                                       r"store keeps what every shard finished: continue with --resume"):
        simulate(out=out, shards=2, checkpoint_every=1e-6, flush_hook=Fail(shard=1, step=2000), **RUN)
    return out


# ------------------------------------------------------------------------------ the layout
@pytest.mark.parametrize("shape,shards,tile,count", [
    ((17, 17, 1), 1, (17, 17, 1), 1),
    ((17, 17, 1), 2, (9, 17, 1), 2),
    ((17, 17, 1), 17, (1, 17, 1), 17),
    ((17, 17, 1), 34, (1, 9, 1), 34),
    ((17, 17, 1), 16, (2, 9, 1), 18),  # 17 rows cannot make 16 equal blocks: 9 x 2
    ((3, 2, 2), 3, (1, 2, 2), 3),
    ((2, 2, 2), 8, (1, 1, 1), 8),
    ((4, 1, 5), 6, (1, 1, 3), 8),
])
def test_the_grid_is_cut_in_order_into_blocks_that_cover_it_once(shape, shards, tile, count):
    plan = Layout.plan(DIMS, shape, shards)
    assert plan.tile == tile and plan.count == count and plan.count >= shards
    cover = np.zeros(shape, dtype=int)
    for block in plan.blocks():
        assert all(s.start % t == 0 for s, t in zip(block, plan.tile))  # a block is one chunk along the members
        cover[block] += 1
    assert (cover == 1).all()
    assert sum(plan.members(i) for i in range(plan.count)) == int(np.prod(shape))
    chunks = plan.chunks({"lr": shape[0], "wd": shape[1], "seed": shape[2], "step": 1000, "entropy_step": 20},
                         ("lr", "wd", "seed", "step"))
    assert chunks[:3] == tile


def test_no_two_shards_write_the_same_chunk_and_shards_never_write_the_root_attributes(tmp_path, monkeypatch,
                                                                                     reference):
    """Every array write of a shard lies in its own block's chunks (watched at zarr's
    ``Array.__setitem__``); the root attributes are written only outside the shards."""
    import zarr

    current: dict = {}
    writes: list = []
    attribute_writes: list = []
    run_shard, setitem = driver.run_shard, zarr.Array.__setitem__

    def watched_shard(settings, out, index, **kwargs):
        current["shard"] = index
        try:
            return run_shard(settings, out, index, **kwargs)
        finally:
            current.pop("shard")

    def watched_setitem(self, selection, value):
        writes.append((current.get("shard"), self.chunks, self.shape, selection))
        return setitem(self, selection, value)

    def watched_attrs(store, **values):
        attribute_writes.append(current.get("shard"))
        return update_attrs(store, **values)

    from thermonet.store.writer import RunStore

    update_attrs = RunStore.update_attrs
    monkeypatch.setattr(driver, "run_shard", watched_shard)
    monkeypatch.setattr(zarr.Array, "__setitem__", watched_setitem)
    monkeypatch.setattr(RunStore, "update_attrs", watched_attrs)
    out = simulate(out=tmp_path / "s.zarr", shards=3, **RUN)
    plan = Layout.of_store(out, DIMS)
    assert plan.count == 3 and plan.tile == (1, 2, 2)
    chunks_of = {}
    for shard, chunks, shape, selection in writes:
        if shard is None:  # the client, creating the store
            continue
        touched = set()
        for axis, sl in enumerate(selection[:3]):
            start, stop, _ = sl.indices(shape[axis])
            touched.add((axis, tuple(range(start // chunks[axis], (stop - 1) // chunks[axis] + 1))))
        chunks_of.setdefault(shard, set()).update(touched)
    for shard, touched in chunks_of.items():
        own = {(axis, (s.start // t,)) for axis, (s, t) in enumerate(zip(plan.block(shard), plan.tile))}
        assert touched == own, shard
    assert len(chunks_of) == 3
    assert attribute_writes and set(attribute_writes) == {None}
    assert_same_values(out, reference)
    single = xr.open_zarr(reference)  # one process: all members in one chunk, as before
    assert single["loss"].encoding["chunks"][:3] == (3, 2, 2)


# ------------------------------------------------------------------------------ on Dask
def test_two_local_workers_write_what_one_process_writes_with_one_progress_bar(tmp_path, reference, capfd):
    pytest.importorskip("distributed")
    out = simulate(out=tmp_path / "w.zarr", workers=2, progress=True, **RUN)
    assert_same_values(out, reference)
    attrs_ = attributes(out)
    assert attrs_["complete"] is True and attrs_["steps_done"] == RUN["steps"]
    states = attrs_["shard_state"]
    assert [s["status"] for s in states] == ["complete", "complete"]
    assert [s["region"] for s in states] == [{"lr": [0, 2], "wd": [0, 2], "seed": [0, 2]},
                                             {"lr": [2, 3], "wd": [0, 2], "seed": [0, 2]}]
    assert all(s["worker"].startswith("tcp://") and s["pid"] != os.getpid() for s in states)
    bars = [line for line in capfd.readouterr().err.split("\n") if "member-step" in line]
    assert len(bars) == 1  # one bar over both shards, redrawn in place
    assert "fixed-lr (2 shards) x12" in bars[0] and "member-step/s" in bars[0] and "100%" in bars[0]


def test_a_sharded_network_run_on_a_scheduler_equals_one_process(tmp_path, cluster):
    # float32 sums depend on torch's thread count, which numba's OpenMP layer may have changed
    # in this process: both runs on one thread
    one = train(out=tmp_path / "one.zarr", threads=1, **NET)
    out = train(out=tmp_path / "sharded.zarr", scheduler=cluster.scheduler_address, shards=2, threads=1, **NET)
    assert Layout.of_store(out, DIMS).tile == (1, 2, 2)
    assert_same_values(out, one)
    assert attributes(out)["complete"] is True


def test_a_killed_worker_is_replaced_and_its_shard_resumes_from_its_checkpoint(tmp_path, cluster, reference):
    out = tmp_path / "killed.zarr"
    result: dict = {}

    def run():
        try:
            result["path"] = simulate(out=out, scheduler=cluster.scheduler_address, shards=2, checkpoint_every=1e-6,
                                      flush_hook=Gate(tmp_path, shard=0, step=2000), **RUN)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 240
    while not (tmp_path / "waiting").exists():
        assert thread.is_alive() and time.monotonic() < deadline, result
        time.sleep(0.05)
    pid = int((tmp_path / "waiting").read_text())
    assert pid != os.getpid()
    assert read_state(out, 0)["steps_done"] == 2000  # the shard is stopped at step 2000, checkpoint written
    os.kill(pid, signal.SIGKILL)
    (tmp_path / "released").touch()
    thread.join(240)
    assert not thread.is_alive() and "error" not in result, result
    state = read_state(out, 0)
    assert state["attempts"] == 2 and state["started_from"] == 2000 and state["pid"] != pid
    assert state["status"] == "complete"
    assert read_state(out, 1)["attempts"] == 1
    assert_same_values(out, reference)


def test_resume_runs_only_the_shards_that_are_missing(tmp_path, failed_run, cluster, reference):
    out = tmp_path / "run.zarr"
    shutil.copytree(failed_run, out)
    before = attributes(out)
    assert before["steps_done"] == 2000 and before["complete"] is False
    assert [(s["status"], s["steps_done"], s["error"]) for s in before["shard_state"]] == [
        ("complete", 4000, None), ("failed", 2000, "RuntimeError: boom at step 2000")]
    simulate(out=out, resume=True, scheduler=cluster.scheduler_address, **RUN)
    after = attributes(out)
    assert after["complete"] is True and after["steps_done"] == 4000 and len(after["resumed_at"]) == 1
    first, second = read_state(out, 0), read_state(out, 1)
    assert first["attempts"] == 1 and first["worker"] == "local"  # not run again
    assert second["attempts"] == 2 and second["started_from"] == 2000 and second["worker"].startswith("tcp://")
    assert_same_values(out, reference)


def test_resume_without_dask_continues_a_sharded_store_in_this_process(tmp_path, reference):
    out = simulate(out=tmp_path / "r.zarr", shards=2, stop_after=1000, **RUN)
    assert [s["status"] for s in attributes(out)["shard_state"]] == ["stopped", "stopped"]
    with pytest.raises(InputError, match=r"^--shards 3: .*r\.zarr was cut into 2 shards when it was created; leave "
                                         r"--shards out to continue it$"):
        simulate(out=out, resume=True, shards=3, **RUN)
    simulate(out=out, resume=True, **RUN)
    assert [read_state(out, i)["attempts"] for i in (0, 1)] == [2, 2]
    assert_same_values(out, reference)


def test_a_store_of_one_process_is_not_resumed_as_shards(tmp_path):
    out = simulate(out=tmp_path / "one.zarr", stop_after=1000, **RUN)
    with pytest.raises(StoreError, match=r"^--resume: .*one\.zarr was written by one process; continue it without "
                                         r"--workers, --shards and --scheduler$"):
        simulate(out=out, resume=True, workers=2, **RUN)


# ------------------------------------------------------------------------------ check, report, CLI
def test_check_and_report_headers_show_each_shard_of_a_failed_run(tmp_path, failed_run, capsys):
    code = main(["check", str(failed_run), "--json", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    payload = json.loads((tmp_path / "c.json").read_text())
    assert code == (0 if payload["passed"] else 1)
    assert [s["status"] for s in payload["shard_state"]] == ["complete", "failed"]
    assert f"{failed_run}: sharded run, 1 of 2 shards complete; the checks use the 2000 steps every shard finished" \
        in out
    assert "  shard 0: complete, 4000 of 4000 steps; 8 members (lr 0:2, wd 0:2, seed 0:2); worker local\n" in out
    assert ("  shard 1: failed, 2000 of 4000 steps; 4 members (lr 2:3, wd 0:2, seed 0:2); worker local; "
            "RuntimeError: boom at step 2000\n") in out
    assert main(["report", str(failed_run), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.md").read_text()
    assert ("| shard 1 | failed, 2000 of 4000 steps; 4 members (lr 2:3, wd 0:2, seed 0:2); worker local; "
            "RuntimeError: boom at step 2000 |") in page


def test_check_shows_no_shard_lines_for_a_complete_run(tmp_path, capsys):
    out = simulate(out=tmp_path / "s.zarr", shards=2, **RUN)
    main(["check", str(out)])
    assert "shard" not in capsys.readouterr().out


_SIMULATE = ["simulate", "isotropic", "--protocol", "fixed-lr", "--lr", "0.01,0.02", "--wd", "0.01", "--steps", "1000",
             "--queue-size", "10", "--queue-every", "10", "--quiet"]
_TRAIN = ["train", "--model", "mlp-si", "--width", "1", "--dataset", NET["dataset"], "--protocol", "fixed-lr",
          "--lr", "0.1", "--wd", "0.01", "--steps", "40", "--queue-size", "10", "--queue-every", "2", "--quiet"]


@pytest.mark.parametrize("command,extra,message", [
    (_SIMULATE, ["--workers", "0"], "--workers must be >= 1, got 0"),
    (_SIMULATE, ["--shards", "two"], "--shards must be an integer, got 'two'"),
    (_SIMULATE, ["--shards", "3"], "--shards 3 exceeds the 2 members of the grid"),
    (_SIMULATE, ["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"],
     "--workers and --scheduler exclude each other: --workers starts a local Dask cluster, --scheduler uses a "
     "running one"),
    (_SIMULATE, ["--scheduler", " "], "--scheduler must be a Dask scheduler address such as tcp://10.0.0.5:8786 or "
                                      "the path of a scheduler file, got ' '"),
    (_TRAIN, ["--shards", "0"], "--shards must be >= 1, got 0"),
    (_TRAIN, ["--workers", "1", "--scheduler", "tcp://127.0.0.1:8786"],
     "--workers and --scheduler exclude each other: --workers starts a local Dask cluster, --scheduler uses a "
     "running one"),
])
def test_bad_distribution_flags_are_one_line_and_exit_2(tmp_path, capsys, command, extra, message):
    out = tmp_path / "x.zarr"
    assert main([*command, *extra, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"thermonet: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]])
def test_without_dask_the_message_says_how_to_install_it(tmp_path, capsys, monkeypatch, flag):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    out = tmp_path / "x.zarr"
    assert main([*_SIMULATE, *flag, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"thermonet: error: {flag[0]} runs the shards on Dask, which is not "
                                       f"installed: install thermonet[distributed] (pip install "
                                       f"'thermonet[distributed]')\n")
    assert not out.exists()


def test_the_command_line_runs_and_resumes_shards(tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    assert main([*_SIMULATE, "--shards", "2", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"run store: {out}\n"
    states = attributes(out)["shard_state"]
    assert [(s["region"]["lr"], s["status"]) for s in states] == [([0, 1], "complete"), ([1, 2], "complete")]
    assert main([*_SIMULATE, "--resume", "--workers", "2", "--out", str(out)]) == 0  # complete: no cluster
    assert capsys.readouterr().out == f"run store: {out}\n"
    assert [read_state(out, i)["attempts"] for i in (0, 1)] == [1, 1]
