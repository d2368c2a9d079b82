"""Per-group measurement in the network engine and the store: the identities that tie the groups
to the whole vector, a direct computation, the group entropies, and stores with and without groups."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import thermonet
from thermonet.engines.network import EnsembleEngine, estimate_memory
from thermonet.engines.network.data import batch_indices, load_dataset
from thermonet.errors import StoreError
from thermonet.estimators import spherical_entropy
from thermonet.store.schema import GROUP_VARIABLES, check_dataset
from thermonet.theory.groups import ProductOfSpheres
from thermonet.theory.protocols import get_protocol

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "teacher:n_train=64,n_test=24,dim=16,classes=3,hidden=8"
HP = {"fixed-lr": [[0.3, 1e-3], [0.8, 3e-2]], "fixed-elr": [[0.005, 1e-3], [0.02, 1e-2]],
      "fixed-sphere": [[0.03, 1.0], [0.2, 2.0]]}


@pytest.fixture(scope="module")
def data():
    return load_dataset(SPEC)


def _engine(data, protocol, model="convnet1d-si", **kw):
    opts = dict(width=1, head_norm=10.0, batch_size=8, queue_size=4, queue_every=2, grad_samples=3)
    opts.update(kw)
    return EnsembleEngine(model=model, dataset=data, protocol=get_protocol(protocol), hp=np.asarray(HP[protocol]),
                          seeds=[0, 1], dtype=torch.float64, **opts)


@pytest.mark.parametrize("protocol", list(HP))
def test_groups_add_up_to_the_whole_vector(data, protocol):
    """sum rho_g^2 = rho^2, sum trSigma_g(w) = trSigma(w), sum ||g_bar_g||^2 = ||g_bar||^2, sum mean||g_g||^2 =
    mean||g||^2, and (D - 1) T = sum (D_g - 1) T_g, at every log step (to rounding)."""
    engine = _engine(data, protocol)
    engine.advance(6)
    v = engine.measure(1)
    sizes = np.array(engine.flat.group_sizes)
    assert [name for name, _ in engine.groups] == ["conv_layers.0", "conv_layers.3", "conv_layers.6"]
    rho2, rho_g2 = v["rho"] ** 2, v["rho_group"] ** 2
    np.testing.assert_allclose(rho_g2.sum(-1), rho2, rtol=1e-12)
    np.testing.assert_allclose((v["trace_sigma_group"] / rho_g2).sum(-1), v["trace_sigma"] / rho2, rtol=1e-12)
    np.testing.assert_allclose((v["grad_full_sq_group"] / rho_g2).sum(-1), v["grad_full_sq"] / rho2, rtol=1e-12)
    np.testing.assert_allclose(v["grad_norm_sq_group"].sum(-1), v["grad_norm_sq"], rtol=1e-12)
    np.testing.assert_allclose(v["sigma2_group"], v["trace_sigma_group"] / (sizes - 1), rtol=1e-14)
    p = get_protocol(protocol)
    hp = {n: np.asarray(HP[protocol])[:, i] for i, n in enumerate(p.hyperparameters)}
    whole_t = p.temperature(hp, v["rho"], v["sigma2"])
    system = ProductOfSpheres(p, engine.groups)
    np.testing.assert_allclose(system.coarse_temperature(v["temperature_group"]), whole_t, rtol=1e-10)
    np.testing.assert_allclose(v["temperature_group"], v["lr_eff_group"] * v["sigma2_group"] / 2, rtol=1e-12)


def test_group_values_match_a_direct_computation(data):
    """rho_g, ||g_bar_g||^2 and the K-sample trSigma_g of one member, from the whole-vector gradients cut by hand."""
    engine = _engine(data, "fixed-elr", grad_samples=4)
    engine.advance(5)
    v = engine.measure(log_index=2)
    m = 1
    w = engine.W[m]
    columns = engine.flat.group_columns()
    x, y = engine.data.x_train, engine.data.y_train
    gbar = torch.zeros(engine.dim, dtype=torch.float64)
    for a, b in engine.train_chunks:
        g, _ = engine._shared_grad(engine.W, engine.buffers, x[a:b], y[a:b])
        gbar += (b - a) / engine.n_train * g[m]
    grads = []
    for k in range(4):
        idx = batch_indices(engine.grad_keys, 2 * 4 + k, engine.batch_size, engine.n_train)
        g, _ = engine._train_grad(engine.W, engine.buffers, x[idx], y[idx])
        grads.append(g[m])
    for i, cols in enumerate(columns):
        rho_g2 = float((w[cols] ** 2).sum())
        trace = rho_g2 * float(sum(((g[cols] - gbar[cols]) ** 2).sum() for g in grads) / 4)
        assert v["rho_group"][m, i] == pytest.approx(math.sqrt(rho_g2), rel=1e-12)
        assert v["grad_full_sq_group"][m, i] == pytest.approx(rho_g2 * float((gbar[cols] ** 2).sum()), rel=1e-9)
        assert v["trace_sigma_group"][m, i] == pytest.approx(trace, rel=1e-9)
        # fixed ELR: eta_eff,g = eta~ rho^2 / rho_g^2
        assert v["lr_eff_group"][m, i] == pytest.approx(0.02 * float((w**2).sum()) / rho_g2, rel=1e-12)


def test_one_engine_step_follows_each_groups_recursion(data):
    """||w_g'||^2 = (1 - eta lambda)^2 ||w_g||^2 + eta^2 ||g_g||^2 for a real network's gradient (fixed LR)."""
    engine = _engine(data, "fixed-lr")
    w = engine.W.clone()
    idx = batch_indices(engine.train_keys, 1, engine.batch_size, engine.n_train)
    g, _ = engine._train_grad(w, engine.buffers, engine.data.x_train[idx], engine.data.y_train[idx])
    engine.advance(1)
    hp = torch.tensor(HP["fixed-lr"], dtype=torch.float64)
    eta, lam = hp[:, :1], hp[:, 1:]
    new = engine.flat.group_sums(engine.W**2)
    expected = (1 - eta * lam) ** 2 * engine.flat.group_sums(w**2) + eta**2 * engine.flat.group_sums(g**2)
    assert torch.allclose(new, expected, rtol=1e-10)
    # and each group's gradient is orthogonal to its weights
    inner = engine.flat.group_sums(g * w).abs() / torch.sqrt(engine.flat.group_sums(g**2) * engine.flat.group_sums(w**2))
    assert float(inner.max()) < 1e-8


def test_group_entropies_use_the_estimator_on_each_groups_columns(data):
    engine = _engine(data, "fixed-lr", queue_size=5, queue_every=2)
    engine.advance(8)
    early = engine.entropies()
    assert np.isnan(early["entropy_group"]).all() and early["entropy_group"].shape == (2, 3)
    engine.advance(2)
    out = engine.entropies()
    for m in range(2):
        for i, cols in enumerate(engine.flat.group_columns()):
            samples = engine.queue[m][:, cols]
            expected = float(spherical_entropy(samples, k=1, method="chord"))
            assert out["entropy_sphere_group"][m, i] == pytest.approx(expected, rel=1e-12)
            rho_bar = float(samples.norm(dim=-1).mean())
            assert out["entropy_group"][m, i] == pytest.approx(expected + (len(cols) - 1) * math.log(rho_bar),
                                                               rel=1e-12)
    off = _engine(data, "fixed-lr", queue_size=5, queue_every=2, group_entropy=False)
    off.advance(10)
    assert set(off.entropies()) == {"entropy_sphere", "entropy", "entropy_se"}


def test_memory_estimate_counts_the_group_entropy():
    common = dict(members=4, dim=1000, queue_size=100, batch_size=8, eval_batch_size=8, grad_chunk=1,
                  activations_per_example=100, dataset_bytes=0, dtype_bytes=4, checkpoint_queue=True,
                  device_type="cuda")
    without = estimate_memory(**common)
    with_groups = estimate_memory(**common, group_entropy_dim=600)
    assert without["group_entropy"] == 0
    assert with_groups["group_entropy"] == 4 * 100 * 600 * 8
    assert with_groups["total"] - without["total"] == with_groups["group_entropy"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from thermonet.runs import train

    out = tmp_path_factory.mktemp("groups") / "net.zarr"
    train(out, model="mlp-si", width=1, dataset=SPEC, protocol="fixed-lr", grid={"lr": [0.1, 0.3], "wd": [0.01]},
          seeds=[0], steps=60, queue_size=6, queue_every=5, grad_samples=3, batch_size=8, log_every=5, threads=1)
    return out


def test_a_network_store_has_the_group_dimension_and_variables(store):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zarr warning for the string coordinate either
        ds = thermonet.open_run(store)
    assert list(ds["group"].values) == ["layers.1", "layers.4"]
    assert list(ds["group_dim"].values) == [16 * 16, 16 * 16] and ds.attrs["dim"] == 512
    assert set(GROUP_VARIABLES) <= set(ds.data_vars)
    assert ds["rho_group"].dims == ("lr", "wd", "seed", "group", "step")
    assert ds["entropy_group"].dims == ("lr", "wd", "seed", "group", "entropy_step")
    np.testing.assert_allclose((ds["rho_group"] ** 2).sum("group").values, (ds["rho"] ** 2).values, rtol=1e-6)
    assert np.isfinite(ds["entropy_group"].values[..., -1]).all()
    assert ds.thermo.groups == {"layers.1": 256, "layers.4": 256}
    gs = ds.thermo.group_stationary(0.5)
    assert gs["rho"].dims == ("lr", "wd", "seed", "group") and "group_dim" in gs.coords
    # T_ratio is the window mean of T_g / (dof-weighted mean): equal sizes -> the ratios average to 1
    np.testing.assert_allclose(ds["temperature_group"].isel(step=-1).values.sum(-1) / 2,
                               ProductOfSpheres("fixed-lr", ds.thermo.groups).mean_temperature(
                                   ds["temperature_group"].isel(step=-1).values), rtol=1e-12)
    assert float(abs(gs["T_ratio"].mean("group") - 1).max()) < 1e-12


def test_stores_without_groups_still_open_and_damaged_groups_are_refused(store):
    from pathlib import Path

    old = thermonet.open_run(Path(__file__).parent / "data" / "v1" / "net-fixed-lr.zarr")
    assert old.thermo.groups is None
    with pytest.raises(StoreError, match="no per-group variables"):
        old.thermo.group_stationary()
    ds = thermonet.open_run(store).load()
    bad = ds.assign_coords(group_dim=("group", np.array([256, 255])))
    with pytest.raises(StoreError, match="sum to 511, but the run has dim = 512"):
        check_dataset(bad)
    with pytest.raises(StoreError, match="distinct"):
        check_dataset(ds.assign_coords(group=["a", "a"]))
    with pytest.raises(StoreError, match="group_dim"):
        check_dataset(ds.drop_vars("group_dim"))


def test_queue_entropies_with_and_without_the_standard_error():
    """The standard error is the estimator's (split-half for chord); skipping it changes no value."""
    from thermonet.engines.common import queue_entropies
    from thermonet.estimators import spherical_entropy

    rng = np.random.default_rng(5)
    queue = rng.normal(size=(3, 60, 4)) + np.array([4.0, 0, 0, 0])
    full = queue_entropies(queue, "chord", 1)
    bare = queue_entropies(queue, "chord", 1, standard_error=False)
    value, error = spherical_entropy(queue, method="chord", return_se=True)
    np.testing.assert_array_equal(full["entropy_sphere"], value)
    np.testing.assert_array_equal(full["entropy_se"], error)
    assert np.all(error > 0)
    np.testing.assert_array_equal(bare["entropy_sphere"], full["entropy_sphere"])
    np.testing.assert_array_equal(bare["entropy"], full["entropy"])
    assert np.isnan(bare["entropy_se"]).all()


def test_a_queue_too_short_for_split_halves_keeps_its_entropy():
    """N = 3 samples with k = 1: a half has no neighbour, so the split-half error is NaN, but
    the estimate is the one without the error (it was lost to NaN when the error was required)."""
    from thermonet.engines.common import queue_entropies
    from thermonet.estimators import spherical_entropy

    queue = np.random.default_rng(0).normal(size=(2, 3, 5))
    out = queue_entropies(queue, "chord", 1)
    expected = spherical_entropy(queue, method="chord")
    assert np.all(np.isfinite(expected))
    np.testing.assert_array_equal(out["entropy_sphere"], expected)
    assert np.isnan(out["entropy_se"]).all()
    value, error = spherical_entropy(queue, method="chord", return_se=True)
    np.testing.assert_array_equal(value, expected)
    assert np.isnan(error).all()
