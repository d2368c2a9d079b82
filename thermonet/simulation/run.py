"""``simulate``: run an isotropic-model sweep as one ensemble and stream it into a store.

Used by ``thermonet simulate isotropic``, by studies and by tests::

    from thermonet.simulation import simulate
    simulate(protocol="fixed-lr", dim=3, grid={"lr": [1e-2], "wd": [1e-2]}, seeds=[0],
             steps=200_000, out="runs/one.zarr")

Every (hyperparameter point, seed) is one member; all members advance together
(:mod:`.engine`). Between chunks of steps the driver writes the new log entries, computes
the queue entropies due at the chunk's last step, checkpoints the engine and advances
``steps_done`` (:mod:`.writer`). Chunks last about ``flush_seconds`` (default 2 s) and end
exactly at every entropy step; results do not depend on the chunking.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np

from thermonet import runs
from thermonet.errors import InputError, ThermonetError
from thermonet.runs import as_int as _int
from thermonet.runs import resolve_device

__all__ = ["ENTROPY_METHODS", "Settings", "resolve_settings", "simulate", "store_settings"]

#: Accepted ``entropy_method`` values; ``auto`` resolves to ``angles`` at D = 3, else ``chord``.
ENTROPY_METHODS = ("auto", "angles", "chord")
#: Store attribute ``kind``.
KIND = "isotropic"
#: Description of the random-number scheme, stored as an attribute.
RNG_SCHEME = "splitmix64(key, counter) -> AS241 inverse normal CDF; key = hash(seed, hyperparameters); counter = step*D + i"


@attrs.frozen
class Settings(runs.RunSettings):
    """Everything that determines a run's numbers (validated, defaults resolved)."""

    protocol: str
    dim: int
    grid: dict  # name -> tuple[float, ...], in the protocol's hyperparameter order
    seeds: tuple
    steps: int
    sigma: float
    energy: str
    energy_seed: int
    log_every: int
    queue_size: int
    queue_every: int
    entropy_every: int
    entropy_method: str
    entropy_k: int
    device: str
    backend: str
    init_radius: float | None  # None: protocol default (1, or the sphere radius)

    def init_radius_attr(self):
        if self.init_radius is not None:
            return float(self.init_radius)
        return "sphere_radius" if self.protocol == "fixed-sphere" else 1.0

    def comparable(self) -> dict:
        """The settings as compared on ``--resume`` (device by type only)."""
        return {
            "protocol": self.protocol, "dim": self.dim, "sigma": self.sigma, "energy": self.energy,
            "energy_seed": self.energy_seed, "seeds": [int(s) for s in self.seeds], "steps": self.steps,
            "log_every": self.log_every, "queue_size": self.queue_size, "queue_every": self.queue_every,
            "entropy_every": self.entropy_every, "entropy_method": self.entropy_method,
            "entropy_k": self.entropy_k, "device": self.device.split(":")[0], "backend": self.backend,
            "init_radius": self.init_radius_attr(),
            **{f"grid:{k}": [float(x) for x in v] for k, v in self.grid.items()},
        }


# ------------------------------------------------------------------------------ validation
def _memory_budget(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[1] * 0.8)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 62


def resolve_settings(*, protocol: str, dim, grid: Mapping[str, Sequence[float]], seeds=(0,), steps,
                     sigma=1.0, energy: str = "linear", energy_seed=0, log_every=None, queue_size=1000,
                     queue_every=50, entropy_every=None, entropy_method: str = "auto", entropy_k=1,
                     device: str = "cpu", backend: str | None = None, init_radius=None) -> Settings:
    """Validate the inputs of :func:`simulate` and fill in defaults; raises InputError."""
    from thermonet.simulation.energies import get_energy
    from thermonet.theory.protocols import get_protocol

    proto = get_protocol(protocol)
    dim = _int(dim, "--dim")
    if dim < 2:
        raise InputError(f"--dim must be >= 2 (the sphere S^(D-1) needs D >= 2), got {dim}")
    # hyperparameters: exactly the protocol's
    grid = dict(grid or {})
    runs.unused_hyperparameters(proto, grid)
    values = {}
    for name in proto.hyperparameters:
        if name not in grid or grid[name] is None:
            raise InputError(f"{proto.name} needs --{name.replace('_', '-')}")
        try:
            arr = np.atleast_1d(np.asarray(grid[name], dtype=np.float64))
        except (TypeError, ValueError):
            raise InputError(f"--{name.replace('_', '-')}: not a list of numbers: {grid[name]!r}") from None
        if arr.ndim != 1 or arr.size == 0:
            raise InputError(f"{proto.name}: the --{name.replace('_', '-')} grid is empty")
        if len(np.unique(arr)) != arr.size:
            raise InputError(f"--{name.replace('_', '-')}: grid values must be distinct")
        values[name] = arr
    proto.validate(values)
    grid_t = {name: tuple(float(x) for x in values[name]) for name in proto.hyperparameters}

    seeds = runs.parse_seeds(seeds, "--seed")
    steps = _int(steps, "--steps", 1)
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise InputError(f"--sigma must be a number, got {sigma!r}") from None
    if not math.isfinite(sigma) or sigma <= 0:
        raise InputError(f"--sigma must be a finite number > 0, got {sigma!r}")
    get_energy(energy, dim, 0)  # raises for unknown names
    energy_seed = _int(energy_seed, "--energy-seed", 0)
    queue_size = _int(queue_size, "--queue-size", 2)
    queue_every = _int(queue_every, "--queue-every", 1)
    runs.check_queue_fills(steps, queue_size, queue_every)
    log_every = runs.resolve_log_every(log_every, steps, 1000)
    entropy_every = runs.resolve_entropy_every(entropy_every, steps, log_every)
    if entropy_method not in ENTROPY_METHODS:
        raise InputError(f"--entropy-method must be one of {', '.join(ENTROPY_METHODS)}, got {entropy_method!r}")
    if entropy_method == "auto":
        entropy_method = "angles" if dim == 3 else "chord"
    entropy_k = runs.resolve_entropy_k(entropy_k, queue_size)
    device = resolve_device(device)
    if backend is None:
        backend = "numba" if device == "cpu" else "torch"
    if backend not in ("numba", "torch"):
        raise InputError(f"backend must be 'numba' or 'torch', got {backend!r}")
    if backend == "numba" and device != "cpu":
        raise InputError("the numba backend runs on the CPU only; use backend='torch' with CUDA")
    if init_radius is not None:
        if proto.name == "fixed-sphere":
            raise InputError("fixed-sphere starts on its sphere; init_radius does not apply")
        init_radius = float(init_radius)
        if not math.isfinite(init_radius) or init_radius <= 0:
            raise InputError(f"init_radius must be a finite number > 0, got {init_radius!r}")
    settings = Settings(
        protocol=proto.name, dim=dim, grid=grid_t, seeds=seeds, steps=steps, sigma=sigma, energy=energy,
        energy_seed=energy_seed, log_every=log_every, queue_size=queue_size, queue_every=queue_every,
        entropy_every=entropy_every, entropy_method=entropy_method, entropy_k=entropy_k, device=device,
        backend=backend, init_radius=init_radius,
    )
    need = 8 * settings.members * (queue_size * dim * 3 + dim * 4)  # queue (+ checkpoint copies) and state
    budget = _memory_budget(device)
    if need > budget:
        raise InputError(
            f"{settings.members} members x queue {queue_size} x D={dim} needs about {need / 2**30:.1f} GiB, "
            f"more than the {budget / 2**30:.1f} GiB available on {device}; use fewer members, a smaller "
            f"--queue-size or several runs"
        )
    return settings


# ------------------------------------------------------------------------------ store <-> settings
def store_settings(path: str | Path) -> dict:
    """Settings of an existing run store, as keyword arguments of :func:`simulate`."""
    return runs.read_store_settings(path, KIND, "run", _settings_from_attrs)


def _settings_from_attrs(attrs_: dict, grid: dict) -> dict:
    init = attrs_.get("init_radius", 1.0)
    return {
        "protocol": attrs_["protocol"], "dim": int(attrs_["dim"]), "grid": grid,
        "seeds": [int(s) for s in attrs_["seeds"]], "steps": int(attrs_["steps"]),
        "sigma": float(attrs_["sigma"]), "energy": attrs_["energy"], "energy_seed": int(attrs_["energy_seed"]),
        "log_every": int(attrs_["log_every"]), "queue_size": int(attrs_["queue_size"]),
        "queue_every": int(attrs_["queue_every"]), "entropy_every": int(attrs_["entropy_every"]),
        "entropy_method": attrs_["entropy_method"], "entropy_k": int(attrs_["entropy_k"]),
        "device": attrs_["device"], "backend": attrs_.get("backend"),
        "init_radius": None if isinstance(init, str) else float(init),
    }


def _check_resumable(path: Path, settings: Settings) -> dict:
    stored = resolve_settings(**store_settings(path))
    return runs.check_resumable(path, settings.comparable(), stored.comparable())


# ------------------------------------------------------------------------------ the driver
def _lambda_eff_fn(proto):
    """``lambda_eff(hp..., mean‖g̃‖²)`` from the protocol's own formula, or None."""
    if proto.pressure_expr() is not None or not hasattr(proto, "effective_weight_decay_expr"):
        return None
    import sympy as sp

    from thermonet.theory.symbols import grad_sq, trace_sigma

    gns = sp.Symbol("mean_grad_norm_sq", positive=True)
    radius = proto.fixed_radius()
    # E‖g̃‖² = (trΣ + G₁²)/ρ₀², so trΣ + G₁² = ρ₀² · mean‖g̃‖²
    expr = sp.simplify(proto.effective_weight_decay_expr().subs(trace_sigma, gns * radius**2 - grad_sq))
    return sp.lambdify([*proto.symbols.values(), gns], expr, "numpy")


def _entropies(samples, settings: Settings):
    """(S₁, S) per member from the queue (M, N, D), numpy float64."""
    import torch

    from thermonet.estimators import spherical_entropy

    def one(x):
        return spherical_entropy(x, k=settings.entropy_k, method=settings.entropy_method)

    try:
        s1 = one(samples)
    except ThermonetError as exc:
        # e.g. coinciding samples in one member: estimate member by member, NaN where it fails
        print(f"thermonet: warning: entropy failed for some members ({exc}); writing NaN there", file=sys.stderr)
        s1 = []
        for m in range(samples.shape[0]):
            try:
                s1.append(float(one(samples[m])))
            except ThermonetError:
                s1.append(math.nan)
        s1 = np.asarray(s1)
    if isinstance(samples, torch.Tensor):
        s1 = s1.cpu().numpy() if isinstance(s1, torch.Tensor) else np.asarray(s1)
        rho_bar = torch.linalg.vector_norm(samples, dim=-1).mean(-1).cpu().numpy()
    else:
        rho_bar = np.linalg.norm(samples, axis=-1).mean(-1)
    s1 = np.asarray(s1, dtype=np.float64)
    return s1, s1 + (settings.dim - 1) * np.log(rho_bar)


def simulate(protocol: str, dim: int, grid: Mapping[str, Sequence[float]], seeds: Sequence[int] | int = (0,),
             steps: int = 2_000_000, out: str | Path = "runs/isotropic.zarr", *, sigma: float = 1.0,
             energy: str = "linear", energy_seed: int = 0, log_every: int | None = None,
             queue_size: int = 1000, queue_every: int = 50, entropy_every: int | None = None,
             entropy_method: str = "auto", entropy_k: int = 1, device: str = "cpu", backend: str | None = None,
             init_radius: float | None = None, resume: bool = False, overwrite: bool = False,
             progress: bool = False, command: str | None = None, flush_seconds: float = 2.0,
             stop_after: int | None = None) -> Path:
    """Simulate the isotropic model for every grid point and seed; return the store path.

    Parameters mirror ``thermonet simulate isotropic`` (see ``--help``). ``grid`` maps
    each of the protocol's hyperparameters to its values. ``backend`` is ``numba`` (CPU
    default, compiled kernel) or ``torch`` (CUDA default; on CPU the slow reference).
    ``init_radius`` (fixed LR/ELR only) is the initial radius, default 1; the fixed
    sphere starts on its sphere. ``stop_after`` ends the run early at that step with the
    store left resumable, as if it had been killed there (for tests).
    Raises :class:`InputError` for bad settings and :class:`StoreError` for store problems.
    """
    from tqdm import tqdm

    from thermonet.simulation import rng
    from thermonet.simulation.energies import get_energy
    from thermonet.simulation.engine import log_steps, make_engine, member_grid
    from thermonet.simulation.writer import RunStore, series_variables
    from thermonet.theory.protocols import get_protocol

    settings = resolve_settings(
        protocol=protocol, dim=dim, grid=grid, seeds=seeds, steps=steps, sigma=sigma, energy=energy,
        energy_seed=energy_seed, log_every=log_every, queue_size=queue_size, queue_every=queue_every,
        entropy_every=entropy_every, entropy_method=entropy_method, entropy_k=entropy_k, device=device,
        backend=backend, init_radius=init_radius,
    )
    if flush_seconds <= 0:
        raise InputError(f"flush_seconds must be > 0, got {flush_seconds}")
    out = Path(out)
    proto = get_protocol(settings.protocol)
    energy_obj = get_energy(settings.energy, settings.dim, settings.energy_seed)
    names = proto.hyperparameters
    hp, member_seeds = member_grid(settings.grid, names, settings.seeds)
    lead = tuple(len(settings.grid[n]) for n in names) + (len(settings.seeds),)
    members = settings.members

    action = runs.prepare_store(out, resume=resume, overwrite=overwrite, progress=progress,
                                check=lambda path: _check_resumable(path, settings))
    if action == "complete":
        return out
    if action == "overwrite":
        shutil.rmtree(out)
    elif action == "new" and resume and progress:
        print(f"thermonet: {out} does not exist yet; starting a new run", file=sys.stderr)
    existing = action == "resume"

    if settings.init_radius is not None:
        init = np.full(members, settings.init_radius)
    elif settings.protocol == "fixed-sphere":
        init = hp[:, names.index("sphere_radius")].copy()
    else:
        init = np.ones(members)
    keys = rng.member_keys(member_seeds, hp)
    engine = make_engine(settings.backend, proto, energy_obj, hp, keys, device=settings.device, sigma=settings.sigma,
                         total_steps=settings.steps, log_every=settings.log_every, queue_size=settings.queue_size,
                         queue_every=settings.queue_every, init_radius=init)
    series_names = series_variables(proto.pressure_expr() is None)
    entropy_steps = settings.entropy_steps()
    entropy_index = {int(s): i for i, s in enumerate(entropy_steps)}

    if existing:
        store = RunStore(out)
        state = store.load_checkpoint()
        if state is not None:
            engine.load_state_dict(state)
        runs.mark_resumed(store)
    else:
        if out.parent and not out.parent.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
        fields = {
            "sigma": settings.sigma, "energy": energy_obj.describe(), "energy_params": energy_obj.attrs_json(),
            "energy_seed": settings.energy_seed, "seeds": [int(s) for s in settings.seeds], "steps": settings.steps,
            "log_every": settings.log_every, "queue_size": settings.queue_size,
            "queue_every": settings.queue_every, "entropy_every": settings.entropy_every,
            "entropy_method": settings.entropy_method, "entropy_k": settings.entropy_k,
            "device": settings.device, "backend": settings.backend, "init_radius": settings.init_radius_attr(),
            "rng": RNG_SCHEME,
        }
        attrs_ = runs.new_store_attrs(kind=KIND, protocol=settings.protocol, hyperparameters=names,
                                      dim=settings.dim, fields=fields, command=command)
        shapes = {"w": (members, settings.dim), "queue": (members, settings.queue_size, settings.dim),
                  "acc": (members, 2)}
        store = RunStore.create(out, hp_coords={n: np.asarray(settings.grid[n]) for n in names},
                                seeds=settings.seeds, log_steps=log_steps(settings.steps, settings.log_every),
                                entropy_steps=entropy_steps, series=series_names, attrs=attrs_,
                                checkpoint_shapes=shapes)

    lambda_eff = _lambda_eff_fn(proto)
    hp_cols = [hp[:, i:i + 1] for i in range(len(names))]
    sigma2 = settings.sigma**2
    trace_sigma = sigma2 * (settings.dim - 1)
    end = settings.steps if stop_after is None else min(settings.steps, int(stop_after))

    t = engine.t
    chunk = max(1, min(settings.steps, 100_000 // max(1, members * max(1, settings.dim // 3))))
    timing = {"engine": 0.0, "entropy": 0.0, "store": 0.0}
    session_start = time.perf_counter()
    bar = tqdm(total=settings.steps, initial=t, unit="step", unit_scale=True, dynamic_ncols=True,
               disable=not progress, file=sys.stderr, desc=f"{settings.protocol} x{members}")
    try:
        while t < end:
            next_entropy = entropy_steps[np.searchsorted(entropy_steps, t, side="right")]
            stop = int(min(end, t + chunk, next_entropy))
            tick = time.perf_counter()
            first, outs = engine.advance(stop - t)
            elapsed = time.perf_counter() - tick
            timing["engine"] += elapsed
            count = outs["loss"].shape[1]
            data = {name: outs[name] for name in ("loss", "rho", "grad_norm_sq", "grad_full_sq")}
            written = np.isfinite(outs["rho"])
            data["sigma2"] = np.where(written, sigma2, np.nan)
            data["trace_sigma"] = np.where(written, trace_sigma, np.nan)
            if "lambda_eff" in series_names:
                data["lambda_eff"] = np.asarray(lambda_eff(*hp_cols, outs["grad_norm_sq"]), dtype=np.float64)
            entropy = None
            if stop in entropy_index:
                tick = time.perf_counter()
                entropy = _entropies(engine.queue_samples(), settings)
                timing["entropy"] += time.perf_counter() - tick
            tick = time.perf_counter()
            store.write_series(first, {k: v.reshape(*lead, count) for k, v in data.items()})
            if entropy is not None:
                store.write_entropy(entropy_index[stop], {"entropy_sphere": entropy[0].reshape(lead),
                                                          "entropy": entropy[1].reshape(lead)})
            if stop < settings.steps:
                store.save_checkpoint(engine.state_dict())
            store.update_attrs(steps_done=stop)
            timing["store"] += time.perf_counter() - tick
            bar.update(stop - t)
            chunk = _next_chunk(chunk, stop - t, elapsed, flush_seconds, settings.steps)
            t = stop
        if t >= settings.steps:
            timing["total"] = time.perf_counter() - session_start
            store.update_attrs(steps_done=settings.steps, complete=True, finished=runs.now(),
                               timing_s={k: round(v, 3) for k, v in timing.items()})
            store.drop_checkpoint()
    finally:
        bar.close()
    return out


def _next_chunk(planned: int, done: int, elapsed: float, target: float, total: int) -> int:
    """Steps for the next chunk: ``target`` seconds at the last chunk's rate (``done``
    steps in ``elapsed`` s), growing at most 8x per chunk."""
    limit = max(planned, done) * 8
    if elapsed <= 0:
        return int(max(1, min(total, limit)))
    return int(max(1, min(total, limit, done * target / elapsed)))
