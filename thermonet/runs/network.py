"""``train``: a grid of scale-invariant networks trained as one ensemble into a run store.

Used by ``thermonet train``, studies and tests::

    from thermonet.runs import train
    train(model="convnet-si", width=8, dataset="mnist1d", protocol="fixed-lr",
          grid={"lr": [0.1, 0.3], "wd": [1e-3, 1e-2]}, seeds=[0, 1], steps=20_000,
          out="runs/net.zarr", device="cuda")

Every (hyperparameter point, seed) is one member (store order: hp₁, hp₂, …, seed). The
engine is :class:`thermonet.engines.network.EnsembleEngine`; the driver loop, the store
and the checkpoint are those of every run (:func:`thermonet.runs.driver.run`). The store
schema is the simulator's (``kind`` = ``"network"``) plus ``train_accuracy``,
``test_loss``, ``test_accuracy``, ``snr``, ``batch_loss``, ``diverged_at`` (hp…, seed;
−1 when the member never diverged) and the per-group variables over the model's
scale-invariant groups (dimension ``group``: ``rho_group``, ``temperature_group``, …). Batches are counter-based, so a resumed run follows
the same batches.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from thermonet.errors import InputError
from thermonet.runs import driver
from thermonet.runs.options import TrainSettings

__all__ = ["KIND", "TrainSettings", "plan_memory", "resolve_settings", "store_settings", "train"]

#: Store attribute ``kind``.
KIND = "network"


def resolve_settings(**options) -> TrainSettings:
    """Validate the options of :func:`train` and fill in defaults; raises :class:`InputError`."""
    return TrainSettings.resolve(**options)


def store_settings(path: str | Path) -> dict:
    """Settings of an existing network run store, as keyword arguments of :func:`train`."""
    return driver.stored_settings(path, KIND, TrainSettings)


def plan_memory(settings: TrainSettings, dataset) -> dict:
    """Build the model once on the CPU, estimate the run's memory and refuse what will not fit.

    Returns the estimate (bytes per component, plus ``dim`` and ``budget``).
    """
    import torch

    from thermonet.engines.network.functional import activation_elements
    from thermonet.engines.network.memory import check_memory, estimate_memory, format_bytes, memory_budget
    from thermonet.models import build_model, check_group_invariance, check_scale_invariance

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
    groups = check_group_invariance(model, probe)
    broken = {name: value for name, value in groups.items() if not value < 1e-6}
    if broken:
        shown = ", ".join(f"{name} ({value:.2g})" for name, value in list(broken.items())[:3])
        raise InputError(f"model {settings.model}: scaling one scale group alone changes the outputs: {shown} "
                         f"(relative); its group_parameters() must list parameters that scale together")
    acts = activation_elements(model, probe)
    estimate = estimate_memory(
        members=settings.members, dim=dim, queue_size=settings.queue_size, batch_size=settings.batch_size,
        eval_batch_size=settings.eval_batch_size, grad_chunk=settings.grad_chunk,
        activations_per_example=acts, dataset_bytes=dataset.nbytes() * dtype.itemsize // 4,
        dtype_bytes=dtype.itemsize, checkpoint_queue=settings.checkpoint_queue,
        device_type=settings.device.split(":")[0],
        group_entropy_dim=max(g.size for g in model.scale_groups()) if settings.group_entropy else 0,
    )
    if settings.max_memory is not None:
        budget, where = settings.max_memory, f"--max-memory {format_bytes(settings.max_memory)}"
    else:
        budget, where = memory_budget(settings.device)
    check_memory(estimate, budget, where, members=settings.members, queue_size=settings.queue_size, dim=dim)
    return {**estimate, "dim": dim, "budget": budget, "activations_per_example": acts}


def _engine(settings: TrainSettings):
    """Load the data, refuse a run that will not fit, then build the ensemble."""
    import torch

    from thermonet.engines.common import member_grid
    from thermonet.engines.network.data import load_dataset
    from thermonet.engines.network.engine import EnsembleEngine

    protocol = settings.protocol_object()
    dataset = load_dataset(settings.dataset, data_dir=settings.data_dir, samples_per_class=settings.samples_per_class,
                           device="cpu", dtype=torch.float32)
    plan = plan_memory(settings, dataset)
    hp, member_seeds = member_grid(settings.grid, protocol.hyperparameters, settings.seeds)
    engine = EnsembleEngine(
        model=settings.model, width=settings.width, head_norm=settings.head_norm, dataset=dataset, protocol=protocol,
        hp=hp, seeds=member_seeds, batch_size=settings.batch_size, queue_size=settings.queue_size,
        queue_every=settings.queue_every, grad_samples=settings.grad_samples,
        eval_batch_size=settings.eval_batch_size, init_radius=settings.init_radius,
        init_seed=settings.seeds[0] if settings.share_init else None,
        independent_batches=settings.independent_batches, device=settings.device,
        dtype=getattr(torch, settings.dtype), allow_tf32=settings.allow_tf32, compile=settings.compile or False,
        grad_chunk=settings.grad_chunk, autocast=settings.autocast, vectorize=settings.vectorize,
        total_steps=settings.steps, log_every=settings.log_every, entropy_method=settings.entropy_method,
        entropy_k=settings.entropy_k, checkpoint_queue=settings.checkpoint_queue,
        group_entropy=settings.group_entropy,
    )
    engine.plan = plan
    return engine


def _store_attrs(engine) -> dict:
    import torch

    data = engine.data
    return {"dim": int(engine.dim), "dataset_info": json.dumps(data.info), "num_classes": data.num_classes,
            "n_train": data.n_train, "n_test": data.n_test, "input_shape": list(data.input_shape),
            "torch_version": torch.__version__, "memory_estimate_bytes": int(engine.plan["total"])}


@contextlib.contextmanager
def _threads(count: int | None):
    """torch on ``count`` CPU threads for the duration (None: leave it)."""
    import torch

    if count is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train(out: str | Path = "runs/net.zarr", *, resume: bool = False, overwrite: bool = False,
          progress: bool = False, command: str | None = None, stop_after: int | None = None, creation_hook=None,
          **options) -> Path:
    """Train every grid point and seed as one ensemble; stream the results into ``out``.

    ``options`` are those of ``thermonet train`` (:class:`TrainSettings`: ``model``,
    ``width``, ``dataset``, ``protocol``, ``grid``, ``seeds``, ``steps``, …). ``stop_after``
    ends the run at that step with a checkpoint, as if killed there (for tests). Returns
    the store path. Raises :class:`InputError` for bad settings (including a run that
    would not fit in memory) and :class:`StoreError` for store problems.
    """
    settings = TrainSettings.resolve(**options)
    with _threads(settings.threads):
        return driver.run(settings, out, kind=KIND, build_engine=lambda: _engine(settings),
                          store_attrs=_store_attrs, describe=f"{settings.model} {settings.protocol}", resume=resume,
                          overwrite=overwrite, progress=progress, command=command, stop_after=stop_after,
                          creation_hook=creation_hook)
