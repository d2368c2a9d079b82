"""The settings of a run, each option declared once (:mod:`thermonet.base.options`).

* :class:`RunSettings` -- what every ensemble run has: protocol, grid, seeds, steps, the
  log and entropy schedule, device, checkpoint and flush intervals;
* :class:`IsotropicSettings` -- ``thermonet simulate isotropic`` / :func:`thermonet.runs.simulate`;
* :class:`TrainSettings` -- ``thermonet train`` / :func:`thermonet.runs.train`.

Each field's declaration gives its flag, its parser (and so its error message), whether
the store records it and whether ``--resume`` may change it. The hyperparameter grid is
not an option of its own: its flags come from the protocols' declared hyperparameters
(:func:`hyperparameter_flags`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from thermonet.base.options import OptionSet, boolean, choice, integer, number, option, optional, text
from thermonet.errors import InputError

__all__ = [
    "ENTROPY_METHODS",
    "IsotropicSettings",
    "RunSettings",
    "TrainSettings",
    "hyperparameter_flags",
    "parse_seeds",
    "resolve_device",
]

#: ``--entropy-method``: every method of :func:`thermonet.estimators.spherical_entropy`
#: (the same names; a test keeps the two lists equal). ``auto`` means, for isotropic runs,
#: ``angles`` at D = 3 (the paper) and ``chord`` otherwise (the exact vMF entropy check
#: measures that estimator); for networks the estimator's own ``auto``: ``elliptical``
#: when the queue has more samples than the sphere has dimensions, otherwise an upper
#: bound with an ``EstimabilityWarning`` (docs/entropy-estimators.md, "N ≤ D").
ENTROPY_METHODS = ("auto", "elliptical", "gauss", "gauss-knn", "isotropic-bound", "chord", "angles")
#: Seeds are stored as int64 coordinates.
MAX_SEED = 2**63 - 1


# ------------------------------------------------------------------------------ parsers
def protocol_name(value: Any, label: str) -> str:
    """A registered protocol's name."""
    from thermonet.theory.protocols import Protocol

    try:
        return Protocol.get(str(value)).name
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None


def energy_name(value: Any, label: str) -> str:
    """A registered isotropic energy's name (not instantiated: that allocates D numbers)."""
    from thermonet.engines.isotropic.energies import Energy

    try:
        return Energy.get(str(value)).name
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None


def model_name(value: Any, label: str) -> str:
    """A registered model's name."""
    from thermonet.models import get_model_class

    try:
        get_model_class(str(value))
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None
    return str(value)


def dataset_spec(value: Any, label: str) -> str:
    """A dataset spec ``NAME[:key=value,...]`` (checked, kept as given)."""
    from thermonet.engines.network.data import parse_dataset_spec

    parse_dataset_spec(str(value))
    return str(value)


def parse_seeds(value: Any, label: str) -> tuple[int, ...]:
    """Distinct seeds in 0 .. 2**63-1 from an int, a comma list with ranges (``"0-7,10"``) or a
    sequence."""
    if isinstance(value, (int, np.integer)):
        value = [value]
    seed = integer(minimum=0, maximum=MAX_SEED)
    if isinstance(value, str):
        items: list[Any] = []
        for part in (p.strip() for p in value.split(",")):
            if "-" in part.lstrip("-") and not part.startswith("-"):
                low, high = (seed(x, label) for x in part.split("-", 1))
                if high < low:
                    raise InputError(f"{label}: range {part!r} runs backwards")
                if high - low >= 1_000_000:
                    raise InputError(f"{label}: range {part!r} has more than a million seeds")
                items.extend(range(low, high + 1))
            elif part:
                items.append(part)
        value = items
    out = tuple(seed(s, label) for s in value)
    if not out:
        raise InputError(f"{label}: give at least one seed")
    if len(set(out)) != len(out):
        raise InputError(f"{label}: seeds must be distinct, got {list(out)}")
    return out


def resolve_device(device: Any, label: str = "--device") -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available); ``None`` is ``cpu``."""
    device = "cpu" if device is None else str(device).strip().lower()
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"{label} {device}: CUDA is not available on this machine (use --device cpu or auto)")
        if ":" in device:
            index = integer(minimum=0)(device.split(":", 1)[1], f"{label} cuda:N")
            if index >= torch.cuda.device_count():
                raise InputError(f"{label} {device}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise InputError(f"{label} must be cpu, cuda, cuda:N or auto, got {device!r}")


def memory_size(value: Any, label: str) -> int:
    from thermonet.engines.network.memory import parse_bytes

    return parse_bytes(value, label)


def compile_mode(value: Any, label: str) -> str | None:
    if value is True:
        return "default"
    return choice("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs",
                  none=("", "none", "off"))(value, label)


def scheduler_address(value: Any, label: str) -> str:
    """A Dask scheduler: ``tcp://host:port``, ``host:port`` or the path of a scheduler file."""
    address = str(value).strip()
    if not address or any(c.isspace() for c in address):
        raise InputError(f"{label} must be a Dask scheduler address such as tcp://10.0.0.5:8786 or the path of a "
                         f"scheduler file, got {value!r}")
    return address


def hyperparameter_flags() -> dict[str, tuple[str, str]]:
    """Every registered protocol's hyperparameters: name -> (flag, help)."""
    from thermonet.theory.protocols import Protocol

    out: dict[str, tuple[str, list[str], str]] = {}
    for cls in Protocol.registered().values():
        for spec in cls.hyperparameter_specs:
            entry = out.setdefault(spec.name, (spec.flag, [], spec.meaning))
            entry[1].append(cls.name)
    return {name: (flag, f"{meaning} ({', '.join(users)}): A:B:N or a comma list")
            for name, (flag, users, meaning) in out.items()}


# ------------------------------------------------------------------------------ settings
@attrs.frozen(kw_only=True)
class RunSettings(OptionSet):
    """Options every ensemble run has (see the module docstring)."""

    protocol: str = option(flag="--protocol", parse=protocol_name, required=True,
                           help="training protocol: fixed-lr, fixed-elr, fixed-sphere or a registered one")
    grid: dict = attrs.field(factory=dict)  #: hyperparameter name -> tuple of values (protocol order)
    seeds: tuple = option((0,), flag="--seeds", aliases=("--seed",), parse=parse_seeds,
                          help="seed or comma list of seeds")
    steps: int = option(flag="--steps", parse=integer(minimum=1), required=True, help="SGD steps per member")
    log_every: int | None = option(flag="--log-every", parse=integer(minimum=1),
                                   help="steps between time-series logs")
    queue_size: int = option(1000, flag="--queue-size", parse=integer(minimum=2),
                             help="weight samples N in the entropy queue")
    queue_every: int | None = option(flag="--queue-every", parse=integer(minimum=1),
                                     help="steps between queued samples")
    entropy_every: int | None = option(flag="--entropy-every", parse=integer(minimum=1),
                                       help="steps between entropy estimates once the queue is full "
                                            "(default ~steps/20, a multiple of --log-every)")
    entropy_method: str = option("auto", flag="--entropy-method", parse=choice(*ENTROPY_METHODS),
                                 help="entropy estimator: " + ", ".join(ENTROPY_METHODS) + " (auto: for simulate, "
                                      "angles at D = 3 as in the paper, else chord; for train, elliptical when the "
                                      "queue is longer than D, else an upper bound with a warning; see "
                                      "docs/entropy-estimators.md)")
    entropy_k: int = option(1, flag="--entropy-k", parse=integer(minimum=1),
                            help="neighbour rank k of the entropy estimator")
    init_radius: float | None = option(flag="--init-radius", parse=number(positive=True),
                                       help="initial radius of the weights, where the protocol allows one "
                                            "(not fixed-sphere)")
    momentum: float = option(0.0, flag="--momentum", parse=number(minimum=0),
                             help="heavy-ball momentum beta in [0, 1): the protocol moves along v <- beta v + g "
                                  "(a control: the theory describes plain SGD, beta = 0)")
    checkpoint_every: float = option(60.0, flag="--checkpoint-every", parse=number(positive=True), resume="free",
                                     help="seconds between checkpoints")
    flush_seconds: float = option(2.0, flag="--flush-seconds", parse=number(positive=True), resume="free",
                                  store=False, help="target seconds of work between writes to the store")
    # where the members run (thermonet.runs.shards); the store records the blocks, not these
    workers: int | None = option(flag="--workers", parse=integer(minimum=1), resume="free", store=False,
                                 help="run the grid as shards on a local Dask cluster of this many worker processes "
                                      "(needs thermonet[distributed]; docs/scale-out.md)")
    shards: int | None = option(flag="--shards", parse=integer(minimum=1), resume="free", store=False,
                                help="cut the grid into this many blocks of members, each written to its own chunks "
                                     "(default: --workers, or the scheduler's workers; alone: run them one after "
                                     "another in this process); on --resume the store's blocks are kept")
    scheduler: str | None = option(flag="--scheduler", parse=scheduler_address, resume="free", store=False,
                                   metavar="ADDRESS",
                                   help="run the shards on the workers of a running Dask scheduler (tcp://host:port "
                                        "or a scheduler file: dask-jobqueue, dask-cuda, 'dask scheduler')")

    # the store's dimension of each member and the schedule ------------------------
    def _broken(self) -> list[str]:
        """The theory's assumptions this run breaks on purpose, as ``option=value``."""
        return [f"momentum={self.momentum:g}"] if self.momentum != 0 else []

    @property
    def control(self) -> str:
        """What the run breaks on purpose (``"none"``: the system the theory describes); see
        ``thermonet study controls``. Stored as the attribute ``control``."""
        return ",".join(self._broken()) or "none"

    @property
    def is_control(self) -> bool:
        return bool(self._broken())

    @property
    def members(self) -> int:
        return int(np.prod([len(v) for v in self.grid.values()])) * len(self.seeds)

    @property
    def lead_shape(self) -> tuple[int, ...]:
        """The members' shape in the store: (len(hp₁), len(hp₂), …, len(seeds))."""
        return tuple(len(v) for v in self.grid.values()) + (len(self.seeds),)

    @property
    def sharded(self) -> bool:
        """Whether the run is asked to run as shards (``--shards``, ``--workers`` or ``--scheduler``)."""
        return self.shards is not None or self.workers is not None or self.scheduler is not None

    def member_block(self, block: Sequence[slice] = ()) -> tuple[dict[str, tuple], tuple[int, ...]]:
        """The grid and the seeds of the members in ``block`` (slices along hp₁, hp₂, …,
        seed, a shard of :class:`thermonet.store.layout.Layout`; ``()``: every member)."""
        if not block:
            return dict(self.grid), tuple(self.seeds)
        *along_grid, along_seeds = block
        return ({name: tuple(values[s]) for (name, values), s in zip(self.grid.items(), along_grid)},
                tuple(self.seeds[along_seeds]))

    def protocol_object(self):
        from thermonet.theory.protocols import get_protocol

        return get_protocol(self.protocol)

    def entropy_steps(self) -> np.ndarray:
        """Steps at which the queue entropy is computed: every ``entropy_every`` once the
        queue is full (step ``queue_size * queue_every``), plus the last step."""
        fill = self.queue_size * self.queue_every
        first = -(-fill // self.entropy_every) * self.entropy_every
        steps = list(range(first, self.steps + 1, self.entropy_every))
        if not steps or steps[-1] != self.steps:
            steps.append(self.steps)
        return np.asarray(steps, dtype=np.int64)

    # derived defaults and combinations --------------------------------------------
    def _grid(self) -> dict:
        protocol = self.protocol_object()
        grid = dict(self.grid or {})
        extra = [k for k in grid if k not in protocol.hyperparameters]
        if extra:
            given = ", ".join(protocol.spec(k).flag if k in protocol.hyperparameters else "--" + k.replace("_", "-")
                              for k in extra)
            need = ", ".join(s.flag for s in protocol.hyperparameter_specs)
            raise InputError(f"{protocol.name} does not use {given}; it takes {need}")
        values = {}
        for spec in protocol.hyperparameter_specs:
            if grid.get(spec.name) is None:
                raise InputError(f"{protocol.name} needs {spec.flag} ({spec.meaning}: a grid A:B:N or a comma list)")
            try:
                arr = np.atleast_1d(np.asarray(grid[spec.name], dtype=np.float64))
            except (TypeError, ValueError):
                raise InputError(f"{spec.flag}: not a list of numbers: {grid[spec.name]!r}") from None
            if arr.ndim != 1 or arr.size == 0:
                raise InputError(f"{protocol.name}: the {spec.flag} grid must be a non-empty 1-D list of values")
            if len(np.unique(arr)) != arr.size:
                raise InputError(f"{spec.flag}: grid values must be distinct")
            values[spec.name] = arr
        protocol.validate(values)
        return {name: tuple(float(x) for x in values[name]) for name in protocol.hyperparameters}

    def _schedule(self, logs: int, queue_every: int) -> dict[str, Any]:
        """``log_every`` (about ``logs`` logs), ``queue_every``, ``entropy_every``, ``entropy_k``, checked."""
        log_every = max(1, self.steps // logs) if self.log_every is None else self.log_every
        if log_every > self.steps:
            raise InputError(f"--log-every {log_every} exceeds --steps {self.steps}")
        queue_every = queue_every if self.queue_every is None else self.queue_every
        if self.queue_size * queue_every > self.steps:
            raise InputError(
                f"--steps {self.steps} is too few to fill the entropy queue: queue-size x queue-every = "
                f"{self.queue_size} x {queue_every} = {self.queue_size * queue_every} steps are needed")
        entropy_every = self.entropy_every
        if entropy_every is None:
            entropy_every = max(1, self.steps // 20)
            if entropy_every >= log_every:
                entropy_every -= entropy_every % log_every
        if self.entropy_k >= self.queue_size:
            raise InputError(f"--entropy-k {self.entropy_k} must be smaller than --queue-size {self.queue_size}")
        return {"log_every": log_every, "queue_every": queue_every, "entropy_every": entropy_every}

    def _controls(self) -> None:
        if not self.momentum < 1:
            raise InputError(f"--momentum must be < 1 (heavy-ball SGD diverges at 1), got {self.momentum:g}")

    def _check_distribution(self, grid: dict) -> None:
        """``--workers`` and ``--scheduler`` exclude each other; no more shards than members."""
        if self.workers is not None and self.scheduler is not None:
            raise InputError("--workers and --scheduler exclude each other: --workers starts a local Dask cluster, "
                             "--scheduler uses a running one")
        members = int(np.prod([len(v) for v in grid.values()])) * len(self.seeds)
        if self.shards is not None and self.shards > members:
            raise InputError(f"--shards {self.shards} exceeds the {members} members of the grid")

    def _init_radius(self, grid: dict) -> None:
        """The protocol refuses ``init_radius`` where it puts the members itself (the sphere)."""
        if self.init_radius is not None:
            first = {name: np.asarray(values[:1]) for name, values in grid.items()}
            self.protocol_object().initial_radius(first, self.init_radius)

    # the store ------------------------------------------------------------------------
    @classmethod
    def stored(cls, attrs_: Mapping[str, Any], grid: Mapping[str, Sequence[float]]) -> dict[str, Any]:
        """Keyword arguments of :meth:`resolve` from a store's attributes and grid."""
        return {**cls.from_store_attrs(cls.legacy(dict(attrs_))), "grid": {k: list(v) for k, v in grid.items()}}

    @staticmethod
    def legacy(attrs_: dict[str, Any]) -> dict[str, Any]:
        """Attributes of stores written by thermonet 0.1, in today's spelling."""
        if isinstance(attrs_.get("init_radius"), str):  # 0.1 wrote "sphere_radius" for the sphere's own radius
            attrs_["init_radius"] = None
        return attrs_

    def grid_comparable(self) -> dict[str, list[float]]:
        return {f"grid:{k}": [float(x) for x in v] for k, v in self.grid.items()}


def _memory_budget(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[1] * 0.8)
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 62


@attrs.frozen(kw_only=True)
class IsotropicSettings(RunSettings):
    """The isotropic test system: ``thermonet simulate isotropic`` (THEORY §7)."""

    dim: int = option(3, flag="--dim", parse=integer(minimum=2), help="dimension D of the weights (>= 2)")
    steps: int = option(2_000_000, flag="--steps", parse=integer(minimum=1), help="SGD steps per member")
    sigma: float = option(1.0, flag="--sigma", parse=number(positive=True), help="noise level σ at unit norm")
    energy: str = option("linear", flag="--energy", parse=energy_name,
                         help="energy: linear, L = 1 + <μ, w>/|w|, or a registered one")
    energy_seed: int = option(0, flag="--energy-seed", parse=integer(minimum=0, maximum=MAX_SEED),
                              help="seed of the energy's random parameters (the unit μ)")
    queue_every: int = option(50, flag="--queue-every", parse=integer(minimum=1),
                              help="steps between queued samples")
    device: str = option("cpu", flag="--device", parse=resolve_device, compare=lambda d: str(d).split(":")[0],
                         help="cpu, cuda, cuda:N or auto = cuda when available (for small ensembles at D below "
                              "~100 the CPU kernel is faster)")
    backend: str | None = option(flag="--backend", parse=choice("numba", "torch"),
                                 help="advanced: numba (CPU default) or torch (CUDA default; slow on CPU)")
    noise_anisotropy: float = option(1.0, flag="--noise-anisotropy", parse=number(minimum=1),
                                     help="ratio of the largest to the smallest per-direction noise scale (1: "
                                          "isotropic, the theory's assumption; > 1: a control)")
    noise_dof: int | None = option(flag="--noise-dof", parse=integer(minimum=3),
                                   help="Student-t noise with this many degrees of freedom, scaled to unit variance "
                                        "(heavy tails, a control; default Gaussian)")

    noise_trend: float = option(0.0, flag="--noise-trend", parse=number(),
                                help="noise level varying over the grid, sigma^2 ~ x^VALUE with x the protocol's "
                                     "noise-trend variable (lr*wd, elr, lr/sphere_radius^2) relative to its "
                                     "geometric mean on the grid (0: one constant level, the theory's assumption; "
                                     "else a control, as networks behave)")

    def _broken(self) -> list[str]:
        broken = super()._broken()
        if self.noise_anisotropy != 1:
            broken.append(f"noise_anisotropy={self.noise_anisotropy:g}")
        if self.noise_dof is not None:
            broken.append(f"noise_dof={self.noise_dof}")
        if self.noise_trend != 0:
            broken.append(f"noise_trend={self.noise_trend:g}")
        return broken

    def derive(self) -> "IsotropicSettings":
        updates: dict[str, Any] = {"grid": self._grid(), **self._schedule(logs=1000, queue_every=self.queue_every)}
        self._init_radius(updates["grid"])
        self._controls()
        self._check_distribution(updates["grid"])
        if self.entropy_method == "auto":
            updates["entropy_method"] = "angles" if self.dim == 3 else "chord"
        backend = self.backend or ("numba" if self.device == "cpu" else "torch")
        if backend == "numba" and self.device != "cpu":
            raise InputError("--backend numba runs on the CPU only; use --backend torch with CUDA")
        updates["backend"] = backend
        settings = attrs.evolve(self, **updates)
        settings._check_memory()
        return settings

    def _check_memory(self) -> None:
        """Refuse, before anything is allocated, a run that cannot fit."""
        need = 8 * self.members * (self.queue_size * self.dim * 3 + self.dim * 4)  # queue (+ checkpoint), state
        budget = _memory_budget(self.device)
        if need > budget:
            raise InputError(
                f"{self.members} members x queue {self.queue_size} x D={self.dim} needs about {need / 2**30:.1f} GiB, "
                f"more than the {budget / 2**30:.1f} GiB available on {self.device}; use fewer members, a smaller "
                f"--queue-size or several runs")


@attrs.frozen(kw_only=True)
class TrainSettings(RunSettings):
    """Ensembles of scale-invariant networks: ``thermonet train``."""

    model: str = option(flag="--model", parse=model_name, required=True,
                        help="network: convnet-si, resnet18-si, convnet1d-si, mlp-si or a registered one")
    width: int = option(8, flag="--width", parse=integer(minimum=1), help="width multiplier k")
    head_norm: float = option(10.0, flag="--head-norm", parse=number(positive=True),
                              help="norm of the fixed last layer")
    dataset: str = option("mnist1d", flag="--dataset", parse=dataset_spec,
                          help="mnist1d, cifar10, cifar100 or teacher; options as NAME:key=value,... "
                               "(e.g. teacher:n_train=2000,noise=0.1)")
    data_dir: str | None = option(flag="--data-dir", parse=text, resume="free",
                                  help="directory holding CIFAR in the python-pickle layout (default $THERMONET_DATA "
                                       "or ./data); nothing is ever downloaded")
    samples_per_class: int | None = option(flag="--samples-per-class", parse=integer(minimum=1),
                                           help="balanced training subset: this many examples per class")
    batch_size: int = option(128, flag="--batch-size", parse=integer(minimum=2),
                             help="mini-batch size B, drawn with replacement every step")
    eval_batch_size: int | None = option(flag="--eval-batch-size", parse=integer(minimum=2),
                                         help="chunk size for test-set evaluation (default: --batch-size)")
    queue_every: int | None = option(flag="--queue-every", parse=integer(minimum=1),
                                     help="steps between queued samples (default: the queue spans the last half)")
    grad_samples: int = option(32, flag="--grad-samples", parse=integer(minimum=1),
                               help="K stochastic gradients per log step for trace Sigma")
    grad_chunk: int = option(1, flag="--grad-chunk", parse=integer(minimum=1), resume="free",
                             help="stochastic gradients per vectorised call (speed vs memory)")
    init_radius: float | None = option(flag="--init-radius", parse=number(positive=True),
                                       help="rescale the initial trained vector to this norm (fixed-lr, fixed-elr)")
    share_init: bool = option(False, flag="--share-init", parse=boolean, switch=True,
                              help="every member starts from the initial point of the first seed")
    independent_batches: bool = option(False, flag="--independent-batches", parse=boolean, switch=True,
                                       help="batches keyed by seed and hyperparameters (default: by seed, so the "
                                            "grid points of one seed see the same batches)")
    device: str = option("cpu", flag="--device", parse=resolve_device, resume="free",
                         help="cpu, cuda, cuda:N or auto")
    dtype: str = option("float32", flag="--dtype", parse=choice("float32", "float64"), help="float32 or float64")
    allow_tf32: bool = option(False, flag="--tf32", parse=boolean, switch=True,
                              help="allow TF32 for float32 convolutions and matmuls on CUDA")
    compile: str | None = option(flag="--compile", parse=compile_mode, resume="free",
                                 help="torch.compile the training step: default, reduce-overhead or max-autotune")
    checkpoint_every: float = option(600.0, flag="--checkpoint-every", parse=number(positive=True), resume="free",
                                     help="seconds between checkpoints")
    checkpoint_queue: bool = option(True, flag="--no-queue-checkpoint", parse=boolean, switch=False, resume="free",
                                    help="leave the entropy queue out of checkpoints (smaller; after a resume the "
                                         "queue refills before the next entropy)")
    group_entropy: bool = option(True, flag="--no-group-entropy", parse=boolean, switch=False, resume="free",
                                 help="leave out the entropy of every scale-invariant group (estimated from the group's "
                                      "coordinates of the same queue; about doubles the entropy time)")
    max_memory: int | None = option(flag="--max-memory", parse=memory_size, resume="free",
                                    help="memory the run may use, e.g. 8GiB (default: from the device)")
    threads: int | None = option(flag="--threads", parse=integer(minimum=1), resume="free",
                                 help="CPU threads for torch (default: torch's choice; 1 is best on a busy machine)")
    autocast: str | None = option(flag="--autocast", parse=choice("bf16", none=("", "none", "off")),
                                  help="bf16: forward/backward of training steps in bfloat16 (weights, updates and "
                                       "measurements stay in --dtype); default none")
    bn_eps: float = option(1e-12, flag="--bn-eps", parse=number(positive=True),
                           help="BatchNorm epsilon; values far above the pre-BN variances break the scale "
                                "invariance (a control)")
    train_head: bool = option(False, flag="--train-head", parse=boolean, switch=True,
                              help="train the last layer too, which breaks the scale invariance (a control)")
    vectorize: str = option("auto", flag="--vectorize", parse=choice("auto", "vmap", "loop"), resume="free",
                            help="how members are evaluated: vmap (one call, grouped convolutions; GPU), loop "
                                 "(member by member, dense layers) or auto (vmap on CUDA; on a CPU the loop for "
                                 "networks with >= 16384 activations per example, else vmap)")

    def _broken(self) -> list[str]:
        broken = super()._broken()
        if self.train_head:
            broken.append("train_head")
        if self.bn_eps > 1e-6:
            broken.append(f"bn_eps={self.bn_eps:g}")
        return broken

    def derive(self) -> "TrainSettings":
        queue_every = max(1, self.steps // (2 * self.queue_size))
        updates: dict[str, Any] = {"grid": self._grid(), **self._schedule(logs=100, queue_every=queue_every)}
        self._check_distribution(updates["grid"])
        if self.eval_batch_size is None:
            updates["eval_batch_size"] = self.batch_size
        self._init_radius(updates["grid"])
        self._controls()
        return attrs.evolve(self, **updates)
