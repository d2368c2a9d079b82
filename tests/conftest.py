"""Shared test helpers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="module")
def one_thread():
    """torch on one CPU thread for a module: for tiny ops, more threads only add
    contention on a shared CPU. Test modules opt in with ``pytestmark``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
