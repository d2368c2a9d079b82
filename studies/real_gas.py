"""Real-gas study: ideal vs real-gas equations of state on the isotropic model and a network.

The paper (004, §7.3, §8) finds that for networks the noise level sigma**2 is not constant,
so the ideal gas holds only with a *measured* temperature, and suggests a real gas as the
extension. This study makes the comparison on measured data:

1. the isotropic model (``thermonet simulate isotropic``) under all three protocols, where
   sigma**2 is constant and the ideal gas must describe the states;
2. a small network ensemble trained on CPU (MNIST-1D, ``mlp-si`` of width 1, D = 896,
   fixed LR; ``--no-network`` skips it), where the noise level varies.

For every run it reports: the noise trend sigma**2 ~ x**beta (x = eta*lambda, eta~ or
eta/rho_0**2); every equation of state fitted with ONE constant noise level (AIC, BIC,
leave-one-out error), on the raw states and with the discrete-time term divided out; V1
(measured radius / lambda_eff vs the SDE and discrete-time predictions); V3 as the paper's
table 4; and processes on the measured data (adiabat, isotherm). It writes
``OUT/report.md`` with figures and ``OUT/numbers.json``.

Run it as ``thermonet study real-gas`` or ``python studies/real_gas.py``. Defaults take
about 10 minutes on a 2-core CPU (``--quick`` about 2).
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

from thermonet.errors import ThermonetError

ISOTROPIC_PROCESSES = {
    # protocol: [(label, process name, start hyperparameters, to)]
    "fixed-lr": [("adiabat (lr = const)", "Adiabatic", {"lr": 0.01, "wd": 0.001}, {"wd": 0.1}),
                 ("isotherm (lr*wd = const)", "Isothermal", {"lr": 0.1, "wd": 0.001}, {"wd": 0.1})],
    "fixed-elr": [("adiabat (elr^2/wd = const)", "Adiabatic", {"elr": 0.01, "wd": 0.001}, {"wd": 0.1}),
                  ("isotherm (elr = const)", "Isothermal", {"elr": 0.01, "wd": 0.001}, {"wd": 0.1})],
    "fixed-sphere": [("isotherm (lr/rho0^2 = const)", "Isothermal", {"lr": 0.02, "sphere_radius": 0.5}, {"V": 0.5}),
                     ("isochore (rho0 = 0.5)", "Isochoric", {"lr": 0.001, "sphere_radius": 0.5}, {"T": 0.2})],
}


def isotropic_grids(points: int) -> dict[str, dict[str, np.ndarray]]:
    """The paper's ranges (as in studies/ideal_gas.py)."""
    rates = np.geomspace(1e-3, 1e-1, points)
    return {"fixed-lr": {"lr": rates, "wd": rates}, "fixed-elr": {"elr": rates, "wd": rates},
            "fixed-sphere": {"lr": rates, "sphere_radius": np.geomspace(0.5, 1.0, points)}}


def network_grid(points: int) -> dict[str, np.ndarray]:
    return {"lr": np.geomspace(0.1, 1.0, points), "wd": np.geomspace(3e-3, 3e-2, points)}


def network_processes(grid: dict[str, np.ndarray]):
    """The ideal gas's adiabat (C_V = N_R: lr constant) and isotherm (lr*wd constant) through the grid.

    The adiabat uses the ideal gas with C_V = (D-1)/2 (the theory's network gas, paper
    004 §7.1) rather than a heat capacity fitted to the loss, and is judged on S only: a
    network's U is its training loss, which that gas does not model.
    """
    lr, wd = grid["lr"], grid["wd"]
    mid = float(lr[len(lr) // 2])
    return [("adiabat of the ideal gas (lr = const)", "Adiabatic", {"lr": mid, "wd": float(wd[0])},
             {"wd": float(wd[-1])}, {"ideal_heat_capacity": True, "energy_tolerance": None}),
            ("isotherm (lr*wd = const)", "Isothermal", {"lr": float(lr[-1]), "wd": float(wd[0])},
             {"wd": float(wd[-1])}, {})]


def predicted_power_law_exponent(protocol: str, beta: float) -> float:
    """Exponent alpha of Z = z0 T_unit**alpha implied by sigma2 ~ x**beta.

    With one constant sigma0**2, Z = sigma2 / sigma0**2. Fixed ELR and sphere: T_unit = x/2,
    so alpha = beta. Fixed LR: T_unit = eta/(2 rho**2) with rho**4 ~ eta sigma2/lambda, so
    T_unit ~ (eta lambda)**((1 - beta)/2) and alpha = 2 beta / (1 - beta).
    """
    return 2 * beta / (1 - beta) if protocol == "fixed-lr" else beta


# ---------------------------------------------------------------------- analysis of one run
def _figure(width=5.5, height=4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out: Path, name: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(out / name, dpi=100)
    return name


def analyse(store: Path, label: str, processes, out: Path) -> dict:
    """Every comparison of the study on one store; returns numbers and figure names."""
    import thermonet
    from thermonet.checks import MaxwellCheck, StationaryRadiusCheck
    from thermonet.analysis.eos_fit import fit_equations_of_state
    from thermonet.analysis.processes import measure_process
    from thermonet.analysis.noise import noise_trend
    from thermonet.theory import processes as proc_mod

    ds = thermonet.open_run(store)
    m = ds.thermo
    protocol = m.protocol.name
    result: dict = {"label": label, "store": str(store), "protocol": protocol, "kind": m.kind, "dim": m.dim,
                    "figures": {}}

    trend = noise_trend(ds)
    result["noise_trend"] = {"variable": trend.variable, **trend.trend.as_dict(), "exponents": trend.exponents}
    fig = _figure()
    trend.plot(fig.add_subplot())
    result["figures"]["noise_trend"] = _save(fig, out, f"{label}_noise_trend.png")

    for key, correction in (("eos_raw", False), ("eos_corrected", True)):
        comparison = fit_equations_of_state([ds], window=0.5, labels=[label], discrete_correction=correction)
        result[key] = comparison.to_dict()
        result[key]["table"] = comparison.table(markdown=True)
        result[key]["delta_bic"] = comparison.delta("bic")
        result[key]["delta_aic"] = comparison.delta("aic")
        result["figures"][key] = _save(comparison.plot(), out, f"{label}_{key}_Z.png")
    beta = result["noise_trend"]["slope"]
    fitted = result["eos_corrected"]["fits"].get("power-law", {}).get("parameters", {}).get("alpha")
    result["power_law_alpha"] = {"fitted_corrected": fitted,
                                 "fitted_raw": result["eos_raw"]["fits"].get("power-law", {})
                                 .get("parameters", {}).get("alpha"),
                                 "from_noise_trend": predicted_power_law_exponent(protocol, beta)}

    v1 = StationaryRadiusCheck().run(ds)
    result["v1"] = {"verdict": v1.verdict, "summary": v1.summary, "numbers": v1.numbers}
    fig = _figure()
    v1.plot(fig.add_subplot())
    result["figures"]["v1"] = _save(fig, out, f"{label}_v1.png")
    maxwell = MaxwellCheck().run(ds)
    result["maxwell"] = {"verdict": maxwell.verdict, "summary": maxwell.summary, "numbers": maxwell.numbers,
                         "result": maxwell}

    result["processes"] = []
    for name, cls, start, to, *rest in processes:
        options = dict(rest[0]) if rest else {}
        if options.pop("ideal_heat_capacity", False):
            from thermonet.theory.energy import ConstantHeatCapacity
            from thermonet.theory.eos import IdealGas
            from thermonet.theory.system import ThermodynamicSystem

            sigma2 = float(np.nanmean(m.seed_mean()["sigma2"].values))
            options["system"] = ThermodynamicSystem(protocol=m.protocol, eos=IdealGas(dim=m.dim),
                                                    energy=ConstantHeatCapacity(dim=m.dim, c_v=(m.dim - 1) / 2),
                                                    dim=m.dim, sigma2=sigma2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mp = measure_process(getattr(proc_mod, cls)(), ds, start=start, to=to, num=15, **options)
        except ThermonetError as exc:
            result["processes"].append({"name": name, "error": str(exc)})
            continue
        entry = {"name": name, "verdict": mp.verdict, "summary": mp.summary(), "numbers": mp.numbers,
                 "start": start, "to": to,
                 "path": {h: [float(mp.path.states[h].values[0]), float(mp.path.states[h].values[-1])]
                          for h in m.protocol.hyperparameters}}
        if m.kind == "network" and cls == "Adiabatic" and protocol == "fixed-lr":
            # With sigma2 ~ (eta lambda)**beta the ideal-gas entropy (D-1)/2 ln(eta sigma2/2) + c changes
            # along eta = const by N_R * beta * ln(lambda_end/lambda_start).
            wd = entry["path"]["wd"]
            entry["noise_trend_prediction"] = (m.dim - 1) / 2 * beta * math.log(wd[1] / wd[0])
        fig = _figure(15, 4.2)
        mp.plot(fig)
        entry["figure"] = _save(fig, out, f"{label}_process_{cls.lower()}.png")
        result["processes"].append(entry)
    return result


# ---------------------------------------------------------------------- the report
def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def write_report(results: list[dict], out: Path, meta: dict) -> Path:
    from thermonet.checks.maxwell import maxwell_table

    lines = ["# Real-gas study: ideal vs real-gas equations of state", "",
             f"Generated by `{meta['command']}` in {meta['seconds']:.0f} s "
             f"(thermonet {meta['version']}).", "",
             "Temperatures in the equation-of-state fits use ONE fitted constant noise level, "
             "T = sigma0^2 * eta_eff / 2 (the ideal gas with each member's measured sigma^2 is the V1 radius "
             "relation itself and would prove nothing). *Raw*: the measured states; *corrected*: the "
             "discrete-time (full-gradient) term of THEORY §3 divided out with the measured trSigma and G1^2.", ""]
    if meta.get("network_note"):
        lines += [f"**Network ensemble:** {meta['network_note']}", ""]
    lines += ["## Summary", "",
              "| run | kind | D | sigma2 trend beta (x) | best BIC raw | dBIC ideal raw | best BIC corrected | "
              "dBIC ideal corrected | Z (measured sigma2) corrected | alpha fitted / from beta |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        nt = r["noise_trend"]
        raw, cor = r["eos_raw"], r["eos_corrected"]
        zm = cor["Z_measured_T"]
        alpha = r["power_law_alpha"]
        lines.append(f"| {r['label']} | {r['kind']} | {r['dim']} | {_fmt(nt['slope'])} +/- {_fmt(nt['slope_se'], 2)} "
                     f"({nt['variable']}) | {raw['best']['bic']} | {_fmt(raw['delta_bic']['ideal'])} | "
                     f"{cor['best']['bic']} | {_fmt(cor['delta_bic']['ideal'])} | "
                     f"[{zm['min']:.3f}, {zm['max']:.3f}] | {_fmt(alpha['fitted_corrected'])} / "
                     f"{_fmt(alpha['from_noise_trend'])} |")
    lines += ["", "dBIC ideal: BIC of the ideal gas minus the lowest BIC (0: the ideal gas wins; > 6: strong "
              "evidence against it). alpha: exponent of the power-law compressibility Z = z0 T^alpha fitted to "
              "the corrected states, and the exponent the noise trend implies (2 beta/(1 - beta) for fixed LR, "
              "beta otherwise).", ""]

    lines += ["## V1: SDE vs discrete-time prediction", "",
              "| run | key figure | SDE max / mean rel. error | discrete max / mean | large-step third: SDE vs "
              "discrete mean abs. error | correction beats SDE |", "|---|---|---|---|---|---|"]
    for r in results:
        n = r["v1"]["numbers"]
        suffix = "_pressure" if r["protocol"] == "fixed-sphere" else ""
        lines.append(f"| {r['label']} | {r['v1']['verdict']} | {_fmt(n.get(f'max_rel_error{suffix}_sde'))} / "
                     f"{_fmt(n.get(f'mean_rel_error{suffix}_sde'))} | "
                     f"{_fmt(n.get(f'max_rel_error{suffix}_discrete'))} / "
                     f"{_fmt(n.get(f'mean_rel_error{suffix}_discrete'))} | "
                     f"{_fmt(n.get('large_step_mean_abs_error_sde'))} vs "
                     f"{_fmt(n.get('large_step_mean_abs_error_discrete'))} | "
                     f"{'yes' if n.get('correction_beats_sde') == 1.0 else 'no'} |")
    lines += ["", "## V3: Maxwell relations (as the paper's table 4)", "",
              maxwell_table({r["label"]: r["maxwell"]["result"] for r in results}), ""]

    lines += ["## Processes on the measured states", "",
              "| run | process | path | dS measured | dS predicted | dU measured | dU predicted | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for p in r["processes"]:
            if "error" in p:
                lines.append(f"| {r['label']} | {p['name']} | - | - | - | - | - | {p['error']} |")
                continue
            n = p["numbers"]
            path = ", ".join(f"{h} {a:.3g}->{b:.3g}" for h, (a, b) in p["path"].items())
            extra = (f" (noise trend predicts {p['noise_trend_prediction']:.3g})"
                     if "noise_trend_prediction" in p else "")
            lines.append(f"| {r['label']} | {p['name']} | {path} | {n['delta_S_measured']:.4g} +/- "
                         f"{n['delta_S_measured_se']:.2g}{extra} | {n['delta_S_predicted']:.4g} | "
                         f"{n['delta_U_measured']:.3g} | {n['delta_U_predicted']:.3g} | {p['verdict']} |")
    lines.append("")

    for r in results:
        lines += [f"## {r['label']} ({r['protocol']}, {r['kind']}, D = {r['dim']})", "",
                  f"Noise trend: sigma2 = {r['noise_trend']['prefactor']:.4g} x^{r['noise_trend']['slope']:.4f} "
                  f"(+/- {r['noise_trend']['slope_se']:.2g}), x = {r['noise_trend']['variable']}, "
                  f"R2 {_fmt(r['noise_trend']['r2'], 4)}.", "",
                  f"![noise trend]({r['figures']['noise_trend']})", "",
                  "Equations of state, raw states:", "", r["eos_raw"]["table"], "",
                  f"![Z raw]({r['figures']['eos_raw']})", "",
                  "Equations of state, discrete-time term divided out:", "", r["eos_corrected"]["table"], "",
                  f"![Z corrected]({r['figures']['eos_corrected']})", "",
                  f"V1: {r['v1']['summary']}", "", f"![V1]({r['figures']['v1']})", "",
                  f"V3: {r['maxwell']['summary']}", ""]
        for p in r["processes"]:
            if "figure" in p:
                lines += [f"{p['name']}: {p['summary']}", "", f"![{p['name']}]({p['figure']})", ""]
    page = out / "report.md"
    page.write_text("\n".join(lines), encoding="utf-8")
    return page


def _jsonable(results: list[dict]) -> list[dict]:
    from thermonet.checks.base import json_safe

    clean = []
    for r in results:
        r = dict(r)
        r["maxwell"] = {k: v for k, v in r["maxwell"].items() if k != "result"}
        clean.append(json_safe(r))
    return clean


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thermonet study real-gas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports/real-gas", help="report folder (default reports/real-gas)")
    parser.add_argument("--runs", default="runs/real-gas", help="folder for the run stores (default runs/real-gas)")
    parser.add_argument("--points", type=int, default=7, help="isotropic grid points per hyperparameter (default 7)")
    parser.add_argument("--steps", type=int, default=2_000_000, help="isotropic steps per run (default 2e6)")
    parser.add_argument("--protocols", default="fixed-lr,fixed-elr,fixed-sphere", help="isotropic protocols")
    parser.add_argument("--no-network", action="store_true", help="skip the network ensemble")
    parser.add_argument("--net-points", type=int, default=5, help="network grid points per hyperparameter (5)")
    parser.add_argument("--net-steps", type=int, default=20_000, help="network SGD steps (default 20000)")
    parser.add_argument("--net-seeds", default="0,1", help="network seeds (default 0,1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the network (default 1)")
    parser.add_argument("--device", default="cpu", help="network device (default cpu)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller everything (5 points, 4e5 steps; network 4x4, 1 seed, 8000 steps)")
    parser.add_argument("--reuse", action="store_true", help="reuse finished stores in --runs instead of rerunning")
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.steps, args.net_points, args.net_steps, args.net_seeds = 5, 400_000, 4, 8000, "0"
    if args.points < 4 or args.net_points < 3:
        parser.error("--points must be >= 4 and --net-points >= 3 (fits and Maxwell surfaces need a 2-D grid)")

    import thermonet
    from thermonet.runs.isotropic import simulate

    start_time = time.perf_counter()
    runs_dir, out = Path(args.runs), Path(args.out)
    runs_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["thermonet study real-gas", *(argv if argv is not None else sys.argv[1:])])
    results, meta = [], {"command": command, "version": thermonet.__version__}

    def finished(path: Path) -> bool:
        if not (args.reuse and path.exists()):
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return bool(thermonet.open_run(path).attrs.get("complete"))
        except ThermonetError:
            return False

    grids = isotropic_grids(args.points)
    for protocol in [p for p in args.protocols.split(",") if p]:
        if protocol not in grids:
            parser.error(f"unknown protocol {protocol!r}")
        store = runs_dir / f"isotropic-{protocol}.zarr"
        if not finished(store):
            print(f"[real-gas] simulating {protocol}: {args.points}x{args.points}, {args.steps:,} steps", flush=True)
            simulate(protocol=protocol, dim=3, grid=grids[protocol], seeds=[0], steps=args.steps, out=store,
                     overwrite=True, command=command)
        print(f"[real-gas] analysing {store}", flush=True)
        results.append(analyse(store, f"isotropic-{protocol}", ISOTROPIC_PROCESSES[protocol], out))

    if args.no_network:
        meta["network_note"] = "skipped (--no-network): the findings cover the isotropic model only."
    else:
        store = runs_dir / "network-mlp-fixed-lr.zarr"
        grid = network_grid(args.net_points)
        seeds = [int(s) for s in args.net_seeds.split(",")]
        try:
            if not finished(store):
                from thermonet.runs.network import train

                print(f"[real-gas] training mlp-si (width 1) on MNIST-1D, fixed LR, {args.net_points}x"
                      f"{args.net_points} x {len(seeds)} seed(s), {args.net_steps:,} steps on {args.device}",
                      flush=True)
                t0 = time.perf_counter()
                train(store, overwrite=True, progress=True, command=command, model="mlp-si", width=1,
                      dataset="mnist1d", protocol="fixed-lr", grid=grid, seeds=seeds, steps=args.net_steps,
                      grad_samples=16, device=args.device, threads=args.threads)
                meta["network_seconds"] = time.perf_counter() - t0
            print(f"[real-gas] analysing {store}", flush=True)
            results.append(analyse(store, "network-mlp-fixed-lr", network_processes(grid), out))
            meta["network_note"] = (f"mlp-si (width 1, D = 896) on MNIST-1D, fixed LR, lr in [0.1, 1], wd in "
                                    f"[3e-3, 3e-2], {args.net_points}x{args.net_points} grid x {len(seeds)} seed(s), "
                                    f"{args.net_steps:,} steps on {args.device}"
                                    + (f" ({meta['network_seconds']:.0f} s)" if "network_seconds" in meta else ""))
        except ThermonetError as exc:
            meta["network_note"] = f"the network ensemble could not be trained ({exc}); isotropic model only."
            print(f"[real-gas] {meta['network_note']}", file=sys.stderr)

    meta["seconds"] = time.perf_counter() - start_time
    page = write_report(results, out, meta)
    (out / "numbers.json").write_text(json.dumps({"meta": meta, "runs": _jsonable(results)}, indent=2) + "\n")
    print()
    for r in results:
        raw, cor = r["eos_raw"], r["eos_corrected"]
        print(f"{r['label']}: sigma2 slope {r['noise_trend']['slope']:.3g}; best BIC raw {raw['best']['bic']} "
              f"(ideal dBIC {raw['delta_bic']['ideal']:.3g}), corrected {cor['best']['bic']} "
              f"(ideal dBIC {cor['delta_bic']['ideal']:.3g}); V1 {r['v1']['verdict']}; Maxwell "
              f"{r['maxwell']['verdict']}")
    print(f"\nreport: {page}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ThermonetError as exc:
        print(f"thermonet: error: {exc}", file=sys.stderr)
        sys.exit(2)
