"""``thermonet check``: run the default checks on a run store and print a verdict table."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from thermonet.cli.options import add_json_option, add_run_argument, add_window_option, open_with_warnings
from thermonet.errors import InputError

EPILOG = """\
verdicts: pass, fail, inconclusive (the run cannot decide: z standard errors of the key
figure exceed the tolerance; the line below the table says how many more seeds or steps
would), skip (does not apply). evidence: theory (can fail if the thermodynamics is wrong)
or identity (holds by a symmetry or by construction for this system).

exit status:
  0  no check failed (inconclusive and skipped checks do not count)
  1  at least one check failed
  2  bad input: missing or damaged store, not a thermonet run, bad option

The window is a fraction in (0, 1] of the finished logs (e.g. 0.5, 1.0) or a whole
number of final logs (e.g. 200). See docs/checks.md for what each check compares.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "check",
        help="compare a run's stationary states with the theory (exit 0 pass, 1 fail, 2 bad input)",
        description=(
            "Open a run store, take the stationary states over the final window of the run and run\n"
            "the checks that apply to its protocol and kind: exact vMF energy and entropy (isotropic\n"
            "runs), stationary radius, potential minimum, Maxwell relation and adiabats. Prints a\n"
            "table (check, key figure, value, tolerance, verdict)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_argument(parser)
    add_window_option(parser)
    add_json_option(parser)
    parser.add_argument("--verify", action="store_true",
                        help="decode every chunk of every variable first (a damaged store is named, exit 2); "
                             "without it the variables the checks use are decoded")
    parser.add_argument("--also", metavar="CHECK", action="append", default=[],
                        help="also run optional checks by name, e.g. --also noise-trend "
                             "(repeatable, or a comma list: --also noise-trend,adiabat-noise-trend)")
    parser.add_argument("--tolerance", metavar="CHECK=VALUE", action="append", default=[],
                        help="override a check's tolerance, e.g. --tolerance maxwell=0.2 (repeatable)")
    parser.set_defaults(run=run)
    return parser


def _tolerances(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--tolerance {item!r}: use CHECK=VALUE, e.g. maxwell=0.2") from None
    return out


def run(args: argparse.Namespace) -> int:
    from thermonet.checks import default_checks, get_check, run_checks
    from thermonet.reports.tables import check_table, verdict_counts
    from thermonet.base.paths import writable
    from thermonet.store.accessor import format_diverged, parse_window
    from thermonet.store.layout import describe_shards

    window = parse_window(args.window)
    tolerances = _tolerances(args.tolerance)
    if args.json and args.json != "-":
        writable(args.json, "--json")
    ds = open_with_warnings(args.run_path, verify=args.verify)
    measured = ds.thermo
    diverged = measured.diverged()
    also = [name.strip() for item in args.also for name in item.split(",") if name.strip()]
    checks = default_checks(measured, {k: v for k, v in tolerances.items() if k not in also})
    checks += [get_check(name, **({"tolerance": tolerances[name]} if name in tolerances else {}))
               for name in also]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        results = run_checks(measured, checks, window=window)
    failed = any(r.passed is False for r in results)
    payload = {
        "run": str(args.run_path),
        "protocol": measured.protocol.name,
        "kind": measured.kind,
        "dim": measured.dim,
        "window": window,
        "steps_done": measured.steps_done,
        "complete": measured.complete,
        "passed": not failed,
        **({"shard_state": ds.attrs["shard_state"]} if "shard_state" in ds.attrs else {}),
        "counts": {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "inconclusive", "skip")},
        "checks": [r.to_dict() for r in results],
        "diverged": diverged,
    }
    if args.json == "-":
        print(json.dumps(payload, indent=2))
    else:
        shards = describe_shards(ds.attrs)
        if shards:
            complete = sum(s.get("status") == "complete" for s in ds.attrs["shard_state"])
            print(f"{args.run_path}: sharded run, {complete} of {len(shards)} shards complete; the checks use the "
                  f"{measured.steps_done} steps every shard finished")
            for label, text in shards:
                print(f"  {label}: {text}")
            print()
        print(check_table(results, markdown=False))
        if diverged:
            print(f"\n{format_diverged(diverged)}")
        print(f"\n{verdict_counts(results)} ({measured.protocol.name}, {measured.kind}, window {window})")
        for r in results:
            if r.verdict != "pass":
                print(f"  {r.name} [{r.verdict}]: {r.summary}" + (f"; {r.to_decide}" if r.to_decide else ""))
        if args.json:
            path = Path(args.json)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise InputError(f"--json {args.json}: cannot write ({exc.strerror})") from None
    return 1 if failed else 0
