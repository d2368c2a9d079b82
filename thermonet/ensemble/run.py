"""``train``: train a grid of scale-invariant networks as one ensemble into a run store.

Used by ``thermonet train``, studies and tests::

    from thermonet.ensemble import train
    train(model="convnet-si", width=8, dataset="mnist1d", protocol="fixed-lr",
          grid={"lr": [0.1, 0.3], "wd": [1e-3, 1e-2]}, seeds=[0, 1], steps=20_000,
          out="runs/net.zarr", device="cuda")

Every (hyperparameter point, seed) is one member (store order: hp₁, hp₂, …, seed). The
driver advances the :class:`~thermonet.ensemble.engine.EnsembleEngine` to the next log
or entropy step, writes that log (:meth:`EnsembleEngine.measure`) and entropy into the
store through the simulator's writer (:class:`thermonet.simulation.writer.RunStore`),
then advances ``steps_done``. The store schema is the simulator's (``kind`` =
``"network"``) plus ``train_accuracy``, ``test_loss``, ``test_accuracy``, ``snr``,
``batch_loss`` and ``diverged_at`` (hp…, seed; −1 when the member never diverged).

Checkpoints (``_train_checkpoint/state.pt`` inside the store: weights, queue,
accumulators, divergence flags) are written atomically every ``checkpoint_every``
seconds, when the run is interrupted and at ``stop_after``; ``resume=True`` continues
from the last one (the data between the checkpoint and ``steps_done`` are recomputed
and rewritten). Batches are counter-based, so a resumed run follows the same batches.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np

from thermonet import runs
from thermonet.errors import InputError, StoreError
from thermonet.runs import as_int as _int
from thermonet.runs import as_positive as _positive
from thermonet.runs import resolve_device

__all__ = ["KIND", "NETWORK_SERIES", "TrainSettings", "resolve_settings", "store_settings", "train"]

#: Store attribute ``kind``.
KIND = "network"
#: Network-only time series (after the simulator's).
NETWORK_SERIES = ("train_accuracy", "test_loss", "test_accuracy", "snr", "batch_loss")
_CHECKPOINT_DIR = "_train_checkpoint"
_CHECKPOINT_FILE = "state.pt"
_DTYPES = ("float32", "float64")
_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@attrs.frozen
class TrainSettings(runs.RunSettings):
    """Everything that determines a run's numbers (validated, defaults resolved)."""

    model: str
    width: int
    head_norm: float
    dataset: str
    data_dir: str | None
    samples_per_class: int | None
    protocol: str
    grid: dict  # name -> tuple of floats, protocol order
    seeds: tuple
    steps: int
    batch_size: int
    eval_batch_size: int
    log_every: int
    queue_size: int
    queue_every: int
    entropy_every: int
    entropy_method: str
    entropy_k: int
    grad_samples: int
    grad_chunk: int
    init_radius: float | None
    share_init: bool
    independent_batches: bool
    device: str
    dtype: str
    allow_tf32: bool
    compile: str | None
    checkpoint_every: float
    checkpoint_queue: bool
    max_memory: int | None
    threads: int | None = None
    autocast: str | None = None
    vectorize: str = "auto"

    def comparable(self) -> dict:
        """What must match on ``--resume`` (not the device nor the speed and memory options)."""
        skip = {"device", "compile", "checkpoint_every", "checkpoint_queue", "max_memory", "grad_chunk", "data_dir",
                "threads", "vectorize"}
        out = {k: v for k, v in attrs.asdict(self).items() if k not in skip and k != "grid"}
        out["seeds"] = [int(s) for s in self.seeds]
        out.update({f"grid:{k}": [float(x) for x in v] for k, v in self.grid.items()})
        return out


# ------------------------------------------------------------------------------ validation
def resolve_settings(*, model: str, width=8, head_norm=10.0, dataset: str = "mnist1d", data_dir=None,
                     samples_per_class=None, protocol: str, grid: Mapping[str, Sequence[float]], seeds=(0,),
                     steps, batch_size=128, eval_batch_size=None, log_every=None, queue_size=1000,
                     queue_every=None, entropy_every=None, entropy_method: str = "chord", entropy_k=1,
                     grad_samples=32, grad_chunk=1, init_radius=None, share_init=False,
                     independent_batches=False, device: str = "cpu", dtype: str = "float32", allow_tf32=False,
                     compile=None, checkpoint_every=600.0, checkpoint_queue=True, max_memory=None,
                     threads=None, autocast=None, vectorize="auto") -> TrainSettings:
    """Validate the inputs of :func:`train` and fill in defaults; raises :class:`InputError`."""
    from thermonet.data import parse_dataset_spec
    from thermonet.ensemble.memory import parse_bytes
    from thermonet.models import get_model_class
    from thermonet.theory.protocols import get_protocol

    get_model_class(str(model))
    width = _int(width, "--width", 1)
    head_norm = _positive(head_norm, "--head-norm")
    parse_dataset_spec(dataset)
    if samples_per_class is not None:
        samples_per_class = _int(samples_per_class, "--samples-per-class", 1)
    proto = get_protocol(protocol)
    grid = dict(grid or {})
    runs.unused_hyperparameters(proto, grid)
    values = {}
    for name in proto.hyperparameters:
        if name not in grid:
            raise InputError(f"{proto.name} needs --{name.replace('_', '-')} (a grid A:B:N or a comma list)")
        try:
            arr = np.atleast_1d(np.asarray(grid[name], dtype=np.float64))
        except (TypeError, ValueError):
            raise InputError(f"--{name.replace('_', '-')} must be numbers, got {grid[name]!r}") from None
        if arr.ndim != 1:
            raise InputError(f"--{name.replace('_', '-')} must be a 1-D list of values")
        if len(np.unique(arr)) != len(arr):
            raise InputError(f"--{name.replace('_', '-')} values must be distinct")
        values[name] = arr
    proto.validate(values)
    grid_t = {k: tuple(float(x) for x in v) for k, v in values.items()}
    seeds = runs.parse_seeds(seeds, "--seeds")
    steps = _int(steps, "--steps", 1)
    batch_size = _int(batch_size, "--batch-size", 2)
    eval_batch_size = batch_size if eval_batch_size is None else _int(eval_batch_size, "--eval-batch-size", 2)
    log_every = runs.resolve_log_every(log_every, steps, 100)
    queue_size = _int(queue_size, "--queue-size", 2)
    if queue_every is None:
        queue_every = max(1, steps // (2 * queue_size))
    queue_every = _int(queue_every, "--queue-every", 1)
    runs.check_queue_fills(steps, queue_size, queue_every)
    entropy_every = runs.resolve_entropy_every(entropy_every, steps, log_every)
    if entropy_method not in ("chord", "angles"):
        raise InputError(f"--entropy-method must be chord or angles, got {entropy_method!r}")
    entropy_k = runs.resolve_entropy_k(entropy_k, queue_size)
    grad_samples = _int(grad_samples, "--grad-samples", 1)
    grad_chunk = _int(grad_chunk, "--grad-chunk", 1)
    if init_radius is not None:
        if proto.name == "fixed-sphere":
            raise InputError("fixed-sphere starts on its sphere (--sphere-radius); --init-radius does not apply")
        init_radius = _positive(init_radius, "--init-radius")
    device = resolve_device(device)
    if dtype not in _DTYPES:
        raise InputError(f"--dtype must be float32 or float64, got {dtype!r}")
    if compile in (False, "", "none", "off"):
        compile = None
    if compile is True:
        compile = "default"
    if compile is not None and compile not in _COMPILE_MODES:
        raise InputError(f"--compile must be one of {', '.join(_COMPILE_MODES)}, got {compile!r}")
    checkpoint_every = _positive(checkpoint_every, "--checkpoint-every")
    if max_memory is not None:
        max_memory = parse_bytes(max_memory)
    if threads is not None:
        threads = _int(threads, "--threads", 1)
    if autocast in ("", "none", "off", False):
        autocast = None
    if autocast not in (None, "bf16"):
        raise InputError(f"--autocast must be bf16 or none, got {autocast!r}")
    from thermonet.ensemble.functional import resolve_vectorize

    resolve_vectorize(vectorize, "cpu")  # validates the name
    return TrainSettings(
        model=str(model), width=width, head_norm=head_norm, dataset=str(dataset),
        data_dir=None if data_dir is None else str(data_dir), samples_per_class=samples_per_class,
        protocol=proto.name, grid=grid_t, seeds=seeds, steps=steps, batch_size=batch_size,
        eval_batch_size=eval_batch_size, log_every=log_every, queue_size=queue_size, queue_every=queue_every,
        entropy_every=entropy_every, entropy_method=entropy_method, entropy_k=entropy_k,
        grad_samples=grad_samples, grad_chunk=grad_chunk, init_radius=init_radius, share_init=bool(share_init),
        independent_batches=bool(independent_batches), device=device, dtype=dtype, allow_tf32=bool(allow_tf32),
        compile=compile, checkpoint_every=checkpoint_every, checkpoint_queue=bool(checkpoint_queue),
        max_memory=max_memory, threads=threads, autocast=autocast, vectorize=vectorize,
    )


# ------------------------------------------------------------------------------ store <-> settings
_SETTING_ATTRS = ("model", "width", "head_norm", "dataset", "samples_per_class", "protocol", "seeds", "steps",
                  "batch_size", "eval_batch_size", "log_every", "queue_size", "queue_every", "entropy_every",
                  "entropy_method", "entropy_k", "grad_samples", "grad_chunk", "init_radius", "share_init",
                  "independent_batches", "device", "dtype", "allow_tf32", "compile", "checkpoint_every",
                  "checkpoint_queue", "max_memory", "data_dir", "threads", "autocast", "vectorize")


def store_settings(path: str | Path) -> dict:
    """Settings of an existing network run store, as keyword arguments of :func:`train`."""
    return runs.read_store_settings(
        path, KIND, "network-run", lambda attrs_, grid: {**{k: attrs_[k] for k in _SETTING_ATTRS if k in attrs_},
                                                         "grid": grid})


def _check_resumable(path: Path, settings: TrainSettings) -> dict:
    stored = store_settings(path)
    stored["device"] = settings.device  # the device may change between sessions
    return runs.check_resumable(path, settings.comparable(), resolve_settings(**stored).comparable())


# ------------------------------------------------------------------------------ checkpoint
def _checkpoint_path(out: Path) -> Path:
    return out / _CHECKPOINT_DIR / _CHECKPOINT_FILE


def save_checkpoint(out: Path, engine, settings: TrainSettings) -> None:
    """Write the engine state atomically (temporary file, fsync, rename)."""
    import torch

    path = _checkpoint_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = engine.state_dict(include_queue=settings.checkpoint_queue)
    state["settings"] = json.dumps(settings.comparable(), sort_keys=True)
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(out: Path) -> dict | None:
    import torch

    path = _checkpoint_path(out)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is a store problem
        raise StoreError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc}); "
                         f"use --overwrite to start again") from None


# ------------------------------------------------------------------------------ planning
def plan_memory(settings: TrainSettings, dataset) -> dict:
    """Build the model once on the CPU, estimate the run's memory and refuse what will not fit.

    Returns the estimate (bytes per component, plus ``dim`` and ``budget``).
    """
    import torch

    from thermonet.ensemble.functional import activation_elements
    from thermonet.ensemble.memory import check_memory, estimate_memory, format_bytes, memory_budget
    from thermonet.models import build_model, check_scale_invariance

    dtype = getattr(torch, settings.dtype)
    model = build_model(settings.model, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                        width=settings.width, head_norm=settings.head_norm, seed=0, dtype=torch.float64)
    dim = model.num_trained()
    if dim < 2:
        raise InputError(f"model {settings.model} has D = {dim} trained parameters; the sphere needs D >= 2")
    probe = dataset.x_train[: min(8, dataset.n_train)].to(device="cpu", dtype=torch.float64)
    deviation = check_scale_invariance(model, probe)
    if not deviation < 1e-6:
        raise InputError(f"model {settings.model} is not scale-invariant: scaling its trained parameters changes "
                         f"the outputs by {deviation:.2g} (relative); every trained layer must be bias-free and "
                         f"followed by BatchNorm without affine parameters, and the head must be fixed")
    acts = activation_elements(model, probe)
    estimate = estimate_memory(
        members=settings.members, dim=dim, queue_size=settings.queue_size, batch_size=settings.batch_size,
        eval_batch_size=settings.eval_batch_size, grad_chunk=settings.grad_chunk,
        activations_per_example=acts, dataset_bytes=dataset.nbytes() * dtype.itemsize // 4,
        dtype_bytes=dtype.itemsize, checkpoint_queue=settings.checkpoint_queue,
        device_type=settings.device.split(":")[0],
    )
    if settings.max_memory is not None:
        budget, where = settings.max_memory, f"--max-memory {format_bytes(settings.max_memory)}"
    else:
        budget, where = memory_budget(settings.device)
    check_memory(estimate, budget, where, members=settings.members, queue_size=settings.queue_size, dim=dim)
    return {**estimate, "dim": dim, "budget": budget, "activations_per_example": acts}


def _lambda_eff_fn(proto):
    """``lambda_eff(hp..., trace_sigma, grad_full_sq)`` from the protocol's formula, or None."""
    if proto.pressure_expr() is not None or not hasattr(proto, "effective_weight_decay_expr"):
        return None
    import sympy as sp

    from thermonet.theory.symbols import grad_sq, trace_sigma

    return sp.lambdify([*proto.symbols.values(), trace_sigma, grad_sq], proto.effective_weight_decay_expr(), "numpy")


def _create_store(out: Path, settings: TrainSettings, names, series, log_steps_arr, entropy_steps, attrs_):
    import warnings

    import zarr

    from thermonet.simulation.writer import RunStore

    RunStore.create(out, hp_coords={n: np.asarray(settings.grid[n]) for n in names}, seeds=settings.seeds,
                    log_steps=log_steps_arr, entropy_steps=entropy_steps, series=series, attrs=attrs_,
                    checkpoint_shapes={})
    lead = tuple(len(settings.grid[n]) for n in names) + (len(settings.seeds),)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
        arr = root.create_array("diverged_at", shape=lead, chunks=lead, dtype="int64", fill_value=-1,
                                dimension_names=[*names, "seed"])
        arr[...] = np.full(lead, -1, dtype=np.int64)
        zarr.consolidate_metadata(str(out))
    return RunStore(out)


class _InterruptFlag:
    """SIGINT/SIGTERM handlers that only record the signal, so the driver can stop at a
    step boundary with a consistent checkpoint (main thread only; elsewhere a no-op)."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def install(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # pragma: no cover - unusual embedding
                pass

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self) -> None:
        import signal

        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()


# ------------------------------------------------------------------------------ the driver
def train(out: str | Path = "runs/net.zarr", *, resume: bool = False, overwrite: bool = False,
          progress: bool = False, command: str | None = None, stop_after: int | None = None,
          **options) -> Path:
    """Train every grid point and seed as one ensemble; stream the results into ``out``.

    ``options`` are those of :func:`resolve_settings` (``model``, ``width``, ``dataset``,
    ``protocol``, ``grid``, ``seeds``, ``steps``, …). ``stop_after`` ends the run at that
    step with a checkpoint, as if killed there (for tests). Returns the store path.
    Raises :class:`InputError` for bad settings (including a run that would not fit in
    memory) and :class:`StoreError` for store problems.
    """
    import torch

    settings = resolve_settings(**options)
    if settings.threads is None:
        return _train(settings, out, resume, overwrite, progress, command, stop_after)
    old = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _train(settings, out, resume, overwrite, progress, command, stop_after)
    finally:
        torch.set_num_threads(old)


def _train(settings: TrainSettings, out, resume: bool, overwrite: bool, progress: bool, command: str | None,
           stop_after: int | None) -> Path:
    import torch
    from tqdm import tqdm

    from thermonet.data import load_dataset
    from thermonet.ensemble.engine import EnsembleEngine
    from thermonet.simulation.engine import log_steps, member_grid
    from thermonet.theory.protocols import get_protocol

    out = Path(out)
    proto = get_protocol(settings.protocol)
    names = proto.hyperparameters
    action = runs.prepare_store(out, resume=resume, overwrite=overwrite, progress=progress,
                                check=lambda path: _check_resumable(path, settings))
    if action == "complete":
        return out
    existing = action == "resume"

    dtype = getattr(torch, settings.dtype)
    dataset = load_dataset(settings.dataset, data_dir=settings.data_dir, samples_per_class=settings.samples_per_class,
                           device="cpu", dtype=torch.float32)
    plan = plan_memory(settings, dataset)
    if action == "overwrite":  # only once the run is known to fit
        shutil.rmtree(out)

    hp, member_seeds = member_grid(settings.grid, names, settings.seeds)
    lead = tuple(len(settings.grid[n]) for n in names) + (len(settings.seeds),)
    members = settings.members
    engine = EnsembleEngine(
        model=settings.model, width=settings.width, head_norm=settings.head_norm, dataset=dataset, protocol=proto,
        hp=hp, seeds=member_seeds, batch_size=settings.batch_size, queue_size=settings.queue_size,
        queue_every=settings.queue_every, grad_samples=settings.grad_samples,
        eval_batch_size=settings.eval_batch_size, init_radius=settings.init_radius,
        init_seed=settings.seeds[0] if settings.share_init else None,
        independent_batches=settings.independent_batches, device=settings.device, dtype=dtype,
        allow_tf32=settings.allow_tf32, compile=settings.compile or False, grad_chunk=settings.grad_chunk,
        autocast=settings.autocast, vectorize=settings.vectorize,
    )
    log_steps_arr = log_steps(settings.steps, settings.log_every)
    entropy_steps = settings.entropy_steps()
    log_index = {int(s): i for i, s in enumerate(log_steps_arr)}
    entropy_index = {int(s): i for i, s in enumerate(entropy_steps)}
    events = np.union1d(log_steps_arr, entropy_steps)
    from thermonet.simulation.writer import series_variables

    series = series_variables(proto.pressure_expr() is None) + NETWORK_SERIES

    if existing:
        from thermonet.simulation.writer import RunStore

        store = RunStore(out)
        state = load_checkpoint(out)
        if state is not None:
            engine.load_state_dict(state)
        runs.mark_resumed(store)
    else:
        if out.parent and not out.parent.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
        fields = {
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(settings).items()
               if k in _SETTING_ATTRS},
            "dataset_info": json.dumps(dataset.info), "num_classes": dataset.num_classes,
            "n_train": dataset.n_train, "n_test": dataset.n_test, "input_shape": list(dataset.input_shape),
            "torch_version": torch.__version__,
            "memory_estimate_bytes": int(plan["total"]),
        }
        attrs_ = runs.new_store_attrs(kind=KIND, protocol=settings.protocol, hyperparameters=names,
                                      dim=int(engine.dim), fields=fields, command=command)
        attrs_["seeds"] = [int(s) for s in settings.seeds]
        store = _create_store(out, settings, names, series, log_steps_arr, entropy_steps, attrs_)

    lambda_eff = _lambda_eff_fn(proto)
    hp_cols = [hp[:, i] for i in range(len(names))]
    end = settings.steps if stop_after is None else min(settings.steps, _int(stop_after, "stop_after", 0))
    import zarr

    diverged_array = zarr.open_array(str(out / "diverged_at"), mode="r+")

    t = engine.t
    interrupted = _InterruptFlag()
    bar = tqdm(total=settings.steps * members, initial=t * members, unit="member-step", unit_scale=True,
               dynamic_ncols=True, disable=not progress, file=sys.stderr,
               desc=f"{settings.model} {settings.protocol} x{members}")
    last_checkpoint = time.monotonic()
    piece = 25
    try:
        interrupted.install()
        while t < end:
            if interrupted.signal is not None:
                # Ctrl-C / SIGTERM arrived during the last piece: stop at this step boundary
                save_checkpoint(out, engine, settings)
                store.update_attrs(steps_done=t)
                print(f"thermonet: interrupted at step {t}; checkpoint written, continue with --resume",
                      file=sys.stderr)
                raise KeyboardInterrupt
            following = events[events > t]
            stop = int(min(end, following[0] if following.size else end, t + piece))
            tic = time.perf_counter()
            engine.advance(stop - t)
            elapsed = time.perf_counter() - tic
            bar.update((stop - t) * members)
            # keep the bar moving about twice a second
            piece = int(max(1, min(1000, (stop - t) * 0.5 / elapsed))) if elapsed > 0 else piece * 2
            t = stop
            wrote = False
            if t in log_index:
                values = engine.measure(log_index[t])
                if lambda_eff is not None:
                    values["lambda_eff"] = np.asarray(
                        lambda_eff(*hp_cols, values["trace_sigma"], values["grad_full_sq"]), dtype=np.float64)
                store.write_series(log_index[t], {k: values[k].reshape(*lead, 1) for k in series})
                wrote = True
            if t in entropy_index:
                s1, s = engine.entropies(settings.entropy_k, settings.entropy_method)
                store.write_entropy(entropy_index[t], {"entropy_sphere": s1.reshape(lead), "entropy": s.reshape(lead)})
                wrote = True
            if wrote:
                diverged_array[...] = engine.diverged().reshape(lead)
                if time.monotonic() - last_checkpoint >= settings.checkpoint_every and t < settings.steps:
                    save_checkpoint(out, engine, settings)
                    last_checkpoint = time.monotonic()
                store.update_attrs(steps_done=t)
        if t >= settings.steps:
            diverged_array[...] = engine.diverged().reshape(lead)
            store.update_attrs(steps_done=settings.steps, complete=True, finished=runs.now())
            shutil.rmtree(out / _CHECKPOINT_DIR, ignore_errors=True)
        else:
            save_checkpoint(out, engine, settings)
            store.update_attrs(steps_done=t)
    finally:
        interrupted.restore()
        bar.close()
    return out
