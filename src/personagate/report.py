"""A self-contained HTML report rebuilt from a run store: the verdicts first, then the headline table,
the plots (inline PNG), the agreement of the measures, sample replies of every group, every condition.

Model output is untrusted text: everything taken from the store is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personagate import plots
from personagate.experiments import groups as g
from personagate.experiments.results import (
    SUMMARY_COLUMNS,
    export,
    judge_agreement,
    mode_agreement,
    outcomes,
    screening_agreement,
    spec_value,
    summarise,
)
from personagate.experiments.store import RunStore
from personagate.experiments.verdicts import Verdict, compute_verdicts
from personagate.outputs import write_atomically
from personagate.stats import share_restored

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1150px;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:.82rem;width:100%;margin:.5rem 0 1rem}th,td{border-bottom:1px solid #ddd;
padding:.25rem .45rem;text-align:left;vertical-align:top}th{background:#f4f4f4}tr.flag td{background:#fff3f0}
td.reproduced{background:#e6f4ea;font-weight:600}td.not-reproduced{background:#fde8e8;font-weight:600}
td.inconclusive{background:#fff8e1;font-weight:600}
.plots{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.plots figure{margin:0}.plots img{width:100%}
pre{white-space:pre-wrap;background:#f8f8f8;padding:.5rem;border-radius:4px;font-size:.8rem;margin:.25rem 0}
details{margin:.25rem 0}summary{cursor:pointer}.muted{color:#777}
"""


def headline(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conditions a reader looks at first: every headline arm (resample 0, test prompts), measured
    the main way where it was, then the sanity arm beside the baseline measured the same way."""
    tested = [r for r in summary if r["resample"] == 0 and r["prompts"] == g.HARMFUL]
    main = next((r["mode"] for r in tested if r["role"] == "baseline"), None)
    rows: list[dict[str, Any]] = []
    for role in g.HEADLINE_ROLES:
        found = [r for r in tested if r["role"] == role and r["group"] != g.REFERENCE]
        preferred = [r for r in found if r["mode"] == main] or found
        rows += preferred
    sanity = next((r for r in tested if r["group"] == g.SANITY), None)
    if sanity is not None:  # beside the baseline measured the same way: they must be equal
        rows += [r for r in tested if r["role"] == "baseline" and r["mode"] == sanity["mode"] and r not in rows]
        rows.append(sanity)
    return rows


def mediation_shares(store: RunStore, summary: Sequence[dict[str, Any]]) -> list[tuple[float, float, float, float]]:
    """Per mediation window: the share of the persona effect (in the sweep mode) that the clamp undoes."""
    rows = [r for r in summary if r["group"] == g.MEDIATION and r["resample"] == 0]
    if not rows:
        return []
    mode = rows[0]["mode"]
    steered = plots._find(summary, "persona", mode)
    base = plots._find(summary, "baseline", mode)
    if steered is None or base is None:
        return []
    s_out, b_out = outcomes(store, steered["condition"]), outcomes(store, base["condition"])
    out = []
    for r in sorted(rows, key=lambda r: r["x"]):
        t_out = outcomes(store, r["condition"])
        shared = sorted(set(t_out) & set(s_out) & set(b_out))
        if shared:
            share = share_restored(
                [t_out[i] for i in shared], [s_out[i] for i in shared], [b_out[i] for i in shared], n_boot=2000
            )
            if not math.isnan(share[0]):
                out.append((float(r["x"]), *share))
    return out


def figures(store: RunStore, summary: Sequence[dict[str, Any]]) -> list[tuple[str, bytes]]:
    return [figure for _, figure in named_figures(store, summary)]


def named_figures(store: RunStore, summary: Sequence[dict[str, Any]]) -> list[tuple[str, tuple[str, bytes]]]:
    """The report's plots (caption, PNG bytes), each with a file stem that says what it shows."""
    made = [
        ("persona_coefficient", plots.persona_sweep(summary)),
        ("reintroduction", plots.reintroduction(summary)),
        ("windows", plots.windows(summary)),
        ("mediation", plots.mediation(mediation_shares(store, summary))),
        ("readout", plots.readout(store.readout())),
        ("cosine", plots.cosine(store.fact("cos_persona_refusal"))),
    ]
    return [(stem, figure) for stem, figure in made if figure is not None]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return html.escape("" if value is None else str(value))


def _pct(value: Any) -> str:
    return "" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.1%}"


def verdict_rows(verdicts: Sequence[Verdict], scope: str = "main") -> list[Verdict]:
    return [v for v in verdicts if v.scope == scope]


def robustness(verdicts: Sequence[Verdict]) -> dict[str, list[str]]:
    """Per finding: the outcomes over the resamples (sweep-mode verdicts)."""
    out: dict[str, list[str]] = {}
    for v in verdicts:
        if v.scope.startswith("resample"):
            out.setdefault(v.finding, []).append(v.outcome)
    return out


def render(store: RunStore, samples: int = 3) -> str:
    summary = summarise(store)
    verdicts = compute_verdicts(store)
    manifest = store.manifest()
    layout = store.fact("layout") or {}
    esc = html.escape
    coeff = store.fact("persona_coeff")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>personagate report</title>"
        f"<style>{_CSS}</style></head><body><h1>personagate study report</h1>",
        f"<p>Model <b>{esc(str(manifest.get('model', '?')))}</b> · protocol "
        f"{esc(str(manifest.get('spec', {}).get('protocol', '')))}"
        f" · spec {esc(str(manifest.get('spec_source', '')))} · persona injected at layer "
        f"{esc(str(layout.get('injection', '?')))} of {esc(str(layout.get('n_layers', '?')))} with coefficient "
        f"{esc(str(coeff))} ({esc(str(store.fact('persona_coeff_rule', '')))}) · late window "
        f"{esc(str(layout.get('late', '')))} · personagate {esc(str(manifest.get('package_version', '')))}</p>",
        "<h2>Verdicts</h2><p class='muted'>Each finding is a rule declared in the spec before the run "
        "(statistic, margin, alpha) and computed from the measurements below.</p>",
        _verdict_table(verdict_rows(verdicts)),
    ]
    robust = robustness(verdicts)
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
    parts.append("<h2>Headline conditions</h2>" + _condition_table(headline(summary), compact=True))
    made = figures(store, summary)
    if made:
        parts.append("<h2>Plots</h2><div class='plots'>")
        for caption, data in made:
            png = base64.b64encode(data).decode()
            parts.append(
                f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{png}'>"
                f"<figcaption class='muted'>{esc(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append(_agreements(store))
    parts.append("<h2>Sample replies</h2>" + _samples(store, samples))
    parts.append(
        "<h2>Every condition</h2><p class='muted'>Rates on the test prompts (validation prompts for the "
        "coefficient sweep) with Wilson 95% intervals; nll_delta = the coherence guard (increase of the "
        "neutral passages' NLL, nats/token); over-refusal on safe prompts.</p>" + _condition_table(summary)
    )
    parts.append("</body></html>")
    return "".join(parts)


def _verdict_table(verdicts: Sequence[Verdict]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(v.claim)}</td><td class='{v.outcome.replace(' ', '-')}'>{esc(v.outcome)}</td>"
        f"<td>{_cell(v.effect)} [{_cell(v.ci_low)}, {_cell(v.ci_high)}]</td><td>{_cell(v.p_value)}</td>"
        f"<td>{v.n}</td><td>{esc(v.statistic)}</td><td>{esc(v.detail)}</td></tr>"
        for v in verdicts
    )
    return (
        "<table><tr><th>finding</th><th>verdict</th><th>effect [CI]</th><th>p</th><th>n</th><th>statistic</th>"
        f"<th>numbers behind it</th></tr>{rows}</table>"
    )


def _condition_table(rows: Sequence[dict[str, Any]], compact: bool = False) -> str:
    esc = html.escape
    columns = (
        [
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
        ]
        if compact
        else [c for c in SUMMARY_COLUMNS if c != "description"]
    )
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        f"<tr{' class=flag' if r['flags'] else ''} title='{esc(r['description'])}'>"
        + "".join(f"<td>{_cell(r[c])}</td>" for c in columns)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _agreements(store: RunStore) -> str:
    esc = html.escape
    parts = []
    sweep = str(spec_value(store, "generation", "sweep", "first_token"))
    screened = mode_agreement(store, sweep)
    if screened:
        cells = ", ".join(f"{esc(k)} {a / n:.1%} (n={n})" for k, (a, n) in sorted(screened.items()))
        parts.append(
            f"<p>The sweep mode ({esc(sweep)}) vs the generated reply's label, the same arm measured both ways "
            f"on the same prompts, by role: {cells}</p>"
        )
    screening = screening_agreement(store)
    if screening:
        cells = ", ".join(f"{esc(k)} {a / n:.1%} (n={n})" for k, (a, n) in sorted(screening.items()))
        parts.append(f"<p>First-token score vs the generated reply's label, by condition group: {cells}</p>")
    judged = judge_agreement(store)
    if judged:
        cells = ", ".join(f"{esc(k)} {a / n:.1%} (n={n})" for k, (a, n) in sorted(judged.items()))
        parts.append(f"<p>Phrase detector vs the judge on generated replies, agreement by group: {cells}</p>")
    return "<h2>Agreement of the measures</h2>" + "".join(parts) if parts else ""


def _samples(store: RunStore, per_group: int) -> str:
    """A few replies of every group (generated conditions), with their labels."""
    esc = html.escape
    by_group: dict[str, list[dict[str, Any]]] = {}
    for c in store.conditions():
        if c["mode"] == "generate":
            by_group.setdefault(c["group"], []).append(c)
    parts = []
    for group, conditions in by_group.items():
        replies = [
            r for c in conditions for r in store.rows(c["name"], c.get("prompts", g.HARMFUL)) if r.text is not None
        ]
        if not replies:
            continue
        parts.append(f"<details><summary>{esc(group)} ({len(conditions)} condition(s))</summary>")
        for r in replies[:: max(1, len(replies) // per_group)][:per_group]:
            parts.append(f"<pre>[{esc(r.label or '')}] {esc(r.condition)}: {esc(r.text or '')}</pre>")
        parts.append("</details>")
    return "".join(parts) or "<p class='muted'>No generated replies.</p>"


def write_report(store: RunStore, samples: int = 3) -> Path:
    path = store.path / "report.html"
    page = render(store, samples)
    write_atomically(path, lambda f: f.write(page))
    return path


def rebuild(run_dir: str | Path) -> Path:
    """``personagate report RUN_DIR``: exports and report from the database alone (a damaged or empty
    store is an error, and leaves the existing exports untouched)."""
    with RunStore(run_dir, create=False) as store:
        export(store)
        return write_report(store)


def markdown(store: RunStore) -> str:
    """The verdicts and the headline table as Markdown (README "Results" is this, pasted)."""
    summary = summarise(store)
    verdicts = compute_verdicts(store)
    lines = ["| finding | verdict | effect [95% CI] | p | n | numbers behind it |", "|---|---|---|---:|---:|---|"]
    for v in verdict_rows(verdicts):
        effect = f"{_num(v.effect)} [{_num(v.ci_low)}, {_num(v.ci_high)}]"
        lines.append(f"| {v.claim} | **{v.outcome}** | {effect} | {_num(v.p_value)} | {v.n} | {v.detail} |")
    robust = robustness(verdicts)
    if robust:
        lines += ["", "Robustness (the same rules, sweep-mode measures, on each resample of the training prompts):", ""]
        lines += [f"- {finding}: {', '.join(outcome)}" for finding, outcome in robust.items()]
    lines += [
        "",
        "| condition | refusal | 95% CI | comply | incoherent | n | guard (NLL +) | over-refusal | flags |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in headline(summary):
        lines.append(
            f"| {r['condition']} | {_pct(r['refusal_rate'])} | [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}] | "
            f"{_pct(r['comply_rate'])} | {_pct(r['incoherent_rate'])} | {r['n']} | {_num(r['nll_delta'])} | "
            f"{_pct(r['over_refusal'])} | {r['flags']} |"
        )
    return "\n".join(lines)


def _num(value: float) -> str:
    return "" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.3f}"


def save_plots(run_dir: str | Path, out: str | Path) -> list[Path]:
    """Write the report's plots as PNG files into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with RunStore(run_dir, create=False) as store:
        made = named_figures(store, summarise(store))
    paths = []
    for stem, (_, data) in made:
        path = out / f"{stem}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths
