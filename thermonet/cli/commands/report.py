"""``thermonet report``: a Markdown page with figures and the check table for one or more runs."""

from __future__ import annotations

import argparse
import warnings

from thermonet.cli.options import add_window_option

EPILOG = """\
writes OUT/report.md and PNG figures next to it:
  (a) energy and entropy vs T with the exact vMF curves   (b) radius vs weight decay
  (c) entropy vs the second hyperparameter                (d) entropy vs the first
  (e) G - min G maps   (f) Maxwell residual map   (g) adiabat map

exit status: 0 report written (whatever the check verdicts), 2 bad input.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "report",
        help="write a Markdown report with figures and the check table",
        description="Run the default checks on each RUN and write OUT/report.md with PNG figures.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_paths", metavar="RUN", nargs="+", help="run store(s) (Zarr directories)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    add_window_option(parser)
    parser.add_argument("--dpi", type=int, default=110, help="resolution of the PNG figures (default 110)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from thermonet.cli.options import open_with_warnings, unique_runs
    from thermonet.errors import InputError
    from thermonet.reports.report import write_report
    from thermonet.store.accessor import parse_window

    from thermonet.base.paths import writable

    window = parse_window(args.window)
    if not 10 <= args.dpi <= 1000:
        raise InputError(f"--dpi must lie in [10, 1000], got {args.dpi}")
    writable(args.out, "--out", kind="dir")
    args.run_paths = unique_runs(args.run_paths)
    datasets = [open_with_warnings(path) for path in args.run_paths]
    # Label sections by path: write_report takes Datasets, so name them here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        page, results = write_report(datasets, args.out, window=window, dpi=args.dpi, labels=args.run_paths)
    failed = sum(r.verdict == "fail" for rs in results for r in rs)
    total = sum(len(rs) for rs in results)
    print(f"wrote {page} ({len(datasets)} run(s), {total} checks, {failed} failed)")
    return 0
