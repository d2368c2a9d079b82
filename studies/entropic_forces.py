"""Entropic forces on the rescaling symmetry of an unnormalised ReLU network (paper 003).

A two-layer, bias-free ReLU network ``f(x) = W2 relu(W1 x)`` without normalisation (the
``teacher`` dataset, 10 classes, 20 % label noise, cross-entropy) is trained with plain
SGD for a grid of learning rates eta × weight decays lambda × batch sizes B (and
``full``: gradient descent). It has the symmetry ``W1 -> c W1``, ``W2 -> W2/c``; what the
theory (:mod:`thermonet.theory.entropic`) says about it, and what this study measures:

**Identities** (hold by the symmetry at every step; measured to float64 rounding):

* I1: ``<W1, g1> = <W2, g2>`` for every batch;
* I2: one step changes ``C = ||W1||**2 - ||W2||**2`` by exactly
  ``((1 - eta lambda)**2 - 1) C + eta**2 (||g1||**2 - ||g2||**2)``.

**Predictions** (can fail):

* P1 (relaxation on the orbit): after training (phase 1) every member is copied and
  the copy moved along the orbit by ``c = sqrt 2`` (the same function and loss, gradients
  unbalanced); both train on the same batches (phase 2). The difference of their C
  relaxes as the orbit map predicts from the partner's measured ``E||g~1||**2``,
  ``E||g~2||**2``, ``||W1||**2``, ``||W2||**2`` with no free parameter, at the linear rate
  ``k = eta lambda (2 - eta lambda) + eta**2 (E||g~1||**2 + E||g~2||**2)/(||W1||**2 + ||W2||**2)``;
* P2 (noise and step size): without decay the rate is the entropic one, ``~ eta**2 G``,
  larger for small batches (the noise raises ``G``) and ~0 for gradient descent (no
  noise, vanishing gradient): no symmetry breaking without the discrete step's noise;
* P3 (gradient balance, no decay): where C has stopped drifting, the *stochastic*
  gradients balance, ``E||g~1||**2 = E||g~2||**2`` (the full-batch ones need not).

``--quick`` (about 1 minute on one CPU core): 1000 training examples, eta in {0.1, 0.2,
0.4}, lambda in {0, 0.01}, B in {16, 64, full}, one seed, 3000 + 2500 steps. The default
(about 10 minutes; the results are in ``docs/entropic-forces.md``): the same examples, eta in {0.05, 0.1, 0.2, 0.4}, lambda in {0, 0.003,
0.01}, B in {8, 16, 32, 64, 128, full}, two seeds, 6000 + 5000 steps. Writes
``OUT/summary.md``, ``OUT/summary.json``, the figures and the data (``OUT/relaxation.nc``,
from which ``--report-only`` rewrites the rest)::

    python studies/entropic_forces.py --quick --out reports/entropic-forces-quick
    thermonet study entropic-forces --quick
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

QUICK = dict(n_train=1000, lr=(0.1, 0.2, 0.4), wd=(0.0, 0.01), batch=(16, 64, 0), seeds=(0,), equilibrate=3000,
             relax=2500, log_every=25, hidden=16, identity_steps=200)
FULL = dict(n_train=1000, lr=(0.05, 0.1, 0.2, 0.4), wd=(0.0, 0.003, 0.01), batch=(8, 16, 32, 64, 128, 0),
            seeds=(0, 1), equilibrate=6000, relax=5000, log_every=25, hidden=16, identity_steps=500)
#: The band of k_measured / k_predicted that the summary counts as agreement.
BAND = (0.8, 1.25)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="entropic_forces", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small CPU run (about 1 minute)")
    parser.add_argument("--out", default=None, help="output folder (default reports/entropic-forces[-quick])")
    parser.add_argument("--equilibrate", type=int, default=None, help="override the phase-1 steps")
    parser.add_argument("--relax", type=int, default=None, help="override the phase-2 steps")
    parser.add_argument("--n-train", type=int, default=None, help="override the number of training examples")
    parser.add_argument("--shift", type=float, default=math.sqrt(2), help="orbit shift c of the copies (default sqrt 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of the figures (default 100)")
    parser.add_argument("--report-only", action="store_true",
                        help="do not train: rewrite summary and figures from OUT/relaxation.nc and OUT/summary.json")
    return parser


def _label(batch: int) -> str:
    return "full" if batch == 0 else str(batch)


def run(mode: dict, shift: float) -> tuple[dict, "object"]:
    """The identity check and the relaxation grid; returns (identities, Dataset over member)."""
    import torch
    import xarray as xr

    from thermonet.analysis.entropic import identity_residuals, relaxation_experiment
    from thermonet.engines.network.chain import ReLUChainEnsemble
    from thermonet.engines.network.data import load_dataset

    data = load_dataset(f"teacher:n_train={mode['n_train']},n_test=100,noise=0.2", dtype=torch.float64)
    hidden = (mode["hidden"],)
    grid = [(lr, wd, seed) for lr in mode["lr"] for wd in mode["wd"] for seed in mode["seeds"]]
    lr, wd, seeds = (np.array([g[i] for g in grid]) for i in range(3))
    identities = {}
    for batch in (mode["batch"][0], 0):
        chain = ReLUChainEnsemble(data, hidden=hidden, lr=lr, wd=wd, seeds=seeds, batch_size=batch or None)
        identities[_label(batch)] = identity_residuals(chain, mode["identity_steps"] if batch else 20)
    deep = ReLUChainEnsemble(data, hidden=(16, 8), lr=lr[:2], wd=wd[:2], seeds=seeds[:2], batch_size=mode["batch"][0])
    identities["3 layers, pair 2-3"] = identity_residuals(deep, 50, pair=1)
    parts = []
    for batch in mode["batch"]:
        tic = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a diverged member gives NaN, reported as such
            parts.append(relaxation_experiment(data, hidden=hidden, lr=lr, wd=wd, seeds=seeds, batch_size=batch or None,
                                               shift=shift, equilibrate=mode["equilibrate"], relax=mode["relax"],
                                               log_every=mode["log_every"]))
        print(f"  batch {_label(batch)}: {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    return identities, xr.concat(parts, dim="member")


def figures(ds, out: Path, dpi: int = 100) -> list[str]:
    """relaxation.png, rates.png, rate_vs_batch.png, balance.png; Markdown lines."""
    from thermonet.base.plotting import panels

    lrs, wds = np.unique(ds["learning_rate"].values), np.unique(ds["weight_decay"].values)
    batches = sorted(np.unique(ds["batch_size"].values), key=lambda b: (b == 0, b))
    sgd = [b for b in batches if b]
    colour = {lr: f"C{i}" for i, lr in enumerate(lrs)}
    marker = dict(zip(batches, "osD^v<>"))
    lines = []

    fig, axes = panels(len(wds))
    shown = [sgd[0], 0]
    for ax, wd in zip(axes, wds):
        for m in range(ds.sizes["member"]):
            p = ds.isel(member=m)
            if float(p["weight_decay"]) != wd or int(p["seed"]) != int(ds["seed"].values[0]) or int(p["batch_size"]) not in shown:
                continue
            style = "-" if int(p["batch_size"]) else ":"
            lab = f"eta {float(p['learning_rate']):g}, B {_label(int(p['batch_size']))}"
            ax.plot(p["step2"], p["dC"] / float(p["dC_start"]), style, color=colour[float(p["learning_rate"])], lw=1.2, label=lab)
            ax.plot(p["step2"], p["dC_predicted"] / float(p["dC_predicted_start"]), "--", color="k", lw=0.8)
        ax.plot([], [], "--", color="k", lw=0.8, label="orbit map (prediction)")
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set_xlabel("steps after the shift")
        ax.set_ylabel("dC(t) / dC(0)")
        ax.set_title(f"lambda = {wd:g}", fontsize=10)
        ax.legend(fontsize=7)
    fig.savefig(out / "relaxation.png", dpi=dpi)
    lines += ["![relaxation](relaxation.png)", "",
              f"Relaxation after the shift: C(copy) - C(partner), relative to its start, for B = {_label(sgd[0])} "
              "(solid) and gradient descent (dotted); dashed: the orbit map from the partner's measured gradient and "
              "weight norms (no free parameter), relative to its own start.", ""]

    fig, (ax,) = panels()
    k_meas, k_pred = ds["k_measured"].values, ds["k_predicted"].values
    for m in range(ds.sizes["member"]):
        p = ds.isel(member=m)
        if not (k_meas[m] > 0 and k_pred[m] > 0):
            continue
        filled = float(p["weight_decay"]) == 0
        ax.plot(k_pred[m], k_meas[m], marker[int(p["batch_size"])], ms=5, color=colour[float(p["learning_rate"])],
                mfc=colour[float(p["learning_rate"])] if filled else "none")
    good = (k_meas > 0) & (k_pred > 0)
    if good.any():
        lo, hi = min(k_meas[good].min(), k_pred[good].min()) / 1.5, max(k_meas[good].max(), k_pred[good].max()) * 1.5
        ax.plot([lo, hi], [lo, hi], "k-", lw=1)
        ax.fill_between([lo, hi], [lo * BAND[0], hi * BAND[0]], [lo * BAND[1], hi * BAND[1]], color="0.9")
    for lr in lrs:
        ax.plot([], [], "o", color=colour[lr], label=f"eta {lr:g}")
    for b in batches:
        ax.plot([], [], marker[b], color="k", mfc="none", label=f"B {_label(b)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k predicted (per step)")
    ax.set_ylabel("k measured (per step)")
    ax.set_title("filled: lambda = 0 (entropic force only)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(out / "rates.png", dpi=dpi)
    lines += ["![rates](rates.png)", "",
              "Measured relaxation rate against the predicted one (the same exponential fit on the measured and the "
              f"predicted curve); grey band: ratio in [{BAND[0]}, {BAND[1]}]. Members whose difference does not decay "
              "(gradient descent without decay: k <= 0) are not on the log axes.", ""]

    from matplotlib.ticker import NullFormatter

    fig, (ax,) = panels()
    x_of = {b: (b if b else 2 * max(sgd)) for b in batches}
    for lr in lrs:
        sub = ds.where((ds["learning_rate"] == lr) & (ds["weight_decay"] == 0), drop=True)
        xs = np.array([x_of[int(b)] for b in sub["batch_size"].values])
        ax.plot(xs, np.where(sub["k_measured"].values > 0, sub["k_measured"].values, np.nan), "o", color=colour[lr],
                label=f"eta {lr:g} measured")
        means = sub["k_predicted"].groupby("batch_size").mean()  # one predicted line: the seed mean
        order = np.argsort([x_of[int(b)] for b in means["batch_size"].values])
        x_mean = np.array([x_of[int(b)] for b in means["batch_size"].values])[order]
        y_mean = means.values[order]
        ax.plot(x_mean[y_mean > 0], y_mean[y_mean > 0], "--", color=colour[lr], lw=1)
    ax.plot([], [], "--", color="k", lw=1, label="predicted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([x_of[b] for b in batches], [_label(b) for b in batches])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("batch size")
    ax.set_ylabel("relaxation rate k (per step), lambda = 0")
    ax.legend(fontsize=7)
    fig.savefig(out / "rate_vs_batch.png", dpi=dpi)
    lines += ["![rate vs batch](rate_vs_batch.png)", "",
              "Without weight decay the rate is the entropic one, eta^2 (E||g~1||^2 + E||g~2||^2)/M: it grows with the "
              "noise (small batches) and the step; for gradient descent it is ~0 (points at the bottom where the measured "
              "difference decays at all; the predicted rate there is <= 0 and not drawn).", ""]

    fig, (ax,) = panels()
    drawn = sorted({sgd[0], sgd[len(sgd) // 2], sgd[-1]}) + [b for b in batches if not b]  # at most 3 SGD sizes
    styles = dict(zip(drawn, ["-", "--", "-.", ":"] if len(drawn) == 4 else ["-", "--", ":", ":"]))
    styles.update({b: ":" for b in batches if not b})
    for m in range(ds.sizes["member"]):
        p = ds.isel(member=m)
        b = int(p["batch_size"])
        if float(p["weight_decay"]) != 0 or int(p["seed"]) != int(ds["seed"].values[0]) or b not in styles:
            continue
        ax.plot(p["step1"], p["log_gradient_ratio"], linestyle=styles[b], color=colour[float(p["learning_rate"])],
                lw=1)
    for b in drawn:
        ax.plot([], [], linestyle=styles[b], color="k", label=f"B {_label(b)}")
    for lr in lrs:
        ax.plot([], [], "-", color=colour[lr], label=f"eta {lr:g}")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_xlabel("step (from the initial point)")
    ax.set_ylabel("ln(E||g~1||^2 / E||g~2||^2)")
    ax.set_title("lambda = 0: approach to gradient balance", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(out / "balance.png", dpi=dpi)
    lines += ["![balance](balance.png)", "",
              "Phase 1 from the initial point, no weight decay (seed 0; the smallest, a middle and the largest batch "
              "size): the log gradient ratio goes to 0 (balance) at a speed set by eta^2 and the noise; gradient "
              "descent (dotted) keeps its imbalance.", ""]
    return lines


def tables(identities: dict, ds) -> tuple[list[str], dict]:
    """Markdown tables and the key figures."""
    lines = ["## Identities (hold at every step)", "",
             "| run | steps | max rel. residual of I2 (step change of C) | max rel. residual of I1 (<W1,g1> = <W2,g2>) "
             "| largest rel. change of C per step |", "|---|---|---|---|---|"]
    for name, r in identities.items():
        lines.append(f"| B {name} | {int(r['steps'])} | {r['step_change_rel_residual']:.2e} | "
                     f"{r['symmetry_rel_residual']:.2e} | {r['largest_rel_change_per_step']:.2e} |")
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(ds["k_predicted"].values > 0, ds["k_measured"].values / ds["k_predicted"].values, np.nan)
    sgd = ds["batch_size"].values > 0
    finite = np.isfinite(ratio) & sgd
    inside = finite & (ratio >= BAND[0]) & (ratio <= BAND[1])
    diverged = int((~np.isfinite(ds["k_measured"].values) & sgd).sum())
    key = {"identity_step_change_max": max(r["step_change_rel_residual"] for r in identities.values()),
           "identity_symmetry_max": max(r["symmetry_rel_residual"] for r in identities.values()),
           "sgd_members": int(sgd.sum()), "sgd_members_diverged_or_unfitted": diverged,
           "rate_ratio_median": float(np.median(ratio[finite])) if finite.any() else math.nan,
           "rate_ratio_min": float(np.min(ratio[finite])) if finite.any() else math.nan,
           "rate_ratio_max": float(np.max(ratio[finite])) if finite.any() else math.nan,
           "rate_ratio_in_band": float(inside.sum()) / max(int(finite.sum()), 1)}
    gd0 = (~sgd) & (ds["weight_decay"].values == 0)
    sgd0 = sgd & (ds["weight_decay"].values == 0)
    if gd0.any() and sgd0.any():
        key["gd_no_decay_rate_max"] = float(np.nanmax(np.abs(ds["k_measured"].values[gd0])))
        key["sgd_no_decay_rate_min"] = float(np.nanmin(ds["k_measured"].values[sgd0]))
    lines += ["", "## P1, P2: relaxation rates after the shift", "",
              f"{int(finite.sum())} SGD members fitted ({diverged} diverged or unfitted): k_measured / k_predicted has "
              f"median {key['rate_ratio_median']:.3f}, range [{key['rate_ratio_min']:.3f}, {key['rate_ratio_max']:.3f}]; "
              f"{100 * key['rate_ratio_in_band']:.0f} % within [{BAND[0]}, {BAND[1]}].", "",
              "| eta | lambda | B | seed | k measured (± s.e.) | k predicted (orbit map) | k linear | ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for m in range(ds.sizes["member"]):
        p = ds.isel(member=m)
        lines.append(f"| {float(p['learning_rate']):g} | {float(p['weight_decay']):g} | {_label(int(p['batch_size']))} | {int(p['seed'])} | "
                     f"{float(p['k_measured']):.3g} ± {float(p['k_measured_se']):.1g} | {float(p['k_predicted']):.3g} | "
                     f"{float(p['k_linear']):.3g} | {_ratio_text(ratio[m])} |")
    # P3: the balance at the end of phase 1 without decay, stochastic vs full-batch gradients
    lines += ["", "## P3: gradient balance at the end of phase 1 (lambda = 0)", "",
              "k T1: the linear rate times the phase-1 length, how many relaxation times phase 1 lasted (balance is "
              "expected where it is well above 1).", "",
              "| eta | B | k T1 | ln(E‖g̃1‖²/E‖g̃2‖²) (last 10 % of phase 1) | ln(‖ḡ1‖²/‖ḡ2‖²) (full batch) "
              "| noise share trΣ/E‖g̃‖² |", "|---|---|---|---|---|---|"]
    tail = max(1, ds.sizes["step1"] // 10)
    stochastic_balance = []
    for m in np.flatnonzero(ds["weight_decay"].values == 0):
        p = ds.isel(member=m)
        stochastic = float(p["log_gradient_ratio"].values[-tail:].mean())
        full = p["grad_full_sq"].values
        noise = p["trace_sigma"].values
        share = float((noise / (noise + full)).mean())
        relaxations = float(p["k_linear"]) * int(p["step1"].values[-1])
        if int(p["batch_size"]) and relaxations > 3:
            stochastic_balance.append(abs(stochastic))
        lines.append(f"| {float(p['learning_rate']):g} | {_label(int(p['batch_size']))} | {relaxations:.2g} | {stochastic:+.3f} | "
                     f"{math.log(full[0] / full[1]):+.3f} | {share:.2f} |")
    if stochastic_balance:
        key["sgd_balanced_members"] = len(stochastic_balance)
        key["sgd_balanced_abs_log_ratio_max"] = float(np.max(stochastic_balance))
        lines += ["", f"SGD members with k T1 > 3: {len(stochastic_balance)}, largest |ln ratio| of the stochastic "
                      f"gradients {max(stochastic_balance):.3f}."]
    return lines, key


def _ratio_text(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else "— (no predicted decay)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    from thermonet.errors import ThermonetError

    mode = dict(QUICK if args.quick else FULL)
    for key, value in (("equilibrate", args.equilibrate), ("relax", args.relax), ("n_train", args.n_train)):
        if value is not None:
            if value < 1:
                print(f"entropic_forces: error: --{key.replace('_', '-')} must be >= 1", file=sys.stderr)
                return 2
            mode[key] = value
    if not (args.shift > 0 and args.shift != 1) or args.threads < 1 or args.dpi < 10:
        print("entropic_forces: error: --shift must be > 0 and != 1, --threads >= 1, --dpi >= 10", file=sys.stderr)
        return 2
    out = Path(args.out or ("reports/entropic-forces" + ("-quick" if args.quick else "")))
    torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    try:
        if args.report_only:
            import xarray as xr

            if not (out / "relaxation.nc").is_file() or not (out / "summary.json").is_file():
                raise ThermonetError(f"--report-only: no relaxation.nc and summary.json in {out}; run the study first")
            saved = json.loads((out / "summary.json").read_text())
            identities, seconds, mode = saved["identities"], saved["seconds"], saved["mode"]
            args.shift = saved["shift"]
            ds = xr.load_dataset(out / "relaxation.nc")
        else:
            out.mkdir(parents=True, exist_ok=True)
            identities, ds = run(mode, args.shift)
            seconds = time.perf_counter() - tic
            ds.to_netcdf(out / "relaxation.nc")
    except (ThermonetError, OSError, ValueError) as exc:
        print(f"entropic_forces: error: {exc}", file=sys.stderr)
        return 2
    table, key = tables(identities, ds)
    lines = ["# Entropic forces on the rescaling symmetry W1 -> c W1, W2 -> W2/c", "",
             f"Two-layer bias-free ReLU network (hidden {mode['hidden']}) on the teacher dataset "
             f"(n_train {mode['n_train']}, 20 % label noise), cross-entropy, SGD; eta {list(mode['lr'])}, "
             f"lambda {list(mode['wd'])}, B {[_label(b) for b in mode['batch']]}, seeds {list(mode['seeds'])}; "
             f"phase 1 {mode['equilibrate']} steps, shift c = {args.shift:.4g}, phase 2 {mode['relax']} steps; "
             f"{seconds:.0f} s. Identities I1, I2 and predictions P1-P3: docs/entropic-forces.md.", "",
             *table, "", *figures(ds, out, args.dpi)]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    payload = {"seconds": seconds, "mode": {k: list(v) if isinstance(v, tuple) else v for k, v in mode.items()},
               "shift": args.shift, "identities": identities, "key": key}
    (out / "summary.json").write_text(json.dumps(payload, indent=2, default=float), encoding="utf-8")
    print(f"entropic forces: {out / 'summary.md'} ({seconds:.0f} s)")
    print(f"  identities: step change {key['identity_step_change_max']:.1e}, symmetry {key['identity_symmetry_max']:.1e}")
    print(f"  k_measured/k_predicted (SGD): median {key['rate_ratio_median']:.3f}, range "
          f"[{key['rate_ratio_min']:.3f}, {key['rate_ratio_max']:.3f}], {100 * key['rate_ratio_in_band']:.0f} % in "
          f"[{BAND[0]}, {BAND[1]}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
