"""The verdicts and the headline table as Markdown (README "Results" is this, pasted)."""

from __future__ import annotations

import math

from personagate.experiments.analysis.results import Results


def markdown(results: Results) -> str:
    lines = [f"**Stopped:** {results.facts.stopped}", ""] if results.facts.stopped else []
    lines += [
        "| finding | kind | verdict | why inconclusive | effect [95% CI] | p | n (excl.) | power / detectable "
        "| numbers behind it |",
        "|---|---|---|---|---|---:|---:|---|---|",
    ]
    for v in results.main_verdicts():
        effect = f"{_num(v.effect)} [{_num(v.ci_low)}, {_num(v.ci_high)}]"
        lines.append(
            f"| {v.claim} | {v.kind} | **{v.outcome}** | {v.reason} | {effect} | {_num(v.p_value)} | "
            f"{v.n} ({v.excluded}) | {_num(v.power)} / {_num(v.detectable)} | {v.detail} |"
        )
    for v in results.main_verdicts():
        if v.table:
            columns = [c for c in v.table[0] if c != "condition"]
            lines += ["", f"{v.finding}, each (layer, dose):", "", "| " + " | ".join(columns) + " |"]
            lines.append("|" + "---|" * len(columns))
            lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in v.table]
    robust = results.robustness()
    if robust:
        lines += ["", "Robustness (the same rules, sweep-mode measures, on each resample of the training prompts):", ""]
        lines += [f"- {finding}: {', '.join(outcome)}" for finding, outcome in robust.items()]
    lines += [
        "",
        "| condition | refusal | 95% CI | comply | incoherent | n | guard (NLL +) | over-refusal | flags |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in results.headline():
        r = s.rates
        low, high = r.refuse.interval
        lines.append(
            f"| {s.name} | {_pct(r.refusal_rate)} | [{_pct(low)}, {_pct(high)}] | "
            f"{_pct(r.comply.value)} | {_pct(r.incoherent_rate)} | {r.n} | {_num(s.nll_delta)} | "
            f"{_pct(r.over_refusal.value)} | {';'.join(s.flags)} |"
        )
    return "\n".join(lines)


def _num(value: float) -> str:
    return "" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.3f}"


def _pct(value: float) -> str:
    return "" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.1%}"
