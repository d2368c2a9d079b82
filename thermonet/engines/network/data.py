"""Datasets for network ensembles: generated or read locally, never downloaded.

* ``mnist1d``: MNIST-1D (Greydanus 2020) **generated** in-process with the ``mnist1d``
  package's generator (``mnist1d.data.make_dataset``; the package's download path is
  never called). Inputs ``(1, 40)``, 10 classes, 4000 train / 1000 test by default.
* ``cifar10`` / ``cifar100``: read from a local directory in the standard
  python-pickle layout (``data_batch_1`` … ``data_batch_5``, ``test_batch``,
  ``batches.meta`` for CIFAR-10; ``train``, ``test``, ``meta`` for CIFAR-100), either
  the directory itself or its ``cifar-10-batches-py`` / ``cifar-100-python``
  subdirectory. Inputs ``(3, 32, 32)``.
* ``teacher``: a synthetic teacher–student classification set: Gaussian inputs
  ``(1, dim)`` labelled by a random one-hidden-layer ReLU teacher, with a fraction
  ``noise`` of labels replaced by uniformly random ones. The sizes control under- versus
  over-parameterisation of the student.

A dataset spec is ``NAME`` or ``NAME:key=value,key=value`` (e.g.
``teacher:n_train=2000,noise=0.1`` or ``mnist1d:num_samples=10000``).

:func:`load_dataset` returns a :class:`Dataset` of tensors: optionally a balanced subset
(``samples_per_class``), per-channel normalised with training-set statistics, the
training set in a fixed shuffled order (so contiguous chunks mix classes), moved to the
device once. Mini-batches are drawn by :func:`batch_indices`: independently **with
replacement** at every step, per member, from a counter-based generator: the batch of
member ``m`` at step ``t`` is a pure function of ``(key_m, t)`` (no generator state, the
same in any ensemble, on any device, after any resume).
"""

from __future__ import annotations

import functools
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import attrs
import numpy as np
import torch

from thermonet.errors import InputError
from thermonet.engines import rng as counter_rng

__all__ = [
    "DATASETS",
    "Dataset",
    "balanced_subset",
    "batch_indices",
    "cifar_arrays",
    "load_dataset",
    "mnist1d_arrays",
    "parse_dataset_spec",
    "stream_key",
    "stream_keys",
    "teacher_student_arrays",
]

#: Dataset names and their accepted options (with defaults).
DATASETS: dict[str, dict[str, object]] = {
    "mnist1d": {"num_samples": 5000, "train_split": 0.8, "seed": 42},
    "cifar10": {},
    "cifar100": {"labels": "fine"},
    "teacher": {"n_train": 4000, "n_test": 1000, "dim": 40, "classes": 10, "hidden": 64, "noise": 0.0, "seed": 0},
}

#: Environment variable naming the default directory of local datasets (CIFAR).
DATA_DIR_ENV = "THERMONET_DATA"


# ------------------------------------------------------------------------------ container
@attrs.frozen
class Dataset:
    """Train and test tensors of one classification task (inputs without batch axis: ``input_shape``)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    info: dict = attrs.field(factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Dataset":
        """The same data on ``device`` with inputs of ``dtype`` (labels stay int64)."""
        return attrs.evolve(
            self,
            x_train=self.x_train.to(device=device, dtype=dtype), y_train=self.y_train.to(device=device),
            x_test=self.x_test.to(device=device, dtype=dtype), y_test=self.y_test.to(device=device),
        )

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.x_train, self.y_train, self.x_test, self.y_test))

    def describe(self) -> str:
        return (f"{self.name}: {self.n_train} train / {self.n_test} test, inputs {self.input_shape}, "
                f"{self.num_classes} classes")


# ------------------------------------------------------------------------------ specs
def parse_dataset_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``"teacher:n_train=2000,noise=0.1"`` -> ``("teacher", {"n_train": 2000, "noise": 0.1})``.

    Option values are converted to the type of the default. Unknown names or options
    raise :class:`InputError`.
    """
    text = str(spec).strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower().replace("-", "")
    if name not in DATASETS:
        raise InputError(f"unknown dataset {spec!r}; choose one of {', '.join(DATASETS)} "
                         f"(options as NAME:key=value,...)")
    defaults = DATASETS[name]
    options: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in defaults:
            allowed = ", ".join(defaults) or "none"
            raise InputError(f"dataset {name}: bad option {part!r}; options are {allowed} (as key=value)")
        default = defaults[key]
        value = value.strip()
        try:
            if isinstance(default, bool) or isinstance(default, str):
                converted: object = value
            elif isinstance(default, int):
                number = float(value)
                if not math.isfinite(number) or number != int(number):
                    raise ValueError
                converted = int(number)
            else:
                converted = float(value)
                if not math.isfinite(converted):
                    raise ValueError
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise InputError(f"dataset {name}: option {key} needs {kind}, got {value!r}") from None
        options[key] = converted
    return name, options


# ------------------------------------------------------------------------------ sources
@functools.lru_cache(maxsize=4)
def _mnist1d_cached(num_samples: int, train_split: float, seed: int):
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise InputError("the mnist1d dataset needs the 'mnist1d' package: pip install 'thermonet[networks]' "
                         "(it is generated locally, nothing is downloaded)") from None
    import random

    args = get_dataset_args()  # an ObjectView; make_dataset generates, it never touches args.url
    args.num_samples = int(num_samples)
    args.train_split = float(train_split)
    args.seed = int(seed)
    np_state, py_state = np.random.get_state(), random.getstate()  # make_dataset reseeds the global RNGs
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    out = tuple(np.ascontiguousarray(data[k]) for k in ("x", "y", "x_test", "y_test"))
    for a in out:
        a.setflags(write=False)
    return out


def mnist1d_arrays(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42):
    """``(x_train (N,1,40) float32, y_train, x_test, y_test)`` generated by ``mnist1d``.

    Deterministic in ``seed`` (the package's default dataset uses 42); the caller's global
    numpy/python random states are left untouched.
    """
    if num_samples < 20:
        raise InputError(f"mnist1d: num_samples must be >= 20, got {num_samples}")
    if not 0 < train_split < 1:
        raise InputError(f"mnist1d: train_split must lie in (0, 1), got {train_split}")
    x, y, xt, yt = _mnist1d_cached(int(num_samples), float(train_split), int(seed))
    return (x[:, None, :].astype(np.float32), y.astype(np.int64), xt[:, None, :].astype(np.float32),
            yt.astype(np.int64))


_CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta"),
}


def _default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def _find_cifar(name: str, data_dir: str | Path | None) -> Path:
    sub, train, test, meta = _CIFAR_FILES[name]
    base = Path(data_dir) if data_dir is not None else _default_data_dir()
    needed = train + test + [meta]
    for candidate in (base, base / sub):
        if all((candidate / f).is_file() for f in needed):
            return candidate
    where = f"{base}" + ("" if data_dir is not None else f" (default; set --data-dir or ${DATA_DIR_ENV})")
    raise InputError(
        f"{name} not found in {where}: expected the python-pickle files {', '.join(needed)} in that directory "
        f"or in its {sub}/ subdirectory (the 'python version' archive from https://www.cs.toronto.edu/~kriz/"
        f"cifar.html, unpacked); thermonet never downloads data"
    )


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise InputError(f"{path}: cannot read a CIFAR python pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a CIFAR python pickle (a dict was expected)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def cifar_arrays(name: str = "cifar10", data_dir: str | Path | None = None, labels: str = "fine"):
    """``(x_train (N,3,32,32) float32 in [0,1], y_train, x_test, y_test, num_classes)`` from local pickles."""
    if name not in _CIFAR_FILES:
        raise InputError(f"unknown CIFAR variant {name!r}; use cifar10 or cifar100")
    if labels not in ("fine", "coarse"):
        raise InputError(f"cifar100: labels must be fine or coarse, got {labels!r}")
    folder = _find_cifar(name, data_dir)
    _, train, test, _meta = _CIFAR_FILES[name]
    key = "labels" if name == "cifar10" else f"{labels}_labels"

    def read(files):
        xs, ys = [], []
        for f in files:
            d = _unpickle(folder / f)
            if "data" not in d or key not in d:
                raise InputError(f"{folder / f}: missing 'data' or '{key}' entry; not a {name} batch file")
            data = np.asarray(d["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise InputError(f"{folder / f}: 'data' must have shape (N, 3072), got {data.shape}")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[key], dtype=np.int64))
            if len(ys[-1]) != len(xs[-1]):
                raise InputError(f"{folder / f}: {len(xs[-1])} images but {len(ys[-1])} labels")
        return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)

    x, y = read(train)
    xt, yt = read(test)
    num_classes = 10 if name == "cifar10" else (100 if labels == "fine" else 20)
    if y.min() < 0 or max(y.max(), yt.max()) >= num_classes:
        raise InputError(f"{folder}: labels outside 0..{num_classes - 1}")
    return x, y, xt, yt, num_classes


def teacher_student_arrays(n_train: int = 4000, n_test: int = 1000, dim: int = 40, classes: int = 10,
                           hidden: int = 64, noise: float = 0.0, seed: int = 0):
    """Synthetic classification by a random teacher: ``(x_train (N,1,dim), y_train, x_test, y_test)``.

    ``x ~ N(0, I)``; teacher ``logits = relu(x W₁/√dim) W₂`` with Gaussian ``W₁ (dim,
    hidden)``, ``W₂ (hidden, classes)``; label = argmax. Then each label (train and test)
    is replaced with probability ``noise`` by a uniformly random class.
    """
    for label, value, low in (("n_train", n_train, 2), ("n_test", n_test, 1), ("dim", dim, 1),
                              ("classes", classes, 2), ("hidden", hidden, 1)):
        if int(value) < low:
            raise InputError(f"teacher: {label} must be >= {low}, got {value}")
    if not 0.0 <= float(noise) <= 1.0:
        raise InputError(f"teacher: noise must lie in [0, 1], got {noise}")
    rng = np.random.default_rng(int(seed))
    w1 = rng.standard_normal((dim, hidden)) / math.sqrt(dim)
    w2 = rng.standard_normal((hidden, classes))

    def make(n):
        x = rng.standard_normal((n, dim))
        y = np.argmax(np.maximum(x @ w1, 0.0) @ w2, axis=1)
        flip = rng.random(n) < noise
        y = np.where(flip, rng.integers(0, classes, n), y)
        return x[:, None, :].astype(np.float32), y.astype(np.int64)

    x, y = make(int(n_train))
    xt, yt = make(int(n_test))
    return x, y, xt, yt


# ------------------------------------------------------------------------------ transforms
def balanced_subset(labels: np.ndarray, samples_per_class: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """Indices of ``samples_per_class`` examples of every class (chosen at random, sorted).

    Raises :class:`InputError` naming a class that has fewer examples.
    """
    labels = np.asarray(labels)
    if int(samples_per_class) != samples_per_class or samples_per_class < 1:
        raise InputError(f"--samples-per-class must be an integer >= 1, got {samples_per_class!r}")
    rng = np.random.default_rng(int(seed))
    chosen = []
    for c in range(int(num_classes)):
        where = np.flatnonzero(labels == c)
        if where.size < samples_per_class:
            raise InputError(f"--samples-per-class {samples_per_class}: class {c} has only {where.size} "
                             f"training examples")
        chosen.append(rng.choice(where, size=int(samples_per_class), replace=False))
    return np.sort(np.concatenate(chosen))


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``x`` (N, C, ...), float64."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    return mean, np.where(std > 0, std, 1.0)


def _normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32)


def load_dataset(spec: str, *, data_dir: str | Path | None = None, samples_per_class: int | None = None,
                 subset_seed: int = 0, normalize: bool = True, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, options: Mapping[str, object] | None = None) -> Dataset:
    """Load (or generate) a dataset by spec; see the module docstring.

    ``samples_per_class`` keeps that many training examples of every class (test set
    untouched). With ``normalize`` each input channel is standardised with the mean and
    standard deviation of the (subset) training set; the same transform is applied to
    the test set. The training set is put in a fixed random order (``subset_seed``).
    """
    name, opts = parse_dataset_spec(spec)
    opts.update(options or {})
    defaults = dict(DATASETS[name])
    defaults.update(opts)
    if name == "mnist1d":
        x, y, xt, yt = mnist1d_arrays(defaults["num_samples"], defaults["train_split"], defaults["seed"])
        num_classes = 10
    elif name in ("cifar10", "cifar100"):
        x, y, xt, yt, num_classes = cifar_arrays(name, data_dir, **opts)
    else:
        x, y, xt, yt = teacher_student_arrays(**defaults)
        num_classes = int(defaults["classes"])
    order_rng = np.random.default_rng(int(subset_seed) + 7919)
    if samples_per_class is not None:
        keep = balanced_subset(y, samples_per_class, num_classes, subset_seed)
    else:
        keep = np.arange(len(y))
    keep = order_rng.permutation(keep)
    x, y = x[keep], y[keep]
    info = {"spec": str(spec), "name": name, "options": {k: defaults[k] for k in DATASETS[name]},
            "samples_per_class": samples_per_class, "normalized": bool(normalize)}
    if normalize:
        mean, std = channel_stats(x)
        x, xt = _normalise(x, mean, std), _normalise(xt, mean, std)
        info["channel_mean"] = [float(v) for v in mean]
        info["channel_std"] = [float(v) for v in std]
    ds = Dataset(name=name, x_train=torch.from_numpy(np.ascontiguousarray(x)), y_train=torch.from_numpy(y),
                 x_test=torch.from_numpy(np.ascontiguousarray(xt)), y_test=torch.from_numpy(yt),
                 num_classes=num_classes, info=info)
    return ds.to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------ batches
#: Stream identifiers hashed into the keys (training batches, gradient-noise batches).
STREAM_TRAIN = 1
STREAM_GRAD_SAMPLES = 2

# The generator is SplitMix64, the isotropic simulator's counter-based streams
# (:mod:`thermonet.engines.rng`), under its own key domain.
_DOMAIN = 0x6261_7463_6865_7321  # "batches!"


def stream_key(seed: int, stream: int, hyperparameters=()) -> int:
    """64-bit key (as a signed int64 value) of one random stream of one member: a
    SplitMix64 hash chain over the seed, the stream id and the float64 bits of any
    hyperparameter values."""
    key = counter_rng.mix_int(_DOMAIN ^ (int(seed) & counter_rng.MASK64))
    key = counter_rng.mix_int(key ^ ((int(stream) & counter_rng.MASK64) + counter_rng.GAMMA))
    return counter_rng.signed64(counter_rng.hash_chain(key, hyperparameters))


def stream_keys(seeds, stream: int, hp: np.ndarray | None = None, device=None) -> torch.Tensor:
    """int64 keys (M,) of one random stream per member, from its seed and, if given, its
    hyperparameter row ``hp[m]`` (:func:`stream_key`)."""
    seeds = np.asarray(seeds).reshape(-1)
    rows = np.zeros((len(seeds), 0)) if hp is None else np.asarray(hp, dtype=np.float64).reshape(len(seeds), -1)
    keys = [stream_key(int(s), stream, row) for s, row in zip(seeds, rows)]
    return torch.tensor(keys, dtype=torch.int64, device=device)


def batch_indices(keys: torch.Tensor, counter: int, batch_size: int, n: int) -> torch.Tensor:
    """Indices (M, batch_size) into a set of ``n`` examples, drawn with replacement.

    Entry ``j`` of member ``m`` is ``(mix(key_m + (c + 1)·γ) >> 11) mod n`` with
    ``c = counter·B + j`` (SplitMix64's ``c``-th output): a pure function of the key and
    the counter (the step, for training batches), computed on the keys' device. The
    modulo bias is below ``n / 2**53``.
    """
    j = torch.arange(batch_size, dtype=torch.int64, device=keys.device)
    c = int(counter) * int(batch_size) + j  # (B,)
    h = counter_rng.random64_torch(keys[:, None], c[None, :])
    return torch.remainder(counter_rng.srl(h, 11), int(n))
