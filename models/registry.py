"""The model registry, the base class of scale-invariant networks and their shared layers.

A *scale-invariant network* here is a classifier whose trained parameters, taken
together as one vector ``w``, only matter through their direction: ``f(c·w) = f(w)`` for
every ``c > 0`` and every input batch (THEORY §1). The recipe (Li & Arora 2020; Kodryan
et al. 2022):

* every trained layer is a convolution or linear map **without bias**, followed by a
  BatchNorm **without affine parameters** (:func:`batch_norm`), so that scaling the
  weights of a layer scales its pre-BN output and BN removes the scale;
* the last linear layer (:class:`FixedHead`) is **not trained**: its weight is a buffer
  with a fixed norm (10 for cross-entropy), so the logits have a fixed scale.

BatchNorm always normalises with the statistics of the batch it sees (no running
statistics, ``track_running_stats=False``): the network is a pure function of its
parameters and the batch, which is what ``torch.func.vmap`` needs. Evaluation therefore
also uses batch statistics, over chunks (see :mod:`thermonet.ensemble`).

Adding a model::

    from thermonet.models import ScaleInvariantNet, batch_norm

    class TinyNet(ScaleInvariantNet, name="tiny-si", description="one conv layer"):
        def build(self, width):
            c = 4 * width
            self.conv = self.conv_layer(self.in_channels, c, 3)   # Conv1d/Conv2d by input rank
            self.bn = self.batch_norm(c)
            return c                                              # features into the head

        def features(self, x):
            return self.global_max(torch.relu(self.bn(self.conv(x))))

Subclassing with ``name=...`` registers the class; :func:`register_model` does the same
as a decorator. :func:`build_model` then finds it by name (``--model tiny-si``), and
:func:`check_scale_invariance` verifies the property numerically (the trainer runs it
before every run).

**Groups.** The recipe makes a network scale-invariant *layer by layer*: scaling the
weights of one layer alone (the layer followed by a BatchNorm) leaves the output
unchanged. :meth:`ScaleInvariantNet.scale_groups` lists these groups (a name, the trained
parameters that scale together, their size D_g); by default every trained parameter is a
group of its own, named by its module path (``conv_layers.0``). A model whose layers only
scale jointly (a residual stream: the stem and every branch added to it) overrides
:meth:`ScaleInvariantNet.group_parameters`. :func:`check_group_invariance` verifies each
group on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from thermonet.base.registry import Registered
from thermonet.errors import InputError

__all__ = [
    "DEFAULT_BN_EPS",
    "MODELS",
    "FixedHead",
    "ScaleGroup",
    "ScaleInvariantNet",
    "batch_norm",
    "build_model",
    "check_group_invariance",
    "check_scale_invariance",
    "scale_groups_of",
    "get_model_class",
    "model_names",
    "register_model",
]


#: BatchNorm epsilon. BN computes ``z / sqrt(var(z) + eps)``; with the usual 1e-5 a layer
#: whose pre-BN variance is small (small weights late in a fixed-LR run) is no longer
#: scale-invariant and the gradient gains a radial part. 1e-12 keeps the invariance
#: exact to float rounding for pre-BN variances down to ~1e-8 and still avoids 0/0 on
#: dead channels (their output is exactly 0).
DEFAULT_BN_EPS = 1e-12


def register_model(name: str | None = None, description: str | None = None) -> Callable[[type], type]:
    """Class decorator: register a :class:`ScaleInvariantNet` subclass under ``name``.

    ``name`` defaults to the class attribute ``name``. Registering a second class under a
    taken name raises :class:`InputError` unless it is the same class.
    """

    def decorate(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, ScaleInvariantNet)):
            raise InputError(f"register_model: {cls!r} is not a ScaleInvariantNet subclass")
        key = name or getattr(cls, "name", None)
        if not key:
            raise InputError(f"register_model: give {cls.__name__} a name")
        if description is not None:
            cls.description = description
        cls.name = key
        ScaleInvariantNet._register(key, cls)
        return cls

    return decorate


def model_names() -> list[str]:
    """Registered names, sorted."""
    return sorted(ScaleInvariantNet.names())


def get_model_class(name: str) -> type["ScaleInvariantNet"]:
    """The class registered as ``name``; :class:`InputError` naming the choices otherwise."""
    registry = ScaleInvariantNet.registered()
    if name not in registry:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    return registry[name]


def __getattr__(name: str):
    if name == "MODELS":  # the registry itself: name -> class
        return ScaleInvariantNet._registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def batch_norm(dims: int, channels: int, eps: float = DEFAULT_BN_EPS) -> nn.Module:
    """BatchNorm without affine parameters and without running statistics (dims 0, 1 or 2).

    ``dims = 0`` is for (batch, features) inputs of fully connected layers.
    """
    cls = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}.get(dims)
    if cls is None:
        raise InputError(f"batch_norm: dims must be 0, 1 or 2, got {dims}")
    return cls(channels, eps=eps, affine=False, track_running_stats=False)


class FixedHead(nn.Module):
    """The last linear layer, not trained: ``logits = features @ weightᵀ`` (no bias).

    The weight is a buffer drawn from N(0, 1) and rescaled to Frobenius norm ``norm``.
    ``trained=True`` makes it a parameter instead, which breaks the network's scale
    invariance (a control: the identities of THEORY §11 stop holding).
    """

    def __init__(self, in_features: int, out_features: int, norm: float = 10.0, trained: bool = False):
        super().__init__()
        if not (math.isfinite(norm) and norm > 0):
            raise InputError(f"head norm must be a finite number > 0, got {norm!r}")
        weight = torch.randn(out_features, in_features)
        weight = weight * (norm / weight.norm())
        if trained:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
        self.norm = float(norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        fixed = "trained" if isinstance(self.weight, nn.Parameter) else "fixed"
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, norm={self.norm:g} ({fixed})"


@attrs.frozen
class ScaleGroup:
    """One scale-invariant group: trained parameters that scale together without changing the output.

    ``name``: the group's name (a module path, or the model's own name for a joint group);
    ``parameters``: the names of its trained parameters (``named_parameters`` names);
    ``size``: D_g, the number of its scalar parameters.
    """

    name: str
    parameters: tuple[str, ...]
    size: int


def _default_group_name(parameter: str) -> str:
    """``conv_layers.0.weight`` -> ``conv_layers.0`` (the module path)."""
    return parameter[: -len(".weight")] if parameter.endswith(".weight") else parameter


def scale_groups_of(model: nn.Module) -> tuple[ScaleGroup, ...]:
    """The scale-invariant groups of ``model``, in flattening order.

    A :class:`ScaleInvariantNet` states its own (:meth:`ScaleInvariantNet.scale_groups`);
    any other module gets the default, one group per trained parameter.
    """
    if isinstance(model, ScaleInvariantNet):
        return model.scale_groups()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return _groups_from(trained, _default_group_parameters(trained), type(model).__name__)


def _default_group_parameters(trained: Sequence[tuple[str, nn.Parameter]]) -> dict[str, list[str]]:
    names = [_default_group_name(n) for n, _ in trained]
    if len(set(names)) < len(names):  # two trained tensors in one module: name them in full
        names = [n for n, _ in trained]
    return {group: [n] for group, (n, _) in zip(names, trained)}


def _groups_from(trained: Sequence[tuple[str, nn.Parameter]], members: dict[str, Sequence[str]],
                 owner: str) -> tuple[ScaleGroup, ...]:
    """Validate a partition of the trained parameters into groups; order groups by their first parameter."""
    position = {n: i for i, (n, _) in enumerate(trained)}
    sizes = {n: p.numel() for n, p in trained}
    seen: dict[str, str] = {}
    for group, names in members.items():
        if not names:
            raise InputError(f"{owner}: scale group {group!r} has no parameters")
        for n in names:
            if n not in position:
                raise InputError(f"{owner}: scale group {group!r} names {n!r}, which is not a trained parameter")
            if n in seen:
                raise InputError(f"{owner}: parameter {n!r} is in two scale groups ({seen[n]!r}, {group!r})")
            seen[n] = group
    missing = [n for n in position if n not in seen]
    if missing:
        raise InputError(f"{owner}: trained parameter(s) {', '.join(missing)} belong to no scale group")
    groups = [ScaleGroup(group, tuple(sorted(names, key=position.__getitem__)), sum(sizes[n] for n in names))
              for group, names in members.items()]
    return tuple(sorted(groups, key=lambda g: position[g.parameters[0]]))


class ScaleInvariantNet(Registered, nn.Module, registry="model"):
    """Base class: a scale-invariant body, then :class:`FixedHead`.

    Subclasses implement :meth:`build` (create the layers; return the number of features
    the head receives) and :meth:`features` (input batch -> (batch, features)). The
    constructor takes the input shape without the batch axis — ``(C, L)`` for 1-D
    signals, ``(C, H, W)`` for images, ``(F,)`` for vectors — the number of classes, the
    width multiplier and the head norm.

    Class attributes: ``name`` (registry key), ``description`` (one line for ``--help``),
    ``input_ranks`` (the accepted input ranks, e.g. ``(2, 3)`` for 1-D and 2-D convs).
    Every trained parameter (``requires_grad``) must be part of the scale-invariant
    vector; anything fixed must be a buffer. The trained parameters fall into groups that
    are scale-invariant on their own (:meth:`scale_groups`; override
    :meth:`group_parameters` where the default, one group per parameter, is wrong).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    input_ranks: ClassVar[tuple[int, ...]] = (1, 2, 3)

    def __init_subclass__(cls, name: str | None = None, description: str | None = None, **kwargs):
        if description is not None:
            cls.description = description
        super().__init_subclass__(name=name, **kwargs)

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 8, head_norm: float = 10.0,
                 bn_eps: float = DEFAULT_BN_EPS, train_head: bool = False):
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        if len(shape) not in self.input_ranks or any(s < 1 for s in shape):
            ranks = " or ".join(str(r) for r in self.input_ranks)
            raise InputError(f"model {self.name or type(self).__name__} takes inputs of rank {ranks} "
                             f"(without the batch axis), got shape {shape}")
        if int(width) != width or width < 1:
            raise InputError(f"--width must be an integer >= 1, got {width!r}")
        if int(num_classes) < 2:
            raise InputError(f"num_classes must be >= 2, got {num_classes}")
        self.input_shape = shape
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.bn_eps = float(bn_eps)
        self.spatial_dims = len(shape) - 1  # 0 for vectors
        self.in_channels = shape[0]
        n_features = int(self.build(self.width))
        self.head = FixedHead(n_features, self.num_classes, head_norm, trained=train_head)

    # -------------------------------------------------------------- for subclasses
    def build(self, width: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def conv_layer(self, cin: int, cout: int, kernel: int = 3, stride: int = 1,
                   padding: int | None = None) -> nn.Module:
        """Bias-free convolution of the input's spatial rank (Conv1d or Conv2d)."""
        cls = {1: nn.Conv1d, 2: nn.Conv2d}.get(self.spatial_dims)
        if cls is None:
            raise InputError(f"{self.name}: convolutions need 1-D or 2-D inputs, got shape {self.input_shape}")
        pad = kernel // 2 if padding is None else padding
        return cls(cin, cout, kernel, stride=stride, padding=pad, bias=False)

    def batch_norm(self, channels: int) -> nn.Module:
        return batch_norm(self.spatial_dims, channels, self.bn_eps)

    def max_pool(self, size: int = 2) -> nn.Module:
        return nn.MaxPool1d(size) if self.spatial_dims == 1 else nn.MaxPool2d(size)

    @staticmethod
    def global_max(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).amax(-1)

    @staticmethod
    def global_mean(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1)

    # -------------------------------------------------------------- the network
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def trained_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of the scale-invariant vector, in flattening order."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def num_trained(self) -> int:
        """D, the number of trained (scale-invariant) parameters."""
        return sum(p.numel() for _, p in self.trained_parameters())

    def group_parameters(self) -> dict[str, list[str]]:
        """Group name -> the trained parameters that scale together (override where needed).

        Default: every trained parameter is its own group, named by its module path
        (``conv_layers.0.weight`` -> ``conv_layers.0``): right for layers each followed by a
        BatchNorm without affine parameters.
        """
        return _default_group_parameters(self.trained_parameters())

    def scale_groups(self) -> tuple[ScaleGroup, ...]:
        """The scale-invariant groups (name, parameters, size D_g), in flattening order.

        Built from :meth:`group_parameters`, checked to partition the trained parameters
        (:class:`InputError` otherwise).
        """
        return _groups_from(self.trained_parameters(), self.group_parameters(), self.name or type(self).__name__)


def build_model(name: str, *, input_shape: Sequence[int], num_classes: int, width: int = 8,
                head_norm: float = 10.0, seed: int | None = None, bn_eps: float = DEFAULT_BN_EPS,
                train_head: bool = False,
                device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ScaleInvariantNet:
    """Instantiate the registered model ``name``.

    With ``seed`` the initialisation (PyTorch's default init for the trained layers, a
    Gaussian head) is drawn from ``torch.manual_seed(seed)`` without touching the
    caller's global random state.
    """
    cls = get_model_class(name)
    if seed is None:
        model = cls(input_shape, num_classes, width=width, head_norm=head_norm, bn_eps=bn_eps,
                    train_head=train_head)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = cls(input_shape, num_classes, width=width, head_norm=head_norm, bn_eps=bn_eps,
                    train_head=train_head)
    return model.to(device=device, dtype=dtype)


@torch.no_grad()
def check_scale_invariance(model: nn.Module, x: torch.Tensor, scales: Sequence[float] = (0.1, 7.0)) -> float:
    """Largest relative change of the outputs when all trained parameters are scaled by c.

    The model is evaluated in train mode (BatchNorm with batch statistics) on ``x`` for
    every ``c`` in ``scales``; the parameters are restored afterwards. Returns
    ``max_c ‖f(c·w) − f(w)‖_∞ / max(‖f(w)‖_∞, tiny)``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError(f"{type(model).__name__} has no trained parameters")
    return _output_change(model, x, params, scales)


@torch.no_grad()
def check_group_invariance(model: nn.Module, x: torch.Tensor,
                           scales: Sequence[float] = (0.1, 7.0)) -> dict[str, float]:
    """Per scale group (:func:`scale_groups_of`): the largest relative change of the outputs
    when only that group's parameters are scaled by c (as :func:`check_scale_invariance`)."""
    named = dict(model.named_parameters())
    return {group.name: _output_change(model, x, [named[n] for n in group.parameters], scales)
            for group in scale_groups_of(model)}


def _output_change(model: nn.Module, x: torch.Tensor, params: Sequence[nn.Parameter],
                   scales: Sequence[float]) -> float:
    """``max_c ‖f(c·params) − f‖_∞ / ‖f‖_∞`` in train mode; the parameters are restored."""
    was_training = model.training
    model.train()
    saved = [p.detach().clone() for p in params]
    try:
        ref = model(x)
        worst = 0.0
        for c in scales:
            for p, s in zip(params, saved):
                p.copy_(s * c)
            out = model(x)
            scale = float(ref.abs().max().clamp_min(torch.finfo(ref.dtype).tiny))
            worst = max(worst, float((out - ref).abs().max()) / scale)
    finally:
        for p, s in zip(params, saved):
            p.copy_(s)
        model.train(was_training)
    return worst
