"""Extending thermonet: a protocol defined outside the package is one class (the tutorial
docs/tutorial-protocol.md runs end to end), and command-line plugins register theirs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(name: str) -> str:
    text = (ROOT / "docs" / name).read_text()
    return "\n".join(b.split("```", 1)[0] for b in text.split("```python\n")[1:])


def test_protocol_tutorial_runs_and_its_claims_hold(tmp_path):
    """The tutorial's new protocol derives, simulates and passes every check, in a fresh
    process (its class registers globally)."""
    script = _python_blocks("tutorial-protocol.md") + textwrap.dedent('''
        import json
        print("RESULT", json.dumps({
            "dims": list(ds["loss"].dims),
            "verdicts": {r.name: r.verdict for r in results},
            "T": str(state["T"]),
            "invariant": str(adiabat["invariant"]),
            "trend": str(protocol.noise_trend_expr()),
            "radius_error": results[2].numbers["max_rel_error_discrete"],
        }))
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["dims"] == ["lr", "decay", "seed", "step"]
    assert result["verdicts"] == {name: "pass" for name in ("vmf-energy", "vmf-entropy", "stationary-radius",
                                                             "potential-minimum", "maxwell", "adiabat",
                                                             "thermodynamic-temperature")}
    assert "lambda_d" in result["T"] and "eta" not in result["T"]  # T set by the decay alone
    assert result["invariant"] == "eta" and result["trend"] == "lambda_d"
    assert result["radius_error"] < 0.005  # the page says 0.2 %


def test_a_plugin_protocol_is_on_the_command_line(tmp_path, monkeypatch, capsys):
    """A module named by a 'thermonet.plugins' entry point is imported before the command
    is built: its protocol and its hyperparameter flag are there."""
    from importlib.metadata import EntryPoint

    import thermonet.cli as cli

    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(textwrap.dedent('''
        from typing import ClassVar
        import attrs
        from thermonet.theory.protocols import LR, WD, Protocol
        from thermonet.theory.symbols import eta, grad_sq, lam, rho, trace_sigma

        @attrs.frozen
        class PluginLR(Protocol, name="plugin-lr"):
            """Fixed LR again, from a plugin."""
            hyperparameter_specs: ClassVar = (LR, WD)
            natural_variables: ClassVar = ("T", "P")
            def effective_lr(self):
                return eta / rho**2
            def pressure_expr(self):
                return lam
            def expected_next_radius_sq(self):
                return (1 - eta * lam) ** 2 * rho**2 + eta**2 * (trace_sigma + grad_sq) / rho**2
            def step(self, w, grad, hp):
                return w - hp["lr"] * (grad + hp["wd"] * w)
    '''))
    from thermonet.theory.protocols import Protocol

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group: [EntryPoint("mine", "my_plugin", group)] if group == cli.PLUGIN_GROUP else [])
    try:
        assert cli.main(["theory", "--protocol", "plugin-lr", "--lr", "0.01", "--wd", "0.01"]) == 0
    finally:
        Protocol._registry.pop("plugin-lr", None)  # leave the registry as the other tests expect it
    out = capsys.readouterr().out
    assert "protocol plugin-lr" in out and "stationary radius rho" in out
    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group: [EntryPoint("broken", "no_such_module_xyz", group)])
    assert cli.main(["theory", "--protocol", "fixed-lr"]) == 2
    assert "plugin 'broken'" in capsys.readouterr().err
