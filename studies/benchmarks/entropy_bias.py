"""Bias of the spherical entropy estimators: von Mises–Fisher orientations, and shapes.

Two suites.

``--suite vmf`` (default; the original benchmark)
    For each dimension D, concentration κ, sample size N and mean orientation (the chart
    pole e₁, or a random direction), draw N samples from vMF(μ, κ) on S^{D−1}
    (scipy.stats.vonmises_fisher), estimate the entropy with
    ``spherical_entropy(method="angles")`` (paper) and ``method="chord"``, and report
    ``bias = estimate − exact`` in nats, averaged over ``--reps`` independent draws (± the
    standard deviation over draws). The exact entropy is ``vonmises_fisher(μ, κ).entropy()``,
    or the Bessel-function formula ``S₁ = −ln C_D(κ) − κ A_D(κ)`` if scipy fails.

    The two orientations use the same random_state, and scipy draws around a canonical
    axis and then rotates, so the e₁ and random-μ sample sets are exact rotations of each
    other: the chord method gives identical numbers for both, and any difference in the
    angle column is the orientation effect, not sampling noise.

    Defaults: D ∈ {3, 10, 30, 100, 300, 1000}, κ ∈ {10·D, 100·D}, N = 1000 for every D and
    N = 4000 for D ≤ 1000, 5 repetitions; about 3.5 minutes on 2 CPU cores
    (``--reps 2 --max-dim-large 100`` for a quick look).

``--suite shapes`` (issue 12: does the bias depend on the shape?)
    Distributions on S^{D−1} with exactly computed entropy
    (:mod:`thermonet.estimators.references`), all with the same total tangent variance
    ``τ²`` (``--total-variance``, default 0.1, i.e. typical angle 0.32 rad from the mean):
    vMF at two concentrations 10× apart; tangent Gaussians with power-law spectra
    ``λ_i ∝ i^{−α}`` (α = 0, 0.5, 1, 1.5; exponential map) and α = 1 through the gnomonic
    map; a stepped spectrum (10 % of the directions with 100× the variance); Student-t
    tangent laws (ν = 5, α = 0 and 1; heavy tails); a product of four spheres (vMF,
    Gaussian α = 1, Student t, stepped; passed with ``groups``); and, outside the issue's
    families, a uniform box in the tangent space (independent coordinates; not
    elliptical), a stress test for the model-based estimators. For each (D, N) cell it
    prints and writes ``error = estimate − exact`` (nats, mean ± sd over ``--reps`` draws),
    the error in % of |S|, the mean reported standard error and the time per estimate, for
    every method; the summary gives, per method and cell, the largest |error|/|S| and the
    spread (max − min mean error) over the issue's shapes, which are the targets of
    issue 12 at D = 1000, N = 2000 (≤ 2 % and ≤ 20 nats). ``gauss-knn-naive`` is the
    Gaussian reference exactly as first proposed (kNN difference against a synthetic
    sample drawn from N(0, Σ̂)); it is computed here only, to document why the library's
    ``gauss-knn`` whitens both samples instead.

Usage::

    .venv/bin/python studies/benchmarks/entropy_bias.py --out bias.md
    .venv/bin/python studies/benchmarks/entropy_bias.py --suite shapes \
        --cells 1000x2000 --reps 3 --out /tmp/shapes.md --figure docs/figures/entropy-bias.png
    .venv/bin/python studies/benchmarks/entropy_bias.py --suite shapes --docs   # full grid, into the docs

``--docs`` replaces the generated block of ``docs/entropy-estimators.md`` (between the
``entropy-shapes`` markers) with the table and writes the chart to
``docs/figures/entropy-bias.png``. ``--device cuda`` runs the estimators on a GPU (the
samples are drawn on the CPU), which makes D = 10⁵ feasible.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy.stats import vonmises_fisher

from thermonet.estimators import references, spherical_entropy


def vmf_entropy(mu: np.ndarray, kappa: float) -> tuple[float, str]:
    try:
        value = float(vonmises_fisher(mu, kappa).entropy())
        if math.isfinite(value):
            return value, "scipy"
    except Exception:  # noqa: BLE001 - fall back to the formula on any scipy failure
        pass
    return references.vmf_entropy(len(mu), kappa), "formula"


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for dim in args.dims:
        e1 = np.zeros(dim)
        e1[0] = 1.0
        rand = np.random.default_rng(args.seed + dim).normal(size=dim)
        rand /= np.linalg.norm(rand)
        ns = [args.n] + ([args.n_large] if args.n_large and dim <= args.max_dim_large else [])
        for factor in args.kappa_factors:
            kappa = float(factor * dim)
            for n in ns:
                for orient, mu in (("e1", e1), ("random", rand)):
                    exact, source = vmf_entropy(mu, kappa)
                    biases = {m: [] for m in ("angles", "chord")}
                    t0 = time.perf_counter()
                    for rep in range(args.reps):
                        x = vonmises_fisher(mu, kappa).rvs(
                            n, random_state=args.seed + 7919 * rep + 31 * dim + n
                        )
                        for m in biases:
                            biases[m].append(float(spherical_entropy(x, k=args.k, method=m)) - exact)
                    row = dict(
                        D=dim, kappa=kappa, N=n, orient=orient, exact=exact, source=source,
                        seconds=time.perf_counter() - t0,
                    )
                    for m, b in biases.items():
                        row[f"{m}_mean"] = float(np.mean(b))
                        row[f"{m}_sd"] = float(np.std(b, ddof=1)) if len(b) > 1 else float("nan")
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


HEADER = (
    "| D | κ | N | mean μ | exact S₁ | bias angles | bias chord | bias/(D−1) chord |\n"
    "|---:|---:|---:|:---|---:|---:|---:|---:|"
)


def format_row(r: dict) -> str:
    def pm(m: str) -> str:
        sd = r[f"{m}_sd"]
        return f"{r[f'{m}_mean']:+.3f} ± {sd:.3f}" if math.isfinite(sd) else f"{r[f'{m}_mean']:+.3f}"

    src = "" if r["source"] == "scipy" else " (formula)"
    per_dim = r["chord_mean"] / (r["D"] - 1)
    return (
        f"| {r['D']} | {r['kappa']:g} | {r['N']} | {r['orient']} | {r['exact']:.3f}{src} | "
        f"{pm('angles')} | {pm('chord')} | {per_dim:+.4f} |"
    )


# ------------------------------------------------------------------ shapes suite

#: shapes of issue 12 (targets apply to these); "box" is an extra stress test
ISSUE_SHAPES = (
    "vMF", "vMF x10", "Gauss a=0", "Gauss a=0.5", "Gauss a=1", "Gauss a=1.5",
    "Gauss a=1 gnomonic", "stepped", "t5 a=0", "t5 a=1", "product",
)
EXTRA_SHAPES = ("box",)
SHAPE_ORDER = ISSUE_SHAPES + EXTRA_SHAPES
ALL_METHODS = ("chord", "angles", "gauss", "gauss-knn-naive", "gauss-knn", "elliptical", "auto")
NEEDS_N_GT_D = ("gauss", "gauss-knn-naive", "gauss-knn", "elliptical")


def shape_cases(dim: int, total: float, seed: int, names=None):
    """``[(name, distribution)]`` on S^{D−1}, every one with total tangent variance ``total``."""
    from thermonet.estimators import references as ref

    rng = np.random.default_rng(seed + dim)
    mu = rng.standard_normal(dim)
    mu /= np.linalg.norm(mu)
    d = dim - 1
    # vMF: E θ² ≈ (D−1)/κ for concentrated vMF
    kappa = d / total
    t_shape = total * 3.0 / 5.0  # ν = 5: covariance = ν/(ν−2) × shape

    def product():
        sizes = [dim // 4] * 3 + [dim - 3 * (dim // 4)] if dim >= 12 else [dim // 2, dim - dim // 2]
        facs = []
        makers = [
            lambda m, g, tv: ref.VonMisesFisher(m, (g - 1) / tv),
            lambda m, g, tv: ref.TangentGaussian(m, ref.power_law_spectrum(g - 1, 1.0, tv)),
            lambda m, g, tv: ref.TangentStudentT(m, ref.power_law_spectrum(g - 1, 0.0, tv * 3 / 5), 5.0),
            lambda m, g, tv: ref.TangentGaussian(m, ref.stepped_spectrum(g - 1, 0.1, 100.0, tv)),
        ]
        for j, g in enumerate(sizes):
            m = rng.standard_normal(g)
            facs.append(makers[j % len(makers)](m / np.linalg.norm(m), g, total * (g - 1) / d))
        return ref.ProductOfSpheres(facs)

    makers = {
        "vMF": lambda: ref.VonMisesFisher(mu, kappa),
        "vMF x10": lambda: ref.VonMisesFisher(mu, 10.0 * kappa),
        "Gauss a=0": lambda: ref.TangentGaussian(mu, ref.power_law_spectrum(d, 0.0, total)),
        "Gauss a=0.5": lambda: ref.TangentGaussian(mu, ref.power_law_spectrum(d, 0.5, total)),
        "Gauss a=1": lambda: ref.TangentGaussian(mu, ref.power_law_spectrum(d, 1.0, total)),
        "Gauss a=1.5": lambda: ref.TangentGaussian(mu, ref.power_law_spectrum(d, 1.5, total)),
        "Gauss a=1 gnomonic": lambda: ref.TangentGaussian(
            mu, ref.power_law_spectrum(d, 1.0, total), chart="gnomonic"),
        "stepped": lambda: ref.TangentGaussian(mu, ref.stepped_spectrum(d, 0.1, 100.0, total)),
        "t5 a=0": lambda: ref.TangentStudentT(mu, ref.power_law_spectrum(d, 0.0, t_shape), 5.0),
        "t5 a=1": lambda: ref.TangentStudentT(mu, ref.power_law_spectrum(d, 1.0, t_shape), 5.0),
        "product": product,
        "box": lambda: ref.TangentUniformBox(mu, ref.power_law_spectrum(d, 0.0, total)),
    }
    names = names or (ISSUE_SHAPES + EXTRA_SHAPES)
    return [(name, makers[name]()) for name in names]


def gauss_knn_naive(x, groups, k: int = 1) -> float:
    """The first proposal: Gaussian fit + KL(samples) − KL(synthetic draw from N(0, Σ̂)).

    Benchmark-only; the synthetic sample's own covariance spectrum is spread further than
    Σ̂'s (Marchenko–Pastur), so the kNN bias does not cancel (see the docs).
    """
    import torch

    from thermonet.estimators.knn import _kl_from_distances, _knn_batched
    from thermonet.estimators.tangent import _gauss_entropy, _gauss_fit, log_map_coordinates

    u = torch.as_tensor(x, dtype=torch.float64)
    start, parts = 0, []
    for g in groups:
        blk = u[..., start : start + g]
        parts.append(blk / torch.linalg.vector_norm(blk, dim=-1, keepdim=True))
        start += g
    u = torch.cat(parts, dim=-1)
    coords, logjac = log_map_coordinates(u, tuple(groups))
    t = torch.cat(coords, dim=1)
    n, d = t.shape
    tc, chol = _gauss_fit(t, "gauss-knn-naive")
    h = _gauss_entropy(chol, n)
    gen = torch.Generator().manual_seed(n + 31 * d)
    y = torch.randn(n, d, generator=gen, dtype=torch.float64, device=t.device) @ chol.T / math.sqrt(n - 1)

    def kl(a):
        r = _knn_batched(a.unsqueeze(0), k, None, 256 * 2**20).reshape(n)
        return float(_kl_from_distances(r, k, d, "gauss-knn-naive"))

    return h + kl(t) - kl(y) + float(logjac.mean())


def parse_cell(text: str) -> tuple[int, ...]:
    """``DxN`` or ``DxNxREPS`` (draws for this cell instead of ``--reps``)."""
    try:
        parts = tuple(int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a cell is DxN or DxNxREPS, e.g. 1000x2000, got {text!r}") from exc
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"a cell is DxN or DxNxREPS, e.g. 1000x2000, got {text!r}")
    return parts


DEFAULT_CELLS = ("10x500", "10x2000", "100x500", "100x2000", "1000x500", "1000x2000x10",
                 "1000x10000", "10000x2000")


def run_shapes(args: argparse.Namespace) -> list[dict]:
    import warnings

    import torch

    from thermonet.estimators import EstimabilityWarning

    torch.set_num_threads(args.threads)
    rows = []
    for cell in args.cells:
        dim, n = cell[:2]
        reps = cell[2] if len(cell) == 3 else args.reps
        cases = shape_cases(dim, args.total_variance, args.seed, args.shapes)
        for ci, (name, dist) in enumerate(cases):
            exact = dist.entropy()
            groups = dist.groups
            d_eff = dim - len(groups)
            errs = {m: [] for m in args.methods}
            ses = {m: [] for m in args.methods}
            secs = {m: 0.0 for m in args.methods}
            for rep in range(reps):
                # seeded by the shape's position in the full list, so a run with
                # --shapes draws the same samples as the full run
                ss = np.random.SeedSequence([args.seed, dim, n, SHAPE_ORDER.index(name), rep])
                x = dist.sample(n, np.random.default_rng(ss))
                xt = torch.from_numpy(x).to(args.device)
                for m in args.methods:
                    if m in NEEDS_N_GT_D and n - 1 <= d_eff:
                        continue
                    if m == "auto" and n - 1 > d_eff and "elliptical" in args.methods:
                        continue  # identical to elliptical
                    if m == "angles" and dim > args.max_dim_angles:
                        continue
                    t0 = time.perf_counter()
                    if m == "gauss-knn-naive":
                        est, se = gauss_knn_naive(xt, groups, args.k), float("nan")
                    else:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", EstimabilityWarning)
                            est, se = spherical_entropy(
                                xt, k=args.k, method=m, groups=None if len(groups) == 1 else groups,
                                return_se=True)
                        est, se = float(est), float(se)
                    if args.device != "cpu":
                        torch.cuda.synchronize()
                    secs[m] += time.perf_counter() - t0
                    errs[m].append(est - exact)
                    ses[m].append(se)
            for m in args.methods:
                if not errs[m]:
                    continue
                e = np.array(errs[m])
                row = dict(
                    D=dim, N=n, d=d_eff, shape=name, issue_shape=name in ISSUE_SHAPES, exact=exact,
                    method=m, err_mean=float(e.mean()),
                    err_sd=float(e.std(ddof=1)) if e.size > 1 else float("nan"),
                    se_mean=float(np.nanmean(ses[m])) if np.isfinite(ses[m]).any() else float("nan"),
                    reps=int(e.size), seconds=secs[m] / e.size,
                )
                rows.append(row)
                print(format_shape_row(row), flush=True)
    return rows


SHAPE_HEADER = (
    "| D | N | shape | exact S₁ | method | error (nats) | error % of abs(S) | mean SE | draws | s/estimate |\n"
    "|---:|---:|:---|---:|:---|---:|---:|---:|---:|---:|"
)


def format_shape_row(r: dict) -> str:
    sd = f" ± {r['err_sd']:.2f}" if math.isfinite(r["err_sd"]) else ""
    se = f"{r['se_mean']:.2f}" if math.isfinite(r["se_mean"]) else "–"
    pct = 100.0 * r["err_mean"] / abs(r["exact"])
    extra = "" if r["issue_shape"] else " (extra)"
    return (f"| {r['D']} | {r['N']} | {r['shape']}{extra} | {r['exact']:.1f} | {r['method']} | "
            f"{r['err_mean']:+.2f}{sd} | {pct:+.2f} % | {se} | {r['reps']} | {r['seconds']:.2f} |")


def summarise(rows: list[dict]) -> list[dict]:
    """Per (D, N, method), over the issue's shapes: max |err|/|S|, spread, and the box."""
    out = []
    keys = sorted({(r["D"], r["N"], r["method"]) for r in rows},
                  key=lambda t: (t[0], t[1], ALL_METHODS.index(t[2]) if t[2] in ALL_METHODS else 99))
    for dim, n, m in keys:
        sel = [r for r in rows if (r["D"], r["N"], r["method"]) == (dim, n, m) and r["issue_shape"]]
        if not sel:
            continue
        errs = np.array([r["err_mean"] for r in sel])
        rel = np.array([abs(r["err_mean"]) / abs(r["exact"]) for r in sel])
        worst = sel[int(np.argmax(rel))]["shape"]
        box = [r for r in rows if (r["D"], r["N"], r["method"]) == (dim, n, m) and r["shape"] == "box"]
        out.append(dict(D=dim, N=n, method=m, shapes=len(sel), max_rel=float(rel.max()), worst=worst,
                        spread=float(errs.max() - errs.min()), max_abs=float(np.abs(errs).max()),
                        box_rel=abs(box[0]["err_mean"]) / abs(box[0]["exact"]) if box else float("nan")))
    return out


SUMMARY_HEADER = (
    "| D | N | method | shapes | max abs(error)/abs(S) | worst shape | max abs(error) (nats) | "
    "spread (nats) | targets (≤ 2 %, ≤ 20 nats) | box abs(error)/abs(S) |\n"
    "|---:|---:|:---|---:|---:|:---|---:|---:|:---|---:|"
)


def format_summary(s: dict) -> str:
    ok = "met" if s["max_rel"] <= 0.02 and s["spread"] <= 20.0 else "not met"
    box = f"{100 * s['box_rel']:.2f} %" if math.isfinite(s["box_rel"]) else "–"
    return (f"| {s['D']} | {s['N']} | {s['method']} | {s['shapes']} | {100 * s['max_rel']:.2f} % | "
            f"{s['worst']} | {s['max_abs']:.1f} | {s['spread']:.1f} | {ok} | {box} |")


def plot_shapes(rows: list[dict], path: str, target=(1000, 2000)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    methods = [m for m in ALL_METHODS if any(r["method"] == m for r in rows)]
    fig = Figure(figsize=(13, 5.2), constrained_layout=True)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.6, 1]))
    cell = [r for r in rows if (r["D"], r["N"]) == target]
    if not cell:  # fall back to the largest N > D cell
        cands = sorted({(r["D"], r["N"]) for r in rows if r["N"] > r["D"]})
        target = cands[-1] if cands else (rows[0]["D"], rows[0]["N"])
        cell = [r for r in rows if (r["D"], r["N"]) == target]
    shapes = [s for s in ISSUE_SHAPES + EXTRA_SHAPES if any(r["shape"] == s for r in cell)]
    cm = matplotlib.colormaps["tab10"]
    color = {m: cm(j) for j, m in enumerate(methods)}
    in_cell = [m for m in methods if any(r["method"] == m for r in cell)]
    width = 0.8 / max(1, len(in_cell))
    for j, m in enumerate(in_cell):
        ys, xs = [], []
        for i, s in enumerate(shapes):
            rr = [r for r in cell if r["shape"] == s and r["method"] == m]
            if rr:
                xs.append(i + (j - (len(in_cell) - 1) / 2) * width)
                ys.append(100.0 * rr[0]["err_mean"] / abs(rr[0]["exact"]))
        ax1.bar(xs, ys, width=width, color=color[m], label=m)
    ax1.axhspan(-2, 2, color="0.85", zorder=0, label="±2 % of |S| (target)")
    ax1.set_yscale("symlog", linthresh=0.1)
    ax1.set_xticks(range(len(shapes)))
    ax1.set_xticklabels(shapes, rotation=35, ha="right")
    ax1.set_ylabel("error / |S| (%)")
    ax1.set_title(f"D = {target[0]}, N = {target[1]}: error by shape")
    ax1.legend(fontsize=8, ncol=2)
    summ = summarise(rows)
    markers = {500: "s", 2000: "o", 10000: "^"}
    styles = {500: ":", 2000: "-", 10000: "--"}
    for m in methods:
        pts = sorted((s["D"], s["N"], s["max_rel"]) for s in summ if s["method"] == m)
        for n in sorted({p[1] for p in pts}):
            xy = [(p[0], 100 * p[2]) for p in pts if p[1] == n]
            ax2.plot(*zip(*xy), marker=markers.get(n, "x"), ls=styles.get(n, "-"), color=color[m],
                     label=m if n == 2000 else None)
    for n, mk in markers.items():
        ax2.plot([], [], marker=mk, ls=styles[n], color="0.4", label=f"N = {n}")
    ax2.axhline(2.0, color="k", lw=0.8, ls="--")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("D")
    ax2.set_ylabel("max over the issue's shapes of |error| / |S| (%)")
    ax2.set_title("worst shape vs D (N ≤ D: auto = upper bound)")
    ax2.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)


DOC_BEGIN = "<!-- entropy-shapes:begin (generated by studies/benchmarks/entropy_bias.py --suite shapes) -->"
DOC_END = "<!-- entropy-shapes:end -->"


def shapes_markdown(rows: list[dict], cmd: str, total: float, args) -> str:
    sources = getattr(args, "sources", None)
    if sources:
        head = ("Rows merged by `" + cmd.strip() + "` from (later runs replace the rows of the same "
                "D, N, shape and method): " + "; ".join(f"`{c}` ({e:.0f} s)" for c, e in sources)
                + f". {args.threads} CPU thread(s), device {args.device}, k = {args.k}, total "
                f"tangent variance τ² = {total}; the draws column gives the draws per cell.")
    else:
        head = (f"Command: `{cmd.strip()}` ({args.elapsed:.0f} s on {args.threads} CPU thread(s), "
                f"device {args.device}); k = {args.k}, total tangent variance τ² = {total}; the "
                f"draws column gives the draws per cell.")
    lines = [head, "",
             "Summary over the issue's shapes (all but `box`); targets at D = 1000, N = 2000: "
             "max |error|/|S| ≤ 2 % and spread ≤ 20 nats.", "", SUMMARY_HEADER]
    lines += [format_summary(s) for s in summarise(rows)]
    lines += ["", "Every cell: error = estimate − exact, mean ± sd over draws; mean SE = the "
              "standard error the estimator reports (`return_se=True`).", "", SHAPE_HEADER]
    lines += [format_shape_row(r) for r in rows]
    return "\n".join(lines) + "\n"


def update_docs(block: str, path: str) -> None:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if DOC_BEGIN in text and DOC_END in text:
        a = text.index(DOC_BEGIN)
        b = text.index(DOC_END) + len(DOC_END)
        text = text[:a] + DOC_BEGIN + "\n\n" + block + "\n" + DOC_END + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + DOC_BEGIN + "\n\n" + block + "\n" + DOC_END + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


# --------------------------------------------------------------------- speed suite


def load_baseline(rev: str):
    """``spherical_entropy`` as it was at git revision ``rev`` (imported from ``git show``)."""
    import importlib
    import subprocess
    import tempfile

    tmp = tempfile.mkdtemp(prefix="thermonet_baseline_")
    for name in ("knn", "sphere"):
        src = subprocess.run(["git", "show", f"{rev}:thermonet/estimators/{name}.py"], check=True,
                             capture_output=True, text=True).stdout
        src = src.replace("from thermonet.estimators.knn import", "from baseline_knn import")
        with open(f"{tmp}/baseline_{name}.py", "w", encoding="utf-8") as fh:
            fh.write(src)
    sys.path.insert(0, tmp)
    return importlib.import_module("baseline_sphere").spherical_entropy


def run_speed(args: argparse.Namespace) -> list[dict]:
    import warnings

    import torch

    from thermonet.estimators import EstimabilityWarning

    torch.set_num_threads(args.threads)
    baseline = load_baseline(args.baseline_rev) if args.baseline_rev else None
    rows = []
    for cell in args.cells:
        dim, n = cell[:2]
        (_, dist), = shape_cases(dim, args.total_variance, args.seed, ["Gauss a=1"])
        x = torch.from_numpy(dist.sample(n, np.random.default_rng(args.seed))).to(args.device)
        d = dim - 1
        jobs = []
        if baseline is not None:
            jobs.append((f"chord @ {args.baseline_rev} (before issue 12)",
                         lambda: baseline(x, k=args.k, method="chord")))
        jobs += [
            ("chord, float64 search", lambda: spherical_entropy(x, k=args.k, method="chord", search_dtype="float64")),
            ("chord, float32 search", lambda: spherical_entropy(x, k=args.k, method="chord", search_dtype="float32")),
            ("chord + split-half SE", lambda: spherical_entropy(x, k=args.k, method="chord", return_se=True)),
            ("auto (default)", lambda: spherical_entropy(x, k=args.k)),
            ("isotropic-bound", lambda: spherical_entropy(x, method="isotropic-bound")),
        ]
        if n - 1 > d:
            jobs += [("elliptical", lambda: spherical_entropy(x, method="elliptical")),
                     ("gauss", lambda: spherical_entropy(x, method="gauss")),
                     ("gauss-knn", lambda: spherical_entropy(x, k=args.k, method="gauss-knn"))]
        # the elliptical calibration draw is cached per (N, d): time it once, separately
        if n - 1 > d:
            from thermonet.estimators.tangent import _calibration

            _calibration.cache_clear()
            t0 = time.perf_counter()
            spherical_entropy(x, method="elliptical")
            first = time.perf_counter() - t0
        # repeats interleaved over the methods, so that a changing load on a shared
        # machine affects all of them alike; the best of the repeats is kept
        times: dict = {name: [] for name, _ in jobs}
        for _ in range(args.repeats):
            for name, fn in jobs:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", EstimabilityWarning)
                    fn()
                if args.device != "cpu":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
        base_t = None
        for name, _ in jobs:
            best = min(times[name])
            if base_t is None:
                base_t = best
            row = dict(D=dim, N=n, method=name, seconds=best, ratio=best / base_t,
                       all_seconds=times[name])
            rows.append(row)
            print(f"| {dim} | {n} | {name} | {best:.2f} | {best / base_t:.2f} | "
                  + " ".join(f"{t:.2f}" for t in times[name]) + " |", flush=True)
        if n - 1 > d:
            print(f"| {dim} | {n} | elliptical, first call (incl. the cached calibration draw) | "
                  f"{first:.2f} | {first / base_t:.2f} | {first:.2f} |", flush=True)
            rows.append(dict(D=dim, N=n, method="elliptical, first call (incl. calibration draw)",
                             seconds=first, ratio=first / base_t))
    return rows


SPEED_HEADER = ("| D | N | method | seconds (best of repeats) | ratio to the first row | all repeats (s) |\n"
                "|---:|---:|:---|---:|---:|:---|")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=("vmf", "shapes", "speed"), default="vmf",
                   help="vmf: the original orientation/κ table (default); shapes: issue 12 bias "
                        "table; speed: timings of every method")
    p.add_argument("--dims", type=int, nargs="+", default=[3, 10, 30, 100, 300, 1000])
    p.add_argument("--kappa-factors", type=float, nargs="+", default=[10.0, 100.0],
                   help="κ = factor · D (default 10 100)")
    p.add_argument("--n", type=int, default=1000, help="samples per set (default 1000)")
    p.add_argument("--n-large", type=int, default=4000,
                   help="second sample size, used for D <= --max-dim-large (0: off)")
    p.add_argument("--max-dim-large", type=int, default=1000)
    p.add_argument("--reps", type=int, default=None,
                   help="independent draws per cell (default 5 for vmf, 3 for shapes)")
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the table as Markdown to this file")
    g = p.add_argument_group("shapes suite")
    g.add_argument("--cells", type=parse_cell, nargs="+", default=[parse_cell(c) for c in DEFAULT_CELLS],
                   metavar="DxN", help="(D, N) cells, e.g. 1000x2000 (default: " + " ".join(DEFAULT_CELLS) + ")")
    g.add_argument("--shapes", nargs="+", choices=ISSUE_SHAPES + EXTRA_SHAPES, default=None,
                   help="subset of shapes (default: all)")
    g.add_argument("--methods", nargs="+", choices=ALL_METHODS, default=list(ALL_METHODS))
    g.add_argument("--total-variance", type=float, default=0.1,
                   help="total tangent variance τ² of every shape (default 0.1)")
    g.add_argument("--max-dim-angles", type=int, default=1000,
                   help="skip the (slow, orientation-dependent) angles method above this D")
    g.add_argument("--device", default="cpu", help="torch device for the estimators (cpu, cuda)")
    g.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    g.add_argument("--figure", help="write the chart (PNG) here")
    g.add_argument("--json", help="write the raw rows (JSON) here")
    g.add_argument("--from-json", nargs="+", metavar="JSON",
                   help="do not run: read rows from these --json files (a later file replaces "
                        "the rows of the same D, N, shape and method) and write the outputs")
    g.add_argument("--docs", action="store_true",
                   help="write the table into docs/entropy-estimators.md and the chart to "
                        "docs/figures/entropy-bias.png")
    g = p.add_argument_group("speed suite")
    g.add_argument("--speed-cells", type=parse_cell, nargs="+", default=[parse_cell("10000x4000")],
                   metavar="DxN", help="(D, N) cells to time (default 10000x4000)")
    g.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    g.add_argument("--baseline-rev", default="cb4d0e4",
                   help="git revision whose chord method is the baseline (default cb4d0e4, the "
                        "estimators before issue 12; '' to skip)")
    args = p.parse_args(argv)

    import shlex

    cmd = "python studies/benchmarks/entropy_bias.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.suite == "speed":
        print(f"{args.threads} CPU thread(s), device {args.device}, k = {args.k}; tangent Gaussian α = 1")
        print(SPEED_HEADER, flush=True)
        args.cells = args.speed_cells
        rows = run_speed(args)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(f"Command: `{cmd.strip()}`\n\n{SPEED_HEADER}\n")
                for r in rows:
                    reps = " ".join(f"{t:.2f}" for t in r.get("all_seconds", [r["seconds"]]))
                    fh.write(f"| {r['D']} | {r['N']} | {r['method']} | {r['seconds']:.2f} | "
                             f"{r['ratio']:.2f} | {reps} |\n")
        return 0
    if args.suite == "shapes":
        args.reps = 3 if args.reps is None else args.reps
        print(f"error = estimate − exact (nats), mean ± sd over {args.reps} draws, k = {args.k}")
        print(SHAPE_HEADER, flush=True)
        t0 = time.perf_counter()
        if args.from_json:
            import json

            merged: dict = {}
            args.sources = []
            for path in args.from_json:
                with open(path, encoding="utf-8") as fh:
                    data = json.load(fh)
                if isinstance(data, dict):
                    args.sources.append((data.get("command", path), data.get("elapsed", 0.0)))
                    data = data["rows"]
                for r in data:
                    merged[(r["D"], r["N"], r["shape"], r["method"])] = r
            order = {c: i for i, c in enumerate(dict.fromkeys((r["D"], r["N"]) for r in merged.values()))}
            rows = sorted(merged.values(), key=lambda r: (
                order[(r["D"], r["N"])], SHAPE_ORDER.index(r["shape"]),
                ALL_METHODS.index(r["method"])))
            for r in rows:
                print(format_shape_row(r))
        else:
            rows = run_shapes(args)
        args.elapsed = time.perf_counter() - t0
        print(f"total {args.elapsed:.1f} s\n")
        print(SUMMARY_HEADER)
        for s in summarise(rows):
            print(format_summary(s))
        block = shapes_markdown(rows, cmd, args.total_variance, args)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(block)
        import json
        import os

        figure = args.figure or ("docs/figures/entropy-bias.png" if args.docs else None)
        if figure:
            os.makedirs(os.path.dirname(figure) or ".", exist_ok=True)
            plot_shapes(rows, figure)
            print(f"chart: {figure}")
        json_path = args.json or ("docs/figures/entropy-bias.json" if args.docs else None)
        if json_path:
            with open(json_path, "w", encoding="utf-8") as fh:
                json.dump(dict(command=cmd.strip(), elapsed=args.elapsed, rows=rows), fh, indent=0)
        if args.docs:
            update_docs(block, "docs/entropy-estimators.md")
            print("updated docs/entropy-estimators.md")
        return 0

    args.reps = 5 if args.reps is None else args.reps
    print(f"bias = estimate − exact (nats), mean ± sd over {args.reps} draws, k = {args.k}")
    print(HEADER, flush=True)
    t0 = time.perf_counter()
    rows = run(args)
    total = time.perf_counter() - t0
    print(f"total {total:.1f} s")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(f"Command: `{cmd.strip()}` ({total:.0f} s)\n\n")
            fh.write(f"bias = estimate − exact (nats), mean ± sd over {args.reps} draws, k = {args.k}; "
                     "random μ drawn with seed + D.\n\n")
            fh.write(HEADER + "\n")
            for r in rows:
                fh.write(format_row(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
