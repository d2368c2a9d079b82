"""Functional view of a scale-invariant network: one flat parameter vector per member.

:class:`FlatModel` wraps a template :class:`~thermonet.models.ScaleInvariantNet` and maps
a flat vector ``w`` (D,) onto its trained parameters (in ``named_parameters`` order) as
views, so ``torch.func.functional_call`` evaluates the network at ``w``. Everything that
is not trained (the fixed head, any frozen parameter) is passed as a per-member buffer.
``torch.func.grad`` of :meth:`FlatModel.loss` with respect to ``w`` is then the gradient
of the scale-invariant vector, (D,), and ``torch.func.vmap`` over a stack (E, D) gives
every member's gradient in one call (convolutions become grouped convolutions).

The flat vector is cut into the network's scale-invariant groups
(:func:`thermonet.models.scale_groups_of`): :meth:`FlatModel.group_sums` reduces any
per-coordinate quantity (squares of weights or gradients) to one value per group, and
:meth:`FlatModel.group_columns` gives each group's coordinates.

:func:`initial_point` is the one place where a member's starting point is made, used by
the ensemble engine and by the per-member eager reference alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from thermonet.errors import InputError
from thermonet.models.registry import scale_groups_of

__all__ = ["LOOP_MIN_ACTIVATIONS", "VECTORIZE_MODES", "FlatModel", "activation_elements", "flatten_parameters",
           "initial_point", "resolve_vectorize"]


def flatten_parameters(model: nn.Module) -> torch.Tensor:
    """The trained parameters of ``model`` as one flat vector (a copy)."""
    params = [p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError(f"{type(model).__name__} has no trained parameters")
    return torch.cat(params)


class FlatModel:
    """A template network evaluated at flat parameter vectors (see the module docstring)."""

    def __init__(self, model: nn.Module):
        self.model = model
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not trained:
            raise InputError(f"{type(model).__name__} has no trained parameters")
        self.names = [n for n, _ in trained]
        self.shapes = [tuple(p.shape) for _, p in trained]
        self.numels = [p.numel() for _, p in trained]
        self.dim = int(sum(self.numels))
        self.buffer_names = [n for n, _ in model.named_buffers()] + [
            n for n, p in model.named_parameters() if not p.requires_grad]
        self.groups = scale_groups_of(model)
        self.group_names = tuple(g.name for g in self.groups)
        self.group_sizes = tuple(int(g.size) for g in self.groups)
        of_group = {n: i for i, g in enumerate(self.groups) for n in g.parameters}
        self._parameter_group = torch.tensor([of_group[n] for n in self.names], dtype=torch.int64)

    # ------------------------------------------------------------------ groups
    def group_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D) -> (..., G)``: the sum of ``x`` over each group's coordinates."""
        per_parameter = torch.stack([part.sum(-1) for part in torch.split(x, self.numels, dim=-1)], dim=-1)
        out = per_parameter.new_zeros(*per_parameter.shape[:-1], len(self.groups))
        return out.index_add_(-1, self._parameter_group.to(x.device), per_parameter)

    def group_columns(self, device=None) -> list[torch.Tensor]:
        """Each group's coordinates in the flat vector (int64 index tensors, in group order)."""
        starts = np.cumsum([0, *self.numels])
        owner = self._parameter_group.tolist()
        return [torch.cat([torch.arange(int(starts[i]), int(starts[i + 1]), device=device)
                           for i in range(len(self.names)) if owner[i] == g])
                for g in range(len(self.groups))]

    # ------------------------------------------------------------------ layout
    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: view of w}`` for one member's flat vector ``w`` (D,)."""
        return {n: chunk.view(shape)
                for n, chunk, shape in zip(self.names, torch.split(w, self.numels), self.shapes)}

    def buffers_of(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The non-trained tensors of ``model`` (an instance of the same architecture)."""
        named = dict(model.named_buffers())
        named.update({n: p.detach() for n, p in model.named_parameters() if not p.requires_grad})
        return {n: named[n] for n in self.buffer_names}

    # ------------------------------------------------------------------ evaluation
    def logits(self, w: torch.Tensor, buffers: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (self.unflatten(w), dict(buffers)), (x,))

    def loss(self, w, buffers, x, y):
        """Mean cross-entropy on the batch, with aux ``(loss, number correct)``."""
        logits = self.logits(w, buffers, x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.argmax(-1) == y).sum()
        return loss, (loss.detach(), correct)

    def evaluate(self, w, buffers, x, y):
        """``(mean loss, number correct)`` without gradients."""
        logits = self.logits(w, buffers, x)
        return F.cross_entropy(logits, y), (logits.argmax(-1) == y).sum()

    # ------------------------------------------------------------------ vmapped transforms
    def member_grad(self, shared_input: bool = False, vectorize: bool = True):
        """``f(W (E,D), buffers (E,…), x, y) -> (grads (E,D), (loss (E,), correct (E,)))``.

        ``shared_input``: x, y are one batch for all members (else (E, B, …) per member).
        ``vectorize``: one ``vmap`` call for all members (convolutions become grouped
        convolutions: the GPU path); else a loop over members with dense layers, the
        same numbers to float rounding (faster on a CPU for large networks, see
        :data:`VECTORIZE_MODES`).
        """
        return _over_members(grad(self.loss, has_aux=True), shared_input, vectorize)

    def member_eval(self, shared_input: bool = True, vectorize: bool = True):
        """``f(W, buffers, x, y) -> (loss (E,), correct (E,))`` without gradients."""
        return _over_members(self.evaluate, shared_input, vectorize)


#: How the members of an ensemble are evaluated: ``vmap`` (one vectorised call, grouped
#: convolutions; best on a GPU), ``loop`` (member by member with dense layers) or
#: ``auto``: vmap on CUDA; on a CPU the loop for networks of at least
#: :data:`LOOP_MIN_ACTIVATIONS` activation elements per example (dense kernels beat
#: grouped ones there: 1.4-2x for the ConvNet on 32x32 images) and vmap for smaller ones
#: (where the loop's per-member overhead dominates: vmap was 1.3-2x faster for the
#: width-2 ConvNet on MNIST-1D, 1,930 elements per example).
VECTORIZE_MODES = ("auto", "vmap", "loop")

#: Activation elements per example from which ``auto`` loops over members on a CPU.
LOOP_MIN_ACTIVATIONS = 16384


def resolve_vectorize(mode: str, device, activations_per_example: int | None = None) -> bool:
    """True for ``vmap``, False for the member loop; see :data:`VECTORIZE_MODES` for ``auto``."""
    if mode not in VECTORIZE_MODES:
        raise InputError(f"--vectorize must be one of {', '.join(VECTORIZE_MODES)}, got {mode!r}")
    if mode == "auto":
        if torch.device(device).type == "cuda" or activations_per_example is None:
            return True
        return activations_per_example < LOOP_MIN_ACTIVATIONS
    return mode == "vmap"


def _stack(outputs: list):
    """Stack a list of equally nested tuples of tensors along a new first axis."""
    first = outputs[0]
    if isinstance(first, tuple):
        return tuple(_stack([o[i] for o in outputs]) for i in range(len(first)))
    return torch.stack(outputs)


def _over_members(fn, shared_input: bool, vectorize: bool):
    """``fn(w, buffers, x, y)`` of one member applied to every member of a stack."""
    data = None if shared_input else 0
    if vectorize:
        return vmap(fn, in_dims=(0, 0, data, data), randomness="error")

    def loop(W, buffers, x, y):
        return _stack([fn(W[m], {k: v[m] for k, v in buffers.items()}, x if shared_input else x[m],
                          y if shared_input else y[m]) for m in range(W.shape[0])])

    return loop


def initial_point(model_name: str, *, input_shape, num_classes: int, width: int, head_norm: float, seed: int,
                  radius: float | None = None, device="cpu", dtype=torch.float32, **model_options):
    """One member's start: ``(flat trained vector w0 (D,), buffers, template model)``.

    The network is initialised from ``seed`` (:func:`thermonet.models.build_model`, which
    also takes ``model_options`` such as ``bn_eps`` and ``train_head``); with ``radius`` the
    trained vector is rescaled to that norm (the direction is kept).
    """
    from thermonet.models import build_model

    model = build_model(model_name, input_shape=input_shape, num_classes=num_classes, width=width,
                        head_norm=head_norm, seed=seed, device=device, dtype=dtype, **model_options)
    w0 = flatten_parameters(model)
    if radius is not None:
        if not (math.isfinite(radius) and radius > 0):
            raise InputError(f"initial radius must be a finite number > 0, got {radius!r}")
        w0 = w0 * (radius / w0.norm())
    return w0, FlatModel(model).buffers_of(model), model


@torch.no_grad()
def activation_elements(model: nn.Module, x: torch.Tensor) -> int:
    """Elements of every module output for one input example (summed over leaf modules).

    Used by the memory estimate: training keeps about this many values per example for
    the backward pass (plus gradients of the same size).
    """
    total = [0]

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            total[0] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        was = model.training
        model.train()
        model(x)
        model.train(was)
    finally:
        for h in handles:
            h.remove()
    return int(math.ceil(total[0] / x.shape[0]))
