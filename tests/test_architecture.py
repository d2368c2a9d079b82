"""The import rule of docs/architecture.md, enforced: layers only import downwards, and no
module imports itself back through others (no cycles), counting imports inside functions.

Also: no code outside a protocol's own file branches on a protocol's name or a
hyperparameter's name, and adding a protocol is one class (tests/test_extension.py runs
one end to end).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layers, lowest first (docs/architecture.md). A module may import from its own layer
#: and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("thermonet.errors", "thermonet.base")),
    ("theory", ("thermonet.theory", "thermonet.estimators")),
    ("engines", ("thermonet.engines", "thermonet.models")),
    ("store", ("thermonet.store",)),
    ("runs", ("thermonet.runs",)),
    ("analysis", ("thermonet.analysis",)),
    ("checks", ("thermonet.checks",)),
    ("reports", ("thermonet.reports",)),
    ("cli", ("thermonet.cli", "thermonet.__main__")),
    ("facade", ("thermonet",)),
    ("studies", ("thermonet.studies",)),
]
#: Deprecated aliases of old module paths: they may forward anywhere (removed in 0.3).
EXEMPT = ("thermonet._compat",)


def _layer(module: str) -> int:
    best, index = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, i
    assert index is not None, f"{module} belongs to no layer: add it to docs/architecture.md and LAYERS"
    return index


def _sources() -> dict[str, Path]:
    """Module name -> file, for the package and the folders installed into it."""
    out = {}
    for folder, package in ((ROOT / "thermonet", "thermonet"), (ROOT / "models", "thermonet.models"),
                            (ROOT / "studies", "thermonet.studies")):
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


SOURCES = _sources()


def _is_module(name: str) -> bool:
    return name in SOURCES


def _imports(module: str, path: Path) -> set[str]:
    """Every thermonet module that ``module`` imports anywhere in its file (functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            names = []
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                names.append(candidate if _is_module(candidate) else base)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            if name == "thermonet" or name.startswith("thermonet."):
                while name not in SOURCES and "." in name:
                    name = name.rpartition(".")[0]
                if name != module:
                    found.add(name)
    return found


GRAPH = {module: _imports(module, path) for module, path in SOURCES.items()}


def test_every_module_is_in_a_layer():
    for module in SOURCES:
        if module not in EXEMPT:
            _layer(module)


def test_no_upward_imports():
    upward = []
    for module, imported in GRAPH.items():
        if module in EXEMPT:
            continue
        for target in imported:
            if target in EXEMPT or target == "thermonet.errors":
                continue
            if _layer(target) > _layer(module):
                upward.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} "
                              f"({LAYERS[_layer(target)][0]})")
    assert not upward, "imports that run up the layers:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles():
    graph = {m: {t for t in targets if t not in EXEMPT} for m, targets in GRAPH.items() if m not in EXEMPT}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_finder_finds_a_lazy_cycle():
    """A lazy import back (inside a function) still closes a cycle."""
    graph = {name: set(targets) for name, targets in GRAPH.items()}
    assert not _cycles({"a": {"b"}, "b": set()})
    graph["thermonet.theory.eos"] = graph["thermonet.theory.eos"] | {"thermonet.theory.protocols.base"}
    assert any("thermonet.theory.eos" in c for c in _cycles(graph))


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself can fail: a theory module importing the checks is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from thermonet.checks import run_checks\n")
    imported = _imports("thermonet.theory.bad", bad)
    assert imported == {"thermonet.checks"}
    assert _layer("thermonet.checks") > _layer("thermonet.theory.bad")


def test_every_module_imports():
    """No module is left unimportable by the moves (a cheap guard for lazy imports)."""
    failures = []
    for module in sorted(SOURCES):
        if module.startswith("thermonet.studies") or module.endswith(("_kernel_template", "__main__")):
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - report them all
            failures.append(f"{module}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------------------ protocol names
def _protocol_literals() -> set[str]:
    from thermonet.theory.protocols import Protocol

    names = set(Protocol.names())
    for cls in Protocol.registered().values():
        names.update(cls.hyperparameters)
    return names


def _branching_literals(path: Path, literals: set[str]) -> list[str]:
    """String constants from ``literals`` used to decide something: compared, looked up,
    used as dict keys or in ``in`` tests (docstrings and messages do not count)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        candidates: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            candidates = [node.left, *node.comparators]
            for comp in node.comparators:
                if isinstance(comp, (ast.Tuple, ast.List, ast.Set)):
                    candidates.extend(comp.elts)
        elif isinstance(node, ast.Dict):
            candidates = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Subscript):
            candidates = [node.slice]
        for c in candidates:
            if isinstance(c, ast.Constant) and c.value in literals:
                hits.append(f"{path.relative_to(ROOT)}:{c.lineno}: {c.value!r}")
    return hits


def test_no_code_branches_on_a_protocol_name_outside_its_own_file():
    literals = _protocol_literals()
    own = ROOT / "thermonet" / "theory" / "protocols"
    hits = []
    for path in (ROOT / "thermonet").rglob("*.py"):
        if own in path.parents:
            continue
        hits += _branching_literals(path, literals)
    assert not hits, "code that asks which protocol it is (move it into the protocol's class):\n" + "\n".join(hits)


def test_the_name_rule_catches_a_branch(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def f(p, hp):\n    if p.name == "fixed-sphere":\n        return hp["sphere_radius"]\n')
    bad = bad.rename(ROOT / "tests" / "_tmp_branching_example.py")
    try:
        hits = _branching_literals(bad, _protocol_literals())
    finally:
        bad.unlink()
    assert len(hits) == 2


@pytest.mark.parametrize("name", ["thermonet.theory", "thermonet.estimators", "thermonet.base"])
def test_low_layers_import_no_torch_at_import_time(name):
    """The theory and the foundation load without torch (help, theory commands stay fast)."""
    import subprocess
    import sys

    code = (f"import importlib, pkgutil, sys; import {name} as p\n"
            f"[importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, '{name}.')]\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = "True" if name == "thermonet.estimators" else "False"  # the estimators are torch code
    assert done.stdout.strip() == expected


def test_pkgutil_sees_every_package():
    import thermonet

    found = {m.name for m in pkgutil.walk_packages(thermonet.__path__, "thermonet.") if m.ispkg}
    assert {"thermonet.theory.protocols", "thermonet.engines.isotropic", "thermonet.store"} <= found
