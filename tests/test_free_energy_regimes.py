"""The network study of issue 6 (``studies/free_energy_regimes.py``) tells the regimes apart
in a short CPU run: the same ``mlp-si`` trained on all of MNIST-1D (under-parameterised) and
on 10 examples per class (over-parameterised), one ensemble each, four learning rates."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("mnist1d")
pytest.importorskip("matplotlib")




def test_short_run_tells_up_from_op(tmp_path, load_script):
    study = load_script("studies/free_energy_regimes.py")
    out = tmp_path / "report"
    rc = study.main(["--quick", "--quiet", "--steps", "4000", "--seeds", "0", "--lr", "1e-3:2e-2:4",
                     "--out", str(out), "--runs", str(tmp_path / "runs")])
    assert rc == 0
    for name in ("report.md", "temperature.png", "snr.png", "loss_curves.png", "free_energy_up.png",
                 "free_energy_op.png", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    v = summary["verdicts"]
    # UP cannot fit its data; OP interpolates (train loss near 0)
    assert v["up_min_loss"] > 0.5
    assert v["op_min_loss"] < 0.1
    # UP: a positive free-energy temperature at the small LRs, rising with LR
    up = summary["up"]["rows"]
    small = up[:2]
    assert all(r["status"] in ("interval", "(0, T_high]") for r in small), [r["status"] for r in small]
    assert v["up_monotone"]
    # OP: T collapses at small LR (no positive T, or far below UP's at the same LR)
    assert v["op_collapse"], v
    assert v["op_small_T_ratio"] < 0.3 or math.isnan(v["op_small_T_ratio"])
    # late SNR measured for every LR of both
    for key in ("up", "op"):
        assert all(math.isfinite(r["snr"]) and r["snr"] > 0 for r in summary[key]["rows"])
