"""The command line frame and ``thermonet theory``."""

import subprocess
import sys

import pytest

from thermonet.cli import COMMAND_MODULES, COMMANDS, build_parser, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "thermonet", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    text = build_parser().format_help()
    for name in ("theory", "simulate", "check", "report", "study"):
        assert name in text
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))


@pytest.mark.parametrize("name", ["train", "temperature"])
def test_train_and_temperature_are_registered_and_dispatch(name, capsys):
    """Fails if ``train`` or ``temperature`` left the real registry (other test modules use
    the unpatched command line and rely on it)."""
    assert COMMANDS[name][0] == name and name in COMMAND_MODULES
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: thermonet {name} ")


def test_python_dash_m_and_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("thermonet ")


def test_theory_prints_the_derived_state(capsys):
    assert main(["theory", "--protocol", "fixed-lr", "--lr", "0.01", "--wd", "0.01"]) == 0
    text = capsys.readouterr().out
    # THEORY §3: D=3, sigma=1, eta=lambda=0.01 -> T = 0.005, rho = 1, mean loss ~ 0.005
    assert "temperature T" in text and "0.005" in text
    assert "stationary radius rho" in text
    assert "Eq(-dS_du + dS_dv, -1)" in text  # Maxwell: dS/dv - dS/du = -(D-1)/2
    assert "gamma = 2" in text
    assert "eta = const" in text


def test_theory_elr_adiabat(capsys):
    assert main(["theory", "--protocol", "fixed-elr", "--dim", "10"]) == 0
    assert "eta_tilde**2/lambda = const" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["theory", "--protocol", "fixed-momentum"], "unknown protocol"),
    (["theory", "--protocol", "fixed-lr", "--wd", "0"], "weight decay > 0"),
    (["theory", "--protocol", "fixed-lr", "--lr", "-1"], "lr must be"),
    (["theory", "--protocol", "fixed-lr", "--dim", "1"], "--dim must be >= 2"),
    (["theory", "--protocol", "fixed-lr", "--elr", "0.1"], "does not use --elr"),
    (["theory", "--protocol", "fixed-lr", "--sigma", "0"], "--sigma must be a finite number > 0"),
    (["theory"], "required"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len([line for line in out.stderr.splitlines() if line.startswith("thermonet: error")]) == 1


def test_check_also_runs_an_optional_check(tmp_path, capsys):
    from thermonet.store.synthetic import synthetic_run

    store = tmp_path / "run.zarr"
    synthetic_run("fixed-lr", seeds=2, n_logs=24, rng=3).to_zarr(store)
    code = main(["check", str(store), "--also", "noise-trend", "--json", "-"])
    import json

    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert "noise-trend" in checks and "maxwell" in checks
    assert list(checks)[-1] == "noise-trend"  # the optional check after the defaults
    # the store is the exact theory with constant noise (fixed rng: the same store every
    # time), so every check, the optional one included, passes and the exit code is 0
    assert {name: c["verdict"] for name, c in checks.items()} == {name: "pass" for name in checks}
    assert code == 0
    assert main(["check", str(store), "--also", "no-such-check"]) == 2


def test_check_also_takes_a_comma_list(tmp_path, capsys):
    import json

    from thermonet.store.synthetic import synthetic_run

    store = tmp_path / "run.zarr"
    synthetic_run("fixed-lr", seeds=2, n_logs=24, rng=3).to_zarr(store)
    code = main(["check", str(store), "--also", "noise-trend,adiabat-noise-trend", "--json", "-"])
    names = [c["name"] for c in json.loads(capsys.readouterr().out)["checks"]]
    assert names[-2:] == ["noise-trend", "adiabat-noise-trend"]
    assert code == 0  # constant noise: both optional checks pass on the exact theory


# ------------------------------------------------------------------------------ instant help
_HELP_PROBE = """
import contextlib, io, sys
from thermonet.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(" ".join(sorted(m for m in ("torch", "sympy", "xarray", "numba", "matplotlib", "scipy", "zarr", "dask",
                                 "distributed") if m in sys.modules)))
"""


def _heavy_modules_after(*args: str) -> set[str]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _HELP_PROBE, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_top_level_help_imports_no_heavy_library():
    assert _heavy_modules_after("--help") == set()
    assert _heavy_modules_after("--version") == set()


@pytest.mark.parametrize("command", ["theory", "simulate", "check", "report", "train", "fit-eos", "temperature",
                                     "study"])
def test_a_command_help_imports_neither_torch_nor_matplotlib(command):
    assert not _heavy_modules_after(command, "--help") & {"torch", "matplotlib", "dask", "distributed"}


def test_the_probe_sees_heavy_imports():
    """The probe can fail: running a command that computes imports what it needs."""
    assert "sympy" in _heavy_modules_after("theory", "--protocol", "fixed-lr")
