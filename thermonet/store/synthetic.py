"""Synthetic run stores built from the exact theory, for testing and demonstrating the checks.

:func:`synthetic_run` returns an in-memory Dataset made from the run-store schema
(:func:`thermonet.store.schema.empty_dataset`, ``docs/data-layout.md``) whose stationary part is what the theory predicts for the
isotropic test system (THEORY §3, §7): the radius solves the discrete-time balance
(:meth:`Protocol.predicted_radius_discrete`) with the exact vMF full-gradient norm, the
temperature is :meth:`Protocol.temperature` at that radius, loss and entropy are the
exact vMF values at kappa = 1/T (:mod:`thermonet.theory.vmf`). A transient at the start
of the run and multiplicative/additive Gaussian noise make the time series look
measured. Every check passes on it with the default tolerances; perturbing one variable
makes the corresponding check fail.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping

import numpy as np
import xarray as xr

from thermonet.base.version import __version__
from thermonet.errors import InputError
from thermonet.store.schema import empty_dataset
from thermonet.theory import vmf
from thermonet.theory.protocols import get_protocol
from thermonet.theory.system import IsotropicNoiseSystem

__all__ = ["default_grid", "synthetic_group_run", "synthetic_run"]


def default_grid(protocol: str, points: int = 5) -> dict[str, np.ndarray]:
    """A small grid like the paper's: log-spaced in [1e-3, 1e-1] for rates and decays, [1, 4]
    for a hyperparameter with the dimension of a length (``rescaling`` exponent 1, the
    sphere radius)."""
    proto = get_protocol(protocol)
    lengths = {n for n, k in (proto.rescaling or {}).items() if k == 1}
    return {name: np.geomspace(1.0, 4.0, points) if name in lengths else np.geomspace(1e-3, 1e-1, points)
            for name in proto.hyperparameters}


def _logged(value: np.ndarray, shape: tuple[int, ...], relax: np.ndarray, start: float, noise: float,
            generator: np.random.Generator) -> np.ndarray:
    """A logged series: ``value`` (broadcast to ``shape``) reached from ``start`` times it along
    the transient ``relax`` (1 -> 0 over the time axis), with relative Gaussian noise."""
    base = value * (1 + (start - 1) * relax)
    return base * (1 + noise * generator.standard_normal(shape))


def _full_gradient_sq(kappa: np.ndarray, dim: float) -> np.ndarray:
    """E||grad L(x)||**2 = E[1 - <mu, x>**2] = (D-1) A_D(kappa) / kappa under vMF."""
    return (dim - 1) * vmf.mean_resultant_length(kappa, dim) / kappa


def synthetic_run(
    protocol: str = "fixed-lr",
    grid: Mapping[str, np.ndarray] | None = None,
    *,
    dim: int = 3,
    sigma: float | Callable[[dict[str, np.ndarray]], np.ndarray] = 1.0,
    seeds: int = 2,
    n_logs: int = 40,
    log_every: int = 100,
    entropy_every: int = 400,
    noise: float = 0.004,
    entropy_noise: float = 0.004,
    loss_noise: float | None = None,
    transient: float = 0.25,
    discrete: bool = True,
    steps_done: int | None = None,
    rng: int = 0,
) -> xr.Dataset:
    """A schema-conforming isotropic-model run generated from the exact theory.

    Parameters
    ----------
    protocol, grid:
        Protocol name and hyperparameter values by store name (default
        :func:`default_grid`).
    dim, sigma:
        D and the noise scale (sigma2 = sigma**2, trSigma = sigma2 (D-1)); ``sigma`` may
        be a function of the hyperparameter mesh (``{name: array}``) returning sigma per
        grid point, for a noise level that varies as in networks.
    seeds, n_logs, log_every, entropy_every:
        Ensemble size and time axis: logs at ``log_every * (1..n_logs)``, entropy
        estimates every ``entropy_every`` steps.
    noise, entropy_noise, loss_noise:
        Relative Gaussian noise of each logged value; absolute noise (nats) of each
        entropy estimate; relative noise of the logged loss (default ``noise``; a
        simulator logs the instantaneous loss, whose relative spread is of order 1).
    transient:
        Fraction of the run (from the start) during which values relax from a wrong
        start (radius x1.5, loss x2, entropy +1 nat) to the stationary values.
    discrete:
        Stationary radius from the discrete-time balance (as a simulation gives) rather
        than the SDE radius.
    steps_done:
        Make a partial run: entries after this step are NaN and ``complete`` is false.
    """
    proto = get_protocol(protocol)
    grid = dict(default_grid(protocol) if grid is None else grid)
    for name in proto.hyperparameters:
        if name not in grid:
            raise InputError(f"{protocol} needs a grid for {name}")
    hps = proto.hyperparameters
    mesh = np.meshgrid(*[np.asarray(grid[n], dtype=float) for n in hps], indexing="ij")
    hp = dict(zip(hps, mesh))
    sigma_values = np.asarray(sigma(hp) if callable(sigma) else sigma, dtype=float) * np.ones_like(mesh[0])
    if not np.all(np.isfinite(sigma_values) & (sigma_values > 0)):
        raise InputError("synthetic_run: sigma must be finite and > 0 at every grid point")
    sigma2 = sigma_values**2
    trace = sigma2 * (dim - 1)

    if discrete:
        rho = IsotropicNoiseSystem.create(proto, dim).discrete_state(hp, sigma2)["rho"]
    else:
        rho = proto.predicted("rho", hp, sigma2, dim)
    T = proto.temperature(hp, rho, sigma2)
    kappa = 1.0 / T
    grad_full = (dim - 1) * vmf.mean_resultant_length(kappa, dim) / kappa  # E[1 - <mu, x>**2] under vMF
    U = vmf.energy(kappa, dim)
    S1 = vmf.entropy(kappa, dim)
    grad_norm = (trace + grad_full) / rho**2
    stationary = {
        "loss": U,
        "rho": rho,
        "grad_norm_sq": grad_norm,
        "sigma2": sigma2 * np.ones_like(rho),
        "trace_sigma": trace * np.ones_like(rho),
        "grad_full_sq": grad_full,
    }
    if proto.measured_pressure is not None:
        stationary[proto.measured_pressure] = proto.pressure_series(hp, grad_norm) * np.ones_like(rho)

    generator = np.random.default_rng(rng)
    steps = log_every * np.arange(1, n_logs + 1)
    total = int(steps[-1])
    entropy_steps = np.arange(entropy_every, total + 1, entropy_every)
    start = {"loss": 2.0, "rho": 1.5, "grad_norm_sq": 1.0 / 1.5**2}

    def relax(t: np.ndarray) -> np.ndarray:
        """1 at t = 0, falling linearly to 0 at the end of the transient."""
        if transient <= 0:
            return np.zeros_like(t, dtype=float)
        return np.clip(1.0 - t / (transient * total), 0.0, None)

    shape = rho.shape + (seeds, steps.size)
    data = {}
    r = relax(steps.astype(float))
    for name, value in stationary.items():
        scale = loss_noise if (name == "loss" and loss_noise is not None) else noise
        data[name] = _logged(value[..., None, None], shape, r, start.get(name, 1.0), scale, generator)
    eshape = rho.shape + (seeds, entropy_steps.size)
    re = relax(entropy_steps.astype(float))
    S1_series = S1[..., None, None] + 1.0 * re + entropy_noise * generator.standard_normal(eshape)
    # S = S1 + (D-1) ln(mean radius): the radius averaged over the queue window, here the log nearest in time.
    nearest = np.clip(np.searchsorted(steps, entropy_steps), 0, steps.size - 1)
    S_series = S1_series + (dim - 1) * np.log(data["rho"][..., nearest])

    done = total if steps_done is None else int(steps_done)
    for name in data:
        data[name][..., steps > done] = np.nan
    S1_series[..., entropy_steps > done] = np.nan
    S_series[..., entropy_steps > done] = np.nan

    attrs = {
        "thermonet_version": __version__,
        "kind": "isotropic",
        "protocol": proto.name,
        "dim": int(dim),
        "sigma": float(np.exp(np.mean(np.log(sigma_values)))),  # geometric mean when it varies
        "energy": "vmf",
        "seeds": list(range(int(seeds))),
        "steps": total,
        "log_every": int(log_every),
        "queue_size": 0,
        "queue_every": 0,
        "entropy_every": int(entropy_every),
        "entropy_method": "synthetic",
        "entropy_k": 1,
        "device": "none",
        "command": f"synthetic_run({protocol!r})",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "steps_done": min(done, total),
        "complete": done >= total,
    }
    ds = empty_dataset("isotropic", proto, grid={n: np.asarray(grid[n], dtype=float) for n in hps},
                       seeds=np.arange(seeds), log_steps=steps, entropy_steps=entropy_steps, attrs=attrs)
    for name, value in (*data.items(), ("entropy_sphere", S1_series), ("entropy", S_series)):
        ds[name] = (ds[name].dims, value)
    return ds


def synthetic_group_run(
    protocol: str = "fixed-lr",
    grid: Mapping[str, np.ndarray] | None = None,
    *,
    groups: Mapping[str, int] | None = None,
    sigma2: Mapping[str, float] | None = None,
    seeds: int = 2,
    n_logs: int = 40,
    log_every: int = 100,
    noise: float = 0.01,
    transient: float = 0.25,
    rng: int = 0,
) -> xr.Dataset:
    """A network-kind run with per-group variables, generated from the product-of-spheres theory.

    Every scale group g (``groups``: ``{name: D_g}``, default ``{"conv": 6, "fc": 40}``) is
    the isotropic test system of THEORY §7 on its own sphere, ``L_g = 1 + <mu_g, x_g>`` with
    noise level ``sigma2[g]`` at its unit norm, all trained as one vector under
    ``protocol``: the group radii solve the groups' one-step recursions together
    (:meth:`Protocol.predicted_group_radius_discrete`, with the exact vMF full gradient
    at each group's temperature ``T_g``, :meth:`Protocol.group_temperature`), and the whole
    vector's radius, noise and temperature follow from them. The default
    ``sigma2[g] = 0.01 (D_g - 1)`` gives every group the same temperature to within the
    full-gradient correction (equipartition); equal ``sigma2`` breaks it (``T_g`` falls as
    ``(D_g - 1)**-1/2``). The whole vector's loss is the sum of the groups'; its entropy is
    left NaN (the direction of a product of spheres is not a vMF on one sphere), the
    groups' entropies are the exact vMF ones. Transient and relative noise as in
    :func:`synthetic_run`.
    """
    from thermonet.theory.groups import ProductOfSpheres

    proto = get_protocol(protocol)
    grid = dict(default_grid(protocol) if grid is None else grid)
    system = ProductOfSpheres(proto, dict(groups or {"conv": 6, "fc": 40}))
    names, sizes = system.names, system.sizes.astype(float)
    noise_level = np.array([(sigma2 or {}).get(n, 0.01 * (d - 1)) for n, d in zip(names, sizes)], dtype=float)
    hps = proto.hyperparameters
    mesh = np.meshgrid(*[np.asarray(grid[n], dtype=float) for n in hps], indexing="ij")
    hp = {n: m[..., None] for n, m in zip(hps, mesh)}  # groups along the last axis
    trace_g = noise_level * (sizes - 1) * np.ones(mesh[0].shape + (len(names),))
    fixed = proto.fixed_radius()
    # start from the whole vector's SDE radius shared by size, then iterate (damped in logs)
    start_radius = proto.predicted("rho", {n: m for n, m in zip(hps, mesh)}, trace_g.sum(-1) / (system.dim - 1),
                                   system.dim)[..., None]
    rho_g = start_radius * np.sqrt(sizes / system.dim)
    for _ in range(200):
        rho = (np.sqrt((rho_g**2).sum(-1, keepdims=True)) if fixed is None
               else proto.numeric(fixed)(hp) * np.ones(rho_g.shape[:-1] + (1,)))
        T_g = proto.group_temperature(hp, rho, rho_g, noise_level)
        g1_g = _full_gradient_sq(1.0 / T_g, sizes)
        trace = rho**2 * (trace_g / rho_g**2).sum(-1, keepdims=True)
        g1 = rho**2 * (g1_g / rho_g**2).sum(-1, keepdims=True)
        new = np.sqrt(rho_g * proto.predicted_group_radius_discrete(hp, rho, trace, g1, trace_g, g1_g))
        done = bool(np.all(np.abs(new / rho_g - 1) < 1e-12))
        rho_g = new
        if done:
            break
    rho = np.sqrt((rho_g**2).sum(-1, keepdims=True))
    T_g = proto.group_temperature(hp, rho, rho_g, noise_level)
    kappa_g = 1.0 / T_g
    g1_g = _full_gradient_sq(kappa_g, sizes)
    trace = rho**2 * (trace_g / rho_g**2).sum(-1, keepdims=True)
    g1 = rho**2 * (g1_g / rho_g**2).sum(-1, keepdims=True)
    grad_norm = (trace + g1) / rho**2
    whole = {"loss": vmf.energy(kappa_g, sizes).sum(-1), "rho": rho[..., 0], "grad_norm_sq": grad_norm[..., 0],
             "sigma2": trace[..., 0] / (system.dim - 1), "trace_sigma": trace[..., 0], "grad_full_sq": g1[..., 0]}
    if proto.measured_pressure is not None:
        whole[proto.measured_pressure] = proto.pressure_series({n: m for n, m in zip(hps, mesh)}, whole["grad_norm_sq"])
    per_group = {"rho_group": rho_g, "grad_norm_sq_group": (trace_g + g1_g) / rho_g**2, "trace_sigma_group": trace_g,
                 "sigma2_group": noise_level * np.ones_like(rho_g), "grad_full_sq_group": g1_g,
                 "lr_eff_group": proto.group_effective_lr_value(hp, rho, rho_g), "temperature_group": T_g}

    generator = np.random.default_rng(rng)
    steps = log_every * np.arange(1, n_logs + 1)
    total = int(steps[-1])
    r = np.clip(1.0 - steps / (transient * total), 0.0, None) if transient > 0 else np.zeros(steps.size)
    start = {"loss": 2.0, "rho": 1.5, "rho_group": 1.5}
    lead = mesh[0].shape + (seeds,)
    data = {name: _logged(value[..., None, None], lead + (steps.size,), r, start.get(name, 1.0), noise, generator)
            for name, value in whole.items()}
    for name, value in per_group.items():  # (hp..., seed, group, step)
        data[name] = _logged(value[..., None, :, None], lead + (len(names), steps.size), r, start.get(name, 1.0),
                             noise, generator)
    s1_g = vmf.entropy(kappa_g, sizes)[..., None, :, None] * np.ones(lead + (len(names), 1))
    attrs = {
        "thermonet_version": __version__, "kind": "network", "protocol": proto.name, "dim": system.dim,
        "seeds": list(range(int(seeds))), "steps": total, "log_every": int(log_every), "queue_size": 0,
        "queue_every": 0, "entropy_every": total, "entropy_method": "synthetic", "entropy_k": 1, "device": "none",
        "command": f"synthetic_group_run({protocol!r})",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "steps_done": total, "complete": True,
    }
    ds = empty_dataset("network", proto, grid={n: np.asarray(grid[n], dtype=float) for n in hps},
                       seeds=np.arange(seeds), log_steps=steps, entropy_steps=np.array([total]), attrs=attrs,
                       groups=list(system.dims))
    for name, value in data.items():
        ds[name] = (ds[name].dims, value)
    ds["entropy_sphere_group"] = (ds["entropy_sphere_group"].dims, s1_g)
    ds["entropy_group"] = (ds["entropy_group"].dims, s1_g + (sizes[:, None] - 1) * np.log(data["rho_group"][..., -1:]))
    return ds
