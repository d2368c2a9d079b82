"""The ensemble engine: E networks (grid points × seeds) trained together on one device.

It implements the engine interface of :class:`thermonet.engines.common.Engine`, so the
same run driver and checkpoint serve it and the isotropic simulator.

State (all on the device): the step ``t``; the stacked trained vectors ``W`` (E, D); the
per-member buffers (the fixed heads); ``alive`` (E,) and ``diverged_at`` (E,); the entropy
queue (E, N, D) and the interval accumulators of the mini-batch loss. One training step:

1. every member draws its own batch (:func:`thermonet.engines.network.data.batch_indices`,
   a pure function of the member's key and ``t``) and the batch is gathered from the
   device-resident training set: ``(E, B, …)``;
2. one ``vmap(grad(loss))`` call gives every member's gradient of its flat vector;
3. the protocol's own update (:meth:`thermonet.theory.protocols.Protocol.step`) moves all
   members at once with per-member hyperparameters ``(E, 1)``;
4. a member whose loss or new weights are non-finite keeps its last finite weights and is
   frozen from then on (``alive`` false, ``diverged_at = t``); the others go on. All of it
   happens on the device without a host synchronisation.

Every ``queue_every`` steps ``W`` is written into the ring buffer of the queue. At every
log step :meth:`EnsembleEngine.advance` calls :meth:`EnsembleEngine.measure` (the log-step
quantities of THEORY §9, for the whole vector and for each scale-invariant group,
:data:`GROUP_MEASURED`); :meth:`EnsembleEngine.entropies` gives the queue entropies
(:mod:`thermonet.estimators`), of the whole vector and, with ``group_entropy``, of each
group from its coordinates of the same queue.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import numpy as np
import torch

from thermonet.engines.common import log_slots, queue_entropies
from thermonet.engines.network.data import STREAM_GRAD_SAMPLES, STREAM_TRAIN, Dataset, batch_indices, stream_keys
from thermonet.engines.network.functional import FlatModel, activation_elements, initial_point, resolve_vectorize
from thermonet.errors import InputError

__all__ = ["GROUP_MEASURED", "MEASURED", "EnsembleEngine", "chunk_bounds"]

#: Per-member quantities returned by :meth:`EnsembleEngine.measure`.
MEASURED = ("loss", "loss_full", "train_accuracy", "test_loss", "test_accuracy", "rho", "grad_norm_sq", "sigma2",
            "trace_sigma", "grad_full_sq", "snr")
#: Per-member, per-group quantities returned by :meth:`EnsembleEngine.measure`, (E, G).
GROUP_MEASURED = ("rho_group", "grad_norm_sq_group", "trace_sigma_group", "sigma2_group", "grad_full_sq_group",
                  "lr_eff_group", "temperature_group")


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
        a :class:`thermonet.engines.network.data.Dataset` (moved to ``device``/``dtype`` here).
    protocol:
        a :class:`thermonet.theory.protocols.Protocol`.
    hp:
        (E, n) hyperparameter values in ``protocol.hyperparameters`` order.
    seeds:
        (E,) seed of each member: its initial point (unless ``init_seed``) and its
        batches (with ``independent_batches`` also keyed by its hyperparameters).
    init_radius:
        rescale the initial trained vector to this norm where the protocol allows it
        (:meth:`Protocol.initial_radius`: the fixed sphere always starts on its sphere).
        ``None`` keeps PyTorch's default init norm.
    total_steps, log_every:
        the run's length and log interval: :meth:`advance` measures at every log step.
    entropy_method, entropy_k:
        the queue entropy estimator (:func:`thermonet.estimators.spherical_entropy`).
    checkpoint_queue:
        whether :meth:`state_dict` includes the entropy queue.
    momentum:
        heavy-ball SGD, ``v <- momentum v + g~`` and the protocol moves along ``v`` (a
        control: the theory describes plain SGD); 0 (default) is plain SGD.
    bn_eps, train_head:
        passed to :func:`thermonet.models.build_model`: a large BatchNorm epsilon or a
        trained last layer break the scale invariance (controls).
    group_entropy:
        whether :meth:`entropies` also estimates every scale-invariant group's entropy
        (from the group's coordinates of the same queue: no extra queue).
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
        (:data:`~thermonet.engines.network.functional.VECTORIZE_MODES`); the numbers agree to
        float rounding.
    """

    def __init__(self, *, model: str, width: int, head_norm: float, dataset: Dataset, protocol, hp: np.ndarray,
                 seeds, batch_size: int, queue_size: int, queue_every: int, grad_samples: int,
                 eval_batch_size: int | None = None, init_radius: float | None = None, init_seed: int | None = None,
                 independent_batches: bool = False, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 allow_tf32: bool = False, compile: bool | str = False, grad_chunk: int = 1,
                 autocast: str | None = None, vectorize: str = "auto", total_steps: int | None = None,
                 log_every: int | None = None, entropy_method: str = "chord", entropy_k: int = 1,
                 checkpoint_queue: bool = True, momentum: float = 0.0, bn_eps: float | None = None,
                 train_head: bool = False, group_entropy: bool = True):
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
        self.total_steps = None if total_steps is None else int(total_steps)
        self.log_every = None if log_every is None else int(log_every)
        self.entropy_method = entropy_method
        self.entropy_k = int(entropy_k)
        self.checkpoint_queue = bool(checkpoint_queue)
        self.momentum = float(momentum)
        self.model_options = {"train_head": bool(train_head), **({} if bn_eps is None else {"bn_eps": float(bn_eps)})}
        self.group_entropy = bool(group_entropy)
        self.hp_columns = {n: self.hp[:, i] for i, n in enumerate(self.names)}

        # ---------------------------------------------------------- initial points
        radii = protocol.initial_radius(self.hp_columns, init_radius)
        inits: dict[int, tuple] = {}
        rows, buffers = [], []
        template = None
        for m in range(self.members):
            s = int(self.seeds[m] if init_seed is None else init_seed)
            if s not in inits:
                inits[s] = initial_point(model, input_shape=self.data.input_shape, num_classes=self.data.num_classes,
                                         width=width, head_norm=head_norm, seed=s, device=self.device, dtype=dtype,
                                         **self.model_options)
            w0, bufs, net = inits[s]
            template = template or net
            if radii is not None:
                w0 = w0 * (float(radii[m]) / w0.norm())
            rows.append(w0)
            buffers.append(bufs)
        self.flat = FlatModel(template)
        self.dim = self.flat.dim
        #: ``(name, D_g)`` of every scale-invariant group (the store's ``group`` dimension)
        self.groups = tuple(zip(self.flat.group_names, self.flat.group_sizes))
        self._group_sizes = np.asarray(self.flat.group_sizes, dtype=np.float64)
        self._group_columns = self.flat.group_columns(self.device)
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
        #: sum of the training steps' ||g~_g||**2 per member and scale group since the last log
        self.grad_acc = torch.zeros(self.members, len(self.groups), dtype=torch.float64, device=self.device)
        self.count_acc = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        self.velocity = torch.zeros_like(self.W) if self.momentum else None

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

    def _step_impl(self, W, alive, xb, yb, V):
        if self.autocast == "bf16":
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                g, (loss, _) = self._train_grad(W, self.buffers, xb, yb)
            g, loss = g.to(W.dtype), loss.to(W.dtype)
        else:
            g, (loss, _) = self._train_grad(W, self.buffers, xb, yb)
        g2 = self.flat.group_sums(g.to(torch.float64) ** 2)  # (E, G): per scale group, summed for the whole
        if V is not None:
            V = self.momentum * V + g
            new = self.protocol.step(W, V, self.hp_t)
        else:
            new = self.protocol.step(W, g, self.hp_t)
        ok = alive & torch.isfinite(loss) & torch.isfinite(new).all(dim=-1)
        return torch.where(ok[:, None], new, W), ok, loss, g2, V

    # ------------------------------------------------------------------ training
    def step(self) -> None:
        """One SGD step of every member."""
        t = self.t + 1
        idx = batch_indices(self.train_keys, t, self.batch_size, self.n_train)
        xb, yb = self.data.x_train[idx], self.data.y_train[idx]
        if self._cudagraphs:
            # CUDA-graph outputs live in static memory that the next replay overwrites
            torch.compiler.cudagraph_mark_step_begin()
            W, ok, loss, g2, V = (None if v is None else v.clone()
                                  for v in self._step_fn(self.W, self.alive, xb, yb, self.velocity))
        else:
            W, ok, loss, g2, V = self._step_fn(self.W, self.alive, xb, yb, self.velocity)
        self.diverged_at = torch.where(self.alive & ~ok, t, self.diverged_at)
        self.alive = ok
        self.W = W
        if V is not None:
            self.velocity = torch.where(ok[:, None], V, self.velocity)
        self.loss_acc += torch.where(ok, loss.to(torch.float64), 0.0)
        self.grad_acc += torch.where(ok[:, None], g2, 0.0)
        self.count_acc += ok.to(torch.float64)
        if t % self.queue_every == 0:
            row = (t // self.queue_every - 1) % self.queue_size
            self.queue[:, row] = W
            self.queue_count += 1
        self.t = t

    def train(self, steps: int) -> None:
        """``steps`` training steps (no measurements)."""
        with self.precision(), torch.no_grad():
            for _ in range(int(steps)):
                self.step()

    def advance(self, steps: int) -> tuple[int, dict[str, np.ndarray]]:
        """``steps`` training steps, measuring at every log step on the way.

        Returns ``(first log index, {variable: (E, count)})`` (the engine interface of
        :class:`thermonet.engines.common.Engine`). An engine built without ``total_steps``
        and ``log_every`` only trains and returns ``(0, {})``.
        """
        if self.total_steps is None or self.log_every is None:
            self.train(steps)
            return 0, {}
        steps = int(steps)
        if steps < 0 or self.t + steps > self.total_steps:
            raise InputError(f"cannot advance {steps} steps from step {self.t} of {self.total_steps}")
        first, stop = log_slots(self.t, self.t + steps, self.log_every, self.total_steps)
        logs: list[dict[str, np.ndarray]] = []
        target = self.t + steps
        for index in range(first, stop):
            log_step = min((index + 1) * self.log_every, self.total_steps)  # as in log_steps()
            self.train(log_step - self.t)
            logs.append(self.measure(index))
        self.train(target - self.t)
        if logs:
            return first, {k: np.stack([log[k] for log in logs], axis=-1) for k in logs[0]}
        shapes = {k: (self.members, len(self.groups), 0) if k in GROUP_MEASURED else (self.members, 0)
                  for k in self.series_names()}
        return first, {k: np.zeros(shape) for k, shape in shapes.items()}

    def series_names(self) -> tuple[str, ...]:
        """The time-series variables :meth:`measure` returns."""
        extra = (self.protocol.measured_pressure,) if self.protocol.measured_pressure is not None else ()
        return MEASURED + extra + GROUP_MEASURED

    # ------------------------------------------------------------------ log steps
    @torch.no_grad()
    def measure(self, log_index: int) -> dict[str, np.ndarray]:
        """Log-step quantities at the current weights, per member (float64 numpy, NaN when frozen).

        * ``loss``: the mean mini-batch loss of every training step since the previous log
          (at the weights before each update): the time average of the energy;
          ``grad_norm_sq``: the mean ``‖g̃‖²`` of those training steps' gradients (the
          measured pressure, e.g. the fixed sphere's ``lambda_eff``, comes from it);
        * ``loss_full``, ``train_accuracy``: the full training set at the current weights, in
          chunks of the batch size (BatchNorm with the chunk's statistics, as in training);
          ``grad_full_sq`` from the size-weighted mean ``ḡ`` of the chunk gradients,
          ``G₁² = ρ²‖ḡ‖²``;
        * ``test_loss``, ``test_accuracy``: the test set in chunks of ``eval_batch_size``;
        * K = ``grad_samples`` stochastic gradients on independent batches of the training
          batch size (their own random stream, counter ``log_index·K + k``):
          ``trΣ(w) = mean‖g̃ − ḡ‖²``, ``trace_sigma = ρ² trΣ(w)``,
          ``sigma2 = trace_sigma/(D−1)``, ``snr = ‖ḡ‖/√trΣ(w)``;
        * per scale-invariant group g (:data:`GROUP_MEASURED`, (E, G)), from the same
          gradients restricted to the group's coordinates: ``rho_group = ρ_g``,
          ``trace_sigma_group = ρ_g² mean‖g̃_g − ḡ_g‖²`` (the group's trΣ at its own unit
          norm), ``sigma2_group = trace_sigma_group/(D_g − 1)``,
          ``grad_full_sq_group = ρ_g²‖ḡ_g‖²``, ``grad_norm_sq_group = mean‖g̃_g‖²`` (over the
          interval's training steps, like ``grad_norm_sq``, which is their sum over groups),
          and the group's effective learning rate and temperature from the protocol
          (:meth:`~thermonet.theory.protocols.Protocol.group_effective_lr`, at ρ and ρ_g).
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
            G = len(self.groups)
            dev_sq = torch.zeros(E, G, dtype=torch.float64, device=self.device)
            K, kc = self.grad_samples, self.grad_chunk
            for k0 in range(0, K, kc):
                ks = range(k0, min(K, k0 + kc))
                idx = torch.cat([batch_indices(self.grad_keys, log_index * K + k, self.batch_size, N) for k in ks])
                reps = len(ks)
                Wr = W.repeat(reps, 1) if reps > 1 else W
                br = {n: v.repeat(reps, *([1] * (v.dim() - 1))) for n, v in bufs.items()} if reps > 1 else bufs
                g, _ = self._train_grad(Wr, br, X[idx], Y[idx])
                g = g.to(torch.float64).view(reps, E, D)
                dev_sq += self.flat.group_sums((g - gbar) ** 2).sum(0)
        group = self._measure_groups(W, gbar, dev_sq, K)
        # the training steps' squared gradients over the interval, per group; their sum is the whole's
        group["grad_norm_sq_group"] = self.grad_acc / self.count_acc[:, None]
        rho = torch.linalg.vector_norm(W.to(torch.float64), dim=-1)
        rho2 = rho**2
        tr_w = dev_sq.sum(-1) / max(K, 1)
        gbar_sq = (gbar**2).sum(-1)
        out = {
            "loss": self.loss_acc / self.count_acc,
            "loss_full": loss,
            "train_accuracy": correct / N,
            "test_loss": test_loss if n_test else torch.full_like(loss, math.nan),
            "test_accuracy": test_correct / n_test if n_test else torch.full_like(loss, math.nan),
            "rho": rho,
            "grad_norm_sq": group["grad_norm_sq_group"].sum(-1),
            "trace_sigma": rho2 * tr_w,
            "sigma2": rho2 * tr_w / (D - 1),
            "grad_full_sq": rho2 * gbar_sq,
            "snr": torch.sqrt(gbar_sq / tr_w),
        }
        if K == 0:
            for name in ("trace_sigma", "sigma2", "snr"):
                out[name] = torch.full_like(loss, math.nan)
        out.update(group)
        # a member whose full-data loss is non-finite has diverged too
        bad = self.alive & ~torch.isfinite(loss)
        self.diverged_at = torch.where(bad, self.t, self.diverged_at)
        self.alive = self.alive & ~bad
        if self.protocol.measured_pressure is not None:
            # from the training steps' own gradients, not from this log step's K samples
            out[self.protocol.measured_pressure] = torch.as_tensor(
                self.protocol.pressure_series(self.hp_columns, out["grad_norm_sq"].cpu().numpy()), device=self.device)
        dead = ~self.alive
        result = {k: torch.where(dead.view(-1, *[1] * (v.dim() - 1)), math.nan, v.to(torch.float64)).cpu().numpy()
                  for k, v in out.items()}
        hp = {n: v[:, None] for n, v in self.hp_columns.items()}
        rho_np, rho_g = result["rho"][:, None], result["rho_group"]
        result["lr_eff_group"] = self.protocol.group_effective_lr_value(hp, rho_np, rho_g)
        result["temperature_group"] = self.protocol.group_temperature(hp, rho_np, rho_g, result["sigma2_group"])
        self.loss_acc.zero_()
        self.grad_acc.zero_()
        self.count_acc.zero_()
        return result

    def _measure_groups(self, W: torch.Tensor, gbar: torch.Tensor, dev_sq: torch.Tensor,
                        K: int) -> dict[str, torch.Tensor]:
        """The per-group variables of :meth:`measure` that need no protocol, (E, G) each."""
        rho_g2 = self.flat.group_sums(W.to(torch.float64) ** 2)
        tr_g = rho_g2 * dev_sq / K if K else torch.full_like(rho_g2, math.nan)
        dof = torch.as_tensor(self._group_sizes - 1, dtype=torch.float64, device=self.device)
        return {
            "rho_group": torch.sqrt(rho_g2),
            "trace_sigma_group": tr_g,
            "sigma2_group": torch.where(dof > 0, tr_g / dof.clamp_min(1), math.nan),
            "grad_full_sq_group": rho_g2 * self.flat.group_sums(gbar**2),
        }

    @torch.no_grad()
    def entropies(self) -> dict[str, np.ndarray]:
        """``entropy_sphere`` (S₁) and ``entropy`` (S) per member from the queue, and with
        ``group_entropy`` ``entropy_sphere_group`` (S₁,g on S^{D_g−1}) and ``entropy_group``
        (S_g = S₁,g + (D_g − 1) ln ρ̄_g), (E, G), from each group's coordinates of the queue.

        NaN for frozen members, groups with D_g < 2 and while the queue is not full (after a
        resume without the queue). :func:`thermonet.engines.common.queue_entropies`, on the
        device.
        """
        G = len(self.groups)
        if self.queue_count < self.queue_size:
            nan = np.full(self.members, math.nan)
            out = {"entropy_sphere": nan, "entropy": nan.copy(), "entropy_se": nan.copy()}
            if self.group_entropy:
                out.update(entropy_sphere_group=np.full((self.members, G), math.nan),
                           entropy_group=np.full((self.members, G), math.nan))
            return out
        active = self.alive.cpu().numpy()
        out = queue_entropies(self.queue, self.entropy_method, self.entropy_k, active=active)
        if self.group_entropy:
            per_group = [queue_entropies(self.queue, self.entropy_method, self.entropy_k, active=active, columns=cols,
                                         standard_error=False)  # not stored per group
                         if len(cols) >= 2 else {"entropy_sphere": np.full(self.members, math.nan),
                                                 "entropy": np.full(self.members, math.nan)}
                         for cols in self._group_columns]
            out["entropy_sphere_group"] = np.stack([e["entropy_sphere"] for e in per_group], axis=-1)
            out["entropy_group"] = np.stack([e["entropy"] for e in per_group], axis=-1)
        return out

    def member_status(self) -> dict[str, np.ndarray]:
        """``diverged_at`` (E,): the step a member was frozen at, −1 if never."""
        return {"diverged_at": self.diverged()}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue exactly (numpy arrays; the queue only with ``checkpoint_queue``)."""
        state = {
            "t": np.int64(self.t), "W": self.W.cpu().numpy(), "alive": self.alive.cpu().numpy(),
            "diverged_at": self.diverged_at.cpu().numpy(), "loss_acc": self.loss_acc.cpu().numpy(),
            "grad_acc": self.grad_acc.cpu().numpy(), "count_acc": self.count_acc.cpu().numpy(),
            "queue_count": np.int64(self.queue_count if self.checkpoint_queue else 0),
            "members": np.int64(self.members), "dim": np.int64(self.dim),
        }
        if self.checkpoint_queue:
            state["queue"] = self.queue.cpu().numpy()
        if self.velocity is not None:
            state["velocity"] = self.velocity.cpu().numpy()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        if int(state["members"]) != self.members or int(state["dim"]) != self.dim:
            raise InputError(f"checkpoint is for {int(state['members'])} members with D={int(state['dim'])}, "
                             f"this run has {self.members} with D={self.dim}")

        def tensor(name, dtype=None):
            return torch.as_tensor(np.asarray(state[name]), device=self.device, dtype=dtype)

        self.t = int(state["t"])
        self.W = tensor("W", self.dtype).contiguous()
        self.alive = tensor("alive", torch.bool)
        self.diverged_at = tensor("diverged_at", torch.int64)
        self.loss_acc = tensor("loss_acc", torch.float64)
        self.grad_acc = tensor("grad_acc", torch.float64)
        self.count_acc = tensor("count_acc", torch.float64)
        if self.velocity is not None:
            self.velocity = tensor("velocity", self.dtype)
        self.queue.zero_()
        if "queue" in state:
            self.queue.copy_(tensor("queue", self.dtype))
            self.queue_count = int(state["queue_count"])
        else:
            self.queue_count = 0

    # ------------------------------------------------------------------ for checks
    def diverged(self) -> np.ndarray:
        return self.diverged_at.cpu().numpy()
