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
``test_loss``, ``test_accuracy``, ``snr``, ``loss_full``, ``diverged_at`` (hp…, seed;
−1 when the member never diverged) and the per-group variables over the model's
scale-invariant groups (dimension ``group``: ``rho_group``, ``temperature_group``, …).
Batches are counter-based, so a resumed run follows
the same batches.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path

from thermonet.errors import InputError
from thermonet.runs import driver, shards
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


def plan_memory(settings: TrainSettings, dataset, members: int | None = None) -> dict:
    """Estimate the memory of ``members`` members (default: the run's) and refuse what will
    not fit, before anything is allocated.

    The model is first built on PyTorch's ``meta`` device (shapes only, no memory): that
    gives D and the activations per example for the estimate. Only a run that fits gets a
    real model, built once on the CPU to check its scale invariance. Returns the estimate
    (bytes per component, plus ``dim`` and ``budget``).
    """
    import torch

    from thermonet.engines.network.functional import activation_elements
    from thermonet.engines.network.memory import check_memory, estimate_memory, format_bytes, memory_budget
    from thermonet.models import build_model, check_group_invariance, check_scale_invariance

    dtype = getattr(torch, settings.dtype)
    shape = dict(input_shape=dataset.input_shape, num_classes=dataset.num_classes, width=settings.width,
                 head_norm=settings.head_norm, bn_eps=settings.bn_eps, train_head=settings.train_head,
                 dtype=torch.float64)
    with torch.device("meta"):
        skeleton = build_model(settings.model, device="meta", **shape)
    dim = skeleton.num_trained()
    if dim < 2:
        raise InputError(f"model {settings.model} has D = {dim} trained parameters; the sphere needs D >= 2")
    probe = dataset.x_train[: min(8, dataset.n_train)].to(device="cpu", dtype=torch.float64)
    acts = activation_elements(skeleton, probe.to("meta"))
    estimate = estimate_memory(
        members=settings.members if members is None else members, dim=dim, queue_size=settings.queue_size, batch_size=settings.batch_size,
        eval_batch_size=settings.eval_batch_size, grad_chunk=settings.grad_chunk,
        activations_per_example=acts, dataset_bytes=dataset.nbytes() * dtype.itemsize // 4,
        dtype_bytes=dtype.itemsize, checkpoint_queue=settings.checkpoint_queue,
        device_type=settings.device.split(":")[0],
        group_entropy_dim=max(g.size for g in skeleton.scale_groups()) if settings.group_entropy else 0,
    )
    if settings.max_memory is not None:
        budget, where = settings.max_memory, f"--max-memory {format_bytes(settings.max_memory)}"
    else:
        budget, where = memory_budget(settings.device)
    check_memory(estimate, budget, where, members=settings.members if members is None else members,
                 queue_size=settings.queue_size, dim=dim)
    model = build_model(settings.model, seed=0, **shape)
    deviation = check_scale_invariance(model, probe)
    broken_on_purpose = settings.train_head or settings.bn_eps > 1e-6
    if not deviation < 1e-6 and not broken_on_purpose:
        raise InputError(f"model {settings.model} is not scale-invariant: scaling its trained parameters changes "
                         f"the outputs by {deviation:.2g} (relative); every trained layer must be bias-free and "
                         f"followed by BatchNorm without affine parameters, and the head must be fixed")
    if not broken_on_purpose:
        groups = check_group_invariance(model, probe)
        broken = {name: value for name, value in groups.items() if not value < 1e-6}
        if broken:
            shown = ", ".join(f"{name} ({value:.2g})" for name, value in list(broken.items())[:3])
            raise InputError(f"model {settings.model}: scaling one scale group alone changes the outputs: {shown} "
                             f"(relative); its group_parameters() must list parameters that scale together")
    return {**estimate, "dim": dim, "budget": budget, "activations_per_example": acts,
            "scale_invariance_deviation": float(deviation)}


def _engine(settings: TrainSettings, block: tuple[slice, ...] = ()):
    """Load the data, refuse a run that will not fit, then build the ensemble of the
    members in ``block`` (slices along hp…, seed; ``()``: all)."""
    import torch

    from thermonet.engines.common import member_grid
    from thermonet.engines.network.data import load_dataset
    from thermonet.engines.network.engine import EnsembleEngine

    if settings.threads is not None:  # also on a Dask worker, where train()'s _threads is not around
        torch.set_num_threads(settings.threads)
    protocol = settings.protocol_object()
    dataset = load_dataset(settings.dataset, data_dir=settings.data_dir, samples_per_class=settings.samples_per_class,
                           device="cpu", dtype=torch.float32)
    grid, seeds = settings.member_block(block)
    hp, member_seeds = member_grid(grid, protocol.hyperparameters, seeds)
    plan = plan_memory(settings, dataset, members=len(member_seeds))
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
        entropy_k=settings.entropy_k, checkpoint_queue=settings.checkpoint_queue, momentum=settings.momentum,
        bn_eps=settings.bn_eps, train_head=settings.train_head, group_entropy=settings.group_entropy,
    )
    engine.plan = plan
    return engine


def _store_attrs(settings: TrainSettings, engine) -> dict:
    import torch

    data = engine.data
    deviation = engine.plan["scale_invariance_deviation"]
    return {"dim": int(engine.dim), "dataset_info": json.dumps(data.info), "num_classes": data.num_classes,
            "n_train": data.n_train, "n_test": data.n_test, "input_shape": list(data.input_shape),
            "torch_version": torch.__version__, "memory_estimate_bytes": int(engine.plan["total"]),
            "control": settings.control, "scale_invariant": bool(deviation < 1e-6),
            "scale_invariance_deviation": deviation}


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
          flush_hook=None, **options) -> Path:
    """Train every grid point and seed as one ensemble; stream the results into ``out``.

    ``options`` are those of ``thermonet train`` (:class:`TrainSettings`: ``model``,
    ``width``, ``dataset``, ``protocol``, ``grid``, ``seeds``, ``steps``, …). ``stop_after``
    ends the run at that step with a checkpoint, as if killed there; ``flush_hook(step,
    shard)`` is called after every flush (for tests). ``workers``, ``shards`` and
    ``scheduler`` run the grid as shards (:mod:`thermonet.runs.shards`). Returns the store
    path. Raises :class:`InputError` for bad settings (including a run that would not fit
    in memory), :class:`StoreError` for store problems and :class:`RunError` when a shard
    failed.
    """
    settings = TrainSettings.resolve(**options)
    with _threads(settings.threads):
        return shards.run(settings, out, kind=KIND, build_engine=functools.partial(_engine, settings),
                          store_attrs=functools.partial(_store_attrs, settings), describe=f"{settings.model} {settings.protocol}", resume=resume,
                          overwrite=overwrite, progress=progress, command=command, stop_after=stop_after,
                          creation_hook=creation_hook, flush_hook=flush_hook)
