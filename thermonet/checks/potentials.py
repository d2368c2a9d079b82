"""V2: every measured state minimises its own thermodynamic potential.

For the protocols with natural variables (T, P) (fixed LR, fixed ELR) the potential is
the Gibbs energy ``G = U - T S + P V``; for (T, V) (fixed sphere) the Helmholtz energy
``F = U - T S`` (THEORY §4). Member i, held at its own temperature T_i and pressure P_i,
evaluates the potential at every measured state j:

    G_i(j) = U_j - T_i S_j + P_i V_j        (Helmholtz: F_i(j) = U_j - T_i S_j,
                                             j restricted to states of the same volume)

and the theory says the minimum over j is at j = i. The comparison is in units of T_i
(nats): ``gap_i(j) = (G_i(j) - min_j G_i(j)) / T_i`` and the *excess*
``gap_i(i) >= 0`` is how far member i's own state is above the best state on the grid.
Constant offsets of the entropy estimator cancel in these differences.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
import xarray as xr

from thermonet.checks.base import (
    Check,
    CheckResult,
    assumes_loss_is_energy,
    log_mesh,
    nan_stats,
    nonnegative_tolerance,
    seed_mean,
    seed_mean_and_error,
)

__all__ = ["PotentialMinimumCheck", "potential_gaps"]


def _volume_groups(protocol, hp: dict[str, np.ndarray]) -> np.ndarray:
    """Group label per member: members with equal values of the hyperparameters V depends on."""
    volume = protocol.state()["V"]
    fixing = [n for n, sym in protocol.symbols.items() if volume.has(sym)]
    if not fixing:
        return np.zeros(next(iter(hp.values())).size, dtype=int)
    keys = np.stack([np.round(np.log(hp[n].ravel()), 9) for n in fixing], axis=1)
    _, labels = np.unique(keys, axis=0, return_inverse=True)
    return labels.ravel()


def potential_gaps(protocol, states: xr.Dataset) -> xr.DataArray:
    """``(G_i(j) - min_j G_i(j)) / T_i`` over seed-averaged states, dims (hp..., hp_j...).

    ``G`` is Gibbs for (T, P) protocols and Helmholtz (within groups of equal volume,
    NaN elsewhere) for (T, V) protocols. Members with a non-finite U, S, T (or P, V)
    get NaN rows and columns.
    """
    sm = seed_mean(states)
    hps = list(protocol.hyperparameters)
    template = sm["U"].transpose(*hps)
    shape = template.shape
    flat = {k: sm[k].transpose(*hps).values.ravel() for k in ("U", "S", "T", "P", "V")}
    hp = {n: template[n].broadcast_like(template).values for n in hps}
    gibbs = protocol.natural_variables[1] == "P"
    U, S, T, P, V = (flat[k] for k in ("U", "S", "T", "P", "V"))
    ok = np.isfinite(U) & np.isfinite(S) & np.isfinite(T) & (T > 0)
    if gibbs:
        ok &= np.isfinite(P) & np.isfinite(V)
    values = U[None, :] - T[:, None] * S[None, :]
    if gibbs:
        values = values + P[:, None] * V[None, :]
    else:
        labels = _volume_groups(protocol, hp)
        values = np.where(labels[:, None] == labels[None, :], values, np.nan)
    values[~ok, :] = np.nan
    values[:, ~ok] = np.nan
    with np.errstate(invalid="ignore"):
        lowest = np.nanmin(np.where(np.isnan(values), np.inf, values), axis=1)
        lowest[~np.isfinite(lowest)] = np.nan
        gaps = (values - lowest[:, None]) / T[:, None]
    gaps = gaps.reshape(shape + shape)
    jdims = [f"{n}_j" for n in hps]
    coords = {n: template[n].values for n in hps}
    coords.update({f"{n}_j": template[n].values for n in hps})
    return xr.DataArray(gaps, dims=hps + jdims, coords=coords, name="gap",
                        attrs={"units": "nats (potential difference / T_i)",
                               "potential": "G = U - T S + P V" if gibbs else "F = U - T S"})


def _plot_excess(result: CheckResult, ax) -> None:
    excess = result.details["excess"]
    hps = result.context["hyperparameters"]
    x, y = excess[hps[0]].values, excess[hps[1]].values
    data = excess.transpose(hps[1], hps[0]).values
    top = max(float(np.nanmax(data)) if np.isfinite(data).any() else 0.0, result.tolerance or 0.0, 1e-12)
    mesh = log_mesh(ax, x, y, data, cmap="viridis", vmin=0, vmax=top)
    ax.get_figure().colorbar(mesh, ax=ax, label="excess (G_i(i) - min_j G_i(j)) / T_i  [nats]")
    own = result.details["own_minimum"].transpose(hps[1], hps[0]).values
    yy, xx = np.meshgrid(y, x, indexing="ij")
    not_own = ~own & np.isfinite(data)
    ax.plot(xx[not_own], yy[not_own], "x", color="w", ms=5, label="own state not the minimiser")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(hps[0])
    ax.set_ylabel(hps[1])
    if not_own.any():
        ax.legend(fontsize=7, loc="upper left")


@attrs.frozen(kw_only=True)
class PotentialMinimumCheck(Check, name="potential-minimum"):
    """Each measured state minimises its own Gibbs (or Helmholtz) energy over the grid (V2).

    Key figure ``max_excess_nats``: the largest excess ``(G_i(i) - min_j G_i(j)) / T_i``
    over members, in nats (0 when every member's own state is the minimiser); each member's
    standard error is that of the difference to its best competitor (propagated from the
    standard errors of U, S, rho), whether or not the competitor wins; default tolerance
    0.05 nats, ``z = 3``; the verdict is :func:`~thermonet.checks.base.decide_points`' on the
    signed margin (the excess where the own state loses, minus the lead over the best
    competitor where it wins: a member that wins by many standard errors is decided). Also
    reported: the fraction of members whose own state is the exact minimiser.

    Evidence: theory. On a network the energy is the training loss, which assumes U = L
    (isotropic noise): under anisotropic noise the stationary law is exp(-Phi/T) with
    Phi != L (paper 004 §7.1).
    """

    description: ClassVar[str] = "each state minimises its own G = U - TS + PV (fixed sphere: F = U - TS at equal V)"
    requires: ClassVar[tuple[str, ...]] = ("U", "S", "T", "P", "V")
    evidence_reason: ClassVar[str] = "the states minimise the potential only if the thermodynamics holds"

    def evidence_of(self, measured):
        return "theory", assumes_loss_is_energy(measured, self.evidence_reason)

    tolerance: float = attrs.field(default=0.05, validator=nonnegative_tolerance)
    z: float = attrs.field(default=3.0, validator=nonnegative_tolerance)

    def applicability(self, measured, states):
        sm = seed_mean(states)
        good = np.isfinite(sm["U"]) & np.isfinite(sm["S"]) & np.isfinite(sm["T"])
        if int(good.sum()) < 2:
            return "needs at least two members with finite U, S and T"
        return None

    def _run(self, measured, states):
        protocol = measured.protocol
        hps = list(protocol.hyperparameters)
        gaps = potential_gaps(protocol, states)
        jdims = [f"{n}_j" for n in hps]
        n = int(np.prod([gaps.sizes[d] for d in hps]))
        matrix = gaps.values.reshape(n, n)
        excess_flat = np.diagonal(matrix).copy()
        finite_rows = np.isfinite(excess_flat)
        filled = np.where(np.isnan(matrix), np.inf, matrix)
        argmin = np.argmin(filled, axis=1)
        own_flat = (argmin == np.arange(n)) & finite_rows
        shape = tuple(gaps.sizes[d] for d in hps)
        coords = {h: gaps[h].values for h in hps}
        excess = xr.DataArray(excess_flat.reshape(shape), dims=hps, coords=coords, name="excess")
        own = xr.DataArray(own_flat.reshape(shape), dims=hps, coords=coords, name="own_minimum")
        minimiser = {}
        for k, h in enumerate(hps):
            idx = np.unravel_index(argmin, shape)[k]
            vals = gaps[h].values[idx].astype(float)
            vals[~finite_rows] = np.nan
            minimiser[f"minimiser_{h}"] = xr.DataArray(vals.reshape(shape), dims=hps, coords=coords)
        # the best competitor of every member (its own state left out): its excess is known to
        # the standard error of the difference to that competitor, whether or not it wins
        others = filled.copy()
        np.fill_diagonal(others, np.inf)
        competitor = np.argmin(others, axis=1)
        noise = self._excess_noise(protocol, states, competitor)
        noise = np.where(finite_rows, noise, np.nan)
        # signed: the excess where the own state loses, minus the margin to the best competitor
        # where it wins (a state that wins by many standard errors is decided, however noisy)
        margin = np.where(excess_flat > 0, excess_flat, -others[np.arange(n), competitor])
        margin = np.where(finite_rows & np.isfinite(margin), margin, np.nan)
        worst, mean = nan_stats(excess_flat)
        members = int(finite_rows.sum())
        fraction = float(own_flat.sum() / members) if members else float("nan")
        finite_noise = noise[finite_rows & np.isfinite(noise)]
        numbers = {"max_excess_nats": worst, "mean_excess_nats": mean, "fraction_own_minimum": fraction,
                   "members": float(members),
                   "noise_median_nats": float(np.median(finite_noise)) if finite_noise.size else float("nan")}
        potential = "G" if protocol.natural_variables[1] == "P" else "F"
        summary = (f"own state minimises {potential} for {fraction:.0%} of {members} states; max excess "
                   f"{worst:.3g} nats (tolerance {self.tolerance:g}), noise {numbers['noise_median_nats']:.2g} nats")
        details = {"gap": gaps, "excess": excess, "excess_se": xr.DataArray(noise.reshape(shape), dims=hps,
                                                                           coords=coords, name="excess_se"),
                   "own_minimum": own, **minimiser}
        return self._result(key="max_excess_nats", points=(margin, noise), signed_points=True, numbers=numbers,
                            summary=summary,
                            details=details,
                            context={"hyperparameters": hps, "potential": potential, "j_dims": jdims, "z": self.z},
                            plotter=_plot_excess)

    @staticmethod
    def _excess_noise(protocol, states: xr.Dataset, argmin: np.ndarray) -> np.ndarray:
        """Standard error (nats) of G_i(i) - G_i(j*) over T_i, j* = ``argmin[i]``.

        Propagates the standard errors of the seed means of U, S and rho (V = rho**2/2),
        taken as independent; zero where the run carries no ``*_se`` variables.
        """
        hps = list(protocol.hyperparameters)
        sm = seed_mean(states)

        def flat(da: xr.DataArray) -> np.ndarray:
            return np.asarray(da.transpose(*hps).values, dtype=float).ravel()

        T, P, rho = flat(sm["T"]), flat(sm["P"]), flat(sm["rho"])
        se = {v: flat(seed_mean_and_error(states, v)[1]) for v in ("U", "S", "rho")}
        i = np.arange(T.size)
        j = argmin
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (se["U"][i] ** 2 + se["U"][j] ** 2) / T**2 + se["S"][i] ** 2 + se["S"][j] ** 2
            if protocol.natural_variables[1] == "P":
                var = var + (P / T) ** 2 * ((rho[i] * se["rho"][i]) ** 2 + (rho[j] * se["rho"][j]) ** 2)
        return np.sqrt(var)
