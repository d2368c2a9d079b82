"""``thermonet fit-eos``: ideal vs real gas, every equation of state fitted to measured states."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from thermonet.errors import InputError

DESCRIPTION = """\
Fit every equation of state (ideal gas, virial, van der Waals, power-law compressibility)
to the measured stationary states (P, V, T) of one or more run stores and compare them.

The temperature uses ONE fitted constant noise level: T = sigma0^2 * eta_eff / 2, with
sigma0^2 fitted together with each equation (the measured radius enters eta_eff under
fixed LR). The ideal gas with each member's *measured* sigma^2 is not tested here: with the
same noise that sets the stationary radius, P V = N_R T is the radius relation itself
(THEORY section 3), exact by construction up to the discrete-time correction, so it would
prove nothing. With one constant sigma0^2 the ideal gas is a real prediction; a network
whose noise level changes with the hyperparameters shows up as Z = P V / (N_R T) != 1.

Several stores are pooled (one state per grid point and store, seed means); they must
share the protocol and D."""

EPILOG = """\
columns: k         fitted parameters including sigma0^2
         R2        of ln P
         AIC, BIC  n ln(RSS/n) + 2k, n ln(RSS/n) + k ln n (RSS of ln P); lowest is best
         dBIC      BIC minus the lowest BIC (> 2: positive, > 6: strong, > 10: very strong)
         LOO rmse  leave-one-out error of ln P: each state predicted by the fit to all others
         sigma0^2  the fitted constant noise level ("absorbed" where the equation's own
                   parameters cannot be told apart from it: the power law Z = z0 T^alpha)

--discrete-correction divides the discrete-time (full-gradient) term of THEORY section 3 out
of every measured state first (needs trace_sigma and grad_full_sq); without it, large steps
show up as an apparent real gas Z ~ 1 + G1^2/trSigma.

exit status: 0 done, 2 bad input (missing or damaged store, runs of different protocols
or D, unknown equation of state, too few states, bad option).
See docs/tutorial-real-gas.md.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "fit-eos",
        help="fit ideal and real-gas equations of state to measured states (one fitted noise level)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", metavar="RUN", nargs="+", help="run store(s) (Zarr directories written by thermonet)")
    parser.add_argument("--window", default="0.5",
                        help="final fraction of the logs (0 < f <= 1) or number of final logs (default 0.5)")
    parser.add_argument("--eos", default=None,
                        help="comma list of equations of state (default: ideal,virial,van-der-waals,power-law)")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the results as JSON to FILE ('-' for stdout instead of the table)")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="write the figure of Z = P V / (N_R T) over the grid with each fit")
    parser.add_argument("--discrete-correction", action="store_true",
                        help="divide the discrete-time term out of the measured states first")
    parser.add_argument("--no-loo", action="store_true", help="skip the leave-one-out refits (faster)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from thermonet.analysis.eos_fit import fit_equations_of_state, parse_eos_names
    from thermonet.store.accessor import parse_window

    window = parse_window(args.window)
    names = parse_eos_names(args.eos)
    from thermonet.base.paths import writable

    plot_path = writable(args.plot, "--plot") if args.plot else None
    if plot_path is not None and plot_path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise InputError(f"--plot {args.plot}: give a .png, .pdf or .svg file name")
    json_path = writable(args.json, "--json") if args.json and args.json != "-" else None
    from thermonet.cli.options import open_with_warnings, unique_runs

    args.runs = unique_runs(args.runs)
    datasets = [open_with_warnings(path) for path in args.runs]
    labels = [Path(p).name for p in args.runs]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in args.runs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        comparison = fit_equations_of_state(datasets, names, window=window, labels=labels, loo=not args.no_loo,
                                            discrete_correction=args.discrete_correction)
    payload = {"runs": [str(p) for p in args.runs], **comparison.to_dict()}
    if plot_path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig = comparison.plot()
        FigureCanvasAgg(fig)
        try:
            plot_path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(plot_path, dpi=110)
        except OSError as exc:
            raise InputError(f"--plot {args.plot}: cannot write ({exc.strerror})") from None
        payload["plot"] = str(plot_path)
    if args.json == "-":
        print(json.dumps(payload, indent=2))
        return 0
    st = comparison.states
    correction = ", discrete-time term divided out" if st.attrs.get("discrete_correction") else ""
    print(f"fit-eos: {st.sizes['state']} states ({comparison.protocol}, D={comparison.dim:g}, "
          f"{len(args.runs)} run(s), window {window}{correction}); T = sigma0^2 * eta_eff / 2 with one fitted "
          "sigma0^2\n")
    print(comparison.table())
    print()
    print(comparison.summary())
    if plot_path is not None:
        print(f"figure: {plot_path}")
    if json_path is not None:
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--json {args.json}: cannot write ({exc.strerror})") from None
    return 0
