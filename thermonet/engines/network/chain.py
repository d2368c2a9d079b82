"""An ensemble of unnormalised, bias-free ReLU networks trained with plain SGD (paper 003).

``f(x) = W_L relu(W_{L-1} ... relu(W_1 x))`` has no normalisation, so it is *not*
scale-invariant; its symmetry is the rescaling of two consecutive layers,
``W_l -> c W_l``, ``W_{l+1} -> W_{l+1} / c`` (ReLU is positively homogeneous), which
leaves every output, hence every mini-batch loss, unchanged. Consequences that hold for
every batch: ``<W_l, g_l> = <W_{l+1}, g_{l+1}>`` and, under the rescaling,
``g_l -> g_l / c``, ``g_{l+1} -> c g_{l+1}`` (:mod:`thermonet.theory.entropic`).

:class:`ReLUChainEnsemble` trains E members at once (one weight stack ``(E, out, in)``
per layer, batched matrix products), each with its own learning rate, weight decay and
seed; the update is ``W <- (1 - eta lambda) W - eta g`` for every layer. Batches are
drawn per member with replacement from the counter-based stream of
:mod:`thermonet.engines.network.data` (keyed by the seed only: two members with the same
seed see the same batches, which makes a member and its rescaled copy comparable), or
the whole training set (``batch_size=None``: gradient descent). Everything is float64 by
default, so the exact one-step identities hold to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from thermonet.engines.network.data import STREAM_GRAD_SAMPLES, STREAM_TRAIN, Dataset, batch_indices, stream_keys
from thermonet.errors import InputError

__all__ = ["ReLUChainEnsemble"]


class ReLUChainEnsemble:
    """E bias-free ReLU networks without normalisation, trained with SGD (see the module docstring).

    Parameters
    ----------
    dataset:
        a classification :class:`~thermonet.engines.network.data.Dataset` (inputs flattened).
    hidden:
        the hidden widths (``[16]``: two layers, one rescaling pair).
    lr, wd, seeds:
        per member (length E): learning rate eta, weight decay lambda, seed (initial
        point and batches).
    batch_size:
        mini-batch size B, or ``None`` for the full training set (gradient descent).
    """

    def __init__(self, dataset: Dataset, *, hidden: Sequence[int], lr, wd, seeds, batch_size: int | None,
                 dtype: torch.dtype = torch.float64, device: str = "cpu"):
        self.device = torch.device(device)
        self.dtype = dtype
        self.data = dataset.to(device=self.device, dtype=dtype)
        self.x = self.data.x_train.flatten(1)
        self.y = self.data.y_train
        self.n_train = int(self.x.shape[0])
        self.seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        self.members = int(self.seeds.size)
        lr = np.broadcast_to(np.asarray(lr, dtype=float), (self.members,))
        wd = np.broadcast_to(np.asarray(wd, dtype=float), (self.members,))
        if not (np.all(np.isfinite(lr)) and np.all(lr > 0) and np.all(np.isfinite(wd)) and np.all(wd >= 0)):
            raise InputError("the chain needs learning rates > 0 and weight decays >= 0")
        self.lr = torch.as_tensor(lr.copy(), dtype=dtype, device=self.device)
        self.wd = torch.as_tensor(wd.copy(), dtype=dtype, device=self.device)
        if batch_size is not None and int(batch_size) < 1:
            raise InputError(f"batch size must be >= 1 or None (full batch), got {batch_size}")
        self.batch_size = None if batch_size is None else int(batch_size)
        widths = [int(self.x.shape[1]), *[int(h) for h in hidden], int(self.data.num_classes)]
        if len(widths) < 3 or min(widths) < 1:
            raise InputError(f"the chain needs at least one hidden layer of width >= 1, got hidden={list(hidden)}")
        self.widths = widths
        self.W = [torch.stack([self._init(int(s), i) for s in self.seeds]) for i in range(len(widths) - 1)]
        self.train_keys = stream_keys(self.seeds, STREAM_TRAIN, device=self.device)
        self.sample_keys = stream_keys(self.seeds, STREAM_GRAD_SAMPLES, device=self.device)
        self.t = 0

    @property
    def layers(self) -> int:
        return len(self.W)

    def _init(self, seed: int, layer: int) -> torch.Tensor:
        """PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from (seed, layer)."""
        fan_in, fan_out = self.widths[layer], self.widths[layer + 1]
        generator = torch.Generator().manual_seed(int(seed) * 1009 + layer)
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_out, fan_in, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        return w.to(device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ the network
    def logits(self, W: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``x`` (E, B, d) or (B, d) shared -> logits (E, B, classes)."""
        h = x if x.dim() == 3 else x.expand(W[0].shape[0], *x.shape)
        for i, w in enumerate(W):
            h = torch.einsum("ebi,eoi->ebo", h, w)
            if i < len(W) - 1:
                h = torch.relu(h)
        return h

    def gradients(self, W: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor
                  ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-member mean cross-entropy on its batch and the gradients of every layer."""
        params = [w.detach().requires_grad_(True) for w in W]
        with torch.enable_grad():
            logits = self.logits(params, x)
            yy = y if y.dim() == 2 else y.expand(logits.shape[0], -1)
            loss = F.cross_entropy(logits.flatten(0, 1), yy.flatten(), reduction="none").view(yy.shape).mean(-1)
            grads = torch.autograd.grad(loss.sum(), params)
        return list(grads), loss.detach()

    def _batch(self, keys: torch.Tensor, counter: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch_size is None:
            return self.x, self.y
        idx = batch_indices(keys, counter, self.batch_size, self.n_train)
        return self.x[idx], self.y[idx]

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def step(self) -> dict[str, torch.Tensor]:
        """One SGD step of every member; returns the step's ``loss`` (E,) and, per layer, (E, L):
        ``grad_sq`` ``||g_l||**2``, ``inner`` ``<W_l, g_l>``, and ``||W_l||**2`` before
        (``norm_sq``) and after (``norm_sq_next``) the step."""
        t = self.t + 1
        x, y = self._batch(self.train_keys, t)
        grads, loss = self.gradients(self.W, x, y)
        before = torch.stack([(w * w).sum((1, 2)) for w in self.W], -1)
        inner = torch.stack([(w * g).sum((1, 2)) for w, g in zip(self.W, grads)], -1)
        keep = (1 - self.lr * self.wd)[:, None, None]
        self.W = [keep * w - self.lr[:, None, None] * g for w, g in zip(self.W, grads)]
        self.t = t
        return {"loss": loss, "grad_sq": torch.stack([(g * g).sum((1, 2)) for g in grads], -1), "norm_sq": before,
                "norm_sq_next": torch.stack([(w * w).sum((1, 2)) for w in self.W], -1), "inner": inner}

    def run(self, steps: int, log_every: int) -> dict[str, np.ndarray]:
        """``steps`` steps; every ``log_every`` steps the interval means of the step values.

        Returns ``step`` (logs,), ``norm_sq`` (E, L, logs) at the log step, ``grad_sq``
        (E, L, logs) and ``loss`` (E, logs) averaged over the interval (unbiased estimates of
        ``E||g~_l||**2`` and the training loss along the trajectory).
        """
        steps, log_every = int(steps), int(log_every)
        if steps < log_every or log_every < 1:
            raise InputError(f"need 1 <= log_every <= steps, got {log_every} and {steps}")
        out: dict[str, list] = {"step": [], "norm_sq": [], "grad_sq": [], "loss": []}
        grad_acc = torch.zeros(self.members, self.layers, dtype=torch.float64, device=self.device)
        loss_acc = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        for i in range(1, steps + 1):
            record = self.step()
            grad_acc += record["grad_sq"]
            loss_acc += record["loss"]
            if i % log_every == 0:
                out["step"].append(self.t)
                out["norm_sq"].append(record["norm_sq_next"].cpu().numpy())
                out["grad_sq"].append((grad_acc / log_every).cpu().numpy())
                out["loss"].append((loss_acc / log_every).cpu().numpy())
                grad_acc.zero_()
                loss_acc.zero_()
        return {"step": np.asarray(out["step"], dtype=np.int64),
                "norm_sq": np.stack(out["norm_sq"], -1), "grad_sq": np.stack(out["grad_sq"], -1),
                "loss": np.stack(out["loss"], -1)}

    # ------------------------------------------------------------------ measurement
    @torch.no_grad()
    def gradient_noise(self, samples: int, counter: int = 0) -> dict[str, np.ndarray]:
        """Per layer, (E, L): the full-batch ``||g_bar_l||**2``, ``trSigma_l = mean_k ||g~_k,l - g_bar_l||**2``
        over ``samples`` independent batches of the training size, and their sum ``E||g~_l||**2``."""
        gbar, _ = self.gradients(self.W, self.x, self.y)
        full = torch.stack([(g * g).sum((1, 2)) for g in gbar], -1)
        trace = torch.zeros_like(full)
        if self.batch_size is not None:  # gradient descent has no noise
            for k in range(int(samples)):
                g, _ = self.gradients(self.W, *self._batch(self.sample_keys, counter * int(samples) + k))
                trace += torch.stack([((a - b) ** 2).sum((1, 2)) for a, b in zip(g, gbar)], -1)
            trace /= max(int(samples), 1)
        return {"grad_full_sq": full.cpu().numpy(), "trace_sigma": trace.cpu().numpy(),
                "grad_sq": (full + trace).cpu().numpy()}

    # ------------------------------------------------------------------ the symmetry
    @torch.no_grad()
    def rescale(self, pair: int, factor) -> None:
        """Move every member along the orbit of the pair (``pair``, ``pair + 1``):
        ``W_pair *= c``, ``W_pair+1 /= c`` with ``c`` a number or one per member."""
        if not 0 <= int(pair) < self.layers - 1:
            raise InputError(f"pair must be in 0..{self.layers - 2}, got {pair}")
        c = torch.as_tensor(np.broadcast_to(np.asarray(factor, dtype=float), (self.members,)).copy(),
                            dtype=self.dtype, device=self.device)[:, None, None]
        if not bool(torch.all(c > 0)):
            raise InputError("rescaling factors must be > 0")
        self.W[pair] = self.W[pair] * c
        self.W[pair + 1] = self.W[pair + 1] / c

    def select(self, members) -> "ReLUChainEnsemble":
        """A new ensemble of the given members (indices, repeats allowed), at the same step, with
        the same batches (the keys follow the seeds)."""
        index = torch.as_tensor(np.asarray(members, dtype=np.int64), device=self.device)
        new = object.__new__(ReLUChainEnsemble)
        new.__dict__.update(self.__dict__)
        new.seeds = self.seeds[index.cpu().numpy()]
        new.members = int(index.numel())
        new.lr, new.wd = self.lr[index], self.wd[index]
        new.W = [w[index].clone() for w in self.W]
        new.train_keys, new.sample_keys = self.train_keys[index], self.sample_keys[index]
        return new
