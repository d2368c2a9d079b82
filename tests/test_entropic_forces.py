"""Entropic forces (paper 003): the identities of the rescaling symmetry to rounding, the orbit
theory against independent values, the relaxation prediction on a small network, and the study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy as sp
import torch

from thermonet.analysis.entropic import fit_decay_rate, identity_residuals, relaxation_experiment
from thermonet.engines.network.chain import ReLUChainEnsemble
from thermonet.engines.network.data import load_dataset
from thermonet.errors import InputError
from thermonet.theory.entropic import RescalingPair, orbit_symbols

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return load_dataset("teacher:n_train=300,n_test=20,noise=0.2", dtype=torch.float64)


# ---------------------------------------------------------------------- theory
def test_the_derived_step_change_against_vectors():
    """C' - C from SymPy equals one explicit step of random vectors obeying <W1, g1> = <W2, g2>."""
    rng = np.random.default_rng(0)
    theory = RescalingPair()
    sym = orbit_symbols()
    assert sp.simplify(theory.step_change_expr() - (((1 - sym["eta"] * sym["lambda"]) ** 2 - 1) * sym["C"]
                                                    + sym["eta"] ** 2 * (sym["G1"] - sym["G2"]))) == 0
    for lr, wd in ((0.3, 0.0), (0.1, 0.05)):
        w1, w2, g1, g2 = (rng.standard_normal(n) for n in (12, 7, 12, 7))
        g2 += (w1 @ g1 - w2 @ g2) / (w2 @ w2) * w2  # the symmetry
        step = lambda w, g: (1 - lr * wd) * w - lr * g  # noqa: E731
        change = (step(w1, g1) @ step(w1, g1) - step(w2, g2) @ step(w2, g2)) - (w1 @ w1 - w2 @ w2)
        predicted = theory.step_change(lr, wd, w1 @ w1 - w2 @ w2, g1 @ g1, g2 @ g2)
        assert float(predicted) == pytest.approx(change, rel=1e-12)


@pytest.mark.parametrize("wd", [0.0, 0.02])
def test_the_relaxation_rate_is_the_slope_of_the_orbit_velocity(wd):
    """k from SymPy equals a finite-difference slope of ds/dt at a fixed point (G1 chosen to make one)."""
    theory = RescalingPair()
    sym = orbit_symbols()
    lr, g2, n1, n2 = 0.2, 0.7, 9.0, 4.0
    g1 = g2 + (1 - (1 - lr * wd) ** 2) * (n1 - n2) / lr**2  # the velocity vanishes at s = 0
    velocity = sp.lambdify(sym["s"], theory.orbit_velocity_expr().subs(
        {sym["eta"]: lr, sym["lambda"]: wd, sym["G1"]: g1, sym["G2"]: g2, sym["N1"]: n1, sym["N2"]: n2}))
    assert abs(velocity(0.0)) < 1e-14
    h = 1e-5
    slope = (velocity(h) - velocity(-h)) / (2 * h)
    assert float(theory.relaxation_rate(lr, wd, g1, g2, n1, n2)) == pytest.approx(-slope, rel=1e-7)
    # the closed form: eta lambda (2 - eta lambda) + eta^2 (G1 + G2)/(N1 + N2)
    assert float(theory.relaxation_rate(lr, wd, g1, g2, n1, n2)) == pytest.approx(
        lr * wd * (2 - lr * wd) + lr**2 * (g1 + g2) / (n1 + n2), rel=1e-12)


def test_the_orbit_map_decays_at_the_linear_rate():
    theory = RescalingPair()
    lr, wd, g, n1, n2 = 0.3, 0.0, 1.5, 6.0, 6.0  # balanced reference: G1 = G2, fixed point at s = 0
    diff = theory.predict_difference(400, 0.05, lr, wd, g, g, n1, n2)
    assert diff[0] == pytest.approx(n1 * math.exp(0.1) - n2 * math.exp(-0.1))
    k = theory.relaxation_rate(lr, wd, g, g, n1, n2)
    tail = diff[100:200]  # decayed by e^-2 to e^-4: linear, far from rounding
    # one step multiplies the displacement by 1 - k (the rate is per step)
    assert -np.mean(np.diff(np.log(tail))) == pytest.approx(-math.log(1 - float(k)), rel=1e-4)
    measured, se, n = fit_decay_rate(np.arange(diff.size), diff, floor=0.1)
    assert measured == pytest.approx(float(k), rel=0.05) and n > 100


def test_fit_decay_rate():
    t = np.arange(0, 500, 10.0)
    k, se, n = fit_decay_rate(t, 3 * np.exp(-0.01 * t))
    assert k == pytest.approx(0.01, rel=1e-10) and se < 1e-12 and n == np.count_nonzero(np.exp(-0.01 * t) > 0.1)
    assert math.isnan(fit_decay_rate(t[:2], np.ones(2))[0])


# ---------------------------------------------------------------------- the network
def test_the_rescaling_is_a_symmetry_of_the_chain(data):
    chain = ReLUChainEnsemble(data, hidden=[6, 5], lr=[0.1, 0.1], wd=[0.0, 0.0], seeds=[0, 1], batch_size=8)
    x = chain.x[:20]
    before = chain.logits(chain.W, x)
    grads, _ = chain.gradients(chain.W, x, chain.y[:20])
    chain.rescale(1, [3.0, 0.25])
    after = chain.logits(chain.W, x)
    assert torch.allclose(after, before, rtol=1e-12, atol=1e-14)
    moved, _ = chain.gradients(chain.W, x, chain.y[:20])
    c = torch.tensor([3.0, 0.25], dtype=torch.float64)[:, None, None]
    assert torch.allclose(moved[1], grads[1] / c, rtol=1e-10) and torch.allclose(moved[2], grads[2] * c, rtol=1e-10)
    assert torch.allclose(moved[0], grads[0], rtol=1e-10)
    with pytest.raises(InputError, match="pair"):
        chain.rescale(2, 2.0)
    with pytest.raises(InputError, match="> 0"):
        chain.rescale(0, -1.0)


@pytest.mark.parametrize("batch_size,wd", [(8, 0.0), (8, 0.03), (None, 0.01)])
def test_the_step_identities_hold_to_rounding(data, batch_size, wd):
    chain = ReLUChainEnsemble(data, hidden=[8], lr=[0.2, 0.05], wd=wd, seeds=[0, 1], batch_size=batch_size)
    out = identity_residuals(chain, 40)
    assert out["step_change_rel_residual"] < 1e-10  # measured <= 1.2e-11 in the study
    assert out["symmetry_rel_residual"] < 1e-8  # measured <= 2.3e-10 (small <W, g> in the denominator)
    assert out["largest_rel_change_per_step"] > 1e-4  # C does move: the identity explains a real change


def test_the_identity_check_fails_without_the_symmetry(data):
    """A ReLU with a constant shift inside (a bias) is not homogeneous: the check says so."""

    class Shifted(ReLUChainEnsemble):
        def logits(self, W, x):
            h = x if x.dim() == 3 else x.expand(W[0].shape[0], *x.shape)
            h = torch.relu(torch.einsum("ebi,eoi->ebo", h, W[0]) + 0.3)
            return torch.einsum("ebi,eoi->ebo", h, W[1])

    chain = Shifted(data, hidden=[8], lr=[0.2], wd=[0.0], seeds=[0], batch_size=8)
    out = identity_residuals(chain, 20)
    assert out["symmetry_rel_residual"] > 1e-3 and out["step_change_rel_residual"] > 1e-3


def test_the_relaxation_prediction_on_a_small_network(data):
    """With weight decay the copy's C relaxes to its partner's at the predicted rate (measured
    ratios 0.93-1.0 on the study's grid); gradient descent relaxes by the decay alone."""
    out = relaxation_experiment(data, hidden=(16,), lr=[0.2, 0.4], wd=[0.01, 0.01], seeds=[0, 0], batch_size=16,
                                equilibrate=600, relax=600, log_every=20)
    ratio = out["k_measured"].values / out["k_predicted"].values
    assert np.all((ratio > 0.85) & (ratio < 1.15)), ratio
    assert np.all(out["k_linear"].values > 2 * 0.01 * out["learning_rate"].values)  # the entropic part adds to the decay's
    gd = relaxation_experiment(data, hidden=(16,), lr=[0.2], wd=[0.01], seeds=[0], batch_size=None, equilibrate=200,
                               relax=300, log_every=20)
    assert float(gd["k_measured"][0]) == pytest.approx(1 - (1 - 0.2 * 0.01) ** 2, rel=0.02)
    assert set(out["log_gradient_ratio"].dims) == {"member", "step1"} and out.sizes["layer"] == 2
    with pytest.raises(InputError, match="shift"):
        relaxation_experiment(data, lr=[0.1], wd=[0.0], seeds=[0], batch_size=8, shift=1.0, equilibrate=20, relax=20,
                              log_every=10)


# ---------------------------------------------------------------------- the study
@pytest.mark.timeout(300)
def test_the_study_runs_and_writes_its_summary(tmp_path, load_script, capsys):
    study = load_script("studies/entropic_forces.py")
    out = tmp_path / "ef"
    assert study.main(["--quick", "--equilibrate", "300", "--relax", "300", "--n-train", "200", "--out", str(out)]) == 0
    text = (out / "summary.md").read_text()
    assert "## Identities" in text and "## P1, P2" in text and "## P3" in text
    for name in ("relaxation.png", "rates.png", "rate_vs_batch.png", "balance.png"):
        assert (out / name).stat().st_size > 5_000, name
    key = json.loads((out / "summary.json").read_text())["key"]
    assert key["identity_step_change_max"] < 1e-10 and key["sgd_members"] == 12
    (out / "summary.md").unlink()
    assert study.main(["--quick", "--report-only", "--out", str(out)]) == 0  # from the saved data, no training
    assert (out / "summary.md").read_text() == text
    capsys.readouterr()
    assert study.main(["--quick", "--relax", "0", "--out", str(out)]) == 2
    assert "--relax must be >= 1" in capsys.readouterr().err
    assert study.main(["--quick", "--report-only", "--out", str(tmp_path / "none")]) == 2
    assert "run the study first" in capsys.readouterr().err


def test_the_study_is_a_thermonet_study():
    from thermonet.cli.commands.study import available

    assert "entropic-forces" in available()
