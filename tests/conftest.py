"""Shared test helpers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(relative_path: str):
    """Import a script of the repository (``studies/…``) as a module, without running it."""
    path = ROOT / relative_path
    name = "script_" + "_".join(path.with_suffix("").parts[-2:]).replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_script():
    """``load_script("studies/network_ideal_gas.py")``: the script as a module."""
    return _load
