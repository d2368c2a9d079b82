"""Source template of the compiled CPU kernel (not imported for execution).

:mod:`thermonet.engines.isotropic.kernel` copies this file's source into a generated module
whose header binds the two free names used below,

* ``protocol_step(w, g, hp)``: the protocol's update of one member, in place;
* ``energy_value_grad(w, rho, params, grad_out) -> L``: the energy and its gradient,

and compiles it with numba (cached on disk per protocol/energy pair). There is one loop
for every protocol and energy; they differ only in those two small functions.

``advance`` moves every member ``nsteps`` steps forward from step ``t0`` (members in
parallel, steps sequentially inside each member) and, on the way,

* accumulates over the current log interval, in ``acc`` (M, 4): the energy ``L(w)`` at the
  weights before each update, ``‖g̃‖²``, the number of steps and ``trΣ(x)`` (the noise's
  trace at unit norm, which depends on the direction when the noise is anisotropic);
* at each log step (``t % log_every == 0`` or ``t == total_steps``) writes the interval
  means of those (``out_loss``, ``out_gns``, ``out_trace``), and the energy, radius and
  ``G₁² = ρ²‖∇L(w)‖²`` of the state after step ``t`` (``out_snapshot``, ``out_rho``,
  ``out_g1``) into column ``ceil(t / log_every) - 1 - log_base`` of the ``out_*`` arrays
  and resets the accumulators (log and queue steps are tracked by counters, not ``%``,
  which would put two integer divisions into every step);
* every ``queue_every`` steps writes ``w`` into the ring buffer ``queue`` (slot
  ``(t // queue_every - 1) % queue_size``).

The stochastic gradient is ``∇L(w) + σ P_w A ξ / ‖w‖``: ``ξ`` from the counter-based
generator keyed by the member's key and ``t`` (see :mod:`thermonet.engines.rng`); ``A =
diag(noise_scale)`` (all ones: isotropic noise, the theory's assumption; otherwise
anisotropic, a control); with ``tail_dof = ν > 0`` the vector ``ξ`` is multivariate
Student-t with ν degrees of freedom, scaled to unit variance (heavy-tailed, a control),
from ν further normals of the same step. With ``momentum = β > 0`` the protocol moves
along the velocity ``v <- β v + g̃`` instead of ``g̃`` (heavy-ball SGD, a control).
"""

import math

import numpy as np
from numba import njit, prange

from thermonet.engines.rng import fill_normals

protocol_step = energy_value_grad = None  # bound by the generated module header  # noqa: F811


@njit(parallel=True, cache=True, nogil=True)
def advance(w, hp, keys, eparams, sigma, t0, nsteps, total_steps, log_every, log_base,
            queue, queue_every, acc, noise_scale, tail_dof, momentum, velocity,
            out_loss, out_snapshot, out_rho, out_gns, out_g1, out_trace):  # pragma: no cover - compiled
    members, dim = w.shape
    qsize = queue.shape[1]
    anisotropic = False
    scale_sq_sum = 0.0
    for j in range(dim):
        scale_sq_sum += noise_scale[j] * noise_scale[j]
        if noise_scale[j] != 1.0:
            anisotropic = True
    for m in prange(members):
        sm = sigma[m]
        isotropic_trace = sm * sm * (dim - 1)
        wm = w[m].copy()
        vm = velocity[m].copy()
        grad = np.empty(dim)
        g = np.empty(dim)
        xi = np.empty(dim + tail_dof)
        xid = xi[:dim]
        hpm = hp[m]
        key = keys[m]
        a_loss = acc[m, 0]
        a_g2 = acc[m, 1]
        a_n = acc[m, 2]
        a_tr = acc[m, 3]
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
            a_loss += energy_value_grad(wm, rho, eparams, grad)
            if tail_dof > 0:
                fill_normals(key, t, xi)
                chi2 = 0.0
                for j in range(dim, dim + tail_dof):
                    chi2 += xi[j] * xi[j]
                tail = math.sqrt((tail_dof - 2.0) / chi2)
                for j in range(dim):
                    xid[j] = xid[j] * tail
            else:
                fill_normals(key, t, xid)
            if anisotropic:
                weighted = 0.0
                for j in range(dim):
                    xid[j] = xid[j] * noise_scale[j]
                    weighted += noise_scale[j] * noise_scale[j] * wm[j] * wm[j]
                a_tr += sm * sm * (scale_sq_sum - weighted * (inv * inv))
            else:
                a_tr += isotropic_trace
            proj = 0.0
            for j in range(dim):
                proj += xid[j] * wm[j]
            proj = proj * (inv * inv)
            scale = sm * inv
            g2 = 0.0
            for j in range(dim):
                gj = grad[j] + scale * (xid[j] - proj * wm[j])
                g[j] = gj
                g2 += gj * gj
            if momentum != 0.0:
                for j in range(dim):
                    vm[j] = momentum * vm[j] + g[j]
                protocol_step(wm, vm, hpm)
            else:
                protocol_step(wm, g, hpm)
            a_g2 += g2
            a_n += 1.0
            if t == next_log:
                rho2 = 0.0
                for j in range(dim):
                    rho2 += wm[j] * wm[j]
                rho = math.sqrt(rho2)
                snapshot = energy_value_grad(wm, rho, eparams, grad)
                gsq = 0.0
                for j in range(dim):
                    gsq += grad[j] * grad[j]
                out_loss[m, li] = a_loss / a_n
                out_snapshot[m, li] = snapshot
                out_rho[m, li] = rho
                out_gns[m, li] = a_g2 / a_n
                out_g1[m, li] = rho2 * gsq
                out_trace[m, li] = a_tr / a_n
                a_loss = 0.0
                a_g2 = 0.0
                a_n = 0.0
                a_tr = 0.0
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
            velocity[m, j] = vm[j]
        acc[m, 0] = a_loss
        acc[m, 1] = a_g2
        acc[m, 2] = a_n
        acc[m, 3] = a_tr
