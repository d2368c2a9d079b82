"""The ensemble engine, the train driver and ``thermonet train`` (CPU; GPU tests skip without CUDA)."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import thermonet
from thermonet.engines.network.data import STREAM_GRAD_SAMPLES, batch_indices, load_dataset, stream_keys
from thermonet.engines.network import EnsembleEngine, chunk_bounds, estimate_memory, train_member_eager
from thermonet.runs.network import train
from thermonet.store import checkpoint
from thermonet.engines.network.reference import EagerMember
from thermonet.errors import InputError, StoreError
from thermonet.estimators import spherical_entropy
from thermonet.theory.protocols import get_protocol

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "teacher:n_train=64,n_test=24,dim=16,classes=3,hidden=8"
HP = {
    "fixed-lr": [[0.3, 1e-3], [0.8, 3e-2], [0.1, 1e-2]],
    "fixed-elr": [[0.005, 1e-3], [0.02, 1e-2], [0.01, 3e-2]],
    "fixed-sphere": [[0.03, 1.0], [0.2, 2.0], [0.01, 0.5]],
}


@pytest.fixture(scope="module")
def data():
    return load_dataset(SPEC)


def _engine(data, protocol="fixed-lr", hp=None, seeds=(0, 1, 2), model="convnet1d-si", dtype=torch.float64, **kw):
    opts = dict(width=1, head_norm=10.0, batch_size=8, queue_size=4, queue_every=2, grad_samples=3)
    opts.update(kw)
    hp = np.asarray(HP[protocol] if hp is None else hp, dtype=float)
    return EnsembleEngine(model=model, dataset=data, protocol=get_protocol(protocol), hp=hp, seeds=list(seeds),
                          dtype=dtype, **opts)


# ---------------------------------------------------------------------- engine vs eager
@pytest.mark.parametrize("vectorize", ["vmap", "loop"])
@pytest.mark.parametrize("protocol", ["fixed-lr", "fixed-elr", "fixed-sphere"])
def test_member_in_ensemble_matches_member_trained_alone(data, protocol, vectorize):
    engine = _engine(data, protocol, model="convnet-si", vectorize=vectorize)
    assert engine.vectorize == (vectorize == "vmap")
    start = engine.W.clone()
    engine.advance(12)
    proto = get_protocol(protocol)
    for m in range(3):
        hp = dict(zip(proto.hyperparameters, HP[protocol][m]))
        w, losses = train_member_eager(12, model="convnet-si", width=1, head_norm=10.0, dataset=data,
                                       protocol=proto, hp=hp, seed=m, batch_size=8, dtype=torch.float64)
        assert len(losses) == 12 and np.isfinite(losses).all()
        moved = float((engine.W[m] - start[m]).norm())
        assert moved > 1e-3 * float(start[m].norm())  # it did train
        assert float((engine.W[m] - w).norm()) < 1e-9 * moved, f"member {m}"


def test_float32_members_match_eager_to_float_tolerance(data):
    engine = _engine(data, "fixed-lr", model="mlp-si", dtype=torch.float32)
    start = engine.W.clone()
    engine.advance(10)
    proto = get_protocol("fixed-lr")
    for m in range(3):
        w, _ = train_member_eager(10, model="mlp-si", width=1, head_norm=10.0, dataset=data, protocol=proto,
                                  hp=dict(zip(proto.hyperparameters, HP["fixed-lr"][m])), seed=m, batch_size=8)
        change = float((engine.W[m] - start[m]).norm())
        assert float((engine.W[m] - w).norm()) < 1e-4 * change


def test_protocol_updates_inside_the_engine(data):
    for protocol in HP:
        engine = _engine(data, protocol)
        w = engine.W.clone()
        idx = batch_indices(engine.train_keys, 1, engine.batch_size, engine.n_train)
        g, _ = engine._train_grad(w, engine.buffers, data.x_train.double()[idx], data.y_train[idx])
        engine.advance(1)
        hp = np.asarray(HP[protocol])
        expected = get_protocol(protocol).step(w, g, {n: torch.tensor(hp[:, i:i + 1]) for i, n in
                                                      enumerate(engine.names)})
        assert torch.allclose(engine.W, expected, rtol=1e-12, atol=1e-14)
        # scale invariance: the gradient is orthogonal to w, so the radius obeys THEORY §3
        rho2 = (w * w).sum(-1)
        assert float(((g * w).sum(-1).abs() / (g.norm(dim=-1) * w.norm(dim=-1))).max()) < 1e-8
        new2 = (engine.W * engine.W).sum(-1)
        gsq = (g * g).sum(-1)
        a, b = torch.tensor(hp[:, 0]), torch.tensor(hp[:, 1])
        if protocol == "fixed-lr":
            assert torch.allclose(new2, (1 - a * b) ** 2 * rho2 + a**2 * gsq, rtol=1e-10)
        elif protocol == "fixed-elr":
            assert torch.allclose(new2, (1 - a * b * rho2) ** 2 * rho2 + a**2 * rho2**2 * gsq, rtol=1e-10)
        else:
            assert torch.allclose(new2.sqrt(), b, rtol=1e-12)


def test_shared_initial_point_and_batch_streams(data):
    shared = _engine(data, "fixed-lr", init_seed=5)
    assert torch.equal(shared.W[0], shared.W[1]) and torch.equal(shared.W[0], shared.W[2])
    own = _engine(data, "fixed-lr", seeds=(0, 0, 1))
    assert torch.equal(own.W[0], own.W[1]) and not torch.equal(own.W[0], own.W[2])
    assert torch.equal(own.train_keys[0], own.train_keys[1])  # same seed: same batches by default
    independent = _engine(data, "fixed-lr", seeds=(0, 0, 1), independent_batches=True)
    assert not torch.equal(independent.train_keys[0], independent.train_keys[1])
    sized = _engine(data, "fixed-lr", init_radius=3.0)
    assert torch.allclose(sized.W.norm(dim=-1), torch.full((3,), 3.0, dtype=torch.float64))
    sphere = _engine(data, "fixed-sphere")
    assert torch.allclose(sphere.W.norm(dim=-1), torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))


def test_bf16_autocast_changes_only_the_arithmetic_of_the_step(data):
    exact = _engine(data, "fixed-lr", model="convnet-si", dtype=torch.float32)
    mixed = _engine(data, "fixed-lr", model="convnet-si", dtype=torch.float32, autocast="bf16")
    start = exact.W.clone()
    exact.advance(1)
    mixed.advance(1)
    update = float((exact.W - start).norm())
    difference = float((mixed.W - exact.W).norm())
    assert mixed.W.dtype == torch.float32
    assert 0 < difference < 0.1 * update  # bfloat16 rounding, not a different step
    with pytest.raises(InputError, match="autocast"):
        _engine(data, "fixed-lr", autocast="fp8")


# ---------------------------------------------------------------------- divergence
def test_a_diverging_member_is_frozen_and_flagged_the_others_go_on(data):
    hp = [[0.3, 1e-3], [1e37, 10.0], [0.1, 1e-2]]
    engine = _engine(data, "fixed-lr", hp=hp, dtype=torch.float32, model="mlp-si")
    engine.advance(3)
    diverged = engine.diverged()
    assert diverged[0] == -1 and diverged[2] == -1
    assert 1 <= diverged[1] <= 3
    assert bool(torch.isfinite(engine.W).all())
    frozen = engine.W[1].clone()
    engine.advance(4)
    assert torch.equal(engine.W[1], frozen) and not bool(engine.alive[1])
    values = engine.measure(0)
    assert math.isnan(values["loss"][1]) and math.isnan(values["sigma2"][1])
    assert np.isfinite(values["loss"][[0, 2]]).all()
    # the healthy members are unaffected by their diverged neighbour
    proto = get_protocol("fixed-lr")
    w, _ = train_member_eager(7, model="mlp-si", width=1, head_norm=10.0, dataset=data, protocol=proto,
                              hp={"lr": 0.1, "wd": 1e-2}, seed=2, batch_size=8)
    assert float((engine.W[2] - w).abs().max()) < 1e-5


# ---------------------------------------------------------------------- log-step measurements
@pytest.mark.parametrize("vectorize", ["vmap", "loop"])
def test_measurements_match_a_direct_computation(data, vectorize):
    engine = _engine(data, "fixed-lr", grad_samples=4, eval_batch_size=10, vectorize=vectorize)
    engine.advance(5)
    values = engine.measure(log_index=2)
    m = 1
    member = EagerMember(model="convnet1d-si", width=1, head_norm=10.0, dataset=data, protocol=get_protocol("fixed-lr"),
                         hp={"lr": 0.8, "wd": 3e-2}, seed=1, batch_size=8, dtype=torch.float64)
    member._assign(engine.W[m])
    net, params = member.model, member.params
    x, y = member.data.x_train, member.data.y_train

    def gradient(xb, yb):
        net.zero_grad()
        logits = net(xb)
        loss = F.cross_entropy(logits, yb)
        loss.backward()
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        return flat, float(loss.detach()), int((logits.argmax(-1) == yb).sum())

    gbar = torch.zeros(engine.dim, dtype=torch.float64)
    loss = correct = 0.0
    for a, b in chunk_bounds(64, 8):
        g, lc, cc = gradient(x[a:b], y[a:b])
        gbar += (b - a) / 64 * g
        loss += (b - a) / 64 * lc
        correct += cc
    keys = stream_keys([1], STREAM_GRAD_SAMPLES)
    grads = [gradient(x[i], y[i])[0] for i in (batch_indices(keys, 2 * 4 + k, 8, 64)[0] for k in range(4))]
    tr_w = float(sum(((g - gbar) ** 2).sum() for g in grads) / 4)
    rho2 = float((engine.W[m] ** 2).sum())
    with torch.no_grad():
        test_loss = sum((b - a) / 24 * float(F.cross_entropy(net(member.data.x_test[a:b]), member.data.y_test[a:b]))
                        for a, b in chunk_bounds(24, 10))
    assert values["loss_full"][m] == pytest.approx(loss, rel=1e-10)
    assert values["train_accuracy"][m] == pytest.approx(correct / 64, rel=1e-12)
    assert values["test_loss"][m] == pytest.approx(test_loss, rel=1e-10)
    assert values["rho"][m] == pytest.approx(math.sqrt(rho2), rel=1e-12)
    assert values["grad_full_sq"][m] == pytest.approx(rho2 * float((gbar**2).sum()), rel=1e-9)
    assert values["trace_sigma"][m] == pytest.approx(rho2 * tr_w, rel=1e-9)
    assert values["sigma2"][m] == pytest.approx(rho2 * tr_w / (engine.dim - 1), rel=1e-9)
    assert values["snr"][m] == pytest.approx(math.sqrt(float((gbar**2).sum()) / tr_w), rel=1e-9)
    # loss and grad_norm_sq: means over the interval's 5 training steps, at the weights before each update
    alone = EagerMember(model="convnet1d-si", width=1, head_norm=10.0, dataset=data, protocol=get_protocol("fixed-lr"),
                        hp={"lr": 0.8, "wd": 3e-2}, seed=1, batch_size=8, dtype=torch.float64)
    losses, norms = [], []
    for _ in range(5):
        losses.append(alone.step())
        norms.append(alone.last_grad_norm_sq)
    assert values["loss"][m] == pytest.approx(np.mean(losses), rel=1e-9)
    assert values["grad_norm_sq"][m] == pytest.approx(np.mean(norms), rel=1e-9)
    assert values["loss"][m] != pytest.approx(values["loss_full"][m], rel=1e-6)
    # several stochastic gradients per vectorised call give the same numbers
    chunked = _engine(data, "fixed-lr", grad_samples=4, eval_batch_size=10, grad_chunk=3, vectorize=vectorize)
    chunked.advance(5)
    again = chunked.measure(log_index=2)
    for name in ("trace_sigma", "snr", "loss_full"):
        assert np.allclose(again[name], values[name], rtol=1e-10), name


def test_queue_entropy_uses_the_estimator_on_the_queued_weights(data):
    engine = _engine(data, "fixed-lr", queue_size=5, queue_every=2)
    engine.advance(8)  # 4 samples: not yet full
    entropies = engine.entropies()
    assert np.isnan(entropies["entropy_sphere"]).all() and np.isnan(entropies["entropy"]).all()
    engine.advance(2)
    assert torch.equal(engine.queue[:, 4], engine.W)
    assert engine.entropy_method == "chord" and engine.entropy_k == 1
    entropies = engine.entropies()
    s1, s = entropies["entropy_sphere"], entropies["entropy"]
    for m in range(3):
        expected = float(spherical_entropy(engine.queue[m], k=1, method="chord"))
        rho_bar = float(engine.queue[m].norm(dim=-1).mean())
        assert s1[m] == pytest.approx(expected, rel=1e-12)
        assert s[m] == pytest.approx(expected + (engine.dim - 1) * math.log(rho_bar), rel=1e-12)


# ---------------------------------------------------------------------- memory
def test_memory_estimate_scales_and_refuses_what_does_not_fit(tmp_path):
    small = estimate_memory(members=4, dim=1000, queue_size=100, batch_size=8, eval_batch_size=8, grad_chunk=1,
                            activations_per_example=100, dataset_bytes=0, dtype_bytes=4, checkpoint_queue=True,
                            device_type="cuda")
    big = estimate_memory(members=4, dim=1000, queue_size=1000, batch_size=8, eval_batch_size=8, grad_chunk=1,
                          activations_per_example=100, dataset_bytes=0, dtype_bytes=4, checkpoint_queue=True,
                          device_type="cuda")
    assert small["queue"] == 4 * 100 * 1000 * 4 and big["queue"] == 10 * small["queue"]
    assert big["total"] > small["total"]
    out = tmp_path / "big.zarr"
    with pytest.raises(InputError, match="more than the --max-memory") as err:
        train(out, model="mlp-si", width=1, dataset=SPEC, protocol="fixed-lr", grid={"lr": [0.1], "wd": [0.01]},
              seeds=[0], steps=50, batch_size=8, queue_size=20, max_memory="1MiB")
    assert "queue" in str(err.value) or "entropy" in str(err.value)
    assert not out.exists()


# ---------------------------------------------------------------------- the driver and its store
RUN = dict(model="convnet1d-si", width=1, dataset=SPEC, protocol="fixed-sphere",
           grid={"lr": [0.2, 0.5], "sphere_radius": [1.0, 2.0]}, seeds=[0, 1], steps=24, batch_size=8,
           log_every=4, queue_size=4, queue_every=2, entropy_every=8, grad_samples=2, dtype="float64")


def _open(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return thermonet.open_run(path)


def test_store_schema_resume_and_divergence_flags(tmp_path):
    full = train(tmp_path / "full.zarr", **RUN)
    ds = _open(full)
    assert ds.attrs["kind"] == "network" and ds.attrs["complete"] is True and ds.attrs["steps_done"] == 24
    assert ds.attrs["model"] == "convnet1d-si" and ds.attrs["dim"] > 2 and ds.attrs["batch_size"] == 8
    for name in ("loss", "rho", "grad_norm_sq", "sigma2", "trace_sigma", "grad_full_sq", "lambda_eff",
                 "train_accuracy", "test_loss", "test_accuracy", "snr", "entropy_sphere", "entropy"):
        assert name in ds.data_vars, name
    assert ds["loss"].dims == ("lr", "sphere_radius", "seed", "step")
    assert ds["diverged_at"].dims == ("lr", "sphere_radius", "seed")
    assert (ds["diverged_at"].values == -1).all()
    assert np.isfinite(ds["loss"].values).all() and np.isfinite(ds["entropy"].values).all()
    assert np.allclose(ds["rho"].values, ds["sphere_radius"].values[None, :, None, None], rtol=1e-12)
    st = ds.thermo.stationary(0.5)
    assert np.isfinite(st["T"].values).all() and np.isfinite(st["P"].values).all()
    # killed at step 10, then resumed: the same numbers as the uninterrupted run
    part = tmp_path / "part.zarr"
    train(part, stop_after=10, **RUN)
    partial = _open(part)
    assert partial.attrs["complete"] is False and partial.attrs["steps_done"] == 10
    assert checkpoint.path_of(part).is_file()
    with pytest.raises(StoreError, match="already exists"):
        train(part, **RUN)
    with pytest.raises(StoreError, match="different settings"):
        train(part, resume=True, **{**RUN, "batch_size": 16})
    train(part, resume=True, **RUN)
    resumed = _open(part)
    assert resumed.attrs["complete"] is True and not checkpoint.path_of(part).exists()
    for name in ("loss", "rho", "sigma2", "test_accuracy", "entropy", "lambda_eff"):
        assert np.array_equal(resumed[name].values, ds[name].values, equal_nan=True), name


def test_ctrl_c_stops_at_a_step_boundary_with_a_checkpoint(tmp_path, monkeypatch, capsys):
    import signal

    full = _open(train(tmp_path / "full.zarr", **RUN))
    calls = []
    original = EnsembleEngine.advance

    def advance(self, steps):
        calls.append(steps)
        result = original(self, steps)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # arrives while the first chunk trains
        return result

    monkeypatch.setattr(EnsembleEngine, "advance", advance)
    signals = (signal.SIGINT, signal.SIGTERM)
    inherited = {sig: signal.getsignal(sig) for sig in signals}

    def foreign(signum, frame):  # a caller's own handler: the run must have replaced it
        raise AssertionError(f"signal {signum} reached the caller's handler during the run")

    # whatever handler was there before the run (the one this process inherited, which is
    # SIG_IGN under nohup or a shell's background job; SIG_IGN; a Python function), the
    # run handles Ctrl-C itself and puts that same handler back, for SIGINT and SIGTERM
    try:
        for i, before in enumerate((None, signal.SIG_IGN, foreign)):
            if before is not None:
                for sig in signals:
                    signal.signal(sig, before)
            expected = {sig: signal.getsignal(sig) for sig in signals}
            calls.clear()
            out = tmp_path / f"int{i}.zarr"
            with pytest.raises(KeyboardInterrupt):
                train(out, **RUN)
            assert "checkpoint written" in capsys.readouterr().err
            for sig in signals:
                assert signal.getsignal(sig) is expected[sig], (before, sig)
            done = _open(out).attrs["steps_done"]
            assert 0 < done < 24 and checkpoint.path_of(out).is_file()
    finally:
        for sig, handler in inherited.items():
            signal.signal(sig, handler)
    monkeypatch.setattr(EnsembleEngine, "advance", original)
    resumed = _open(train(out, resume=True, **RUN))
    assert np.array_equal(resumed["loss"].values, full["loss"].values)
    assert np.array_equal(resumed["entropy"].values, full["entropy"].values, equal_nan=True)


def test_diverged_member_is_flagged_in_the_store(tmp_path):
    out = train(tmp_path / "div.zarr", model="mlp-si", width=1, dataset=SPEC, protocol="fixed-lr",
                grid={"lr": [0.1, 1e37], "wd": [10.0]}, seeds=[0], steps=12, batch_size=8, log_every=4,
                queue_size=3, queue_every=2, grad_samples=2)
    ds = _open(out)
    flags = ds["diverged_at"].values[:, 0, 0]
    assert flags[0] == -1 and 1 <= flags[1] <= 4
    assert np.isnan(ds["loss"].values[1, 0, 0]).all() and np.isfinite(ds["loss"].values[0, 0, 0]).all()
    assert np.isnan(ds["entropy"].values[1, 0, 0]).all()


# ---------------------------------------------------------------------- command line
@pytest.fixture
def cli():
    """The real command line, unpatched: ``train`` must be in its registry."""
    import thermonet.cli as cli_module

    assert cli_module.COMMANDS["train"][0] == "train" and "train" in cli_module.COMMAND_MODULES
    return cli_module.main


BASE = ["train", "--model", "mlp-si", "--width", "1", "--dataset", SPEC, "--steps", "12", "--batch-size", "8",
        "--queue-size", "3", "--grad-samples", "2", "--log-every", "4", "--quiet"]


@pytest.mark.parametrize("extra,message", [
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0"], "weight decay > 0"),
    (["--protocol", "fixed-lr", "--lr", "0.1"], "needs --wd"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0.1", "--elr", "0.1"], "does not use --elr"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "1:2"], "not a grid"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0.1", "--batch-size", "1"], "--batch-size must be >= 2"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0.1", "--queue-size", "100"], "too few to fill"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0.1", "--model", "vgg"], "unknown model"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0.1", "--device", "tpu"], "--device must be"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0.1", "--vectorize", "simd"], "--vectorize must be one of"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0.1", "--max-memory", "1KiB"], "more than the"),
    (["--protocol", "fixed-sphere", "--lr", "0.1", "--sphere-radius", "1", "--init-radius", "2"], "starts on its"),
    (["--protocol", "fixed-lr", "--lr", "0.1", "--wd", "0.1", "--dataset", "cifar10", "--data-dir", "/nonexistent",
      "--model", "convnet-si"], "data_batch_1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(cli, capsys, tmp_path, extra, message):
    argv = BASE + ["--out", str(tmp_path / "x.zarr")] + extra
    assert cli(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("thermonet: error:") and message in lines[0], err
    assert not (tmp_path / "x.zarr").exists()


def test_cli_trains_into_a_store_and_resumes(cli, capsys, tmp_path):
    out = tmp_path / "cli.zarr"
    # small enough rates that no member diverges (with --elr 0.05,0.1 all four did, and
    # every check was skipped for want of data)
    argv = BASE + ["--protocol", "fixed-elr", "--elr", "0.001,0.002", "--wd", "1e-2", "--seeds", "0,1",
                   "--out", str(out)]
    assert cli(argv) == 0
    assert "run store:" in capsys.readouterr().out
    ds = _open(out)
    assert ds.sizes["elr"] == 2 and ds.sizes["seed"] == 2 and ds.attrs["command"].startswith("thermonet ")
    assert (ds["diverged_at"].values == -1).all()
    assert cli(argv) == 2 and "already exists" in capsys.readouterr().err
    assert cli(["train", "--out", str(out), "--resume", "--quiet"]) == 0  # complete: nothing to do
    assert cli(argv + ["--overwrite"]) == 0
    capsys.readouterr()
    # The checks read the network store. Twelve steps are far from stationary: the radius
    # misses the stationary prediction by ~70 % (0.71 +/- 0.03 measured, tolerance 0.05),
    # a decided fail, so the exit code is 1 (not 0, not 2).
    assert cli(["check", str(out)]) == 1
    text = capsys.readouterr().out
    assert re.search(r"^stationary-radius\s+identity\s+max_rel_error_discrete\s+\S+ ± \S+\s+0\.05\s+fail$", text, re.M), text
    assert "(fixed-elr, network, window 0.5)" in text
    assert "diverged" not in text


# ---------------------------------------------------------------------- GPU (skipped without CUDA)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _ensemble_matches_cpu(data, device: str) -> None:
    """An ensemble (vmap) on ``device`` against the member loop on the CPU and a member
    trained alone on ``device``: weights, every log-step quantity and the entropies, all
    float64, to rounding (rtol 1e-9). In this setting a 1e-12 relative perturbation of the
    weights grows to ~3e-11 in 10 steps (measured), so rounding stays far below 1e-9."""
    reference = _engine(data, "fixed-lr", model="convnet-si", dtype=torch.float64, vectorize="loop")
    run = _engine(data, "fixed-lr", model="convnet-si", dtype=torch.float64, device=device, vectorize="vmap")
    reference.advance(10)
    run.advance(10)
    assert run.W.device.type == device and run.W.dtype == torch.float64
    torch.testing.assert_close(run.W.cpu(), reference.W, rtol=1e-9, atol=1e-11)
    proto = get_protocol("fixed-lr")
    w, _ = train_member_eager(10, model="convnet-si", width=1, head_norm=10.0, dataset=data, protocol=proto,
                              hp={"lr": 0.3, "wd": 1e-3}, seed=0, batch_size=8, dtype=torch.float64, device=device)
    torch.testing.assert_close(run.W[0].cpu(), w.cpu(), rtol=1e-9, atol=1e-11)
    measured, expected = run.measure(0), reference.measure(0)
    assert set(measured) == set(expected) and {"loss", "rho", "sigma2", "grad_full_sq", "test_loss"} <= set(expected)
    for name in expected:
        assert np.isfinite(expected[name]).all(), name
        np.testing.assert_allclose(measured[name], expected[name], rtol=1e-9, atol=1e-11, err_msg=name)
    run.advance(2)
    reference.advance(2)
    entropies, expected = run.entropies(), reference.entropies()
    assert set(entropies) == {"entropy_sphere", "entropy", "entropy_se", "entropy_sphere_group", "entropy_group"} == set(expected)
    for name in expected:
        assert np.isfinite(expected[name]).all(), name
        np.testing.assert_allclose(entropies[name], expected[name], rtol=1e-9, atol=1e-11, err_msg=name)


#: A run that does not amplify rounding: float32 and float64 on the CPU differ by at most
#: 6e-5 relative in every stored variable over its 24 steps (sigma2 5.9e-5, grad_norm_sq
#: 4.5e-5, the rest <= 2.1e-5; accuracies equal). RUN's fixed sphere at lr 0.5 does: a
#: 1e-12 perturbation reaches 1e-9 after 4 steps and O(1) after 24, so RUN cannot be
#: compared across devices.
RUN_STABLE = {**RUN, "model": "mlp-si", "protocol": "fixed-lr", "grid": {"lr": [0.1, 0.3], "wd": [1e-3, 1e-2]}}


def _float32_run_matches_float64_cpu(tmp_path, **options) -> None:
    """A float32 run (``options``: device, compile) against the float64 run on the CPU:
    every stored variable within 3e-4 relative (~5x the largest CPU float32 deviation),
    the accuracies within one example."""
    reference = _open(train(tmp_path / "cpu64.zarr", **RUN_STABLE))
    ds = _open(train(tmp_path / "run32.zarr", **{**RUN_STABLE, "dtype": "float32", **options}))
    assert ds.attrs["complete"] is True and ds.attrs["dtype"] == "float32"
    assert ds.attrs["device"].startswith(options.get("device", "cpu"))
    assert set(ds.data_vars) == set(reference.data_vars)
    assert (ds["diverged_at"].values == -1).all() and (reference["diverged_at"].values == -1).all()
    assert not np.array_equal(ds["loss"].values, reference["loss"].values)  # it did run in float32
    one_example = {"train_accuracy": 1.5 / 64, "test_accuracy": 1.5 / 24}
    for name in reference.data_vars:
        if name == "diverged_at":
            continue
        np.testing.assert_array_equal(np.isnan(ds[name].values), np.isnan(reference[name].values), err_msg=name)
        assert np.isfinite(reference[name].values).any(), name
        np.testing.assert_allclose(ds[name], reference[name], rtol=0 if name in one_example else 3e-4,
                                   atol=one_example.get(name, 0), err_msg=name)


def test_ensemble_loop_on_cpu_matches_vmap_as_cuda_must(data):
    """The CPU half of :func:`test_cuda_ensemble_matches_cpu_and_eager`."""
    _ensemble_matches_cpu(data, "cpu")


def test_float32_cpu_run_matches_float64_as_cuda_must(tmp_path):
    """The CPU half of :func:`test_cuda_run_with_compile_and_memory_budget`."""
    _float32_run_matches_float64_cpu(tmp_path, device="cpu")


@pytest.mark.gpu
@cuda
def test_cuda_ensemble_matches_cpu_and_eager(data):
    _ensemble_matches_cpu(data, "cuda")


@pytest.mark.gpu
@cuda
def test_cuda_run_with_compile_and_memory_budget(tmp_path):
    from thermonet.engines.network import memory_budget

    budget, where = memory_budget("cuda")
    assert budget > 0 and "free" in where
    _float32_run_matches_float64_cpu(tmp_path, device="cuda", compile="default")


def test_vmap_and_member_loop_agree_and_auto_picks_by_size(data):
    """Both modes give the same trajectory and log-step numbers (float64: to rounding);
    auto is vmap on CUDA and, on a CPU, the loop only for networks with many activations."""
    from thermonet.engines.network.functional import LOOP_MIN_ACTIVATIONS, resolve_vectorize

    loop, vm = _engine(data, "fixed-elr", vectorize="loop"), _engine(data, "fixed-elr", vectorize="vmap")
    assert loop.vectorize is False and vm.vectorize is True
    assert _engine(data, "fixed-elr").vectorize is True  # tiny network on a CPU: vmap
    for engine in (loop, vm):
        engine.advance(6)
    assert float((loop.W - vm.W).abs().max()) < 1e-12 * float(vm.W.abs().max())
    a, b = loop.measure(1), vm.measure(1)
    for name in ("loss", "test_loss", "trace_sigma", "grad_full_sq", "snr"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-9, err_msg=name)
    assert resolve_vectorize("auto", "cpu", LOOP_MIN_ACTIVATIONS) is False  # ConvNet on 32x32: loop
    assert resolve_vectorize("auto", "cpu", 1930) is True  # width-2 ConvNet on MNIST-1D: vmap
    assert resolve_vectorize("auto", "cuda", 10**6) is True and resolve_vectorize("loop", "cuda") is False


def test_network_entropy_carries_its_standard_error_and_says_when_it_is_a_bound(tmp_path):
    """Networks use the estimator's ``auto`` by default; every estimate is stored with its
    standard error, which the stationary states carry. With fewer queued samples than D
    (150 < D = 896) the entropy is not identifiable: the run warns, and the value is the
    isotropic upper bound (docs/entropy-estimators.md, "N ≤ D")."""
    from thermonet.estimators import EstimabilityWarning
    from thermonet.runs import train

    with pytest.warns(EstimabilityWarning, match="upper bound|bound"):
        path = train(out=tmp_path / "se.zarr", model="mlp-si", width=1, dataset="mnist1d:num_samples=300",
                     protocol="fixed-lr", grid={"lr": [0.1], "wd": [0.01]}, seeds=[0, 1], steps=400,
                     batch_size=16, grad_samples=2, log_every=20, queue_size=150, queue_every=1,
                     entropy_every=100, threads=1)
    ds = _open(path)
    assert ds.attrs["entropy_method"] == "auto" and ds.attrs["dim"] == 896
    se = ds["entropy_se"].values
    done = np.isfinite(ds["entropy"].values)
    assert done.sum() >= 4 and np.all(np.isfinite(se[done])) and np.all(se[done] > 0)
    st = ds.thermo.stationary(0.5)
    in_window = se[..., ds["entropy_step"].values >= int(st.attrs["window_first_step"])]
    assert in_window.shape[-1] < 4  # too few estimates for batch means: the estimator's error is the floor
    rms = np.sqrt(np.nanmean(in_window ** 2, axis=-1))
    assert np.all(st["S_se"].values >= rms / np.sqrt(in_window.shape[-1]) - 1e-9)
