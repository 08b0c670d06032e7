"""The verdicts and the headline table as Markdown (README "Results" is this, pasted)."""

from __future__ import annotations

import math

from personagate.experiments.analysis.results import Results


def markdown(results: Results) -> str:
    lines = ["| finding | verdict | effect [95% CI] | p | n | numbers behind it |", "|---|---|---|---:|---:|---|"]
    for v in results.main_verdicts():
        effect = f"{_num(v.effect)} [{_num(v.ci_low)}, {_num(v.ci_high)}]"
        lines.append(f"| {v.claim} | **{v.outcome}** | {effect} | {_num(v.p_value)} | {v.n} | {v.detail} |")
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
