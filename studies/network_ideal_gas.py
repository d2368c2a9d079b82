"""Network ideal-gas study: a fixed-LR grid of scale-invariant ConvNets on MNIST-1D.

The network counterpart of the paper's figure 2 (004, section 7, appendices F and H):
train a grid of learning rates η × weight decays λ (× seeds) of the scale-invariant
ConvNet (``convnet-si``) on MNIST-1D as one ensemble (``thermonet train``), then report

(a) the gradient-noise level σ² at unit norm against ηλ (the paper finds σ² ≈ f(ηλ));
(b) the temperature T = η σ² / (2ρ²) over the grid;
(c) the stationary radius against the SDE and discrete-time predictions (check
    ``stationary-radius``);
(d) entropy surfaces over (ln η, ln λ) and the quadratic fit behind the Maxwell relation
    (checks ``maxwell``, ``adiabat``, ``potential-minimum``);
(e) training curves (loss, radius, σ², test accuracy) of a few members,

into ``OUT/report.md`` (the standard report of :func:`thermonet.reports.report.write_report`) and
``OUT/network.md`` (the network figures above and a summary table).

``--quick``: a CPU mode of a couple of minutes (width 2, 100 examples per class, a 3 × 3
grid, 2000 steps): it exercises the whole pipeline; its numbers are not converged.
``--medium``: a CPU mode of about 18 minutes on one core (width 2, D = 510, all 4000
training examples, η ∈ [0.1, 0.5] × λ ∈ [3e-3, 2e-2] on a 5 × 5 grid × 2 seeds, 10 000
steps; a queue of 1000 > D samples, so the default entropy estimator is identifiable): every member reaches its stationary state (slowest radius relaxation time
1/(2ηλ) ≈ 1700 steps).

The grids stay below ηλ ≈ 0.01: above about 0.015 this ConvNet enters the unstable
regime (loss above ln 10, the radius jumping by a factor 3, ρ² fluctuating by 20–80 %),
where no stationary ideal-gas state exists; a first ``--medium`` grid up to η = 1,
λ = 0.05 had six such members, and they alone failed the radius check by up to 25 %.
The full mode is meant for a GPU::

    python studies/network_ideal_gas.py --device cuda --out reports/network-ideal-gas

(width 8, all 4000 training examples, η ∈ [0.05, 0.5] × λ ∈ [2e-3, 2e-2] on a 7 × 7 grid × 2
seeds = 98 members, 50 000 steps, queue 1000 every 25 steps over the last half, K = 128
stochastic gradients per log, 100 logs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

QUICK = dict(width=2, samples_per_class=100, lr=(0.1, 1.0, 3), wd=(0.005, 0.05, 3), seeds="0", steps=2000,
             batch_size=64, log_every=50, queue_size=100, queue_every=5, entropy_every=250, grad_samples=8,
             eval_batch_size=250, device="cpu", threads=1)
#: Optional checks added to the study's table (the report runs the default ones).
OPTIONAL = ("noise-trend", "adiabat-noise-trend")
MEDIUM = dict(width=2, samples_per_class=None, lr=(0.1, 0.5, 5), wd=(0.003, 0.02, 5), seeds="0,1", steps=10000,
              batch_size=64, log_every=100, queue_size=1000, queue_every=5, entropy_every=1000, grad_samples=16,
              eval_batch_size=1000, device="cpu", threads=1)
FULL = dict(width=8, samples_per_class=None, lr=(0.05, 0.5, 7), wd=(2e-3, 2e-2, 7), seeds="0,1", steps=50000,
            batch_size=128, log_every=500, queue_size=1000, queue_every=25, entropy_every=5000, grad_samples=128,
            eval_batch_size=1000, device="cuda", threads=None)


def _grid(spec) -> list[float]:
    a, b, n = spec
    return [float(v) for v in np.geomspace(a, b, int(n))]


def network_figures(ds, out: Path, window: float) -> list[str]:
    """Figures (a), (b), (e) of the module docstring; returns Markdown lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from thermonet.checks.base import log_mesh

    st = ds.thermo.stationary(window)
    sm = st.mean("seed")
    lr, wd = sm["lr"].values, sm["wd"].values
    lines = []

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, eta in enumerate(lr):
        ax1.loglog(eta * wd, sm["sigma2"].values[i], "o-", ms=4, label=f"lr {eta:.3g}")
    ax1.set_xlabel("eta * lambda")
    ax1.set_ylabel("sigma^2 (unit-norm noise level)")
    ax1.legend(fontsize=7)
    mesh = log_mesh(ax2, lr, wd, sm["T"].values.T)
    fig.colorbar(mesh, ax=ax2, label="T = eta sigma^2 / (2 rho^2)")
    ax2.set_xlabel("learning rate eta")
    ax2.set_ylabel("weight decay lambda")
    fig.savefig(out / "net_a_sigma2_temperature.png", dpi=110)
    lines += ["![sigma2 and T](net_a_sigma2_temperature.png)", "",
              "(a) sigma^2 against eta*lambda, one curve per learning rate; (b) temperature over the grid.", ""]

    fig = Figure(figsize=(14, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 4, i + 1) for i in range(4)]
    steps = ds["step"].values
    picks = [(0, 0), (len(lr) // 2, len(wd) // 2), (len(lr) - 1, len(wd) - 1)]
    for i, j in picks:
        label = f"lr {lr[i]:.3g}, wd {wd[j]:.3g}"
        for ax, var in zip(axes, ("loss", "rho", "sigma2", "test_accuracy")):
            ax.plot(steps, ds[var].isel(lr=i, wd=j, seed=0).values, label=label)
            ax.set_title(var, fontsize=10)
            ax.set_xlabel("step")
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.savefig(out / "net_e_training_curves.png", dpi=110)
    lines += ["![training curves](net_e_training_curves.png)", "",
              "(e) Training loss, radius, sigma^2 and test accuracy of three members (seed 0).", ""]
    return lines


def unstable_members(ds, window: float, max_rel_fluctuation: float = 0.15) -> list[str]:
    """Markdown lines naming the members outside the stable regime (no stationary state).

    A member counts as unstable when ρ² fluctuates by more than ``max_rel_fluctuation``
    (coefficient of variation over the stationary window) or its mean training loss is
    above ln 10, the loss of a uniform guess on MNIST-1D's 10 classes.
    """
    import math

    st = ds.thermo.stationary(window)
    cv = np.sqrt(st["rho_sq_rel_var"])
    flags = (cv > max_rel_fluctuation) | (st["U"] > math.log(10))
    if not bool(flags.any()):
        return [f"Every member is in the stable regime (CV of rho^2 <= {max_rel_fluctuation:g}, loss < ln 10)."]
    rows = ["Members outside the stable regime (the checks include them):", "",
            "| lr | wd | seed | CV of rho^2 | mean loss |", "|---|---|---|---|---|"]
    for idx in zip(*np.nonzero(flags.values)):
        point = flags[idx]
        rows.append(f"| {float(point['lr']):.3g} | {float(point['wd']):.3g} | {int(point['seed'])} | "
                    f"{float(cv[idx]):.2f} | {float(st['U'][idx]):.2f} |")
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (tests parse the GPU session's commands with it)."""
    parser = argparse.ArgumentParser(prog="network_ideal_gas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small CPU run (a couple of minutes)")
    parser.add_argument("--medium", action="store_true",
                        help="CPU run that reaches the stationary state (width 2, 5 x 5 grid x 2 seeds, 10k steps; "
                             "about 18 minutes on one core)")
    parser.add_argument("--out", default=None, help="report folder (default reports/network-ideal-gas[-quick])")
    parser.add_argument("--runs", default="runs", help="folder for the run store (default runs)")
    parser.add_argument("--device", default=None, help="override the mode's device (cpu, cuda, auto)")
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    parser.add_argument("--seeds", default=None, help="override the seeds (comma list)")
    parser.add_argument("--width", type=int, default=None, help="override the width multiplier")
    parser.add_argument("--compile", default=None, help="torch.compile mode for the training step (GPU)")
    parser.add_argument("--entropy-method", default="auto",
                        help="entropy estimator (default auto: elliptical when the queue is longer than D); "
                             "e.g. chord to compare with the paper's kind of estimator")
    parser.add_argument("--window", type=float, default=0.5, help="stationary window (fraction of logs)")
    parser.add_argument("--resume", action="store_true", help="continue a killed run instead of starting over")
    parser.add_argument("--report-only", action="store_true",
                        help="do not train: rewrite the report from the finished run store of this mode")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    import thermonet
    from thermonet.checks import get_check, run_checks
    from thermonet.runs.network import train
    from thermonet.errors import ThermonetError
    from thermonet.reports.report import write_report

    if args.quick and args.medium:
        parser.error("choose one of --quick and --medium")
    preset = "quick" if args.quick else "medium" if args.medium else "full"
    mode = dict({"quick": QUICK, "medium": MEDIUM, "full": FULL}[preset])
    for key in ("device", "steps", "seeds", "width"):
        if getattr(args, key) is not None:
            mode[key] = getattr(args, key)
    name = "network-ideal-gas" + ("" if preset == "full" else f"-{preset}")
    out = Path(args.out or f"reports/{name}")
    out.mkdir(parents=True, exist_ok=True)
    store = Path(args.runs) / f"{name}.zarr"
    options = dict(
        model="convnet-si", width=mode["width"], dataset="mnist1d", samples_per_class=mode["samples_per_class"],
        protocol="fixed-lr", grid={"lr": _grid(mode["lr"]), "wd": _grid(mode["wd"])}, seeds=mode["seeds"],
        steps=mode["steps"], batch_size=mode["batch_size"], log_every=mode["log_every"],
        queue_size=mode["queue_size"], queue_every=mode["queue_every"], entropy_every=mode["entropy_every"],
        grad_samples=mode["grad_samples"], eval_batch_size=mode["eval_batch_size"], device=mode["device"],
        threads=mode["threads"], compile=args.compile, entropy_method=args.entropy_method,
    )
    try:
        if args.report_only:
            if not store.exists():
                raise ThermonetError(f"--report-only: no run store at {store}; train it first (without --report-only)")
            from datetime import datetime

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attrs = thermonet.open_run(store).attrs
            if not attrs.get("complete"):
                raise ThermonetError(f"--report-only: {store} is not finished; continue it with --resume")
            seconds = (datetime.fromisoformat(attrs["finished"]) - datetime.fromisoformat(attrs["created"])).total_seconds()
        else:
            tic = time.perf_counter()
            train(store, resume=args.resume, overwrite=not args.resume, progress=True,
                  command="python studies/network_ideal_gas.py " + " ".join(argv or sys.argv[1:]), **options)
            seconds = time.perf_counter() - tic
        page, results = write_report([store], out, window=args.window, labels=[name])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = thermonet.open_run(store)
            # the optional checks a network needs: its noise level varies with eta*lambda
            checks = list(results[0]) + run_checks(ds.thermo, [get_check(n) for n in OPTIONAL], window=args.window)
        lines = [f"# {name}: scale-invariant ConvNet on MNIST-1D, fixed LR", "",
                 f"Run store `{store}`; {ds.attrs['dim']} trained parameters; "
                 f"{len(options['grid']['lr'])} x {len(options['grid']['wd'])} grid x "
                 f"{len(str(options['seeds']).split(','))} seed(s); {options['steps']} steps on "
                 f"{ds.attrs['device']} in {seconds:.0f} s. Checks and the standard figures: [report.md](report.md).",
                 "", "| check | verdict | key figure | value | summary |", "|---|---|---|---|---|"]
        for r in checks:
            lines.append(f"| {r.name} | {r.verdict} | {r.key or '-'} | {r.key_value:.3g} | {r.summary} |")
        lines += ["", *unstable_members(ds, args.window), "", *network_figures(ds, out, args.window)]
        (out / "network.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        summary = {"store": str(store), "seconds": seconds, "dim": int(ds.attrs["dim"]),
                   "checks": [r.to_dict() for r in checks]}
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    except ThermonetError as exc:
        print(f"network_ideal_gas: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {page} and {out / 'network.md'} ({seconds:.0f} s of training)")
    for r in checks:
        print(f"  {r.name:<19} {r.verdict:<5} {r.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
