"""Free-energy temperature of under- vs over-parameterised networks (paper 002, issue 6).

Two ensembles of the scale-invariant MLP (``mlp-si``) on MNIST-1D that differ **only in
the training-set size**: the same width, protocol, learning rates, seeds, batch size and
number of steps, but

* **UP** (under-parameterised): all 4000 training examples; the network cannot fit them
  (train accuracy well below 1, loss far above 0);
* **OP** (over-parameterised): a balanced subset of ``--op-samples-per-class`` examples
  per class (10 → 100 examples); the same network fits them (train accuracy 1, loss near 0).

Each is trained as ONE ensemble (all learning rates × seeds together, ``thermonet.runs.train``)
on the **fixed sphere** (projected SGD at radius 1, the paper's setting: the LR is the
effective LR and the volume is fixed, so the potential is Helmholtz ``F = U − T S``).
Then, per ensemble, :func:`thermonet.analysis.free_energy.sweep_temperatures` gives each LR's
admissible temperature interval from the lower convex hull of the stationary ``(S, U)``
points and the power law ``T ∝ LR^α``. The report ``OUT/report.md`` has

* ``temperature.png``: loss U, entropy S and the hull temperature against LR for both
  (intervals as bars, point estimates, power-law fits, the noise temperature
  ``η σ²/2`` dashed);
* ``snr.png``: the stochastic-gradient signal-to-noise ratio ``‖ḡ‖/sqrt(tr Σ)`` averaged
  over the last ``--window`` of the run, and its two parts, against LR;
* ``loss_curves.png``: training loss (and SNR) against step for every LR of both;
* ``free_energy_up.png``, ``free_energy_op.png``: :func:`thermonet.reports.free_energy.plot_sweep`;
* tables of both sweeps, the regime verdicts, and ``summary.json``.

Usage::

    .venv/bin/python studies/free_energy_regimes.py --quick            # CPU, ~2 min on 2 cores
    .venv/bin/python studies/free_energy_regimes.py --device cuda      # full mode (GPU)
    .venv/bin/python studies/free_energy_regimes.py --quick --reuse    # redo the report from the stores
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

#: entropy_method: the queues here (200, 1000) are shorter than D = 2,304, where no
#: estimator can recover S (docs/entropy-estimators.md, "N ≤ D") and the default would
#: return the isotropic upper bound; the study keeps the paper's kind of estimator, the
#: kNN ``chord``, whose bias depends on the shape of the distribution. Measured on the
#: quick run (seed 0): the hull T at lr = 1e-3 is 4.3e-5..7.0e-5 (seeds 0..3) with chord and
#: 1.45e-4 with the bound (``--entropy-method`` of ``thermonet train`` selects either).
COMMON = dict(model="mlp-si", dataset="mnist1d", protocol="fixed-sphere", sphere_radius=1.0, head_norm=10.0,
              batch_size=32, eval_batch_size=1000, up_samples_per_class=None, op_samples_per_class=10,
              entropy_method="chord")
QUICK = dict(COMMON, width=2, lr=(5e-4, 3e-2, 8), seeds="0,1,2", steps=20000, log_every=400, queue_size=200,
             entropy_every=2000, grad_samples=16, device="cpu", threads=1)
FULL = dict(COMMON, width=2, lr=(3e-4, 5e-2, 10), seeds="0,1,2,3,4,5,6,7", steps=200000, log_every=2000,
            queue_size=1000, entropy_every=10000, grad_samples=64, device="cuda", threads=None)
REGIMES = ("up", "op")
NAMES = {"up": "UP (all 4000 examples)", "op": "OP (balanced subset)"}
STYLE = {"up": dict(color="tab:blue", marker="o"), "op": dict(color="tab:orange", marker="s")}


def _fmt(value) -> str:
    if value is None:
        return "–"
    value = float(value)
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.3g}"


def _open(store: Path):
    import thermonet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return thermonet.open_run(store)


def _late_mean(ds, var: str, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``var`` over the last ``window`` fraction of the logs and seeds, per LR, and
    the standard deviation across seeds of the per-seed means."""
    steps = ds["step"].values
    first = steps[-1] - window * (steps[-1] - steps[0])
    da = ds[var].sel(step=steps[steps >= first]).isel(sphere_radius=0).transpose("lr", "seed", "step")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_seed = np.nanmean(np.asarray(da.values, dtype=float), axis=-1)
        return np.nanmean(per_seed, axis=-1), np.nanstd(per_seed, axis=-1)


# ---------------------------------------------------------------------- analysis
def analyse(store: Path, window: float) -> dict:
    """Hull temperatures, power law and late-training SNR of one ensemble."""
    from thermonet.analysis.free_energy import sweep_temperatures

    ds = _open(store)
    sweep = sweep_temperatures(ds, window)[0]
    r = sweep.intervals
    lr_all = np.asarray(ds["lr"].values, dtype=float)
    idx = {float(v): i for i, v in enumerate(lr_all)}
    late = {var: _late_mean(ds, var, window) for var in
            ("snr", "grad_full_sq", "trace_sigma", "train_accuracy", "test_accuracy", "loss")}
    rows = []
    for k, run in enumerate(r.runs):
        i = idx[float(run.lr)]
        rows.append(dict(lr=run.lr, U=run.U, S=run.S, T_low=run.T_low, T_high=run.T_high, T=run.T,
                         status=run.status, T_protocol=float(sweep.T_protocol[k]),
                         snr=float(late["snr"][0][i]), snr_sd=float(late["snr"][1][i]),
                         grad=float(np.sqrt(late["grad_full_sq"][0][i])),
                         noise=float(np.sqrt(late["trace_sigma"][0][i])),
                         train_accuracy=float(late["train_accuracy"][0][i]),
                         test_accuracy=float(late["test_accuracy"][0][i])))
    fit = sweep.fit
    return dict(store=str(store), dim=int(ds.attrs["dim"]), n_train=int(ds.attrs["n_train"]),
                seeds=len(ds["seed"]), steps=int(ds.attrs["steps_done"]), sweep=sweep, rows=rows,
                skipped=[float(v) for v, _ in sweep.skipped],
                fit=None if fit is None else dict(alpha=fit.alpha, alpha_err=fit.alpha_err,
                                                  alpha_err_scatter=fit.alpha_err_scatter,
                                                  prefactor=fit.prefactor, T_ref=fit.T_ref, lr_ref=fit.lr_ref,
                                                  chi2_red=fit.chi2_red, n=int(fit.n),
                                                  lr_used=[float(v) for v in fit.lr_used]),
                fit_error=sweep.fit_error, ds=ds)


OFF_HULL = ("off-hull", "no-positive-T")


def verdicts(res: dict) -> dict:
    """Numbers behind the two claims, and their verdicts.

    * UP: every stationary state lies on the lower convex hull of (S, U) with a positive
      T, rising with LR. Hull slopes increase along S by construction, so the rise is not
      evidence by itself; the evidence is that every run is on the hull. Runs off the hull
      or without a positive T count **against** the picture (``up_against``).
    * OP: T collapses towards 0 at small LR, i.e. the runs with a T have one far below
      UP's at the same LR (ratio < 0.3). Runs off the hull or without a positive T are
      **not** counted as collapse (T = 0) but as evidence against (``op_against``).

    Each claim gets ``pass``, ``fail`` (some run against it) or ``inconclusive`` (fewer than
    two runs with a T to judge).
    """
    up, op = res["up"]["rows"], res["op"]["rows"]
    out = {}
    t_up = np.array([r["T"] for r in up])
    with_t = np.isfinite(t_up) & (t_up > 0)
    out["up_runs"] = len(up)
    out["up_with_T"] = int(with_t.sum())
    out["up_off_hull"] = [r["lr"] for r in up if r["status"] in OFF_HULL]
    out["up_against"] = len(out["up_off_hull"])
    out["up_monotone"] = bool(with_t.sum() >= 2 and np.all(np.diff(t_up[with_t]) > 0))
    out["up_alpha"] = None if res["up"]["fit"] is None else res["up"]["fit"]["alpha"]
    out["up_verdict"] = ("fail" if out["up_against"] or (with_t.sum() >= 2 and not out["up_monotone"])
                         else "pass" if with_t.sum() >= 2 else "inconclusive")
    # OP collapse: the smallest third of the common LRs, judged on the runs that have a T
    lr_up = {round(r["lr"], 12): r for r in up}
    common = [r for r in op if round(r["lr"], 12) in lr_up]
    n_small = max(2, len(common) // 3)
    small = common[:n_small]
    ratios, against = [], []
    for r in small:
        if r["status"] in OFF_HULL:
            against.append(r["lr"])
            continue
        u = lr_up[round(r["lr"], 12)]
        if np.isfinite(r["T"]) and np.isfinite(u["T"]) and u["T"] > 0:
            ratios.append(r["T"] / u["T"])
    out["op_small_lrs"] = [r["lr"] for r in small]
    out["op_small_no_T"] = len(against)
    out["op_against"] = against
    out["op_small_with_T"] = len(ratios)
    out["op_small_T_ratio"] = float(np.max(ratios)) if ratios else float("nan")
    out["op_collapse"] = bool(len(ratios) >= 2 and np.max(ratios) < 0.3)
    out["op_verdict"] = ("fail" if against or (ratios and np.max(ratios) >= 0.3)
                         else "pass" if out["op_collapse"] else "inconclusive")
    out["op_min_loss"] = float(min(r["U"] for r in op))
    out["up_min_loss"] = float(min(r["U"] for r in up))
    out["snr_small_lr"] = {"up": up[0]["snr"], "op": op[0]["snr"]}
    out["snr_small_third"] = {k: float(np.nanmean([r["snr"] for r in res[k]["rows"][:n_small]])) for k in REGIMES}
    return out


# ---------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_temperature(path: Path, res: dict, dpi: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for key in REGIMES:
        rows, st = res[key]["rows"], STYLE[key]
        lr = np.array([r["lr"] for r in rows])
        axes[0].semilogx(lr, [r["U"] for r in rows], "-", label=NAMES[key], **st)
        axes[1].semilogx(lr, [r["S"] for r in rows], "-", label=NAMES[key], **st)
        ax = axes[2]
        for r in rows:
            lo, hi = r["T_low"], r["T_high"]
            if r["status"] in ("off-hull", "no-positive-T"):
                ax.plot(r["lr"], 1e-30, "x", color=st["color"], ms=8)  # drawn at the axis floor below
                continue
            lo_d = lo if lo > 0 else np.nan
            hi_d = hi if np.isfinite(hi) else np.nan
            ax.vlines(r["lr"] * (1.03 if key == "op" else 0.97), lo_d if np.isfinite(lo_d) else r["T"] / 30,
                      hi_d if np.isfinite(hi_d) else r["T"] * 30, color=st["color"], alpha=0.35, lw=5)
            ax.plot(r["lr"], r["T"], st["marker"], color=st["color"],
                    mfc=st["color"] if r["status"] == "interval" else "none", ms=7)
        ax.plot(lr, [r["T_protocol"] for r in rows], "--", color=st["color"], lw=1, alpha=0.8)
        fit = res[key]["fit"]
        if fit is not None:
            grid = np.geomspace(min(fit["lr_used"]), max(fit["lr_used"]), 50)
            ax.plot(grid, fit["prefactor"] * grid ** fit["alpha"], "-", color=st["color"], lw=1.5,
                    label=f"{key.upper()}: T ∝ LR^{fit['alpha']:.2f}±{fit['alpha_err']:.2f}")
    positive = [v for key in REGIMES for r in res[key]["rows"] for v in (r["T"], r["T_protocol"])
                if np.isfinite(v) and v > 0]
    floor = min(positive) / 10 if positive else 1e-8
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_ylim(bottom=floor)
    for line in axes[2].lines:  # move the "no T" crosses onto the floor
        y = line.get_ydata()
        if len(y) == 1 and y[0] == 1e-30:
            line.set_ydata([floor * 1.5])
    axes[0].set_ylabel("stationary train loss U")
    axes[1].set_ylabel("entropy S (queue estimate)")
    axes[2].set_ylabel("free-energy temperature T")
    axes[2].set_title("bars: hull intervals; filled: bounded, open: one-sided bound;\n"
                      "x (on the floor): off the hull or no positive T; solid: power-law fit; "
                      "dashed: η σ²/2", fontsize=8)
    for ax in axes:
        ax.set_xlabel("learning rate (on the unit sphere)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def figure_snr(path: Path, res: dict, dpi: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in REGIMES:
        rows, st = res[key]["rows"], STYLE[key]
        lr = np.array([r["lr"] for r in rows])
        axes[0].errorbar(lr, [r["snr"] for r in rows], yerr=[r["snr_sd"] for r in rows], capsize=3, ls="-",
                         label=NAMES[key], **st)
        axes[1].loglog(lr, [r["grad"] for r in rows], "-", label=f"{key.upper()} ‖ḡ‖", **st)
        axes[1].loglog(lr, [r["noise"] for r in rows], ":", label=f"{key.upper()} sqrt(tr Σ_B)",
                       color=st["color"], marker=st["marker"], mfc="none")
    axes[0].set_xscale("log")
    axes[0].set_ylabel("SNR = ‖ḡ‖ / sqrt(tr Σ_B)")
    axes[0].set_title("stochastic-gradient SNR near the end of training (bars: spread over seeds)", fontsize=9)
    axes[1].set_title("its parts (at unit radius)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def figure_curves(path: Path, res: dict, dpi: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    for col, key in enumerate(REGIMES):
        ds = res[key]["ds"]
        steps = ds["step"].values
        lrs = ds["lr"].values
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(lrs)))
        for i, eta in enumerate(lrs):
            for var, row in (("loss", 0), ("snr", 1)):
                vals = ds[var].isel(lr=i, sphere_radius=0).values  # (seed, step)
                axes[row, col].plot(steps, np.nanmean(vals, axis=0), color=colors[i], label=f"LR {eta:.2g}")
        axes[0, col].set_title(f"{NAMES[key]}: {res[key]['n_train']} examples, D = {res[key]['dim']}")
        axes[0, col].set_yscale("log")
        axes[1, col].set_yscale("log")
        axes[0, col].set_ylabel("train loss (full set, seed mean)")
        axes[1, col].set_ylabel("SNR (seed mean)")
        axes[1, col].set_xlabel("step")
        for row in range(2):
            axes[row, col].grid(alpha=0.3, which="both")
    axes[0, 1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


# ---------------------------------------------------------------------- report
def _table(rows: list[dict]) -> list[str]:
    lines = ["| LR | U | S | T_low | T_high | T hull | T noise η σ²/2 | status | SNR (late) | ‖ḡ‖ | sqrt tr Σ_B "
             "| train acc | test acc |", "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['lr']:.3g} | {_fmt(r['U'])} | {_fmt(r['S'])} | {_fmt(r['T_low'])} | {_fmt(r['T_high'])} "
                     f"| {_fmt(r['T'])} | {_fmt(r['T_protocol'])} | {r['status']} | {_fmt(r['snr'])} ± "
                     f"{_fmt(r['snr_sd'])} | {_fmt(r['grad'])} | {_fmt(r['noise'])} | {r['train_accuracy']:.3f} "
                     f"| {r['test_accuracy']:.3f} |")
    return lines


def _took(seconds: float) -> str:
    return "store reused (--reuse)" if math.isnan(seconds) else f"trained in {seconds:.0f} s"


def _fit_line(fit: dict | None, error: str | None) -> str:
    if fit is None:
        return f"no power-law fit ({error})"
    return (f"T = {fit['prefactor']:.3g} · LR^{fit['alpha']:.3f}, α = {fit['alpha']:.3f} ± {fit['alpha_err']:.3f} "
            f"(intervals) ± {_fmt(fit['alpha_err_scatter'])} (scatter); T(LR = {fit['lr_ref']:.3g}) = "
            f"{fit['T_ref']:.3g}")


def write_report(out: Path, res: dict, verdict: dict, mode: dict, seconds: dict, window: float,
                 command: str) -> Path:
    lines = [
        "# Free-energy temperature: under- vs over-parameterised networks", "",
        f"Command: `{command}`", "",
        f"Model `{mode['model']}` width {mode['width']} (D = {res['up']['dim']} trained parameters), dataset "
        f"`{mode['dataset']}`, protocol `{mode['protocol']}` at radius {mode['sphere_radius']:g} (the LR is the "
        f"effective LR; potential F = U − T S), {len(res['up']['rows'])} learning rates in "
        f"[{mode['lr'][0]:g}, {mode['lr'][1]:g}], seeds {mode['seeds']}, {mode['steps']} steps of batch "
        f"{mode['batch_size']} (drawn with replacement), head norm {mode['head_norm']:g}, K = "
        f"{mode['grad_samples']} stochastic gradients per log, entropy queue {mode['queue_size']} over the last "
        f"half. Stationary window: last {window:g} of the logs.", "",
        f"* UP: {res['up']['n_train']} training examples; {_took(seconds['up'])}.",
        f"* OP: {res['op']['n_train']} training examples ({mode['op_samples_per_class']} per class); "
        f"{_took(seconds['op'])}.", "",
        "Only the training-set size differs. Each ensemble (all LRs × seeds) was trained as one vectorised "
        "ensemble; stores: " + ", ".join(f"`{res[k]['store']}`" for k in REGIMES) + ".", "",
        "## Verdicts", "",
        f"* UP, every run on the free-energy hull with a positive T rising with LR: **{verdict['up_verdict']}** "
        f"({verdict['up_with_T']} of {verdict['up_runs']} runs have a T"
        + (f"; **against** the picture, off the hull or no positive T: LR = "
           f"{', '.join(f'{v:.3g}' for v in verdict['up_off_hull'])}" if verdict["up_off_hull"] else "")
        + f"; the rise itself holds by construction of the hull). Power law: "
          f"{_fit_line(res['up']['fit'], res['up']['fit_error'])}.",
        f"* OP, T collapses towards 0 at small LR: **{verdict['op_verdict']}**. At the smallest LRs "
        f"({', '.join(f'{v:.3g}' for v in verdict['op_small_lrs'])}) {verdict['op_small_with_T']} run(s) have a T, "
        f"T_OP/T_UP ≤ {_fmt(verdict['op_small_T_ratio'])} at the same LR; {verdict['op_small_no_T']} run(s) have "
        f"none (off the hull or U rising with S), which counts **against** the picture, not as a collapse. OP fit "
        f"(all runs with a bounded interval): {_fit_line(res['op']['fit'], res['op']['fit_error'])}.",
        f"* Minimum stationary loss: UP {verdict['up_min_loss']:.3g}, OP {verdict['op_min_loss']:.3g}.",
        f"* SNR near the end of training, mean over the smallest third of the LRs: UP "
        f"{verdict['snr_small_third']['up']:.3g}, OP {verdict['snr_small_third']['op']:.3g}; at the smallest LR: "
        f"UP {verdict['snr_small_lr']['up']:.3g}, OP {verdict['snr_small_lr']['op']:.3g}.", "",
        "## T against LR", "", "![temperature](temperature.png)", "",
        "Left: stationary train loss; middle: queue entropy; right: hull temperature intervals (bars), point "
        "estimates (filled: bounded interval, open: one-sided bound), power-law fits (solid), the noise "
        "temperature η σ²/2 (dashed); crosses on the floor: runs with no positive T.", "",
        "## SNR near the end of training", "", "![snr](snr.png)", "",
        "SNR = ‖ḡ‖/sqrt(tr Σ_B) (full-batch gradient norm over the root of the trace of the mini-batch gradient "
        "covariance at the training batch size), averaged over the last part of the run and the seeds; right: "
        "its two parts.", "",
        "## Training curves", "", "![curves](loss_curves.png)", "",
        "## Free energy per ensemble", "", "UP: ![free energy UP](free_energy_up.png)", "",
        "OP: ![free energy OP](free_energy_op.png)", "",
    ]
    for key in REGIMES:
        lines += [f"## {NAMES[key]}: {res[key]['n_train']} examples", "", *_table(res[key]["rows"]), ""]
        if res[key]["skipped"]:
            lines += [f"Skipped (no finite U or S): LR = {', '.join(f'{v:.3g}' for v in res[key]['skipped'])}", ""]
    page = out / "report.md"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return page


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="free_energy_regimes", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU mode, a few minutes on 2 cores")
    p.add_argument("--out", default=None, help="report folder (default reports/free-energy-regimes[-quick])")
    p.add_argument("--runs", default="runs", help="folder for the two run stores (default runs)")
    p.add_argument("--device", default=None, help="override the device (cpu, cuda, auto)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seeds", default=None, help="comma list")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--lr", default=None, help="LR grid A:B:N (log-spaced)")
    p.add_argument("--op-samples-per-class", type=int, default=None, help="OP subset size per class (default 10)")
    p.add_argument("--head-norm", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile", default=None, help="torch.compile mode (GPU)")
    p.add_argument("--window", type=float, default=0.3, help="stationary window, fraction of the logs (default 0.3)")
    p.add_argument("--reuse", action="store_true", help="analyse the existing stores without training")
    p.add_argument("--dpi", type=int, default=110)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    from thermonet.errors import ThermonetError
    from thermonet.reports.free_energy import format_sweep, plot_sweep

    mode = dict(QUICK if args.quick else FULL)
    for key in ("device", "steps", "seeds", "width", "op_samples_per_class", "head_norm", "batch_size", "threads"):
        if getattr(args, key) is not None:
            mode[key] = getattr(args, key)
    if args.lr is not None:
        a, b, n = args.lr.split(":")
        mode["lr"] = (float(a), float(b), int(n))
    name = "free-energy-regimes" + ("-quick" if args.quick else "")
    out = Path(args.out or f"reports/{name}")
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs)
    stores = {k: runs / f"{name}-{k}.zarr" for k in REGIMES}
    command = "python studies/free_energy_regimes.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lrs = [float(v) for v in np.geomspace(mode["lr"][0], mode["lr"][1], int(mode["lr"][2]))]
    seconds = {}
    try:
        if mode["threads"]:
            import torch

            torch.set_num_threads(int(mode["threads"]))
        for key in REGIMES:
            if args.reuse:
                seconds[key] = float("nan")
                continue
            from thermonet.runs.network import train

            spc = mode["up_samples_per_class"] if key == "up" else mode["op_samples_per_class"]
            tic = time.perf_counter()
            print(f"training {key.upper()}: {len(lrs)} LRs x seeds {mode['seeds']}, {mode['steps']} steps",
                  flush=True)
            train(stores[key], overwrite=True, progress=not args.quiet, command=command, model=mode["model"],
                  width=mode["width"], head_norm=mode["head_norm"], dataset=mode["dataset"], samples_per_class=spc,
                  protocol=mode["protocol"], grid={"lr": lrs, "sphere_radius": [mode["sphere_radius"]]},
                  seeds=mode["seeds"], steps=mode["steps"], batch_size=mode["batch_size"],
                  eval_batch_size=mode["eval_batch_size"], log_every=mode["log_every"],
                  queue_size=mode["queue_size"], entropy_every=mode["entropy_every"],
                  grad_samples=mode["grad_samples"], device=mode["device"], threads=mode["threads"],
                  entropy_method=mode["entropy_method"], compile=args.compile)
            seconds[key] = time.perf_counter() - tic
        res = {k: analyse(stores[k], args.window) for k in REGIMES}
    except ThermonetError as exc:
        print(f"free_energy_regimes: error: {exc}", file=sys.stderr)
        return 2
    verdict = verdicts(res)
    figure_temperature(out / "temperature.png", res, args.dpi)
    figure_snr(out / "snr.png", res, args.dpi)
    figure_curves(out / "loss_curves.png", res, args.dpi)
    for key in REGIMES:
        plot_sweep([res[key]["sweep"]], out / f"free_energy_{key}.png")
    page = write_report(out, res, verdict, mode, seconds, args.window, command)
    summary = {k: {kk: vv for kk, vv in res[k].items() if kk not in ("ds", "sweep")} for k in REGIMES}
    summary.update(verdicts=verdict, seconds=seconds, mode={k: v for k, v in mode.items()}, window=args.window)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")

    for key in REGIMES:
        print(f"\n== {NAMES[key]} ({res[key]['n_train']} examples, D = {res[key]['dim']})")
        print(format_sweep(res[key]["sweep"]))
        print("late SNR: " + ", ".join(f"{r['lr']:.3g}: {r['snr']:.3g}" for r in res[key]["rows"]))
    print(f"\nUP on the hull, T rising with LR: {verdict['up_verdict']} (runs against: {verdict['up_against']}); "
          f"alpha = {_fmt(verdict['up_alpha'])}")
    print(f"OP collapse at small LR: {verdict['op_verdict']} (runs with a T: {verdict['op_small_with_T']}, "
          f"T_OP/T_UP <= {_fmt(verdict['op_small_T_ratio'])}; runs against, without a positive T: "
          f"{verdict['op_small_no_T']} of {len(verdict['op_small_lrs'])})")
    print(f"SNR (smallest third of LRs): UP {verdict['snr_small_third']['up']:.3g}, "
          f"OP {verdict['snr_small_third']['op']:.3g}")
    print("training: " + ", ".join(f"{k.upper()} {seconds[k]:.0f} s" for k in REGIMES))
    print(f"report: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
