"""Entropic forces on a rescaling symmetry (paper 003, "Neural Thermodynamics I"; THEORY §11).

Two consecutive layers of a bias-free ReLU network without normalisation have the
symmetry ``W1 -> c W1``, ``W2 -> W2 / c``: every mini-batch loss is unchanged. Hence, for
every batch,

* ``<W1, g1> = <W2, g2>`` (the derivative of the loss along the orbit is 0), and
* along the orbit ``W1 -> e^s W1``, ``W2 -> e^-s W2`` the gradients scale as
  ``g1 -> e^-s g1``, ``g2 -> e^s g2``; so ``||W1||**2 ||g1||**2`` and
  ``||W2||**2 ||g2||**2`` and ``||W1||**2 ||W2||**2`` are the same at every point of an
  orbit (orbit invariants).

**Identity** (:meth:`RescalingPair.step_change_expr`, derived here by expanding the norms
of one step ``W <- (1 - eta lambda) W - eta g`` and using the first bullet): the
difference ``C = ||W1||**2 - ||W2||**2`` changes in one step by exactly

    ``C' - C = ((1 - eta lambda)**2 - 1) C + eta**2 (||g1||**2 - ||g2||**2)``.

Gradient flow (``eta -> 0``, no decay) conserves C; the discrete step moves it by
``eta**2`` times the gradient imbalance. This holds at every step, for every batch,
whatever the dynamics: it tests the code and the symmetry, not a theory.

**Prediction** (:meth:`RescalingPair.orbit_velocity_expr`, :meth:`RescalingPair.relaxation_rate_expr`):
if the function the network computes is stationary (its orbit invariants fixed: the
expected ``A = E||g~1||**2``, ``B = E||g~2||**2`` and ``N1 = ||W1||**2``, ``N2 = ||W2||**2``
at a reference point ``s = 0`` of the orbit), the only slow coordinate is the position
``s`` on the orbit, and its expected motion follows from the identity with
``E||g~1||**2 = A e^(-2s)``, ``E||g~2||**2 = B e^(2s)``, ``C(s) = N1 e^(2s) - N2 e^(-2s)``:

    ``ds/dt = [((1 - eta lambda)**2 - 1) C(s) + eta**2 (A e^(-2s) - B e^(2s))] / (2 M(s))``,
    ``M(s) = N1 e^(2s) + N2 e^(-2s)``.

It has one stable fixed point: without decay gradient balance ``E||g~1||**2 =
E||g~2||**2`` (of the *stochastic* gradients, noise included), the entropic force of the
discrete step and the noise; with decay the balance ``eta**2 (E||g~1||**2 - E||g~2||**2)
= (1 - (1 - eta lambda)**2) C`` between it and the decay, which alone would pull to
``||W1|| = ||W2||``. Near the fixed point the displacement decays as ``exp(-k t)`` with

    ``k = 1 - (1 - eta lambda)**2 + eta**2 (E||g~1||**2 + E||g~2||**2) / (||W1||**2 + ||W2||**2)``:

the decay's own rate ``~ 2 eta lambda`` plus the entropic rate ``eta**2 G / M``; noise
raises ``G`` (small batches), so noise and step size together set how fast the
continuous symmetry is broken. A discrete symmetry (permuting hidden units, which leaves
every gradient norm unchanged) feels no such force. Assumptions that can fail: the
function state is stationary and unaffected by the orbit position (the layers' effective
learning rates change along the orbit), and the gradient norms follow the orbit scaling.

:meth:`RescalingPair.predict_difference` integrates the map step by step from measured
``A, B, N1, N2`` and compares two orbit points (a member and its rescaled copy) with no
free parameter.
"""

from __future__ import annotations

import functools

import attrs
import numpy as np
import sympy as sp

from thermonet.theory.symbols import eta, lam

__all__ = ["RescalingPair", "orbit_symbols"]

#: ||W1||**2, ||W2||**2, ||g1||**2, ||g2||**2, <W1, g1>, <W2, g2>, the orbit coordinate s.
N1, N2, G1, G2, P1, P2 = sp.symbols("N1 N2 G1 G2 p1 p2", real=True)
s = sp.Symbol("s", real=True)
C = sp.Symbol("C", real=True)


def orbit_symbols() -> dict[str, sp.Symbol]:
    """The symbols of the derivations, by name."""
    return {"N1": N1, "N2": N2, "G1": G1, "G2": G2, "p1": P1, "p2": P2, "s": s, "C": C, "eta": eta, "lambda": lam}


@attrs.frozen
class RescalingPair:
    """Two consecutive layers of a homogeneous network under ``W <- (1 - eta lambda) W - eta g``."""

    # ------------------------------------------------------------------ identity
    def step_change_expr(self) -> sp.Expr:
        """``C' - C`` for one step, derived: expand ``||(1 - eta lambda) W - eta g||**2`` for both
        layers and use the symmetry ``<W1, g1> = <W2, g2>``."""
        return _step_change()

    def step_change(self, lr, wd, c, grad_sq_1, grad_sq_2) -> np.ndarray:
        """Numeric :meth:`step_change_expr` (arrays broadcast)."""
        return _numeric(self.step_change_expr(), (eta, lam, C, G1, G2))(lr, wd, c, grad_sq_1, grad_sq_2)

    # ------------------------------------------------------------------ prediction
    def orbit_velocity_expr(self) -> sp.Expr:
        """``ds/dt`` at orbit position ``s`` with the reference point's ``A = G1``, ``B = G2``,
        ``N1``, ``N2`` (the expected one-step change of C divided by ``dC/ds = 2 M(s)``)."""
        return _velocity()

    def relaxation_rate_expr(self) -> sp.Expr:
        """``k = -d(ds/dt)/ds`` at a fixed point of the orbit (the reference point taken as the
        fixed point: its own velocity set to 0), in the reference point's G1, G2, N1, N2."""
        return _rate()

    def relaxation_rate(self, lr, wd, grad_sq_1, grad_sq_2, norm_sq_1, norm_sq_2) -> np.ndarray:
        """Numeric :meth:`relaxation_rate_expr` (per step)."""
        return _numeric(self.relaxation_rate_expr(), (eta, lam, G1, G2, N1, N2))(
            lr, wd, grad_sq_1, grad_sq_2, norm_sq_1, norm_sq_2)

    def predict_difference(self, steps: int, start: float, lr: float, wd: float, grad_sq_1: float, grad_sq_2: float,
                           norm_sq_1: float, norm_sq_2: float) -> np.ndarray:
        """``C(t)`` of a copy moved to orbit position ``start`` minus that of the reference point
        (``s = 0``), ``t = 0..steps``: both iterate the expected one-step map of C on the orbit
        of the reference's (``A``, ``B``, ``N1``, ``N2``) (the exact step change with the orbit
        scaling of the gradients), so a reference off its fixed point drifts too and only the
        difference is compared."""
        a, b, n1, n2 = (float(v) for v in (grad_sq_1, grad_sq_2, norm_sq_1, norm_sq_2))
        keep = (1 - lr * wd) ** 2
        q = n1 * n2  # ||W1||**2 ||W2||**2: the same at every orbit point

        def run(c0: float) -> np.ndarray:
            out = np.empty(int(steps) + 1)
            c = c0
            for t in range(int(steps) + 1):
                out[t] = c
                x = (c + np.sqrt(c * c + 4 * q)) / (2 * n1)  # e^(2s) of the point with this C
                c = keep * c + lr**2 * (a / x - b * x)
            return out

        moved = n1 * np.exp(2 * start) - n2 * np.exp(-2 * start)
        return run(moved) - run(n1 - n2)


@functools.lru_cache(maxsize=None)
def _step_change() -> sp.Expr:
    keep = 1 - eta * lam
    after_1 = sp.expand((keep**2) * N1 - 2 * keep * eta * P1 + eta**2 * G1)  # ||keep W1 - eta g1||**2
    after_2 = sp.expand((keep**2) * N2 - 2 * keep * eta * P2 + eta**2 * G2)
    change = sp.expand((after_1 - after_2) - (N1 - N2)).subs(P2, P1)  # the symmetry: <W1,g1> = <W2,g2>
    return sp.collect(sp.expand(change.subs(N1, C + N2)), [C, eta**2])


def _orbit_parts() -> tuple[sp.Expr, sp.Expr]:
    """(expected change of C per step, dC/ds) at orbit position s."""
    on_orbit = {C: N1 * sp.exp(2 * s) - N2 * sp.exp(-2 * s), G1: G1 * sp.exp(-2 * s), G2: G2 * sp.exp(2 * s)}
    change = _step_change().xreplace(on_orbit)
    return change, sp.diff(N1 * sp.exp(2 * s) - N2 * sp.exp(-2 * s), s)


@functools.lru_cache(maxsize=None)
def _velocity() -> sp.Expr:
    change, dc_ds = _orbit_parts()
    return change / dc_ds


@functools.lru_cache(maxsize=None)
def _rate() -> sp.Expr:
    # velocity = change/dC_ds; at a fixed point change = 0, so d(velocity)/ds = change'/dC_ds there
    change, dc_ds = _orbit_parts()
    return sp.simplify(-(sp.diff(change, s) / dc_ds).subs(s, 0))


@functools.lru_cache(maxsize=64)
def _lambdified(arguments: tuple[sp.Symbol, ...], expr: sp.Expr):
    return sp.lambdify(list(arguments), expr, "numpy")


def _numeric(expr: sp.Expr, arguments: tuple[sp.Symbol, ...]):
    fn = _lambdified(arguments, expr)

    def evaluate(*values):
        arrays = [np.asarray(v, dtype=float) for v in values]
        return np.asarray(fn(*arrays), dtype=float) * np.ones(np.broadcast_shapes(*(a.shape for a in arrays)))

    return evaluate
