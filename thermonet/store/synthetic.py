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

__all__ = ["synthetic_run", "default_grid"]


def default_grid(protocol: str, points: int = 5) -> dict[str, np.ndarray]:
    """A small grid like the paper's: log-spaced in [1e-3, 1e-1] for rates and decays, [1, 4]
    for a hyperparameter with the dimension of a length (``rescaling`` exponent 1, the
    sphere radius)."""
    proto = get_protocol(protocol)
    lengths = {n for n, k in (proto.rescaling or {}).items() if k == 1}
    return {name: np.geomspace(1.0, 4.0, points) if name in lengths else np.geomspace(1e-3, 1e-1, points)
            for name in proto.hyperparameters}


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
        base = value[..., None, None] * (1 + (start.get(name, 1.0) - 1) * r)
        scale = loss_noise if (name == "loss" and loss_noise is not None) else noise
        data[name] = base * (1 + scale * generator.standard_normal(shape))
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
