"""The thermodynamic temperature ``T = (dU/dS)_V`` from the measured energy and entropy surfaces.

The first law ``dU = T dS - P dV`` makes the temperature a property of the measured state
functions: along a path of constant volume ``T = dU/dS``. The protocols' temperature
``T = eta_eff sigma^2 / 2`` is a *kinetic* definition, from the step size and the measured
gradient noise. The two need not agree: they do when the stationary distribution is the
Gibbs distribution of the training loss at the kinetic temperature (isotropic noise,
THEORY §3), and comparing them is a test of the thermodynamic picture that no rescaling
symmetry guarantees (THEORY §11, (ii)).

:func:`thermodynamic_temperature` fits quadratic surfaces (:mod:`.surface`) to ``ln U``,
``S`` and ``ln V`` over the grid of seed means, in logs of the hyperparameters, and
evaluates at every grid point, along the direction ``t = (-d lnV/dv, d lnV/du)`` on which
the volume does not change,

    T_thermo = (t . grad U) / (t . grad S),      grad U = U grad ln U,

with a standard error propagated linearly from those of U and S through the fits. The
grid mean of ``T_thermo / T`` gets its own standard error (``attrs["mean_ratio_se"]``),
propagated through both fits at once: the points share the fitted coefficients, so their
errors are correlated and the mean is far better determined than any one point. Where
the volume is fixed by one hyperparameter (the sphere radius) ``t`` is the other axis,
and ``T_thermo`` is the slope of the free-energy hull (THEORY §10) at that point.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from thermonet.analysis.states import seed_mean, seed_mean_and_error
from thermonet.analysis.surface import fit_quadratic_surface, log_grid, surface_problem
from thermonet.errors import InputError

__all__ = ["thermodynamic_temperature"]


def thermodynamic_temperature(states: xr.Dataset, hyperparameters: tuple[str, str]) -> xr.Dataset:
    """``T_thermo``, its standard error ``T_thermo_se``, the kinetic ``T`` (seed means) and
    ``ratio = T_thermo / T`` with ``ratio_se``, on the grid of the two hyperparameters.

    ``states`` are stationary states (``ds.thermo.stationary()``: ``U``, ``S``, ``V``,
    ``T`` and their ``*_se``). Raises :class:`InputError` when the grid is too small for
    a quadratic surface or U is not positive.
    """
    hps = tuple(hyperparameters)
    sm = seed_mean(states)
    U, U_se = seed_mean_and_error(states, "U")
    S, S_se = seed_mean_and_error(states, "S")
    u, v, u_vals = log_grid(U.transpose(*hps), hps)
    _, _, s_vals = log_grid(S.transpose(*hps), hps)
    _, _, v_vals = log_grid(sm["V"].transpose(*hps), hps)
    _, _, t_vals = log_grid(sm["T"].transpose(*hps), hps)
    _, _, u_se = log_grid(U_se.transpose(*hps), hps)
    _, _, s_se = log_grid(S_se.transpose(*hps), hps)
    for name, values in (("U", u_vals), ("S", s_vals), ("V", v_vals)):
        problem = surface_problem(u, v, values)
        if problem:
            raise InputError(f"the thermodynamic temperature needs surfaces of U, S and V: {problem} ({name})")
    if np.any(u_vals[np.isfinite(u_vals)] <= 0) or np.any(v_vals[np.isfinite(v_vals)] <= 0):
        raise InputError("the thermodynamic temperature needs U > 0 and V > 0 at every state (it fits ln U, ln V)")
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_u, ln_u_se = np.log(u_vals), u_se / u_vals
    surf_u = fit_quadratic_surface(u, v, ln_u)
    surf_s = fit_quadratic_surface(u, v, s_vals)
    surf_v = fit_quadratic_surface(u, v, np.log(v_vals))
    vu, vv = surf_v.gradient(u, v)
    norm = np.hypot(vu, vv)
    # the direction of constant volume; where V does not vary at all, any direction is
    norm = np.where(norm > 0, norm, 1.0)
    tu, tv = -vv / norm, vu / norm
    lu, lv = surf_u.gradient(u, v)
    su, sv = surf_s.gradient(u, v)
    fitted_u = np.exp(surf_u.value(u, v))
    a = fitted_u * (tu * lu + tv * lv)
    b = tu * su + tv * sv
    op_u, op_v = surf_u.gradient_operators(u, v)
    grad_u = tu.ravel()[:, None] * op_u + tv.ravel()[:, None] * op_v  # d(t . grad ln U) / d(ln U data)
    a_se = fitted_u.ravel() * surf_u.propagated_std(grad_u, ln_u_se)
    op_u, op_v = surf_s.gradient_operators(u, v)
    grad_s = tu.ravel()[:, None] * op_u + tv.ravel()[:, None] * op_v
    b_se = surf_s.propagated_std(grad_s, s_se)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_thermo = a / b
        rel = np.sqrt((a_se.reshape(u.shape) / a) ** 2 + (b_se.reshape(u.shape) / b) ** 2)
        ratio = t_thermo / t_vals
    good = np.isfinite(u_vals) & np.isfinite(s_vals)
    # The grid mean of the ratio, with its standard error propagated through both fits at once
    # (the points' ratios share the fitted coefficients, so their errors are correlated):
    # d ratio_i / ratio_i = d a_i / a_i - d b_i / b_i, d a_i / a_i = (U_i / a_i) grad_u_i . d lnU + value_i . d lnU.
    use = (good & np.isfinite(ratio)).ravel()
    if use.any():
        r = ratio.ravel()[use]
        row_u = np.mean(r[:, None] * ((fitted_u.ravel()[use] / a.ravel()[use])[:, None] * grad_u[use]
                                      + surf_u.value_operator(u, v)[use]), axis=0)
        row_s = -np.mean((r / b.ravel()[use])[:, None] * grad_s[use], axis=0)
        mean_ratio = float(np.mean(r))
        mean_ratio_se = float(np.hypot(surf_u.propagated_std(row_u[None, :], ln_u_se)[0],
                                       surf_s.propagated_std(row_s[None, :], s_se)[0]))
    else:
        mean_ratio = mean_ratio_se = float("nan")
    coords = {h: np.asarray(U[h].values, dtype=float) for h in hps}

    def grid(values):
        return xr.DataArray(np.where(good, values, np.nan), dims=hps, coords=coords)

    return xr.Dataset({"T_thermo": grid(t_thermo), "T_thermo_se": grid(np.abs(t_thermo) * rel), "T": grid(t_vals),
                       "ratio": grid(ratio), "ratio_se": grid(np.abs(ratio) * rel)},
                      attrs={"r2_lnU": surf_u.r2, "r2_S": surf_s.r2, "r2_lnV": surf_v.r2,
                             "mean_ratio": mean_ratio, "mean_ratio_se": mean_ratio_se})
