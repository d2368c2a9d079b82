"""Per-member eager training: one model at a time, the ordinary PyTorch way.

The baseline the ensemble engine is tested and benchmarked against. A member is trained
with a normal ``nn.Module``, ``loss.backward()`` and, where the protocol names one
(:meth:`~thermonet.theory.protocols.Protocol.torch_optimizer`: fixed LR's
``torch.optim.SGD(lr, weight_decay)``, which is exactly THEORY §2's
``w ← w − η(g̃ + λw)``), a standard PyTorch optimizer; other updates are applied to the
flattened trained vector with the protocol's own :meth:`~thermonet.theory.protocols.Protocol.step`.
It uses the same initial point (:func:`thermonet.engines.network.functional.initial_point`)
and the same batches (:func:`thermonet.engines.network.data.batch_indices` with the member's key) as the
engine, so a member trained here and inside an ensemble follow the same trajectory up to
floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from thermonet.engines.network.data import STREAM_TRAIN, Dataset, batch_indices, stream_keys
from thermonet.engines.network.functional import flatten_parameters, initial_point
from thermonet.errors import InputError

__all__ = ["EagerMember", "train_member_eager"]


class EagerMember:
    """One network trained eagerly; :meth:`step` does one SGD step on its own batch."""

    def __init__(self, *, model: str, width: int, head_norm: float, dataset: Dataset, protocol,
                 hp: Mapping[str, float], seed: int, batch_size: int, init_radius: float | None = None,
                 init_seed: int | None = None, independent_batches: bool = False, device="cpu",
                 dtype=torch.float32):
        self.protocol = protocol
        self.names = tuple(protocol.hyperparameters)
        missing = [n for n in self.names if n not in hp]
        if missing:
            raise InputError(f"{protocol.name} needs hyperparameters {', '.join(missing)}")
        self.hp = {n: float(hp[n]) for n in self.names}
        self.data = dataset.to(device=device, dtype=dtype)
        self.batch_size = int(batch_size)
        radius = protocol.initial_radius({n: np.array([v]) for n, v in self.hp.items()}, init_radius)
        radius = None if radius is None else float(np.asarray(radius).ravel()[0])
        s = int(seed if init_seed is None else init_seed)
        w0, _bufs, self.model = initial_point(model, input_shape=self.data.input_shape,
                                              num_classes=self.data.num_classes, width=width, head_norm=head_norm,
                                              seed=s, radius=radius, device=device, dtype=dtype)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self._assign(w0)
        row = np.array([[self.hp[n] for n in self.names]]) if independent_batches else None
        self.key = stream_keys([seed], STREAM_TRAIN, row, device)
        self.t = 0
        self.optimizer = protocol.torch_optimizer(self.params, self.hp)
        self._hp_t = {n: torch.tensor([[v]], dtype=dtype, device=device) for n, v in self.hp.items()}

    def _assign(self, w: torch.Tensor) -> None:
        with torch.no_grad():
            offset = 0
            for p in self.params:
                p.copy_(w[offset:offset + p.numel()].view_as(p))
                offset += p.numel()

    def flat(self) -> torch.Tensor:
        return flatten_parameters(self.model)

    def step(self) -> float:
        t = self.t + 1
        idx = batch_indices(self.key, t, self.batch_size, self.data.n_train)[0]
        xb, yb = self.data.x_train[idx], self.data.y_train[idx]
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(xb), yb)
        loss.backward()
        #: ||g||**2 of this step's gradient (the engine's ``grad_norm_sq`` is its interval mean)
        self.last_grad_norm_sq = float(sum((p.grad.double() ** 2).sum() for p in self.params))
        if self.optimizer is not None:
            self.optimizer.step()
        else:
            with torch.no_grad():
                w = self.flat()[None]
                g = torch.cat([p.grad.reshape(-1) for p in self.params])[None]
                self._assign(self.protocol.step(w, g, self._hp_t)[0])
        self.t = t
        return float(loss.detach())


def train_member_eager(steps: int, **kwargs) -> tuple[torch.Tensor, list[float]]:
    """Train one member for ``steps`` steps; return its final flat vector and the batch losses.

    Keyword arguments are those of :class:`EagerMember`.
    """
    member = EagerMember(**kwargs)
    losses = [member.step() for _ in range(int(steps))]
    return member.flat(), losses
