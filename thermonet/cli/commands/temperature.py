"""``thermonet temperature``: temperature intervals from free-energy minimisation over an LR sweep."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from thermonet.cli.options import add_json_option, add_run_argument, add_window_option
from thermonet.errors import InputError

EPILOG = """\
For each value of the other hyperparameter (or only the one given with --at), the runs of
the learning-rate sweep (seed means over the final window) are placed in the (S, E) plane;
run i minimises E - T S over the sweep for T between the slopes of the lower convex hull
on either side of it. E is U + P V (Gibbs, fixed-LR and fixed-ELR runs: the pressure is
the fixed weight decay) or U (Helmholtz, fixed sphere); see docs/free-energy-temperature.md.

columns: T_low, T_high  the admissible interval ('-': none; 0 and inf: open ends)
         T_hull         sqrt(T_low T_high), or the one finite bound of an open interval
         T_protocol     eta_eff sigma^2 / 2 from the measured radius and noise
         status         interval | (0, T_high] | [T_low, inf) | off-hull | no-positive-T
The power law T = A LR^alpha is a weighted fit in log space to the bounded intervals.

exit status: 0 done, 2 bad input (missing or damaged store, no entropy, bad option).
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "temperature",
        help="temperature intervals from free-energy minimisation over a learning-rate sweep",
        description=(
            "Read a run store, average the stationary states over seeds and, for the learning-rate sweep, "
            "print each run's admissible temperature interval (lower convex hull of the (S, E) points), "
            "the runs off the hull and a power-law fit T = A * LR^alpha."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_argument(parser)
    add_window_option(parser)
    parser.add_argument("--at", metavar="NAME=VALUE", action="append", default=[],
                        help="analyse only the sweep at this value of the other hyperparameter, e.g. --at wd=0.01")
    parser.add_argument("--potential", default="auto", choices=("auto", "gibbs", "helmholtz", "sphere"),
                        help="energy coordinate: gibbs (U+PV vs S), helmholtz (U vs S), sphere (U vs S_sphere); "
                             "auto picks gibbs for fixed-LR/ELR runs, helmholtz for the fixed sphere")
    add_json_option(parser)
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="write a figure: loss and entropy, T intervals with the fit, free energy vs LR")
    parser.add_argument("--temperatures", metavar="T1,T2,...", default=None,
                        help="temperatures of the free-energy curves in the plot (default: a few hull estimates)")
    parser.set_defaults(run=run)
    return parser


def _temperatures(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--temperatures {text!r}: give comma-separated numbers, e.g. 0.001,0.01") from None
    if not values or any(not (v > 0 and v < float("inf")) for v in values):
        raise InputError(f"--temperatures {text!r}: every temperature must be a finite number > 0")
    return values


def run(args: argparse.Namespace) -> int:
    from thermonet.cli.options import open_with_warnings
    from thermonet.analysis.free_energy import sweep_temperatures
    from thermonet.reports.free_energy import format_sweep, plot_sweep
    from thermonet.store.accessor import parse_window

    window = parse_window(args.window)
    temperatures = _temperatures(args.temperatures)
    if args.plot is not None and Path(args.plot).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise InputError(f"--plot {args.plot!r}: give a file name ending in .png, .pdf or .svg")
    if args.plot is not None:
        from thermonet.base.paths import writable

        writable(args.plot, "--plot")
    ds = open_with_warnings(args.run_path)
    sweeps = sweep_temperatures(ds, window, at=args.at or None, potential=args.potential)
    states = ds.thermo.stationary(window)
    payload = {
        "run": str(args.run_path),
        "protocol": states.attrs["protocol"],
        "kind": states.attrs["kind"],
        "dim": states.attrs["dim"],
        "window": window,
        "window_first_step": states.attrs["window_first_step"],
        "window_last_step": states.attrs["window_last_step"],
        "seeds": int(states.sizes.get("seed", 1)),
        "sweeps": [s.to_dict() for s in sweeps],
    }
    if args.json == "-":
        json.dump(payload, sys.stdout, indent=2)
        print()
    else:
        print(f"{args.run_path}: {payload['protocol']}, {payload['kind']}, D = {payload['dim']}, window {window} "
              f"(steps {payload['window_first_step']}..{payload['window_last_step']}), "
              f"{payload['seeds']} seed(s) averaged")
        for sweep in sweeps:
            print()
            print(format_sweep(sweep))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.plot:
        path = plot_sweep(sweeps, args.plot, temperatures=temperatures)
        print(f"wrote {path}", file=sys.stderr if args.json == "-" else sys.stdout)
    return 0
