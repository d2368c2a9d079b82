"""Source template of the compiled CPU kernel (not imported for execution).

:mod:`thermonet.engines.isotropic.kernel` copies this file's source into a generated module
whose header binds the two free names used below,

* ``protocol_step(w, g, hp)``: the protocol's update of one member, in place;
* ``energy_value_grad(w, rho, params, grad_out) -> L``: the energy and its gradient,

and compiles it with numba (cached on disk per protocol/energy pair). There is one loop
for every protocol and energy; they differ only in those two small functions.

``advance`` moves every member ``nsteps`` steps forward from step ``t0`` (members in
parallel, steps sequentially inside each member) and, on the way,

* accumulates ``‖g̃‖²`` (sum, count) over the current log interval in ``acc``;
* at each log step (``t % log_every == 0`` or ``t == total_steps``) writes the loss,
  radius, interval-mean ``‖g̃‖²`` and ``G₁² = ρ²‖∇L(w)‖²`` of the state after step ``t``
  into column ``ceil(t / log_every) - 1 - log_base`` of the ``out_*`` arrays and resets
  the accumulators (log and queue steps are tracked by counters, not ``%``, which
  would put two integer divisions into every step);
* every ``queue_every`` steps writes ``w`` into the ring buffer ``queue`` (slot
  ``(t // queue_every - 1) % queue_size``).

The gradient fed to the protocol is ``∇L(w) + σ P_w ξ / ‖w‖`` with ``ξ`` from the
counter-based generator keyed by the member's key and ``t`` (see :mod:`.rng`).
"""

import math

import numpy as np
from numba import njit, prange

from thermonet.engines.rng import fill_normals

protocol_step = energy_value_grad = None  # bound by the generated module header  # noqa: F811


@njit(parallel=True, cache=True, nogil=True)
def advance(w, hp, keys, eparams, sigma, t0, nsteps, total_steps, log_every, log_base,
            queue, queue_every, acc, out_loss, out_rho, out_gns, out_g1):  # pragma: no cover - compiled
    members, dim = w.shape
    qsize = queue.shape[1]
    for m in prange(members):
        wm = w[m].copy()
        grad = np.empty(dim)
        g = np.empty(dim)
        xi = np.empty(dim)
        hpm = hp[m]
        key = keys[m]
        a_g2 = acc[m, 0]
        a_n = acc[m, 1]
        # next log / queue steps, tracked by addition (no integer division in the loop)
        next_log = (t0 // log_every + 1) * log_every
        if next_log > total_steps:
            next_log = total_steps
        li = t0 // log_every - log_base
        next_queue = (t0 // queue_every + 1) * queue_every
        slot = (t0 // queue_every) % qsize
        for i in range(nsteps):
            t = t0 + i + 1
            rho2 = 0.0
            for j in range(dim):
                rho2 += wm[j] * wm[j]
            rho = math.sqrt(rho2)
            inv = 1.0 / rho
            energy_value_grad(wm, rho, eparams, grad)
            fill_normals(key, t, xi)
            proj = 0.0
            for j in range(dim):
                proj += xi[j] * wm[j]
            proj = proj * (inv * inv)
            scale = sigma * inv
            g2 = 0.0
            for j in range(dim):
                gj = grad[j] + scale * (xi[j] - proj * wm[j])
                g[j] = gj
                g2 += gj * gj
            protocol_step(wm, g, hpm)
            a_g2 += g2
            a_n += 1.0
            if t == next_log:
                rho2 = 0.0
                for j in range(dim):
                    rho2 += wm[j] * wm[j]
                rho = math.sqrt(rho2)
                loss = energy_value_grad(wm, rho, eparams, grad)
                gsq = 0.0
                for j in range(dim):
                    gsq += grad[j] * grad[j]
                out_loss[m, li] = loss
                out_rho[m, li] = rho
                out_gns[m, li] = a_g2 / a_n
                out_g1[m, li] = rho2 * gsq
                a_g2 = 0.0
                a_n = 0.0
                li += 1
                next_log += log_every
                if next_log > total_steps:
                    next_log = total_steps
            if t == next_queue:
                for j in range(dim):
                    queue[m, slot, j] = wm[j]
                slot += 1
                if slot == qsize:
                    slot = 0
                next_queue += queue_every
        for j in range(dim):
            w[m, j] = wm[j]
        acc[m, 0] = a_g2
        acc[m, 1] = a_n
