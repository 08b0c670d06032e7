"""A self-contained HTML report from a run's results: the verdicts first, then the headline table,
the plots (inline PNG), the agreement of the measures, sample replies of every group, every condition.

Model output is untrusted text: everything taken from the store is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

from personagate.experiments.analysis.agreement import (
    judge_agreement,
    mode_agreement,
    paper_regex_agreement,
    screening_agreement,
)
from personagate.experiments.analysis.results import Results
from personagate.experiments.analysis.summary import SUMMARY_COLUMNS, ConditionSummary
from personagate.experiments.analysis.verdict import Verdict
from personagate.experiments.storage.records import Row
from personagate.outputs import write_atomically
from personagate.report.figures import named_figures
from personagate.report.profile import profile_html

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1150px;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:.82rem;width:100%;margin:.5rem 0 1rem}th,td{border-bottom:1px solid #ddd;
padding:.25rem .45rem;text-align:left;vertical-align:top}th{background:#f4f4f4}tr.flag td{background:#fff3f0}
td.reproduced{background:#e6f4ea;font-weight:600}td.not-reproduced{background:#fde8e8;font-weight:600}
td.inconclusive{background:#fff8e1;font-weight:600}
.plots{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.plots figure{margin:0}.plots img{width:100%}
pre{white-space:pre-wrap;background:#f8f8f8;padding:.5rem;border-radius:4px;font-size:.8rem;margin:.25rem 0}
details{margin:.25rem 0}summary{cursor:pointer}.muted{color:#777}
.stopped{background:#fde8e8;padding:.5rem;border-radius:4px}
"""
COMPACT_COLUMNS = (
    "condition",
    "mode",
    "n",
    "refusal_rate",
    "ci_low",
    "ci_high",
    "comply_rate",
    "incoherent_rate",
    "coherent_refusal_rate",
    "nll_delta",
    "over_refusal",
    "flags",
)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return html.escape("" if value is None else str(value))


def render(results: Results, samples: int = 3) -> str:
    esc = html.escape
    info, facts = results.info, results.facts
    layout = facts.layout
    injection = layout.injection if layout else "?"
    n_layers = layout.n_layers if layout else "?"
    late = f"[{layout.late[0]}, {layout.late[1]}]" if layout else ""
    banner = (
        f"<p class='stopped'><b>Stopped before the test stage:</b> {esc(facts.stopped)}. Nothing was tested, "
        "so no verdict was computed; try smaller persona doses (persona.coeffs) or a later injection layer.</p>"
        if facts.stopped
        else ""
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>personagate report</title>"
        f"<style>{_CSS}</style></head><body>{banner}<h1>personagate study report</h1>",
        f"<p>Model <b>{esc(info.model)}</b> · protocol {esc(info.protocol)} · spec {esc(info.spec_source)}"
        f" · persona injected at layer {esc(str(injection))} of {esc(str(n_layers))} with coefficient "
        f"{esc(str(facts.persona_coeff))} ({esc(facts.persona_coeff_rule)}) · late window {esc(late)}"
        f" · personagate {esc(info.package_version)}</p>",
        "<h2>Verdicts</h2><p class='muted'>Each finding is a rule declared in the spec before the run "
        "(statistic, margin, alpha) and computed from the measurements below.</p>",
        _verdict_table(results.main_verdicts()),
        _classification_tables(results.main_verdicts()),
        _calibration_table(results),
    ]
    robust = results.robustness()
    if robust:
        cells = "".join(
            f"<tr><td>{esc(f)}</td><td>{esc(', '.join(o))}</td><td>{sum(x == o[0] for x in o)}/{len(o)} agree</td></tr>"
            for f, o in robust.items()
        )
        parts.append(
            "<h3>Robustness over resamples of the training prompts</h3><p class='muted'>The same rules on "
            "directions re-extracted from each resample, every condition measured in the sweep mode "
            f"(like with like).</p><table><tr><th>finding</th><th>outcomes</th><th>agreement</th></tr>{cells}</table>"
        )
    parts.append("<h2>Headline conditions</h2>" + _condition_table(results.headline(), COMPACT_COLUMNS))
    made = named_figures(results)
    if made:
        parts.append("<h2>Plots</h2><div class='plots'>")
        for _, (caption, data) in made:
            png = base64.b64encode(data).decode()
            parts.append(
                f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{png}'>"
                f"<figcaption class='muted'>{esc(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    if results.judge_verdicts:
        judged = [v for v in results.judge_verdicts if v.scope.is_main]
        parts.append(
            "<h2>Verdicts under the judge's labels</h2><p class='muted'>The same rules, every judged reply labelled "
            f"by the judge ({esc(results.spec.scoring.judge)}) instead of the phrase detector; incoherent replies "
            "stay incoherent. Where the two tables differ, the detector and the judge disagree on enough replies to "
            "move a verdict.</p>" + _verdict_table(judged)
        )
    parts.append(_agreements(results))
    parts.append(profile_html(results.profile))
    parts.append("<h2>Sample replies</h2>" + _samples(results, samples))
    every = tuple(c for c in SUMMARY_COLUMNS if c != "description")
    parts.append(
        "<h2>Every condition</h2><p class='muted'>Rates on the test prompts (validation prompts for the "
        "coefficient sweep) with Wilson 95% intervals; nll_delta = the coherence guard (increase of the "
        "neutral passages' NLL, nats/token); over-refusal on safe prompts.</p>"
        + _condition_table(results.summary, every)
    )
    parts.append("</body></html>")
    return "".join(parts)


def _verdict_table(verdicts: Sequence[Verdict]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(v.claim)}</td><td>{esc(v.kind)}</td>"
        f"<td class='{v.outcome.replace(' ', '-')}'>{esc(v.outcome)}</td><td>{esc(v.reason)}</td>"
        f"<td>{_cell(v.effect)} [{_cell(v.ci_low)}, {_cell(v.ci_high)}]</td><td>{_cell(v.p_value)}</td>"
        f"<td>{v.n} ({v.excluded} excl.)</td><td>{_cell(v.power)} / {_cell(v.detectable)}</td>"
        f"<td>{esc(v.statistic)}</td><td>{esc(v.detail)}</td></tr>"
        for v in verdicts
    )
    return (
        "<p class='muted'>kind: <i>as claimed</i> tests the paper's claim as stated, <i>specific</i> whether it is "
        "specific to the compliant persona. n: coherent prompt pairs (pairs with an incoherent reply left out; "
        "a verdict stands only if counting them as refusals agrees). power / detectable: the test's power at the "
        "declared margin and expected discordance, and the smallest effect it finds with power 0.8.</p>"
        "<table><tr><th>finding</th><th>kind</th><th>verdict</th><th>why inconclusive</th><th>effect [CI]</th>"
        "<th>p</th><th>n</th><th>power / detectable</th><th>test</th>"
        f"<th>numbers behind it</th></tr>{rows}</table>"
    )


def _classification_tables(verdicts: Sequence[Verdict]) -> str:
    """A rule's per-condition table (the reintroduction classes), under its finding's name."""
    esc = html.escape
    parts = []
    for v in verdicts:
        if not v.table:
            continue
        columns = [c for c in v.table[0] if c != "condition"]
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join(
            f"<tr title='{esc(str(row.get('condition', '')))}'>"
            + "".join(f"<td>{_cell(row[c])}</td>" for c in columns)
            + "</tr>"
            for row in v.table
        )
        parts.append(f"<h3>{esc(v.finding)}: each (layer, dose)</h3><table><tr>{head}</tr>{body}</table>")
    return "".join(parts)


def _calibration_table(results: Results) -> str:
    """The reintroduction doses found per layer (fractions of the residual norm) and those left out."""
    calibration = results.facts.calibration
    if not calibration:
        return ""
    esc = html.escape
    doses, missing = calibration.get("doses", {}), calibration.get("missing", {})
    rows = "".join(
        f"<tr><td>{esc(layer)}</td><td>{esc(', '.join(f'{t:g}: x{f:.3g}' for t, f in found))}</td>"
        f"<td>{esc('; '.join(missing.get(layer, [])))}</td></tr>"
        for layer, found in doses.items()  # type: ignore[union-attr]
    )
    return (
        "<h3>Reintroduction doses, calibrated on harmless validation prompts</h3><p class='muted'>Per layer: the "
        "induced refusal rate on harmless prompts and the fraction of the residual norm that induces it.</p>"
        f"<table><tr><th>layer</th><th>doses (rate: fraction)</th><th>left out</th></tr>{rows}</table>"
    )


def _condition_table(summaries: Sequence[ConditionSummary], columns: Sequence[str]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for s in summaries:
        row = s.as_row()
        cells = "".join(f"<td>{_cell(row[c])}</td>" for c in columns)
        body.append(f"<tr{' class=flag' if s.flags else ''} title='{esc(s.condition.description)}'>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _agreements(results: Results) -> str:
    esc = html.escape
    parts = []
    sweep = results.spec.generation.sweep
    screened = mode_agreement(results.measurements, sweep)
    if screened:
        cells = ", ".join(f"{esc(k)} {a / n:.1%} (n={n})" for k, (a, n) in sorted(screened.items()))
        parts.append(
            f"<p>The sweep mode ({esc(sweep)}) vs the generated reply's label, the same arm measured both ways "
            f"on the same prompts, by role: {cells}</p>"
        )
    screening = screening_agreement(results.measurements)
    if screening:
        cells = ", ".join(f"{esc(k)} {a / n:.1%} (n={n})" for k, (a, n) in sorted(screening.items()))
        parts.append(f"<p>First-token score vs the generated reply's label, by condition group: {cells}</p>")
    regex = paper_regex_agreement(results.measurements)
    if regex:
        cells = ", ".join(f"{esc(k)} {a / n:.1%} (n={n})" for k, (a, n) in sorted(regex.items()))
        parts.append(
            "<p>The paper's refusal rule (13 regular expressions over the first 500 characters) vs our label, "
            f"by condition group (its rate per condition: the paper_regex_rate column): {cells}</p>"
        )
    judged = judge_agreement(results.measurements)
    if judged:
        cells = ", ".join(f"{esc(k)} {a / n:.1%} (n={n})" for k, (a, n) in sorted(judged.items()))
        parts.append(f"<p>Phrase detector vs the judge on generated replies, agreement by group: {cells}</p>")
    return "<h2>Agreement of the measures</h2>" + "".join(parts) if parts else ""


def _samples(results: Results, per_group: int) -> str:
    """A few replies of every group (generated conditions), with their labels."""
    esc = html.escape
    by_group: dict[str, list[Row]] = {}
    counts: dict[str, int] = {}
    for c in results.measurements.conditions:
        if c.mode == "generate":
            counts[c.group.value] = counts.get(c.group.value, 0) + 1
            replies = [r for r in results.measurements.replies(c) if r.text is not None]
            by_group.setdefault(c.group.value, []).extend(replies)
    parts = []
    for group, replies in by_group.items():
        if not replies:
            continue
        parts.append(f"<details><summary>{esc(group)} ({counts[group]} condition(s))</summary>")
        for r in replies[:: max(1, len(replies) // per_group)][:per_group]:
            parts.append(f"<pre>[{esc(r.label or '')}] {esc(r.condition)}: {esc(r.text or '')}</pre>")
        parts.append("</details>")
    return "".join(parts) or "<p class='muted'>No generated replies.</p>"


def write_report(results: Results, samples: int = 3) -> Path:
    path = results.path / "report.html"
    page = render(results, samples)
    write_atomically(path, lambda f: f.write(page))
    return path
