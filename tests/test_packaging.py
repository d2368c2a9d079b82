"""The installed layout: every subpackage is listed, models/ installs as thermonet.models."""

import pathlib
import tomllib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "thermonet").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
    assert config["tool"]["setuptools"]["package-dir"]["thermonet.models"] == "models"


def test_tests_never_skip_for_a_missing_project_module_or_dependency():
    """``pytest.importorskip`` only for optional packages: a test that skips when one of
    the project's own modules (or a required dependency) fails to import hides the
    failure it exists to show."""
    import ast
    import re

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    required = {re.split(r"[<>=!~\[ ]", dep, maxsplit=1)[0].lower() for dep in config["project"]["dependencies"]}
    assert {"torch", "numpy", "matplotlib"} <= required
    own = ("thermonet", "models", "studies")
    offending = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "importorskip"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                top = str(node.args[0].value).split(".")[0]
                if top in own or top.lower() in required:
                    offending.append(f"{path.relative_to(ROOT)}:{node.lineno}: importorskip({node.args[0].value!r})")
    assert not offending, "\n".join(offending)


def test_models_importable_as_thermonet_models():
    import thermonet.models

    assert pathlib.Path(thermonet.models.__file__).resolve().parent == ROOT / "models"


def test_tutorial_code_blocks_run():
    """docs/tutorial-process.md stays true: its Python blocks run, in order, as one script."""
    text = (ROOT / "docs" / "tutorial-process.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) >= 3
    namespace: dict = {}
    exec(compile("\n".join(blocks), "tutorial-process.md", "exec"), namespace)
    assert "path" in namespace and namespace["path"].states.sizes["point"] == 30


def test_study_tutorial_code_blocks_run():
    """docs/tutorial-study.md stays true: its blocks simulate, open, compare and report."""
    text = (ROOT / "docs" / "tutorial-study.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) == 4
    namespace: dict = {}
    exec(compile("\n".join(blocks), "tutorial-study.md", "exec"), namespace)
    assert namespace["page"].exists()
    # Measured over seed pairs (0,1), (2,3), ..., (8,9): measured/SDE radius 0.9994..1.0132,
    # the excess at the largest elr being the discrete-time correction (1.28 %); against
    # the discrete-time radius every point within 0.0030 (per-point scatter ~0.002).
    ratio = namespace["ratio"]
    assert ratio.shape == (3, 3)
    assert 0.993 < float(ratio.min()) and float(ratio.max()) < 1.02
    ds, states, system = namespace["ds"], namespace["states"], namespace["system"]
    discrete = system.discrete_state({"elr": ds.elr.values[:, None], "wd": ds.wd.values[None, :]}, 1.0)["rho"]
    np.testing.assert_allclose(states.rho.mean("seed").transpose("elr", "wd").values, discrete, rtol=0.008)


def _console_commands(text: str) -> list[list[str]]:
    """The ``$ thermonet …`` commands of a markdown text's console blocks (continuations joined)."""
    import shlex

    commands = []
    for block in text.split("```console\n")[1:]:
        lines = block.split("```", 1)[0].splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("$ "):
                command = lines[i][2:]
                while command.endswith("\\"):
                    i += 1
                    command = command[:-1] + " " + lines[i].strip()
                commands.append(shlex.split(command))
            i += 1
    return commands


def test_real_gas_tutorial_runs_and_its_claims_hold(tmp_path, monkeypatch, capsys):
    """docs/tutorial-real-gas.md stays true: its commands and Python blocks run in order
    (all but the minutes-long network of section 7) and the numbers it discusses hold."""
    import re

    from thermonet.cli import main

    text = (ROOT / "docs" / "tutorial-real-gas.md").read_text()
    commands = _console_commands(text)
    assert [c[:2] for c in commands] == [["thermonet", "simulate"], ["thermonet", "fit-eos"],
                                         ["thermonet", "fit-eos"], ["thermonet", "train"], ["thermonet", "fit-eos"]]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    outputs = []
    for command in commands[:3]:
        assert main(command[1:] + (["--quiet"] if command[1] == "simulate" else [])) == 0
        outputs.append(capsys.readouterr().out)
    raw, corrected = outputs[1], outputs[2]
    assert "best by BIC: power-law" in raw  # the discretisation looks like a real gas ...
    z_range = re.search(r"Z with the fitted sigma0\^2 in \[([\d.]+), ([\d.]+)\]", corrected)
    assert 0.99 < float(z_range[1]) and float(z_range[2]) < 1.01  # ... until it is divided out
    assert (tmp_path / "sphere-Z.png").exists() and (tmp_path / "fit.json").exists()

    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    namespace: dict = {}
    exec(compile("\n".join(blocks), "tutorial-real-gas.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "the correction beats the SDE form" in printed
    assert "noise level constant" in printed
    residual = float(re.search(r"max \|Z - \(1 \+ G1\^2/trSigma\)\| = ([\d.e-]+)", printed)[1])
    assert residual < 0.02
    assert namespace["comparison"].fits["ideal"].noise_level == pytest.approx(1.0, abs=0.01)
    assert namespace["iso"].passed and namespace["chore"].passed
    assert (tmp_path / "Z.png").exists() and (tmp_path / "sphere-isotherm.png").exists()


def test_gpu_session_script_runs_its_cpu_smoke_part(tmp_path):
    """studies/benchmarks/gpu_session.sh is run unattended on a lent GPU: its own logic
    (steps, limits, summary, archive) is checked here on the CPU with tiny sizes."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "studies" / "benchmarks" / "gpu_session.sh"), "smoke"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert "| ensemble-smoke | 0 |" in summary and "| entropy-smoke | 0 |" in summary, summary
    assert (tmp_path / "results.tar.gz").stat().st_size > 0
    assert "ratio" in (tmp_path / "logs" / "ensemble-smoke.log").read_text()
    bad = subprocess.run(["bash", str(ROOT / "studies" / "benchmarks" / "gpu_session.sh"), "nonsense"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.parametrize("part", ["bench", "tuning", "study"])
def test_gpu_session_commands_parse(tmp_path, part, load_script):
    """Every command a GPU part runs is accepted by its script's own parser: a lent GPU's
    minutes must not go to a mistyped flag."""
    import os
    import shlex
    import subprocess
    import sys

    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, DRY_RUN="1")
    done = subprocess.run(["bash", str(ROOT / "studies" / "benchmarks" / "gpu_session.sh"), part], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "commands.txt").read_text().splitlines()
    assert lines, "the part runs nothing"
    for line in lines:
        name, command = line.split("\t", 1)
        argv = shlex.split(command)[1:]
        if argv[:2] == ["-m", "pytest"]:
            assert "-m" in argv[2:] and "gpu" in argv, name
            continue
        script = ROOT / argv[0]
        assert script.is_file(), f"{name}: {script} missing"
        load_script(argv[0]).build_parser().parse_args(argv[1:])  # SystemExit (exit 2) on a bad flag fails the test


# ------------------------------------------------------------------------------ old names
@pytest.mark.parametrize("old,name,new", [
    ("thermonet.simulation", "simulate", "thermonet.runs.isotropic"),
    ("thermonet.ensemble", "train", "thermonet.runs.network"),
    ("thermonet.free_energy", "hull_temperatures", "thermonet.analysis.hull"),
    ("thermonet.free_energy", "plot_sweep", "thermonet.reports.free_energy"),
    ("thermonet.temperature", "noise_trend", "thermonet.analysis.noise"),
    ("thermonet.temperature", "NoiseTrendCheck", "thermonet.checks.noise_trend"),
    ("thermonet.eos_fit", "fit_equations_of_state", "thermonet.analysis.eos_fit"),
    ("thermonet.measured_processes", "measure_process", "thermonet.analysis.processes"),
    ("thermonet.report", "write_report", "thermonet.reports.report"),
    ("thermonet.checks.synthetic", "synthetic_run", "thermonet.store.synthetic"),
    ("thermonet.data", "load_dataset", "thermonet.engines.network.data"),
    ("thermonet.simulation.rng", "member_keys", "thermonet.engines.rng"),
])
def test_old_module_paths_still_work_and_say_where_the_names_went(old, name, new):
    """0.1's module paths forward to the same objects, with a warning naming the new path."""
    import importlib
    import subprocess
    import sys

    code = (f"import warnings; warnings.simplefilter('always')\n"
            f"from {old} import {name} as old_obj\nfrom {new} import {name} as new_obj\n"
            "assert old_obj is new_obj\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ThermonetDeprecationWarning" in done.stderr and f"{old} moved to" in done.stderr
    assert new in done.stderr or importlib.import_module(new)


def test_old_renamed_names_still_work():
    import warnings

    from thermonet.analysis.power_law import fit_hull_power_law
    from thermonet.theory import symbols

    with pytest.warns(FutureWarning, match="HYPERPARAMETER_SYMBOLS is deprecated"):
        table = symbols.HYPERPARAMETER_SYMBOLS
    assert table["lr"] is symbols.eta and table["sphere_radius"] is symbols.rho0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from thermonet.free_energy import fit_power_law
    assert fit_power_law is fit_hull_power_law


# ------------------------------------------------------------------------------ a wheel
@pytest.mark.slow
def test_a_wheel_install_runs_the_studies(tmp_path):
    """After a non-editable install (a wheel) ``thermonet study`` finds the studies: they ship
    as thermonet.studies. The wheel is installed into a folder that shadows the editable
    install, and the main job's --help and a tiny study run from there."""
    import os
    import subprocess
    import sys

    import shutil

    source = tmp_path / "source"  # built from a copy: setuptools leaves build/ next to the sources
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    files = listed.stdout.split() if listed.returncode == 0 else [
        str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("thermonet-*.whl")
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = dict(os.environ, PYTHONPATH=str(target), MPLBACKEND="Agg")
    where = subprocess.run([sys.executable, "-c", "import thermonet, thermonet.studies, thermonet.models; "
                            "print(thermonet.__file__); print(thermonet.studies.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout
    study = subprocess.run([sys.executable, "-m", "thermonet", "study", "ideal-gas", "--protocols", "fixed-lr",
                            "--points", "3", "--steps", "400000", "--out", "report", "--runs", "runs"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert study.returncode == 0, study.stderr[-2000:]
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "runs" / "fixed-lr.zarr").is_dir()
    bench = target / "thermonet" / "studies" / "benchmarks" / "gpu_session.sh"
    assert bench.is_file()
