"""The verdicts as a plain-text table for the terminal: what ``reproduce`` and ``run`` print last."""

from __future__ import annotations

import math

from personagate.experiments.analysis.results import Results


def verdict_table(results: Results, width: int = 100) -> str:
    """One line per finding of the main scope: finding, kind, verdict, effect [CI], and why when inconclusive."""
    lines = []
    if results.facts.stopped:
        lines.append(f"STOPPED: {results.facts.stopped}; nothing was tested, so no verdict was computed.")
    rows = [("finding", "kind", "verdict", "effect [95% CI]", "reason")]
    for v in results.main_verdicts():
        effect = "" if math.isnan(v.effect) else f"{v.effect:+.3f} [{_n(v.ci_low)}, {_n(v.ci_high)}]"
        rows.append((v.finding, v.kind, v.outcome, effect, v.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip()[: max(width, 40) + 60])
    return "\n".join(lines)


def _n(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:+.3f}"
