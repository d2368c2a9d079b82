"""Counter-based random numbers: the same stream for a member in any ensemble, on any backend.

Every ensemble member has a 64-bit key derived from its seed and its hyperparameter
values (:func:`member_keys`). The random numbers it uses at step ``t`` are a pure function
of ``(key, t)``, so a member's trajectory does not depend on which other members run
beside it, on how the run is chunked, or on where it was resumed: the step index is the
whole RNG state.

Construction (the same in the numba kernel and in torch):

* ``mix(z)`` is the SplitMix64 finalizer (Stafford's variant 13) and
  ``random64(key, c) = mix(key + (c + 1) * GAMMA)`` is the ``c``-th output of SplitMix64
  seeded with ``key`` (arithmetic modulo 2**64).
* Normal ``j`` (``0 ≤ j < D``) of step ``t`` owns the 64 counters
  ``c = 64 (t D + j) + k``, ``k = 0..63``, and is drawn by the ziggurat method (Marsaglia &
  Tsang 2000, in Doornik's 2005 "ZIGNOR" form: 128 layers, layer index and uniform from
  independent bits of one draw, exact tail and wedge tests). Draw ``k`` gives the layer
  ``i = h & 127`` and ``u = ((h >> 12) + 1/2) 2**-51 − 1 ∈ (−1, 1)``; 98.8 % of normals
  are accepted on the first draw. The wedge test uses the next counter, the tail
  (|ξ| > 3.44) two per round. Should 62 counters not suffice (probability far below
  1e-90) the normal is ``Φ⁻¹`` (Wichura's AS 241) of counter 63, so no step ever reads
  another normal's counters.
* Step ``t = 0`` is the initial point (direction ``ξ/‖ξ‖``); the updates use ``t ≥ 1``.
* Uniforms in (0, 1) are ``((h >> 12) + 1/2) 2**-52``: exact, never 0 or 1.

The 64-bit integers are bit-identical in numba and torch (torch works on int64 with
two's-complement wrap-around and masked logical shifts). ``exp`` and ``log`` (wedge and
tail, ~1.2 % of normals) may differ in the last bit between libm (numba), SLEEF (torch
CPU) and CUDA, so streams agree across backends to ~1 ulp (an accept decision could flip
only if a uniform falls within an ulp of the boundary), and each backend is bit-for-bit
deterministic on its own.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

import numba
import numpy as np

__all__ = [
    "SCHEME",
    "GAMMA",
    "MASK64",
    "fill_normals",
    "hash_chain",
    "keys_to_torch",
    "member_key",
    "member_keys",
    "mix_int",
    "ndtri",
    "normals_numpy",
    "normals_torch",
    "random64_torch",
    "signed64",
    "srl",
]

#: The scheme in one line, recorded as the run store's ``rng`` attribute.
SCHEME = ("counter-based: member key = SplitMix64 hash chain of (seed, float64 bits of the hyperparameters); "
          "normal j of step t from SplitMix64 outputs 64*(t*D + j) + k, k = 0..63, by Doornik's ZIGNOR "
          "ziggurat (128 layers), Wichura AS241 inverse CDF of output 63 only if 62 draws are rejected; "
          "step 0 is the initial direction")

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
# Domain separation for member keys (so keys are not SplitMix64 outputs of the seed).
_KEY_DOMAIN = 0x7468_6572_6D6F_6E65  # "thermone"

_U_GAMMA = np.uint64(GAMMA)
_U_M1 = np.uint64(_M1)
_U_M2 = np.uint64(_M2)
_U_ONE = np.uint64(1)
_S6 = np.uint64(6)
_S12 = np.uint64(12)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_M127 = np.uint64(127)
_INV51 = 2.0**-51
_INV52 = 2.0**-52
#: counters per normal (a power of two) and the last one, reserved for the fallback
COUNTERS_PER_NORMAL = 64
_U_LIMIT = np.uint64(COUNTERS_PER_NORMAL - 2)
_U_LAST = np.uint64(COUNTERS_PER_NORMAL - 1)


# ---------------------------------------------------------------------- ziggurat tables
def _ziggurat_tables(layers: int = 128, r: float = 3.442619855899, v: float = 9.91256303526217e-3):
    """Doornik's ZIGNOR tables: x[0] = v/f(r) (bottom block), x[1] = r, …, x[layers] = 0."""
    x = np.zeros(layers + 1)
    f = math.exp(-0.5 * r * r)
    x[0] = v / f
    x[1] = r
    for i in range(2, layers):
        x[i] = math.sqrt(-2.0 * math.log(v / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    ratio = x[1:] / x[:-1]
    return x, ratio, r


_ZX, _ZR, _ZTAIL = _ziggurat_tables()


# ----------------------------------------------------------------------------- python
def mix_int(z: int) -> int:
    """SplitMix64 finalizer on a Python int (modulo 2**64)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def _float_bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", float(value)))[0]


def hash_chain(key: int, values: Iterable[float]) -> int:
    """Continue a key's hash chain over the float64 bits of ``values``:
    ``key = mix((key ^ bits(v)) + GAMMA)`` for each value in turn."""
    for value in values:
        key = mix_int((key ^ _float_bits(value)) + GAMMA)
    return key


def member_key(seed: int, hyperparameters: Iterable[float]) -> int:
    """64-bit key of one member: a hash chain over the seed and the float64 bits of its
    hyperparameter values (in the protocol's order)."""
    return hash_chain(mix_int(_KEY_DOMAIN ^ (int(seed) & MASK64)), hyperparameters)


def member_keys(seeds: np.ndarray, hp: np.ndarray) -> np.ndarray:
    """Keys (uint64, shape (M,)) for members with ``seeds[m]`` and ``hp[m, :]``."""
    seeds = np.asarray(seeds)
    hp = np.asarray(hp, dtype=np.float64).reshape(len(seeds), -1)
    return np.array([member_key(int(s), row) for s, row in zip(seeds, hp)], dtype=np.uint64)


# ------------------------------------------------------------------------------ numba
@numba.njit(inline="always")
def mix64(z):
    z = (z ^ (z >> _S30)) * _U_M1
    z = (z ^ (z >> _S27)) * _U_M2
    return z ^ (z >> _S31)


@numba.njit(inline="always")
def random64(key, counter):
    return mix64(key + (counter + _U_ONE) * _U_GAMMA)


@numba.njit(inline="always")
def uniform(key, counter):
    """``((random64 >> 12) + 1/2) 2**-52`` ∈ (0, 1), exact."""
    return (np.float64(np.int64(random64(key, counter) >> _S12)) + 0.5) * _INV52


# Wichura (1988), algorithm AS 241 (PPND16): the inverse normal CDF to ~1e-16 relative.
_A = (3.3871328727963666080e0, 1.3314166789178437745e2, 1.9715909503065514427e3, 1.3731693765509461125e4,
      4.5921953931549871457e4, 6.7265770927008700853e4, 3.3430575583588128105e4, 2.5090809287301226727e3)
_B = (1.0, 4.2313330701600911252e1, 6.8718700749205790830e2, 5.3941960214247511077e3,
      2.1213794301586595867e4, 3.9307895800092710610e4, 2.8729085735721942674e4, 5.2264952788528545610e3)
_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0, 3.64784832476320460504e0,
      1.27045825245236838258e0, 2.41780725177450611770e-1, 2.27238449892691845833e-2, 7.74545014278341407640e-4)
_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
      1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4, 1.05075007164441684324e-9)
_E = (6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0, 2.96560571828504891230e-1,
      2.65321895265761230930e-2, 1.24266094738807843860e-3, 2.71155556874348757815e-5, 2.01033439929228813265e-7)
_F = (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
      7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7, 2.04426310338993978564e-15)


@numba.njit(inline="always")
def _poly(c, x):
    """Degree-7 polynomial by Estrin's scheme."""
    x2 = x * x
    x4 = x2 * x2
    return ((c[0] + c[1] * x) + x2 * (c[2] + c[3] * x)) + x4 * ((c[4] + c[5] * x) + x2 * (c[6] + c[7] * x))


@numba.njit
def ndtri(p):
    """Inverse standard normal CDF for 0 < p < 1 (AS 241)."""
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _poly(_A, r) / _poly(_B, r)
    r = p if q < 0.0 else 1.0 - p
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r -= 1.6
        x = _poly(_C, r) / _poly(_D, r)
    else:
        r -= 5.0
        x = _poly(_E, r) / _poly(_F, r)
    return -x if q < 0.0 else x


@numba.njit(inline="always")
def normal(key, base):
    """The standard normal owning counters ``base .. base + 63`` (ziggurat, see module doc)."""
    k = np.uint64(0)
    while k < _U_LIMIT:
        h = random64(key, base + k)
        k += _U_ONE
        i = np.int64(h & _M127)
        u = (np.float64(np.int64(h >> _S12)) + 0.5) * _INV51 - 1.0
        if abs(u) < _ZR[i]:
            return u * _ZX[i]
        if i == 0:
            while k < _U_LIMIT:
                x = math.log(uniform(key, base + k)) / _ZTAIL
                y = math.log(uniform(key, base + k + _U_ONE))
                k += np.uint64(2)
                if -2.0 * y >= x * x:
                    return x - _ZTAIL if u < 0.0 else _ZTAIL - x
            break
        x = u * _ZX[i]
        f0 = math.exp(-0.5 * (_ZX[i] * _ZX[i] - x * x))
        f1 = math.exp(-0.5 * (_ZX[i + 1] * _ZX[i + 1] - x * x))
        v = uniform(key, base + k)
        k += _U_ONE
        if f1 + v * (f0 - f1) < 1.0:
            return x
    return ndtri(uniform(key, base + _U_LAST))


@numba.njit(inline="always")
def fill_normals(key, t, out):
    """Standard normals of step ``t`` for ``key`` into ``out`` (length D)."""
    dim = out.shape[0]
    first = np.uint64(t) * np.uint64(dim)
    for j in range(dim):
        out[j] = normal(key, (first + np.uint64(j)) << _S6)


@numba.njit
def _normals_numba(keys, t, dim):
    out = np.empty((keys.shape[0], dim))
    for m in range(keys.shape[0]):
        fill_normals(keys[m], t, out[m])
    return out


def normals_numpy(keys: np.ndarray, t: int, dim: int) -> np.ndarray:
    """(M, dim) standard normals of step ``t`` for each key (numba implementation)."""
    return _normals_numba(np.ascontiguousarray(keys, dtype=np.uint64), int(t), int(dim))


# ------------------------------------------------------------------------------ torch
def signed64(value: int) -> int:
    """A 64-bit pattern as the signed int64 value with the same bits."""
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def keys_to_torch(keys: np.ndarray, device=None):
    """uint64 keys as an int64 tensor with the same bits."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(keys, dtype=np.uint64).view(np.int64).copy()).to(device)


def srl(x, shift: int):
    """Logical right shift of int64 tensors (torch's >> is arithmetic)."""
    return (x >> shift) & ((1 << (64 - shift)) - 1)


def random64_torch(keys, counters):
    """``random64(key, counter)`` on int64 tensors (broadcast), same bits as the numba one."""
    z = keys + (counters + 1) * signed64(GAMMA)
    z = (z ^ srl(z, 30)) * signed64(_M1)
    z = (z ^ srl(z, 27)) * signed64(_M2)
    return z ^ srl(z, 31)


def _uniform_torch(keys, counters):
    import torch

    return (srl(random64_torch(keys, counters), 12).to(torch.float64) + 0.5) * _INV52


def _poly_torch(c, x):
    x2 = x * x
    x4 = x2 * x2
    return ((c[1] * x + c[0]) + x2 * (c[3] * x + c[2])) + x4 * ((c[5] * x + c[4]) + x2 * (c[7] * x + c[6]))


def ndtri_torch(p):
    """AS 241 on a float64 tensor (same arithmetic as :func:`ndtri`)."""
    import torch

    q = p - 0.5
    central = q.abs() <= 0.425
    r0 = 0.180625 - q * q
    x_central = q * _poly_torch(_A, r0) / _poly_torch(_B, r0)
    r = torch.sqrt(-torch.log(torch.where(q < 0.0, p, 1.0 - p)))
    near = r <= 5.0
    r1 = r - 1.6
    r2 = r - 5.0
    x_tail = torch.where(near, _poly_torch(_C, r1) / _poly_torch(_D, r1), _poly_torch(_E, r2) / _poly_torch(_F, r2))
    x_tail = torch.where(q < 0.0, -x_tail, x_tail)
    return torch.where(central, x_central, x_tail)


_TABLES: dict = {}
_UNCHECKED_ROUNDS = 3


def _tables_on(device):
    import torch

    key = str(device)
    if key not in _TABLES:
        _TABLES[key] = (torch.as_tensor(_ZX, device=device), torch.as_tensor(_ZR, device=device))
    return _TABLES[key]


def normals_torch(keys, t, dim: int):
    """(M, dim) float64 normals of step ``t`` for int64 ``keys`` (M,), on their device.

    The ziggurat of :func:`normal`, vectorised: every round advances each unfinished
    normal by one ziggurat attempt or one tail round, with per-element counters, so the
    draws used are exactly those of the numba version.
    """
    import torch

    device = keys.device
    zx, zr = _tables_on(device)
    base = ((t * dim + torch.arange(dim, dtype=torch.int64, device=device)) << 6)[None, :]  # (1, D)
    kk = keys[:, None]
    shape = (keys.shape[0], dim)
    out = torch.zeros(shape, dtype=torch.float64, device=device)
    done = torch.zeros(shape, dtype=torch.bool, device=device)
    in_tail = torch.zeros(shape, dtype=torch.bool, device=device)
    negative = torch.zeros(shape, dtype=torch.bool, device=device)
    k = torch.zeros(shape, dtype=torch.int64, device=device)
    limit = COUNTERS_PER_NORMAL - 2
    for round_ in range(COUNTERS_PER_NORMAL):
        active = ~done & (k < limit)
        # the first rounds run unconditionally (no device sync); 98.8 % finish in round 1
        if round_ >= _UNCHECKED_ROUNDS and not bool(active.any()):
            break
        # a tail round for those already in the tail
        tail = active & in_tail
        x_t = torch.log(_uniform_torch(kk, base + k)) / _ZTAIL
        y_t = torch.log(_uniform_torch(kk, base + k + 1))
        t_ok = tail & (-2.0 * y_t >= x_t * x_t)
        out = torch.where(t_ok, torch.where(negative, x_t - _ZTAIL, _ZTAIL - x_t), out)
        # a ziggurat attempt for the others
        attempt = active & ~in_tail
        h = random64_torch(kk, base + k)
        i = h & 127
        u = (srl(h, 12).to(torch.float64) + 0.5) * _INV51 - 1.0
        xi, xi1, ri = zx[i], zx[i + 1], zr[i]
        rect = attempt & (u.abs() < ri)
        x = u * xi
        out = torch.where(rect, x, out)
        to_tail = attempt & ~rect & (i == 0)
        wedge = attempt & ~rect & (i != 0)
        f0 = torch.exp(-0.5 * (xi * xi - x * x))
        f1 = torch.exp(-0.5 * (xi1 * xi1 - x * x))
        v = _uniform_torch(kk, base + k + 1)
        w_ok = wedge & (f1 + v * (f0 - f1) < 1.0)
        out = torch.where(w_ok, x, out)
        done = done | t_ok | rect | w_ok
        negative = torch.where(to_tail, u < 0.0, negative)
        in_tail = in_tail | to_tail
        k = k + torch.where(tail, 2, 0) + torch.where(attempt, 1, 0) + torch.where(wedge, 1, 0)
    if not bool(done.all()):  # pragma: no cover - probability < 1e-90
        fallback = ndtri_torch(_uniform_torch(kk, base + (COUNTERS_PER_NORMAL - 1)))
        out = torch.where(done, out, fallback)
    return out
