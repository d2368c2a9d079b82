"""Markdown reports with figures like the paper's figure 1, and the check table.

:func:`write_report` runs the default checks on one or more runs and writes
``OUT/report.md`` plus PNG figures (matplotlib, Agg canvas; no pyplot state is touched):

(a) energy and entropy on the unit sphere against T, with the exact vMF curves
    (isotropic runs);
(b) the stationary radius against the second hyperparameter, measured vs SDE and
    discrete-time predictions (fixed sphere: lambda_eff vs the ideal-gas pressure);
(c) entropy against the second hyperparameter, one curve per value of the first;
(d) entropy against the first hyperparameter, one curve per value of the second;
(e) G - min G (F - min F) maps for a few members, and the excess map of every member;
plus the Maxwell residual map and the adiabat map when those checks ran, and for networks
with scale groups (h) every group's radius and temperature against both hyperparameters
and (i) the per-group checks' figures (group radii against their recursion, T_g/T_bar).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from thermonet.analysis.states import seed_mean
from thermonet.base.plotting import log_mesh, panels
from thermonet.checks import CheckResult, run_checks
from thermonet.errors import InputError
from thermonet.reports.tables import check_table, format_number, verdict_counts
from thermonet.store import MeasuredStates, as_measured, measured_kind, open_run
from thermonet.store.layout import describe_shards

__all__ = ["write_report", "report_figures", "check_table", "format_number"]

_MAX_CURVES = 6


# ---------------------------------------------------------------------- figures
def _entropy_curves(ax, sm: xr.Dataset, se: xr.DataArray | None, along: str, per: str) -> None:
    S = sm["S"]
    values = S[per].values
    pick = np.unique(np.linspace(0, values.size - 1, min(values.size, _MAX_CURVES)).round().astype(int))
    for i, idx in enumerate(pick):
        sel = {per: values[idx]}
        y = S.sel(sel).values
        x = S[along].values
        err = se.sel(sel).values if se is not None else None
        if err is not None and np.isfinite(err).any():
            ax.errorbar(x, y, yerr=err, fmt="o-", ms=3, lw=1, color=f"C{i}", label=f"{per}={values[idx]:.3g}")
        else:
            ax.plot(x, y, "o-", ms=3, lw=1, color=f"C{i}", label=f"{per}={values[idx]:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel(along)
    ax.set_ylabel("entropy S (nats)")
    ax.legend(fontsize=7, ncol=2)


def _gap_maps(axes, result: CheckResult) -> None:
    gap = result.details["gap"]
    hps = result.context["hyperparameters"]
    jdims = [f"{h}_j" for h in hps]
    n1, n2 = gap.sizes[hps[0]], gap.sizes[hps[1]]
    members = [(0, 0), (n1 // 2, n2 // 2), (n1 - 1, n2 - 1)][: len(axes)]
    for ax, (i, j) in zip(axes, members):
        m = gap.isel({hps[0]: i, hps[1]: j}).transpose(jdims[1], jdims[0])
        data = m.values
        with np.errstate(invalid="ignore"):
            shown = np.log10(data + 1e-3)
        mesh = log_mesh(ax, m[jdims[0]].values, m[jdims[1]].values, shown, cmap="magma_r")
        ax.get_figure().colorbar(mesh, ax=ax, label="log10((G_i - min G_i)/T_i + 1e-3)")
        x0, y0 = gap[hps[0]].values[i], gap[hps[1]].values[j]
        ax.plot([x0], [y0], "c*", ms=12, label="own state i")
        if np.isfinite(data).any():
            k = np.unravel_index(np.nanargmin(np.where(np.isnan(data), np.inf, data)), data.shape)
            ax.plot([m[jdims[0]].values[k[1]]], [m[jdims[1]].values[k[0]]], "wx", ms=9, mew=2, label="argmin")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(hps[0])
        ax.set_ylabel(hps[1])
        ax.set_title(f"{result.context.get('potential', 'G')} for {hps[0]}={x0:.3g}, {hps[1]}={y0:.3g}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", facecolor="0.8")


def report_figures(measured: MeasuredStates | xr.Dataset, results: Sequence[CheckResult],
                   window: float | int = 0.5) -> dict[str, tuple[object, str]]:
    """Figures for one run: ``{file stem: (Figure, caption)}``."""
    m = as_measured(measured)
    by_name = {r.name: r for r in results}
    states = m.stationary(window)
    hps = tuple(m.protocol.hyperparameters)
    figures: dict[str, tuple[object, str]] = {}

    # (a) energy and entropy vs T
    fig, (ax1, ax2) = panels(2)
    for ax, name, var, ylabel, logy in ((ax1, "vmf-energy", "U", "energy U (mean loss)", True),
                                        (ax2, "vmf-entropy", "S_sphere", "entropy S_1 (nats)", False)):
        r = by_name.get(name)
        if r is not None and r.verdict != "skip":
            r.plot(ax)
        else:
            T = states["T"].values.ravel()
            y = states[var].values.ravel()
            ax.plot(T, y, "o", ms=3)
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            ax.set_xlabel("temperature T")
            ax.set_ylabel(ylabel)
    figures["a_energy_entropy"] = (fig, "(a) Energy and entropy on the unit sphere against the temperature; "
                                        "lines: exact vMF at kappa = 1/T (isotropic runs).")

    # (b) radius / effective weight decay
    r = by_name.get("stationary-radius")
    if r is not None:
        fig, (ax,) = panels()
        r.plot(ax)
        what = ("effective weight decay lambda_eff (points) vs the ideal-gas (dashed) and discrete-time (solid) pressure"
                if m.protocol.pressure_expr() is None else
                "stationary radius (points) vs SDE (dashed) and discrete-time (solid) predictions")
        figures["b_radius"] = (fig, f"(b) {what}, against {hps[1]}, one colour per {hps[0]}.")

    # (c), (d) entropy curves
    if np.isfinite(states["S"]).any():
        sm = seed_mean(states)
        se = None
        if "seed" in states.dims and states.sizes["seed"] > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                se = states["S"].std("seed", ddof=1) / np.sqrt(states["S"].count("seed"))
        fig, (ax,) = panels()
        _entropy_curves(ax, sm, se, along=hps[1], per=hps[0])
        figures["c_entropy_vs_" + hps[1]] = (fig, f"(c) Entropy against {hps[1]}, one curve per {hps[0]} "
                                                  "(error bars: standard error over seeds).")
        fig, (ax,) = panels()
        _entropy_curves(ax, sm, se, along=hps[0], per=hps[1])
        figures["d_entropy_vs_" + hps[0]] = (fig, f"(d) Entropy against {hps[0]}, one curve per {hps[1]}.")

    # (e) potential maps
    r = by_name.get("potential-minimum")
    if r is not None and r.verdict != "skip":
        fig, axes = panels(4, width=4.6)
        _gap_maps(axes[:3], r)
        r.plot(axes[3])
        pot = r.context.get("potential", "G")
        figures["e_potential_maps"] = (fig, f"(e) {pot}_i(j) - min_j {pot}_i(j) in units of T_i for three members i "
                                            f"(star: own state, cross: minimiser) and, right, the excess of every "
                                            f"member's own state (crosses: own state not the minimiser).")
    if getattr(m, "groups", None) is not None:
        figures.update(_group_figures(m, by_name, window))
    for name, stem, caption in (("maxwell", "f_maxwell", "Maxwell relation residual on the fitted entropy surface, "
                                                          "divided by (D-1)/2."),
                                ("adiabat", "g_adiabat", "Seed-mean entropy with contours of the fitted surface and "
                                                          "the theory's adiabat direction at each grid point.")):
        r = by_name.get(name)
        if r is not None and r.verdict != "skip":
            fig, (ax,) = panels()
            r.plot(ax)
            figures[stem] = (fig, caption)
    return figures


_STYLES = ("-", "--", ":")


def _group_figures(m: MeasuredStates, by_name: dict[str, CheckResult],
                   window: float | int) -> dict[str, tuple[object, str]]:
    """(h) per-group radius and temperature against each hyperparameter; (i) the group checks."""
    gs = seed_mean(m.group_stationary(window))
    hps = tuple(m.protocol.hyperparameters)
    fig, axes = panels(2, 2, width=5.2, height=3.8)
    for row, (var, label) in enumerate((("rho", "radius rho_g"), ("T", "temperature T_g"))):
        for col, along in enumerate(hps):
            ax = axes[2 * row + col]
            other = hps[1 - col]
            values = gs[other].values
            picks = np.unique(np.linspace(0, values.size - 1, min(values.size, len(_STYLES))).round().astype(int))
            for i, group in enumerate(gs["group"].values):
                for style, idx in zip(_STYLES, picks):
                    y = gs[var].sel(group=group).isel({other: idx}).values
                    ax.plot(gs[along].values, y, style, marker="o", ms=3, lw=1, color=f"C{i % 10}",
                            label=f"{group} (D={int(gs['group_dim'].sel(group=group))})" if idx == picks[0] else None)
            for style, idx in zip(_STYLES, picks):
                ax.plot([], [], style, color="k", lw=1, label=f"{other}={values[idx]:.3g}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(along)
            ax.set_ylabel(label)
            ax.legend(fontsize=6, ncol=2)
    figures = {"h_groups": (fig, f"(h) Every scale group's stationary radius (top) and temperature T_g = eta_eff,g "
                                 f"sigma2_g/2 (bottom) against {hps[0]} (left) and {hps[1]} (right); one colour per "
                                 f"group, one line style per value of the other hyperparameter (seed means).")}
    checks = [by_name[n] for n in ("group-radius", "group-equipartition") if n in by_name
              and by_name[n].verdict != "skip"]
    if checks:
        fig, axes = panels(len(checks))
        for ax, result in zip(axes, checks):
            result.plot(ax)
        figures["i_group_checks"] = (fig, "(i) Per-group checks: measured group radii against their exact one-step "
                                          "recursion (identity), and T_g/T_bar per group (equipartition: 1).")
    return figures


# ---------------------------------------------------------------------- the page
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _metadata(ds: xr.Dataset | None, m: MeasuredStates, states: xr.Dataset) -> list[str]:
    rows = [("protocol", m.protocol.name), ("kind", measured_kind(m)), ("D", str(m.dim))]
    if ds is not None:
        for key in ("sigma", "energy", "seeds", "steps", "steps_done", "complete", "log_every", "entropy_every",
                    "entropy_method", "entropy_k", "device", "created", "thermonet_version", "command"):
            if key in ds.attrs:
                rows.append((key, str(ds.attrs[key])))
        rows += describe_shards(ds.attrs)
    rows.append(("hyperparameters", ", ".join(f"{h}: {states.sizes[h]} values in [{format_number(states[h].min())}, "
                                              f"{format_number(states[h].max())}]"
                                              for h in m.protocol.hyperparameters)))
    rows.append(("stationary window", f"steps {states.attrs.get('window_first_step')}-"
                                      f"{states.attrs.get('window_last_step')} "
                                      f"({states.attrs.get('window_logs')} logs)"))
    if ds is not None and "diverged_at" in ds.data_vars:
        from thermonet.store.accessor import format_diverged

        rows.append(("diverged members", format_diverged(ds.thermo.diverged(), limit=50) or "none"))
    return ["| | |", "|---|---|"] + [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]


def write_report(runs: Sequence[str | Path | xr.Dataset], out: str | Path, *, window: float | int = 0.5,
                 dpi: int = 110, labels: Sequence[str] | None = None) -> tuple[Path, list[list[CheckResult]]]:
    """Write ``out/report.md`` and its PNG figures for one or more runs.

    ``runs`` are store paths (opened with :func:`open_run`) or run Datasets; ``labels``
    name their sections and figure files (default: the path, or ``runN``). Returns the
    page's path and the check results of every run.
    """
    if not runs:
        raise InputError("report needs at least one run")
    if labels is not None and len(labels) != len(runs):
        raise InputError(f"got {len(labels)} labels for {len(runs)} runs")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# thermonet report", ""]
    all_results = []
    used: set[str] = set()
    for index, run in enumerate(runs, start=1):
        if isinstance(run, xr.Dataset):
            ds, label = run, f"run{index}"
        else:
            ds, label = open_run(run), str(run)
        if labels is not None:
            label = str(labels[index - 1])
        m = as_measured(ds)
        results = run_checks(m, window=window)
        all_results.append(results)
        states = m.stationary(window)
        prefix = _slug(Path(label.rstrip("/")).stem or label)
        if prefix in used or len(runs) > 1:
            prefix = f"{index:02d}-{prefix}"
        used.add(prefix)

        lines += [f"## {label}", "", *_metadata(ds, m, states), "",
                  f"Checks: {verdict_counts(results)}.", "",
                  check_table(results), ""]
        for stem, (fig, caption) in report_figures(m, results, window).items():
            name = f"{prefix}_{stem}.png"
            fig.savefig(out / name, dpi=dpi)
            lines += [f"![{stem}]({name})", "", caption, ""]
    lines += ["See docs/checks.md for what each check compares and how to read its figure.", ""]
    page = out / "report.md"
    page.write_text("\n".join(lines), encoding="utf-8")
    return page, all_results
