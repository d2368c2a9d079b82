"""The ensemble engine: E networks (grid points × seeds) trained together on one device.

State (all on the device): the step ``t``; the stacked trained vectors ``W`` (E, D); the
per-member buffers (the fixed heads); ``alive`` (E,) and ``diverged_at`` (E,); the entropy
queue (E, N, D) and the interval accumulators of the mini-batch loss. One training step:

1. every member draws its own batch (:func:`thermonet.data.batch_indices`, a pure
   function of the member's key and ``t``) and the batch is gathered from the
   device-resident training set: ``(E, B, …)``;
2. one ``vmap(grad(loss))`` call gives every member's gradient of its flat vector;
3. the protocol's own update (:meth:`thermonet.theory.protocols.Protocol.step`) moves all
   members at once with per-member hyperparameters ``(E, 1)``;
4. a member whose loss or new weights are non-finite keeps its last finite weights and is
   frozen from then on (``alive`` false, ``diverged_at = t``); the others go on. All of it
   happens on the device without a host synchronisation.

Every ``queue_every`` steps ``W`` is written into the ring buffer of the queue.
:meth:`EnsembleEngine.measure` computes the log-step quantities of THEORY §9 and
:meth:`EnsembleEngine.entropies` the queue entropies (:mod:`thermonet.estimators`).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Mapping

import numpy as np
import torch

from thermonet.data import STREAM_GRAD_SAMPLES, STREAM_TRAIN, Dataset, batch_indices, stream_keys
from thermonet.ensemble.functional import FlatModel, activation_elements, initial_point, resolve_vectorize
from thermonet.errors import InputError, ThermonetError

__all__ = ["MEASURED", "EnsembleEngine", "chunk_bounds"]

#: Per-member quantities returned by :meth:`EnsembleEngine.measure`.
MEASURED = ("loss", "train_accuracy", "test_loss", "test_accuracy", "rho", "grad_norm_sq", "sigma2",
            "trace_sigma", "grad_full_sq", "snr", "batch_loss")


def chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``round(n/size)`` (at least 1) contiguous chunks of nearly equal size covering ``0..n``."""
    count = max(1, int(round(n / max(1, size))))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class EnsembleEngine:
    """E members trained simultaneously; see the module docstring.

    Parameters
    ----------
    model, width, head_norm:
        registered model name (:mod:`thermonet.models`), width multiplier, head norm.
    dataset:
        a :class:`thermonet.data.Dataset` (moved to ``device``/``dtype`` here).
    protocol:
        a :class:`thermonet.theory.protocols.Protocol`.
    hp:
        (E, n) hyperparameter values in ``protocol.hyperparameters`` order.
    seeds:
        (E,) seed of each member: its initial point (unless ``init_seed``) and its
        batches (with ``independent_batches`` also keyed by its hyperparameters).
    init_radius:
        rescale the initial trained vector to this norm (fixed LR / ELR); the fixed
        sphere always starts on its sphere. ``None`` keeps PyTorch's default init norm.
    init_seed:
        when given, every member starts from the initial point of this seed (a shared
        initial point).
    grad_chunk:
        stochastic gradients per vmapped call at a log step (memory × grad_chunk).
    compile:
        ``torch.compile`` the training step (``mode`` string or ``True`` for the default).
    allow_tf32:
        on CUDA, let float32 convolutions and matrix products use TF32.
    autocast:
        ``"bf16"``: the training step's forward and backward run under
        ``torch.autocast(dtype=bfloat16)``; the weights, the update and every log-step
        measurement stay in ``dtype``. ``None`` (default): no autocast.
    vectorize:
        ``"vmap"``, ``"loop"`` or ``"auto"`` (vmap on CUDA; on a CPU the member loop for
        networks with many activations per example, vmap for small ones): how all
        members' gradients are computed
        (:data:`~thermonet.ensemble.functional.VECTORIZE_MODES`); the numbers agree to
        float rounding.
    """

    def __init__(self, *, model: str, width: int, head_norm: float, dataset: Dataset, protocol, hp: np.ndarray,
                 seeds, batch_size: int, queue_size: int, queue_every: int, grad_samples: int,
                 eval_batch_size: int | None = None, init_radius: float | None = None, init_seed: int | None = None,
                 independent_batches: bool = False, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 allow_tf32: bool = False, compile: bool | str = False, grad_chunk: int = 1,
                 autocast: str | None = None, vectorize: str = "auto"):
        self.device = torch.device(device)
        self.dtype = dtype
        self.protocol = protocol
        self.names = tuple(protocol.hyperparameters)
        self.hp = np.asarray(hp, dtype=np.float64).reshape(len(seeds), len(self.names))
        self.seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        self.members = int(len(self.seeds))
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.queue_size = int(queue_size)
        self.queue_every = int(queue_every)
        self.grad_samples = int(grad_samples)
        self.grad_chunk = max(1, min(int(grad_chunk), max(1, self.grad_samples)))
        self.allow_tf32 = bool(allow_tf32)
        if autocast not in (None, "bf16"):
            raise InputError(f"autocast must be None or 'bf16', got {autocast!r}")
        self.autocast = autocast
        self.data = dataset.to(device=self.device, dtype=dtype)
        self.n_train = self.data.n_train
        if self.n_train < 2:
            raise InputError("the training set needs at least 2 examples")

        # ---------------------------------------------------------- initial points
        sphere = "sphere_radius" in self.names
        inits: dict[int, tuple] = {}
        rows, buffers = [], []
        template = None
        for m in range(self.members):
            s = int(self.seeds[m] if init_seed is None else init_seed)
            if s not in inits:
                inits[s] = initial_point(model, input_shape=self.data.input_shape, num_classes=self.data.num_classes,
                                         width=width, head_norm=head_norm, seed=s, device=self.device, dtype=dtype)
            w0, bufs, net = inits[s]
            template = template or net
            if sphere:
                w0 = w0 * (float(self.hp[m, self.names.index("sphere_radius")]) / w0.norm())
            elif init_radius is not None:
                w0 = w0 * (float(init_radius) / w0.norm())
            rows.append(w0)
            buffers.append(bufs)
        self.flat = FlatModel(template)
        self.dim = self.flat.dim
        self.model_template = template
        self.buffers = {n: torch.stack([b[n] for b in buffers]) for n in self.flat.buffer_names}
        self.W = torch.stack(rows).contiguous()
        self.hp_t = {n: torch.as_tensor(self.hp[:, i:i + 1], dtype=dtype, device=self.device)
                     for i, n in enumerate(self.names)}
        key_hp = self.hp if independent_batches else None
        self.train_keys = stream_keys(self.seeds, STREAM_TRAIN, key_hp, self.device)
        self.grad_keys = stream_keys(self.seeds, STREAM_GRAD_SAMPLES, key_hp, self.device)

        # ---------------------------------------------------------- state
        self.t = 0
        self.alive = torch.ones(self.members, dtype=torch.bool, device=self.device)
        self.diverged_at = torch.full((self.members,), -1, dtype=torch.int64, device=self.device)
        self.queue = torch.zeros(self.members, self.queue_size, self.dim, dtype=dtype, device=self.device)
        self.queue_count = 0  # samples pushed since the start (or since a resume without the queue)
        self.loss_acc = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        self.count_acc = torch.zeros(self.members, dtype=torch.float64, device=self.device)

        self.vectorize = resolve_vectorize(vectorize, self.device, self.activations_per_example())
        self._train_grad = self.flat.member_grad(shared_input=False, vectorize=self.vectorize)
        self._shared_grad = self.flat.member_grad(shared_input=True, vectorize=self.vectorize)
        self._shared_eval = self.flat.member_eval(shared_input=True, vectorize=self.vectorize)
        self._step_fn = self._step_impl
        self._cudagraphs = False
        if compile:
            mode = None if compile in (True, "default") else str(compile)
            self._step_fn = torch.compile(self._step_impl, mode=mode, dynamic=False)
            self._cudagraphs = self.device.type == "cuda" and mode in ("reduce-overhead", "max-autotune")
        self.train_chunks = chunk_bounds(self.n_train, self.batch_size)
        self.test_chunks = chunk_bounds(self.data.n_test, self.eval_batch_size) if self.data.n_test else []

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def precision(self):
        """On CUDA, TF32 on or off for the duration (restored afterwards)."""
        if self.device.type != "cuda":
            yield
            return
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = self.allow_tf32
        torch.backends.cudnn.allow_tf32 = self.allow_tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

    def activations_per_example(self) -> int:
        x = self.data.x_train[:2]
        return activation_elements(self.model_template, x)

    def _step_impl(self, W, alive, xb, yb):
        if self.autocast == "bf16":
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                g, (loss, _) = self._train_grad(W, self.buffers, xb, yb)
            g, loss = g.to(W.dtype), loss.to(W.dtype)
        else:
            g, (loss, _) = self._train_grad(W, self.buffers, xb, yb)
        new = self.protocol.step(W, g, self.hp_t)
        ok = alive & torch.isfinite(loss) & torch.isfinite(new).all(dim=-1)
        return torch.where(ok[:, None], new, W), ok, loss

    # ------------------------------------------------------------------ training
    def step(self) -> None:
        """One SGD step of every member."""
        t = self.t + 1
        idx = batch_indices(self.train_keys, t, self.batch_size, self.n_train)
        xb, yb = self.data.x_train[idx], self.data.y_train[idx]
        if self._cudagraphs:
            # CUDA-graph outputs live in static memory that the next replay overwrites
            torch.compiler.cudagraph_mark_step_begin()
            W, ok, loss = (v.clone() for v in self._step_fn(self.W, self.alive, xb, yb))
        else:
            W, ok, loss = self._step_fn(self.W, self.alive, xb, yb)
        self.diverged_at = torch.where(self.alive & ~ok, t, self.diverged_at)
        self.alive = ok
        self.W = W
        self.loss_acc += torch.where(ok, loss.to(torch.float64), 0.0)
        self.count_acc += ok.to(torch.float64)
        if t % self.queue_every == 0:
            row = (t // self.queue_every - 1) % self.queue_size
            self.queue[:, row] = W
            self.queue_count += 1
        self.t = t

    def advance(self, steps: int) -> None:
        """``steps`` training steps."""
        with self.precision(), torch.no_grad():
            for _ in range(int(steps)):
                self.step()

    # ------------------------------------------------------------------ log steps
    @torch.no_grad()
    def measure(self, log_index: int) -> dict[str, np.ndarray]:
        """Log-step quantities at the current weights, per member (float64 numpy, NaN when frozen).

        * ``loss``, ``train_accuracy``: the full training set in chunks of the batch size
          (BatchNorm with the chunk's statistics, as in training); ``grad_full_sq`` from
          the size-weighted mean ``ḡ`` of the chunk gradients, ``G₁² = ρ²‖ḡ‖²``;
        * ``test_loss``, ``test_accuracy``: the test set in chunks of ``eval_batch_size``;
        * K = ``grad_samples`` stochastic gradients on independent batches of the training
          batch size (their own random stream, counter ``log_index·K + k``):
          ``trΣ(w) = mean‖g̃ − ḡ‖²``, ``trace_sigma = ρ² trΣ(w)``,
          ``sigma2 = trace_sigma/(D−1)``, ``grad_norm_sq = mean‖g̃‖²``, ``snr = ‖ḡ‖/√trΣ(w)``;
        * ``batch_loss``: mean mini-batch training loss since the previous log.
        Resets the interval accumulators.
        """
        E, D = self.members, self.dim
        X, Y, N = self.data.x_train, self.data.y_train, self.n_train
        W, bufs = self.W, self.buffers
        with self.precision():
            gbar = torch.zeros(E, D, dtype=torch.float64, device=self.device)
            loss = torch.zeros(E, dtype=torch.float64, device=self.device)
            correct = torch.zeros(E, dtype=torch.float64, device=self.device)
            for a, b in self.train_chunks:
                g, (lc, cc) = self._shared_grad(W, bufs, X[a:b], Y[a:b])
                weight = (b - a) / N
                gbar += weight * g.to(torch.float64)
                loss += weight * lc.to(torch.float64)
                correct += cc.to(torch.float64)
            test_loss = torch.zeros(E, dtype=torch.float64, device=self.device)
            test_correct = torch.zeros(E, dtype=torch.float64, device=self.device)
            n_test = self.data.n_test
            for a, b in self.test_chunks:
                lc, cc = self._shared_eval(W, bufs, self.data.x_test[a:b], self.data.y_test[a:b])
                test_loss += (b - a) / n_test * lc.to(torch.float64)
                test_correct += cc.to(torch.float64)
            dev_sq = torch.zeros(E, dtype=torch.float64, device=self.device)
            norm_sq = torch.zeros(E, dtype=torch.float64, device=self.device)
            K, kc = self.grad_samples, self.grad_chunk
            for k0 in range(0, K, kc):
                ks = range(k0, min(K, k0 + kc))
                idx = torch.cat([batch_indices(self.grad_keys, log_index * K + k, self.batch_size, N) for k in ks])
                reps = len(ks)
                Wr = W.repeat(reps, 1) if reps > 1 else W
                br = {n: v.repeat(reps, *([1] * (v.dim() - 1))) for n, v in bufs.items()} if reps > 1 else bufs
                g, _ = self._train_grad(Wr, br, X[idx], Y[idx])
                g = g.to(torch.float64).view(reps, E, D)
                dev_sq += ((g - gbar) ** 2).sum(-1).sum(0)
                norm_sq += (g**2).sum(-1).sum(0)
        rho = torch.linalg.vector_norm(W.to(torch.float64), dim=-1)
        rho2 = rho**2
        tr_w = dev_sq / max(K, 1)
        gbar_sq = (gbar**2).sum(-1)
        out = {
            "loss": loss,
            "train_accuracy": correct / N,
            "test_loss": test_loss if n_test else torch.full_like(loss, math.nan),
            "test_accuracy": test_correct / n_test if n_test else torch.full_like(loss, math.nan),
            "rho": rho,
            "grad_norm_sq": norm_sq / max(K, 1),
            "trace_sigma": rho2 * tr_w,
            "sigma2": rho2 * tr_w / (D - 1),
            "grad_full_sq": rho2 * gbar_sq,
            "snr": torch.sqrt(gbar_sq / tr_w),
            "batch_loss": self.loss_acc / self.count_acc,
        }
        if K == 0:
            for name in ("grad_norm_sq", "trace_sigma", "sigma2", "snr"):
                out[name] = torch.full_like(loss, math.nan)
        # a member whose full-data loss is non-finite has diverged too
        bad = self.alive & ~torch.isfinite(loss)
        self.diverged_at = torch.where(bad, self.t, self.diverged_at)
        self.alive = self.alive & ~bad
        dead = ~self.alive
        result = {k: torch.where(dead, math.nan, v).cpu().numpy().astype(np.float64) for k, v in out.items()}
        self.loss_acc.zero_()
        self.count_acc.zero_()
        return result

    @torch.no_grad()
    def entropies(self, k: int = 1, method: str = "chord") -> tuple[np.ndarray, np.ndarray]:
        """``(S₁, S)`` per member from the queue; NaN for frozen members or an unfilled queue.

        ``S₁`` = :func:`thermonet.estimators.spherical_entropy` of the member's N samples
        (on the device, member by member); ``S = S₁ + (D−1) ln ρ̄`` with ρ̄ the mean norm
        of the samples.
        """
        from thermonet.estimators import spherical_entropy

        s1 = np.full(self.members, math.nan)
        s = np.full(self.members, math.nan)
        if self.queue_count < self.queue_size:
            return s1, s
        alive = self.alive.cpu().numpy()
        for m in np.flatnonzero(alive):
            samples = self.queue[m]
            try:
                value = float(spherical_entropy(samples, k=k, method=method))
            except ThermonetError as exc:
                print(f"thermonet: warning: entropy of member {m} failed ({exc}); writing NaN", file=sys.stderr)
                continue
            rho_bar = float(torch.linalg.vector_norm(samples.to(torch.float64), dim=-1).mean())
            s1[m] = value
            s[m] = value + (self.dim - 1) * math.log(rho_bar)
        return s1, s

    # ------------------------------------------------------------------ state
    def state_dict(self, include_queue: bool = True) -> dict:
        """Everything needed to continue exactly (host tensors)."""
        state = {
            "t": self.t, "W": self.W.cpu(), "alive": self.alive.cpu(), "diverged_at": self.diverged_at.cpu(),
            "loss_acc": self.loss_acc.cpu(), "count_acc": self.count_acc.cpu(),
            "queue_count": self.queue_count if include_queue else 0,
            "members": self.members, "dim": self.dim,
        }
        if include_queue:
            state["queue"] = self.queue.cpu()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        if int(state["members"]) != self.members or int(state["dim"]) != self.dim:
            raise InputError(f"checkpoint is for {state['members']} members with D={state['dim']}, "
                             f"this run has {self.members} with D={self.dim}")
        self.t = int(state["t"])
        self.W = state["W"].to(device=self.device, dtype=self.dtype).contiguous()
        self.alive = state["alive"].to(self.device)
        self.diverged_at = state["diverged_at"].to(self.device)
        self.loss_acc = state["loss_acc"].to(self.device)
        self.count_acc = state["count_acc"].to(self.device)
        self.queue.zero_()
        if "queue" in state:
            self.queue.copy_(state["queue"].to(device=self.device, dtype=self.dtype))
            self.queue_count = int(state["queue_count"])
        else:
            self.queue_count = 0

    # ------------------------------------------------------------------ for checks
    def diverged(self) -> np.ndarray:
        return self.diverged_at.cpu().numpy()
