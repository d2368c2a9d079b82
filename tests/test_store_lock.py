"""One writer per run store (issue 16): an fcntl lock next to the store, held by the writer,
released by the kernel when it dies. A second writer, plain, --resume or --overwrite, is
refused with exit 2 naming the holder; --overwrite never deletes a held store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from thermonet import cli
from thermonet.errors import StoreError
from thermonet.store.lock import StoreLock, holder, lock_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks")

_HOLD = textwrap.dedent("""
    import sys, time
    from thermonet.store.lock import StoreLock
    lock = StoreLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(300)
""")


def _holding(store: Path) -> subprocess.Popen:
    """A process that holds ``store``'s lock until killed."""
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(store)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def _simulate(out: Path, *extra: str) -> list[str]:
    return ["simulate", "isotropic", "--protocol", "fixed-lr", "--lr", "0.02", "--wd", "0.02", "--steps", "400",
            "--queue-size", "10", "--queue-every", "10", "--log-every", "50", "--quiet", "--out", str(out), *extra]


def test_lock_records_its_holder_and_refuses_a_second_one(tmp_path):
    store = tmp_path / "run.zarr"
    with StoreLock(store) as lock:
        assert lock.held and lock_path(store) == tmp_path / ".run.zarr.lock"
        info = holder(store)
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(StoreError, match=rf"is being written by PID {os.getpid()} on "):
            StoreLock(store).acquire("resume")
    StoreLock(store).acquire().release()  # free again


@pytest.mark.parametrize("mode", ["plain", "resume", "overwrite"])
def test_a_second_writer_is_refused_while_the_first_holds_the_store(tmp_path, capsys, mode):
    store = tmp_path / "run.zarr"
    assert cli.main(_simulate(store)) == 0
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    child = _holding(store)
    try:
        extra = {"plain": (), "resume": ("--resume",), "overwrite": ("--overwrite",)}[mode]
        assert cli.main(_simulate(store, *extra)) == 2
        err = capsys.readouterr().err
        assert f"is being written by PID {child.pid} on {socket.gethostname()}" in err
        assert err.count("\n") == 1 and "Traceback" not in err
        # nothing touched, in particular --overwrite deleted nothing
        assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    finally:
        child.kill()
        child.wait()
    # the kernel released the dead holder's lock: a resume goes through
    assert cli.main(_simulate(store, "--resume")) == 0


def test_a_killed_writer_leaves_the_store_resumable_at_once(tmp_path):
    store = tmp_path / "run.zarr"
    child = _holding(store)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with StoreLock(store) as lock:
        assert lock.held


def test_two_plain_runs_started_together_one_wins_one_is_refused(tmp_path):
    store = tmp_path / "run.zarr"
    argv = [sys.executable, "-m", "thermonet", *_simulate(store)]
    argv[argv.index("400")] = "200000"  # long enough to overlap
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not lock_path(store).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=600)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (first.returncode, err, second.returncode, second.stderr)
    assert "is being written by PID" in second.stderr or "already exists" in second.stderr
    assert "Traceback" not in second.stderr
