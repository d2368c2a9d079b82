"""Datasets (thermonet.engines.network.data): MNIST-1D generated offline, CIFAR pickles, teacher-student, subsets, batches."""

from __future__ import annotations

import pickle
import random
import socket

import numpy as np
import pytest
import torch

from thermonet.engines.network.data import (

    balanced_subset,

    batch_indices,

    cifar_arrays,

    load_dataset,

    parse_dataset_spec,

    stream_key,

    stream_keys,

    teacher_student_arrays,

)
from thermonet.errors import InputError


# ---------------------------------------------------------------------- MNIST-1D
@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket (or use requests) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    try:
        import requests

        monkeypatch.setattr(requests, "get", refuse)
    except ImportError:  # pragma: no cover
        pass


def test_mnist1d_is_generated_locally_without_network(no_network, tmp_path, monkeypatch):
    pytest.importorskip("mnist1d")
    from thermonet.engines.network.data import _mnist1d_cached

    _mnist1d_cached.cache_clear()
    monkeypatch.chdir(tmp_path)  # the package's get_dataset would write a pickle here
    np.random.seed(11)
    random.seed(11)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    ds = load_dataset("mnist1d:num_samples=600")
    assert list(tmp_path.iterdir()) == []  # nothing cached to disk, nothing downloaded
    assert np.array_equal(np.random.get_state()[1], before_np) and random.getstate() == before_py
    assert ds.input_shape == (1, 40) and ds.num_classes == 10
    assert ds.n_train == 480 and ds.n_test == 120
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    # normalised per channel with training statistics
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-2
    # deterministic
    again = load_dataset("mnist1d:num_samples=600")
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def test_mnist1d_default_size_and_balanced_subset():
    pytest.importorskip("mnist1d")
    ds = load_dataset("mnist1d", samples_per_class=25)
    assert ds.n_train == 250 and ds.n_test == 1000
    assert torch.bincount(ds.y_train, minlength=10).tolist() == [25] * 10
    # the training set is shuffled: the first chunk mixes classes
    assert len(set(ds.y_train[:30].tolist())) > 3


# ---------------------------------------------------------------------- CIFAR
def _write_cifar10(folder, per_batch=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, fh, protocol=2)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}, fh)
    return folder


def test_cifar10_from_the_pickle_layout(tmp_path):
    folder = _write_cifar10(tmp_path / "cifar-10-batches-py")
    with open(folder / "data_batch_2", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    for where in (tmp_path, folder):  # the parent directory or the folder itself
        x, y, xt, yt, k = cifar_arrays("cifar10", where)
        assert x.shape == (30, 3, 32, 32) and xt.shape == (6, 3, 32, 32) and k == 10
        # row-major CHW layout of the pickles: batch 2 is rows 6..11
        assert np.allclose(x[6:12].reshape(6, -1) * 255.0, raw[b"data"], atol=1e-3)
        assert y[6:12].tolist() == list(raw[b"labels"])
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.input_shape == (3, 32, 32)
    channel_mean = ds.x_train.mean(dim=(0, 2, 3))
    channel_std = ds.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(channel_mean, torch.zeros(3), atol=1e-4)
    assert torch.allclose(channel_std, torch.ones(3), atol=1e-2)
    assert len(ds.info["channel_mean"]) == 3


def test_cifar100_fine_and_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 8), ("test", 4)):
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": list(range(90, 90 + n)), b"coarse_labels": [19] * n}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [], b"coarse_label_names": []}, fh)
    x, y, xt, yt, k = cifar_arrays("cifar100", tmp_path)
    assert k == 100 and y.tolist() == list(range(90, 98)) and x.shape == (8, 3, 32, 32)
    ds = load_dataset("cifar100:labels=coarse", data_dir=tmp_path)
    assert ds.num_classes == 20 and set(ds.y_train.tolist()) == {19}


def test_missing_cifar_names_the_expected_files(tmp_path):
    with pytest.raises(InputError) as err:
        load_dataset("cifar10", data_dir=tmp_path / "absent")
    message = str(err.value)
    assert "\n" not in message
    for needed in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta", "cifar-10-batches-py",
                   "never downloads"):
        assert needed in message
    with pytest.raises(InputError, match="train, test, meta"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_damaged_cifar_file_is_an_input_error(tmp_path):
    folder = _write_cifar10(tmp_path / "c")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="test_batch"):
        cifar_arrays("cifar10", folder)


# ---------------------------------------------------------------------- teacher-student
def test_teacher_student_sizes_and_label_noise():
    x, y, xt, yt = teacher_student_arrays(n_train=3000, n_test=500, dim=12, classes=4, hidden=16, noise=0.0, seed=3)
    assert x.shape == (3000, 1, 12) and xt.shape == (500, 1, 12) and y.max() < 4
    _, y_noisy, _, _ = teacher_student_arrays(n_train=3000, n_test=500, dim=12, classes=4, hidden=16, noise=0.4,
                                              seed=3)
    flipped = np.mean(y != y_noisy)
    assert 0.4 * 0.75 - 0.05 < flipped < 0.4 * 0.75 + 0.05  # a random relabel keeps the label 1/4 of the time
    ds = load_dataset("teacher:n_train=100,n_test=20,dim=8,classes=3")
    assert ds.n_train == 100 and ds.input_shape == (1, 8) and ds.num_classes == 3
    with pytest.raises(InputError, match="noise"):
        teacher_student_arrays(noise=1.5)


def test_dataset_spec_parsing():
    assert parse_dataset_spec("teacher:n_train=2e3, noise=0.1") == ("teacher", {"n_train": 2000, "noise": 0.1})
    assert parse_dataset_spec("MNIST1D") == ("mnist1d", {})
    for bad, match in (("imagenet", "unknown dataset"), ("teacher:size=3", "bad option"),
                       ("teacher:n_train=2.5", "integer"), ("teacher:noise=abc", "number")):
        with pytest.raises(InputError, match=match):
            parse_dataset_spec(bad)


# ---------------------------------------------------------------------- subsets and batches
def test_balanced_subset_counts_and_errors():
    labels = np.repeat(np.arange(3), [5, 9, 7])
    idx = balanced_subset(labels, 4, 3, seed=0)
    assert np.bincount(labels[idx]).tolist() == [4, 4, 4]
    assert len(set(idx.tolist())) == 12
    assert not np.array_equal(idx, balanced_subset(labels, 4, 3, seed=1))
    with pytest.raises(InputError, match="class 0 has only 5"):
        balanced_subset(labels, 6, 3)


def test_batches_are_per_member_counter_based_and_with_replacement():
    keys = stream_keys([0, 1, 2], 1)
    a = batch_indices(keys, 7, 64, 50)
    assert a.shape == (3, 64) and a.dtype == torch.int64
    assert int(a.min()) >= 0 and int(a.max()) < 50
    assert len(set(a[0].tolist())) < 64  # 64 draws from 50: with replacement
    # a member's batch does not depend on the other members, and changes with the step
    alone = batch_indices(stream_keys([1], 1), 7, 64, 50)
    assert torch.equal(alone[0], a[1])
    assert not torch.equal(batch_indices(keys, 8, 64, 50)[1], a[1])
    assert not torch.equal(a[0], a[1])
    # streams and hyperparameters separate the keys
    assert stream_key(0, 1) != stream_key(0, 2)
    assert stream_key(0, 1, (0.1,)) != stream_key(0, 1, (0.2,))
    # roughly uniform over the examples
    many = batch_indices(stream_keys([5], 1), 0, 20000, 10)[0]
    counts = torch.bincount(many, minlength=10).double()
    assert float(counts.min()) > 1800 and float(counts.max()) < 2200


def _splitmix_batch(key: int, counter: int, batch_size: int, n: int) -> list[int]:
    """The documented batch of one member, in plain Python ints: entry j is
    ``(mix(key + (c + 1) gamma) >> 11) mod n`` with ``c = counter B + j`` (SplitMix64)."""
    from thermonet.engines import rng as counter_rng

    key &= counter_rng.MASK64
    return [(counter_rng.mix_int(key + (counter * batch_size + j + 1) * counter_rng.GAMMA) >> 11) % n
            for j in range(batch_size)]


def _device_data_matches_cpu(device: str) -> None:
    """Batches and datasets on ``device`` are exactly the CPU's: batch indices are int64
    arithmetic (checked against SplitMix64 in Python ints), datasets are built on the CPU
    and moved."""
    keys = stream_keys([0, 3, 12345], 1)
    for counter, batch_size, n in ((0, 8, 50), (11, 32, 1000), (2**40 + 7, 64, 4000)):
        batch = batch_indices(keys.to(device), counter, batch_size, n)
        assert batch.device.type == device and batch.dtype == torch.int64 and batch.shape == (3, batch_size)
        expected = torch.tensor([_splitmix_batch(int(k), counter, batch_size, n) for k in keys.tolist()])
        assert torch.equal(batch.cpu(), expected), (counter, batch_size, n)
    spec = "teacher:n_train=50,n_test=10"
    cpu, ds = load_dataset(spec), load_dataset(spec, device=device)
    assert ds.num_classes == cpu.num_classes and ds.info == cpu.info
    for name in ("x_train", "y_train", "x_test", "y_test"):
        on_device, reference = getattr(ds, name), getattr(cpu, name)
        assert on_device.device.type == device and on_device.dtype == reference.dtype, name
        assert torch.equal(on_device.cpu(), reference), name


def test_batches_and_data_on_the_cpu_are_the_documented_ones():
    """The CPU half of :func:`test_batches_are_the_same_on_cuda`."""
    _device_data_matches_cpu("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_are_the_same_on_cuda():
    _device_data_matches_cpu("cuda")
