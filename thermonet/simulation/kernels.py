"""Compiled CPU kernel: one numba loop for every protocol and energy.

A protocol takes part in the compiled simulator through one small numba function,
``step(w, g, hp)``, that updates a single member's weights ``w`` (length D) in place from
its stochastic gradient ``g`` and its hyperparameter values ``hp`` (in the order of
``Protocol.hyperparameters``). It must do the same arithmetic as the protocol's torch
``Protocol.step`` (``tests/test_simulation.py`` checks one step of each against the other).
It is found as ``protocol.numba_step`` when the protocol class defines it, otherwise in
:data:`NUMBA_STEPS` (filled with :func:`register_step`). Adding a protocol is therefore
its ``Protocol`` class plus this function; the loop is never copied.

The kernel loop itself lives in :mod:`._kernel_template`. For each (step, energy) pair a
small module is generated from that source, with a header binding ``protocol_step`` and
``energy_value_grad``, and compiled with ``numba.njit(parallel=True, cache=True)``. The
generated file's name is a hash of every source it depends on (template, RNG, the step
and energy modules, numba version), so numba's on-disk cache is reused across processes
and can never serve a kernel compiled from older sources. Files go to
``$THERMONET_KERNEL_DIR`` or ``~/.cache/thermonet/kernels`` (falling back to the
temporary directory when that is not writable).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import numba

from thermonet.errors import InputError

__all__ = ["NUMBA_STEPS", "get_kernel", "numba_step_for", "register_step"]

#: numba single-member update per protocol name.
NUMBA_STEPS: dict[str, Callable] = {}

_KERNELS: dict[tuple, Callable] = {}
_LOCK = threading.Lock()
_GENERATOR_VERSION = "1"


def register_step(name: str):
    """Decorator: register a numba ``step(w, g, hp)`` for protocol ``name``."""

    def decorate(fn):
        NUMBA_STEPS[name] = fn
        return fn

    return decorate


@register_step("fixed-lr")
@numba.njit(inline="always")
def fixed_lr_step(w, g, hp):
    """``w <- w - η (g + λ w)``, hp = (lr, wd)."""
    lr = hp[0]
    wd = hp[1]
    for j in range(w.shape[0]):
        w[j] = w[j] - lr * (g[j] + wd * w[j])


@register_step("fixed-elr")
@numba.njit(inline="always")
def fixed_elr_step(w, g, hp):
    """``w <- w - η̃ ‖w‖² (g + λ w)``, hp = (elr, wd)."""
    elr = hp[0]
    wd = hp[1]
    rho2 = 0.0
    for j in range(w.shape[0]):
        rho2 += w[j] * w[j]
    c = elr * rho2
    for j in range(w.shape[0]):
        w[j] = w[j] - c * (g[j] + wd * w[j])


@register_step("fixed-sphere")
@numba.njit(inline="always")
def fixed_sphere_step(w, g, hp):
    """``w <- ρ₀ (w - η g)/‖w - η g‖``, hp = (lr, sphere_radius)."""
    lr = hp[0]
    radius = hp[1]
    norm2 = 0.0
    for j in range(w.shape[0]):
        w[j] = w[j] - lr * g[j]
        norm2 += w[j] * w[j]
    norm = norm2**0.5
    for j in range(w.shape[0]):
        w[j] = radius * w[j] / norm


def numba_step_for(protocol) -> Callable:
    """The numba single-member step of ``protocol`` (raises InputError when it has none)."""
    step = getattr(protocol, "numba_step", None) or NUMBA_STEPS.get(protocol.name)
    if step is None:
        raise InputError(
            f"protocol {protocol.name!r} has no compiled step (define numba_step or register one in "
            f"thermonet.simulation.kernels); use --device cuda or backend='torch'"
        )
    return step


def _kernel_dir() -> Path:
    candidates = []
    env = os.environ.get("THERMONET_KERNEL_DIR")
    if env:
        candidates.append(Path(env))
    candidates.append(Path.home() / ".cache" / "thermonet" / "kernels")
    candidates.append(Path(tempfile.gettempdir()) / f"thermonet-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}")
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return path
        except OSError:
            continue
    raise InputError("no writable directory for compiled kernels; set THERMONET_KERNEL_DIR")


def _import_ref(fn) -> tuple[str, str, str]:
    """(module, attribute name, module source) of a numba dispatcher or function."""
    py = getattr(fn, "py_func", fn)
    module = sys.modules[py.__module__]
    name = py.__name__
    if getattr(module, name, None) is not fn:
        # find the module-level name bound to this dispatcher
        names = [k for k, v in vars(module).items() if v is fn]
        if not names:
            raise InputError(f"{py.__qualname__} must be a module-level numba function to be compiled in the kernel")
        name = names[0]
    return py.__module__, name, inspect.getsource(module)


def get_kernel(protocol, energy) -> Callable:
    """The compiled ``advance`` kernel for ``protocol`` and ``energy`` (cached)."""
    step = numba_step_for(protocol)
    value_grad = type(energy).value_grad_numba
    key = (id(step), id(value_grad))
    with _LOCK:
        kernel = _KERNELS.get(key)
        if kernel is not None:
            return kernel
        from thermonet.simulation import _kernel_template, rng

        step_mod, step_name, step_src = _import_ref(step)
        energy_mod, energy_name, energy_src = _import_ref(value_grad)
        template = inspect.getsource(_kernel_template)
        digest = hashlib.sha256()
        for part in (_GENERATOR_VERSION, numba.__version__, sys.version, template, inspect.getsource(rng),
                     step_mod, step_name, step_src, energy_mod, energy_name, energy_src):
            digest.update(part.encode())
            digest.update(b"\0")
        tag = digest.hexdigest()[:20]
        header = (
            f"# Generated by thermonet.simulation.kernels: protocol step {step_mod}.{step_name}, "
            f"energy {energy_mod}.{energy_name}. Do not edit.\n"
            f"from {step_mod} import {step_name} as protocol_step\n"
            f"from {energy_mod} import {energy_name} as energy_value_grad\n"
        )
        body = template.replace(
            "protocol_step = energy_value_grad = None  # bound by the generated module header  # noqa: F811\n", ""
        )
        source = header + body
        stem = f"thermonet_kernel_{step_name}_{energy_name.lstrip('_')}_{tag}"
        path = _kernel_dir() / f"{stem}.py"
        if not path.exists() or path.read_text() != source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)
        module_name = stem
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        kernel = module.advance
        _KERNELS[key] = kernel
        return kernel
