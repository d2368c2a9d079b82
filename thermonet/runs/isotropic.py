"""``simulate``: an isotropic-model sweep as one ensemble, streamed into a run store.

Used by ``thermonet simulate isotropic``, by studies and by tests::

    from thermonet.runs import simulate
    simulate(protocol="fixed-lr", dim=3, grid={"lr": [1e-2], "wd": [1e-2]}, seeds=[0],
             steps=200_000, out="runs/one.zarr")

Every (hyperparameter point, seed) is one member; all members advance together
(:mod:`thermonet.engines.isotropic`). The driver loop, the store and the checkpoint are
those of every run (:func:`thermonet.runs.driver.run`); results do not depend on the
chunking, the ensemble's size, where a run was resumed or how it was cut into shards
(:mod:`thermonet.runs.shards`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from thermonet.runs import driver, shards
from thermonet.runs.options import ENTROPY_METHODS, IsotropicSettings

__all__ = ["ENTROPY_METHODS", "KIND", "Settings", "resolve_settings", "simulate", "store_settings"]

#: Store attribute ``kind``.
KIND = "isotropic"
#: The settings class (old name).
Settings = IsotropicSettings


def resolve_settings(**options) -> IsotropicSettings:
    """Validate the options of :func:`simulate` and fill in defaults; raises InputError."""
    return IsotropicSettings.resolve(**options)


def store_settings(path: str | Path) -> dict:
    """Settings of an existing run store, as keyword arguments of :func:`simulate`."""
    return driver.stored_settings(path, KIND, IsotropicSettings)


def _engine(settings: IsotropicSettings, block: tuple[slice, ...] = ()):
    """The engine of the members in ``block`` (slices along hp…, seed; ``()``: all)."""
    from thermonet.engines import rng
    from thermonet.engines.common import member_grid
    from thermonet.engines.isotropic.energies import get_energy
    from thermonet.engines.isotropic.engine import make_engine

    protocol = settings.protocol_object()
    grid, seeds = settings.member_block(block)
    hp, member_seeds = member_grid(grid, protocol.hyperparameters, seeds)
    return make_engine(settings.backend, protocol, get_energy(settings.energy, settings.dim, settings.energy_seed),
                       hp, rng.member_keys(member_seeds, hp), device=settings.device, sigma=settings.sigma,
                       total_steps=settings.steps, log_every=settings.log_every, queue_size=settings.queue_size,
                       queue_every=settings.queue_every, init_radius=settings.init_radius,
                       entropy_method=settings.entropy_method, entropy_k=settings.entropy_k,
                       noise_anisotropy=settings.noise_anisotropy, noise_dof=settings.noise_dof,
                       momentum=settings.momentum, noise_trend=settings.noise_trend)


def _store_attrs(settings: IsotropicSettings, engine) -> dict:
    from thermonet.engines import rng

    return {"energy": engine.energy.describe(), "energy_params": engine.energy.attrs_json(), "rng": rng.SCHEME,
            "control": settings.control}


def simulate(protocol: str | None = None, dim: int = 3, grid: Mapping[str, Sequence[float]] | None = None,
             seeds: Sequence[int] | int = (0,), steps: int = 2_000_000, out: str | Path = "runs/isotropic.zarr", *,
             resume: bool = False, overwrite: bool = False, progress: bool = False, command: str | None = None,
             stop_after: int | None = None, creation_hook=None, flush_hook=None, **options) -> Path:
    """Simulate the isotropic model for every grid point and seed; return the store path.

    ``options`` are those of ``thermonet simulate isotropic`` (:class:`IsotropicSettings`:
    ``sigma``, ``energy``, ``energy_seed``, ``log_every``, ``queue_size``, ``queue_every``,
    ``entropy_every``, ``entropy_method``, ``entropy_k``, ``device``, ``backend``,
    ``init_radius``, ``checkpoint_every``, ``flush_seconds``, and where the members run:
    ``workers``, ``shards``, ``scheduler``, :mod:`thermonet.runs.shards`). ``grid`` maps each of the
    protocol's hyperparameters to its values. ``backend`` is ``numba`` (CPU default,
    compiled kernel) or ``torch`` (CUDA default; on CPU the slow reference).
    ``stop_after`` ends the run early at that step with the store left resumable, as if
    it had been killed there, ``flush_hook(step, shard)`` is called after every flush (for
    tests). Raises :class:`InputError` for bad settings, :class:`StoreError` for store
    problems and :class:`RunError` when a shard failed.
    """
    settings = IsotropicSettings.resolve(protocol=protocol, dim=dim, grid=dict(grid or {}), seeds=seeds,
                                         steps=steps, **options)
    return shards.run(settings, out, kind=KIND, build_engine=functools.partial(_engine, settings),
                      store_attrs=functools.partial(_store_attrs, settings), describe=settings.protocol, resume=resume, overwrite=overwrite,
                      progress=progress, command=command, stop_after=stop_after, creation_hook=creation_hook,
                      flush_hook=flush_hook)
