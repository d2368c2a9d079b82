"""The installed layout: every subpackage is listed, models/ installs as thermonet.models."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "thermonet").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
    assert config["tool"]["setuptools"]["package-dir"]["thermonet.models"] == "models"


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
    assert 0.8 < float(namespace["ratio"].min()) and float(namespace["ratio"].max()) < 1.2
