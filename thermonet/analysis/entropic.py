"""Entropic forces measured on unnormalised ReLU networks, against :mod:`thermonet.theory.entropic`.

* :func:`identity_residuals` -- the exact one-step change of ``C = ||W1||**2 - ||W2||**2``
  (an identity) and the symmetry ``<W1, g1> = <W2, g2>``, step by step, to rounding;
* :func:`relaxation_experiment` -- the prediction: train an ensemble (phase 1), move a
  copy of every member along the rescaling orbit (``W1 -> c W1``, ``W2 -> W2/c``: the same
  function, the same loss, unbalanced gradients), train both on the same batches
  (phase 2) and compare how the difference of their C relaxes with the orbit map
  (:meth:`~thermonet.theory.entropic.RescalingPair.predict_difference`) and its linear
  rate ``k = eta lambda (2 - eta lambda) + eta**2 (E||g~1||**2 + E||g~2||**2)/(||W1||**2 + ||W2||**2)``,
  from the copy's partner's measured gradient and weight norms, with no free parameter;
* :func:`fit_decay_rate` -- the rate of an exponential decay, the same fit for measured
  and predicted curves.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from thermonet.engines.network.chain import ReLUChainEnsemble
from thermonet.errors import InputError
from thermonet.theory.entropic import RescalingPair

__all__ = ["fit_decay_rate", "identity_residuals", "relaxation_experiment"]


def identity_residuals(chain: ReLUChainEnsemble, steps: int, pair: int = 0) -> dict[str, float]:
    """Train ``steps`` steps and compare every step with the exact identities of the pair.

    Returns the largest relative residual over steps and members of
    ``C' - C = ((1 - eta lambda)**2 - 1) C + eta**2 (||g1||**2 - ||g2||**2)`` (relative to
    the size of its terms) and of ``<W1, g1> = <W2, g2>`` (relative to ``|<W1, g1>| +
    |<W2, g2>|``), and the largest relative change of C per step that the identity
    explains (so that a zero residual is not a zero change).
    """
    theory = RescalingPair()
    lr, wd = chain.lr.cpu().numpy(), chain.wd.cpu().numpy()
    worst_c = worst_inner = largest_change = 0.0
    for _ in range(int(steps)):
        record = {k: v.cpu().numpy() for k, v in chain.step().items()}
        before, after = record["norm_sq"], record["norm_sq_next"]
        c0 = before[:, pair] - before[:, pair + 1]
        c1 = after[:, pair] - after[:, pair + 1]
        g1, g2 = record["grad_sq"][:, pair], record["grad_sq"][:, pair + 1]
        predicted = theory.step_change(lr, wd, c0, g1, g2)
        keep = 1 - (1 - lr * wd) ** 2
        scale = lr**2 * (g1 + g2) + keep * np.abs(c0) + np.finfo(float).eps * (before[:, pair] + before[:, pair + 1])
        worst_c = max(worst_c, float(np.max(np.abs((c1 - c0) - predicted) / scale)))
        i1, i2 = record["inner"][:, pair], record["inner"][:, pair + 1]
        worst_inner = max(worst_inner, float(np.max(np.abs(i1 - i2) / (np.abs(i1) + np.abs(i2) + 1e-300))))
        largest_change = max(largest_change, float(np.max(np.abs(c1 - c0) / (np.abs(c0) + 1e-300))))
    return {"step_change_rel_residual": worst_c, "symmetry_rel_residual": worst_inner,
            "largest_rel_change_per_step": largest_change, "steps": float(steps)}


def fit_decay_rate(steps: np.ndarray, values: np.ndarray, floor: float = 0.1) -> tuple[float, float, int]:
    """``(k, se, n)``: ``values ~ a exp(-k t)`` fitted in logs over the points from the start
    while ``values/values[0]`` stays above ``floor`` (the tail drowns in noise); least squares
    with an intercept, standard error from the residuals. NaN with fewer than 3 points."""
    t = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if y.size == 0 or not (np.isfinite(y[0]) and y[0] != 0):
        return math.nan, math.nan, 0
    ratio = y / y[0]
    below = np.flatnonzero(~(ratio > floor))
    n = int(below[0]) if below.size else y.size
    if n < 3:
        return math.nan, math.nan, n
    tt, ly = t[:n], np.log(ratio[:n])
    design = np.stack([np.ones(n), tt], axis=1)
    coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
    residual = ly - design @ coef
    dof = max(n - 2, 1)
    cov = np.linalg.pinv(design.T @ design) * float(residual @ residual) / dof
    return float(-coef[1]), float(math.sqrt(max(cov[1, 1], 0.0))), n


def relaxation_experiment(dataset, *, hidden=(16,), lr, wd, seeds, batch_size: int | None, shift: float = math.sqrt(2),
                          equilibrate: int, relax: int, log_every: int, noise_samples: int = 8, pair: int = 0,
                          floor: float = 0.1) -> xr.Dataset:
    """Phase 1 (``equilibrate`` steps from the initial point) and phase 2 (``relax`` steps of
    every member and of its copy moved along the orbit by ``shift``), for one batch size.

    ``lr``, ``wd``, ``seeds``: one entry per member. Returns a Dataset over ``member``
    (coordinates ``learning_rate``, ``weight_decay``, ``seed``, ``batch_size``; ``0`` = full
    batch) with

    * phase 1: ``log_gradient_ratio`` ``ln(E||g~1||**2/E||g~2||**2)`` over ``step1`` (0 is
      gradient balance), ``C1`` (``||W1||**2 - ||W2||**2``), ``loss1``; at its end, per layer
      (``layer``): ``grad_full_sq`` and ``trace_sigma`` (``noise_samples`` batches);
    * phase 2 over ``step2``: ``dC`` (copy minus partner; ``dC_start`` at the shift) and
      ``dC_predicted`` (the orbit map from the partner's phase-2 means ``G1``, ``G2``, ``N1``,
      ``N2``; ``dC_predicted_start`` its value at the shift, from those means);
    * ``k_measured``, ``k_measured_se``, ``k_predicted`` (the same fit on the predicted
      curve, relative to its own start) and ``k_linear`` (the linear rate), per step.
    """
    theory = RescalingPair()
    chain = ReLUChainEnsemble(dataset, hidden=hidden, lr=lr, wd=wd, seeds=seeds, batch_size=batch_size)
    members = chain.members
    if not (shift > 0 and shift != 1):
        raise InputError(f"shift must be a positive factor other than 1, got {shift}")
    first = chain.run(equilibrate, log_every)
    noise = chain.gradient_noise(noise_samples)
    both = chain.select(np.concatenate([np.arange(members), np.arange(members)]))
    both.rescale(pair, np.concatenate([np.ones(members), np.full(members, float(shift))]))
    second = both.run(relax, log_every)
    n1, n2 = second["norm_sq"][:, pair], second["norm_sq"][:, pair + 1]
    g1, g2 = second["grad_sq"][:, pair], second["grad_sq"][:, pair + 1]
    c = n1 - n2
    measured = c[members:] - c[:members]
    ref = slice(0, members)
    means = {"G1": g1[ref].mean(-1), "G2": g2[ref].mean(-1), "N1": n1[ref].mean(-1), "N2": n2[ref].mean(-1)}
    lr_, wd_ = np.asarray(chain.lr.cpu()), np.asarray(chain.wd.cpu())
    steps2 = second["step"] - first["step"][-1]
    times = np.concatenate([[0], steps2])
    predicted = np.stack([theory.predict_difference(int(steps2[-1]), math.log(shift), lr_[m], wd_[m], means["G1"][m],
                                                    means["G2"][m], means["N1"][m], means["N2"][m])[times]
                          for m in range(members)])
    start = (shift**2 - 1) * first["norm_sq"][:, pair, -1] - (shift**-2 - 1) * first["norm_sq"][:, pair + 1, -1]
    fits = [fit_decay_rate(times, np.concatenate([[start[m]], measured[m]]), floor) for m in range(members)]
    fits_pred = [fit_decay_rate(times, predicted[m], floor) for m in range(members)]
    predicted_start, predicted = predicted[:, 0], predicted[:, 1:]
    k_linear = theory.relaxation_rate(lr_, wd_, means["G1"], means["G2"], means["N1"], means["N2"])
    coords = {"learning_rate": ("member", lr_), "weight_decay": ("member", wd_), "seed": ("member", np.asarray(seeds)),
              "batch_size": ("member", np.full(members, batch_size or 0)), "step1": first["step"],
              "step2": steps2, "layer": np.arange(chain.layers)}
    data = {
        "log_gradient_ratio": (("member", "step1"), np.log(first["grad_sq"][:, pair] / first["grad_sq"][:, pair + 1])),
        "C1": (("member", "step1"), first["norm_sq"][:, pair] - first["norm_sq"][:, pair + 1]),
        "loss1": (("member", "step1"), first["loss"]),
        "grad_full_sq": (("member", "layer"), noise["grad_full_sq"]),
        "trace_sigma": (("member", "layer"), noise["trace_sigma"]),
        "dC": (("member", "step2"), measured),
        "dC_predicted": (("member", "step2"), predicted),
        "dC_start": ("member", start),
        "dC_predicted_start": ("member", predicted_start),
        "k_measured": ("member", np.array([f[0] for f in fits])),
        "k_measured_se": ("member", np.array([f[1] for f in fits])),
        "k_predicted": ("member", np.array([f[0] for f in fits_pred])),
        "k_linear": ("member", k_linear),
        **{name: ("member", value) for name, value in means.items()},
    }
    return xr.Dataset(data, coords=coords, attrs={"shift": float(shift), "pair": int(pair), "hidden": list(hidden),
                                                  "equilibrate": int(equilibrate), "relax": int(relax),
                                                  "log_every": int(log_every), "floor": float(floor)})
