"""The free-energy temperature as text and figure: :func:`format_sweep`, :func:`plot_sweep`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from thermonet.analysis.free_energy import SweepTemperatures, potential_label
from thermonet.analysis.hull import STATUS_NO_POSITIVE, HullTemperatures
from thermonet.errors import InputError

__all__ = ["default_temperatures", "format_sweep", "plot_sweep"]


def _fmt(value: float, width: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "-"
    elif isinstance(value, float) and math.isinf(value):
        text = "inf" if value > 0 else "-inf"
    else:
        text = f"{value:.4g}"
    return text.rjust(width) if width else text


def format_sweep(sweep: SweepTemperatures) -> str:
    """The intervals table and the fit of one sweep, as plain text."""
    lr_name = sweep.lr_name
    energy = sweep.intervals.energy
    s_name = "S_sphere" if sweep.potential == "sphere" else "S"
    header = [lr_name, "U", s_name] + ([energy] if energy != "U" else []) + ["T_low", "T_high", "T_hull",
                                                                               "T_protocol", "status"]
    rows = []
    for run, t_proto in zip(sweep.intervals.runs, sweep.T_protocol):
        row = [_fmt(run.lr), _fmt(run.U), _fmt(run.S)] + ([_fmt(run.E)] if energy != "U" else [])
        row += [_fmt(run.T_low), _fmt(run.T_high), _fmt(run.T), _fmt(float(t_proto)), run.status]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [f"{sweep.label}: {potential_label(sweep.potential)}"]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    off = [r for r in sweep.intervals.runs if not r.on_hull]
    if off:
        lines.append(f"off the hull (never the free-energy minimiser): {lr_name} = "
                     + ", ".join(f"{r.lr:g}" for r in off))
    for v, why in sweep.skipped:
        lines.append(f"skipped {lr_name} = {v:g}: {why}")
    fit = sweep.fit.describe(lr_name) if sweep.fit is not None else f"none ({sweep.fit_error})"
    lines.append("power law: " + fit)
    return "\n".join(lines)


def default_temperatures(intervals: HullTemperatures, count: int = 4) -> list[float]:
    """A few temperatures for the free-energy panel: point estimates of evenly spread bounded runs."""
    t = [r.T for r in intervals.runs if r.bounded]
    if not t:
        t = [r.T for r in intervals.runs if math.isfinite(r.T)]
    if len(t) <= count:
        return t
    idx = np.unique(np.round(np.linspace(0, len(t) - 1, count)).astype(int))
    return [t[i] for i in idx]


def plot_sweep(sweeps: Sequence[SweepTemperatures], path: str | Path, *,
               temperatures: Sequence[float] | None = None, dpi: int = 110) -> Path:
    """Figure: a row per sweep with (a) U and S against LR, (b) the T intervals with the
    power law and the protocol T, (c) ``E − T S − min`` against LR for a few T with the
    minima starred. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = list(sweeps)
    if not sweeps:
        raise InputError("nothing to plot")
    fig, axes = plt.subplots(len(sweeps), 3, figsize=(14, 3.8 * len(sweeps)), squeeze=False)
    for row, sweep in zip(axes, sweeps):
        iv = sweep.intervals
        lr = iv.lr
        s_name = "S_sphere" if sweep.potential == "sphere" else "S"
        ax = row[0]
        ax.plot(lr, iv.column("U"), "o-", color="tab:blue", label="U (loss)")
        ax.set_xscale("log")
        ax.set_xlabel(sweep.lr_name)
        ax.set_ylabel("U", color="tab:blue")
        ax2 = ax.twinx()
        ax2.plot(lr, iv.column("S"), "s--", color="tab:orange", label=s_name)
        ax2.set_ylabel(s_name, color="tab:orange")
        ax.set_title(f"{sweep.label}: loss and entropy")

        ax = row[1]
        lo, hi = iv.column("T_low"), iv.column("T_high")
        t = iv.T
        finite_vals = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (lo, hi, t, sweep.T_protocol)])
        floor = finite_vals.min() / 10 if finite_vals.size else 1e-3
        ceil = finite_vals.max() * 10 if finite_vals.size else 1.0
        for r in iv.runs:
            if not r.on_hull or r.status == STATUS_NO_POSITIVE:
                ax.plot([r.lr], [floor], "x", color="tab:red")
                continue
            a = r.T_low if r.T_low > 0 else floor
            b = r.T_high if math.isfinite(r.T_high) else ceil
            ax.plot([r.lr, r.lr], [a, b], "-", color="tab:gray", lw=3, alpha=0.6)
        ok = np.isfinite(t) & (t > 0)
        both = ok & iv.bounded
        ax.plot(lr[both], t[both], "o", color="black", label="T hull (geometric mean)")
        if np.any(ok & ~both):
            ax.plot(lr[ok & ~both], t[ok & ~both], "o", mfc="none", color="black", label="one-sided bound")
        if np.any(np.isfinite(sweep.T_protocol)):
            ax.plot(lr, sweep.T_protocol, "^", color="tab:green", ms=5, label="T protocol (η_eff σ²/2)")
        if sweep.fit is not None:
            grid = np.geomspace(lr.min(), lr.max(), 50)
            ax.plot(grid, sweep.fit(grid), "k--", lw=1, label=f"T ∝ {sweep.lr_name}^{sweep.fit.alpha:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor, ceil)
        ax.set_xlabel(sweep.lr_name)
        ax.set_ylabel("T")
        ax.set_title("admissible T intervals (x: none)")
        ax.legend(fontsize=7)

        ax = row[2]
        temps = list(temperatures) if temperatures else default_temperatures(iv)
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(temps), 1)))
        fe = iv.free_energy(temps) if temps else np.zeros((0, lr.size))
        for curve, temp, color in zip(fe, temps, colors):
            span = float(np.ptp(curve)) or 1.0
            scaled = (curve - curve.min()) / span
            ax.plot(lr, scaled, "-", color=color, label=f"T = {temp:.3g}")
            j = int(np.argmin(curve))
            ax.plot(lr[j], 0.0, "*", color=color, ms=14, mec="black")
        ax.set_xscale("log")
        ax.set_xlabel(sweep.lr_name)
        name = {"gibbs": "G", "helmholtz": "F", "sphere": "F"}[sweep.potential]
        ax.set_ylabel(f"({name}_T - min) / (max - min)")
        ax.set_title(f"{potential_label(sweep.potential)} (stars: minima)")
        if temps:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
