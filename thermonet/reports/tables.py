"""Tables of check results: the verdict table of ``thermonet check`` and the reports."""

from __future__ import annotations

import math
from collections.abc import Sequence

from thermonet.checks import CheckResult
from thermonet.checks.base import VERDICTS

__all__ = ["check_table", "format_number", "verdict_counts"]


def format_number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    value = float(value)
    if value == 0:
        return "0"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"


def _value(r: CheckResult) -> str:
    if not r.key:
        return "-"
    value = format_number(r.key_value)
    return value if not math.isfinite(r.key_se) else f"{value} ± {format_number(r.key_se)}"


def verdict_counts(results: Sequence[CheckResult]) -> str:
    """``"3 passed, 1 failed, 1 inconclusive, 1 skipped; evidence: 3 of 4 decided theory checks passed"``."""
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    theory = [r for r in results if r.evidence == "theory" and r.verdict in ("pass", "fail")]
    passed = sum(r.verdict == "pass" for r in theory)
    return (f"{counts['pass']} passed, {counts['fail']} failed, {counts['inconclusive']} inconclusive, "
            f"{counts['skip']} skipped; evidence: {passed} of {len(theory)} decided theory checks passed "
            f"(identities are not counted)")


def check_table(results: Sequence[CheckResult], markdown: bool = True) -> str:
    """The check table: name, evidence kind, key figure, value ± s.e., tolerance, verdict
    (and, in Markdown, the summary)."""
    if markdown:
        lines = ["| check | evidence | key figure | value ± s.e. | tolerance | verdict | summary |",
                 "|---|---|---|---|---|---|---|"]
        for r in results:
            summary = r.summary + (f" ({r.to_decide})" if r.to_decide else "")
            lines.append(f"| {r.name} | {r.evidence} | {r.key or '-'} | {_value(r)} | {format_number(r.tolerance)} | "
                         f"**{r.verdict}** | {summary.replace('|', '/')} |")
        return "\n".join(lines)
    rows = [("check", "evidence", "key figure", "value ± s.e.", "tolerance", "verdict")]
    for r in results:
        rows.append((r.name, r.evidence, r.key or "-", _value(r), format_number(r.tolerance), r.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
