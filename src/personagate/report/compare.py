"""Two runs' verdicts side by side (``personagate compare RUN_A RUN_B``): each finding under one design
and under the other, on the same model, and where they disagree. The rules are the same; the designs
differ (protocol ``paper`` against ``v3``, say), and a disagreement is itself a result."""

from __future__ import annotations

import html
import math

from personagate.experiments.analysis.results import Results
from personagate.experiments.analysis.verdict import Verdict


def _cell(v: Verdict | None) -> str:
    if v is None:
        return "not declared"
    effect = "" if math.isnan(v.effect) else f" {v.effect:+.3f} [{v.ci_low:+.3f}, {v.ci_high:+.3f}]"
    reason = f" ({v.reason})" if v.reason else ""
    return f"{v.outcome}{reason};{effect} n={v.n}"


def rows(a: Results, b: Results) -> list[tuple[str, str, str, str, str]]:
    """(finding, claim, A's verdict, B's verdict, agreement) for every finding of either run."""
    first = {v.finding: v for v in a.main_verdicts()}
    second = {v.finding: v for v in b.main_verdicts()}
    out = []
    for finding in [*first, *(f for f in second if f not in first)]:
        va, vb = first.get(finding), second.get(finding)
        claim = (va or vb).claim  # type: ignore[union-attr]
        if va is None or vb is None:
            agree = "one run only"
        elif va.outcome == vb.outcome:
            agree = "same"
        else:
            agree = "DIFFERENT"
        out.append((finding, claim, _cell(va), _cell(vb), agree))
    return out


def title(results: Results) -> str:
    return f"{results.info.protocol or '?'} ({results.path.name})"


def markdown(a: Results, b: Results) -> str:
    head = [
        f"Model: {a.info.model}" + ("" if a.info.model == b.info.model else f" / {b.info.model} (different models)"),
        "",
        f"| finding | claim | {title(a)} | {title(b)} | agreement |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(head + [f"| {' | '.join(r)} |" for r in rows(a, b)])


def page(a: Results, b: Results) -> str:
    esc = html.escape
    body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in r) + "</tr>" for r in rows(a, b))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>personagate: two designs</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1150px}table{border-collapse:"
        "collapse;font-size:.85rem}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left}</style>"
        f"</head><body><h1>The same findings under two designs</h1><p>Model {esc(a.info.model)}.</p>"
        f"<table><tr><th>finding</th><th>claim</th><th>{esc(title(a))}</th><th>{esc(title(b))}</th>"
        f"<th>agreement</th></tr>{body}</table></body></html>"
    )
