"""A self-contained HTML report rebuilt from a run store: table, plots (inline PNG), samples.

Model output is untrusted text: everything taken from the store is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personagate.experiments import groups
from personagate.experiments.results import SUMMARY_COLUMNS, export, judge_agreement, summarise
from personagate.experiments.store import RunStore
from personagate.outputs import write_atomically

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:.85rem;width:100%}th,td{border-bottom:1px solid #ddd;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f4f4f4;position:sticky;top:0}tr.flag td{background:#fff3f0}
.plots{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.plots figure{margin:0}.plots img{width:100%}
pre{white-space:pre-wrap;background:#f8f8f8;padding:.5rem;border-radius:4px;font-size:.8rem;margin:.25rem 0}
details{margin:.25rem 0}summary{cursor:pointer}.muted{color:#777}
"""


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _reference_lines(ax: Any, rows: dict[str, dict[str, Any]], persona_name: str | None, mode: str) -> None:
    """Baseline and persona-steering levels, measured the same way (mode) as the sweep they frame."""
    for name, style in (("baseline", dict(color="k", ls="--")), (persona_name, dict(color="tab:red", ls=":"))):
        if not name:
            continue
        row = rows.get(f"{name} [{mode}]") or rows.get(name)
        if row is not None:
            ax.axhline(row["refusal_rate"], lw=1, label=f"{name} ({row['mode']})", **style)


def plots(
    summary: Sequence[dict[str, Any]],
    readout: dict[str, list[float]],
    cos: list[float] | None,
    persona_name: str | None,
) -> list[tuple[str, str]]:
    """(caption, base64 PNG) for each plot the data supports."""
    rows = {r["condition"]: r for r in summary}
    out = []
    reintro = sorted((r for r in summary if r["group"] == groups.REINTRODUCE_LAYER), key=lambda r: r["x"])
    if reintro:
        fig, ax = _figure("Refusal direction added back at one layer (under persona steering)", "layer", "refusal rate")
        xs = [r["x"] for r in reintro]
        ax.plot(xs, [r["refusal_rate"] for r in reintro], "o-", label="persona + refusal @ layer")
        ax.fill_between(xs, [r["ci_low"] for r in reintro], [r["ci_high"] for r in reintro], alpha=0.2)
        bad = [r for r in reintro if "incoherent" in r["flags"]]
        if bad:
            ax.plot(
                [r["x"] for r in bad],
                [r["refusal_rate"] for r in bad],
                "x",
                color="tab:red",
                ms=10,
                mew=2,
                label="incoherent (KL over the limit)",
            )
        _reference_lines(ax, rows, persona_name, reintro[0]["mode"])
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
        out.append(("Reintroduction curve: refusal when the refusal direction is added back at each layer.", _png(fig)))
    windows = sorted((r for r in summary if r["group"] == groups.PERSONA_WINDOW), key=lambda r: r["x"])
    randoms = [r for r in summary if r["group"] == groups.RANDOM_WINDOW]
    if windows:
        fig, ax = _figure(
            "Persona projected out of a window (under persona steering)", "window start (block)", "refusal rate"
        )
        xs = [r["x"] for r in windows]
        ax.plot(xs, [r["refusal_rate"] for r in windows], "o-", color="tab:blue", label="persona projected out")
        ax.fill_between(xs, [r["ci_low"] for r in windows], [r["ci_high"] for r in windows], alpha=0.15)
        if randoms:
            by_x: dict[float, list[float]] = {}
            for r in randoms:
                by_x.setdefault(r["x"], []).append(r["refusal_rate"])
            rx = sorted(by_x)
            ax.fill_between(
                rx,
                [min(by_x[x]) for x in rx],
                [max(by_x[x]) for x in rx],
                color="tab:gray",
                alpha=0.3,
                label=f"random directions (min-max, {len(randoms) // max(len(rx), 1)} seeds)",
            )
            ax.plot(rx, [sum(by_x[x]) / len(by_x[x]) for x in rx], color="tab:gray", lw=1)
        _reference_lines(ax, rows, persona_name, windows[0]["mode"])
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
        out.append(("Window curve: persona vs random directions projected out of sliding windows.", _png(fig)))
    if cos:
        fig, ax = _figure("cos(persona, refusal) per layer", "layer", "cosine")
        ax.plot(range(len(cos)), cos, "o-", color="tab:purple")
        ax.axhline(0, color="k", lw=0.5)
        out.append(("Geometry: cosine between the persona and refusal directions at each layer.", _png(fig)))
    if readout:
        fig, ax = _figure(
            "Projection on the refusal direction (harmful prompts, last token)", "layer", "mean projection"
        )
        for name, values in readout.items():
            ax.plot(range(len(values)), values, "o-", ms=3, label=name)
        ax.legend(fontsize=8)
        out.append(("Upstream/downstream readout: where refusal is computed and where it is expressed.", _png(fig)))
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return html.escape("" if value is None else str(value))


def render(store: RunStore, samples: int = 3) -> str:
    summary = summarise(store)
    manifest = store.manifest()
    coeff = store.fact("persona_coeff")
    persona_name = f"persona x{coeff:g}" if coeff is not None else None
    figures = plots(summary, store.readout(), store.fact("cos_persona_refusal"), persona_name)
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>personagate report</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>personagate study report</h1>",
        f"<p>Model <b>{esc(str(manifest.get('model', '?')))}</b> · spec {esc(str(manifest.get('spec_source', '')))}"
        f" · persona added at layer {esc(str(store.fact('persona_layer')))} with coefficient "
        f"{esc(str(coeff))} ({esc(str(store.fact('persona_coeff_rule', '')))}) · personagate "
        f"{esc(str(manifest.get('package_version', '')))} · device {esc(str(manifest.get('device', '')))}</p>",
    ]
    if figures:
        parts.append("<h2>Plots</h2><div class='plots'>")
        for caption, data in figures:
            parts.append(
                f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption class='muted'>{esc(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    agreement = judge_agreement(store)
    if agreement:
        cells = ", ".join(f"{esc(group)} {agree / n:.1%} (n={n})" for group, (agree, n) in sorted(agreement.items()))
        parts.append(f"<p>Phrase detector vs the judge on generated replies, agreement by group: {cells}</p>")
    parts.append(
        "<h2>Conditions</h2><p class='muted'>Refusal rate on harmful prompts with its Wilson 95% interval; "
        "KL = first-token KL from the unsteered model on harmless prompts (coherence); over-refusal on safe "
        "prompts. Rows flagged incoherent lose refusal because the model stops making sense.</p><table><tr>"
    )
    columns = [c for c in SUMMARY_COLUMNS if c not in ("description",)]
    parts.extend(f"<th>{esc(c)}</th>" for c in columns)
    parts.append("</tr>")
    for row in summary:
        css = " class='flag'" if row["flags"] else ""
        parts.append(
            f"<tr{css} title='{esc(row['description'])}'>"
            + "".join(f"<td>{_cell(row[c])}</td>" for c in columns)
            + "</tr>"
        )
    parts.append("</table><h2>Sample completions</h2>")
    for condition in store.conditions():
        texts = [r for r in store.rows(condition["name"], groups.HARMFUL) if r.text is not None][:samples]
        if not texts:
            continue
        parts.append(f"<details><summary>{esc(condition['name'])}</summary>")
        for r in texts:
            parts.append(f"<pre>[{'refusal' if r.refusal else 'compliance'}] {esc(r.text or '')}</pre>")
        parts.append("</details>")
    parts.append("</body></html>")
    return "".join(parts)


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


def markdown_table(summary: Sequence[dict[str, Any]], groups: Sequence[str] | None = None) -> str:
    """The summary as a Markdown table (for a README or a lab notebook)."""
    lines = ["| condition | refusal | 95% CI | n | KL | over-refusal | flags |", "|---|---:|---|---:|---:|---:|---|"]
    for r in summary:
        if groups and r["group"] not in groups:
            continue
        lines.append(
            f"| {r['condition']} | {r['refusal_rate']:.1%} | [{r['ci_low']:.1%}, {r['ci_high']:.1%}] | "
            f"{r['n']} | {r['kl']:.3f} | {r['over_refusal']:.1%} | {r['flags']} |"
        )
    return "\n".join(lines)


def save_plots(run_dir: str | Path, out: str | Path) -> list[Path]:
    """Write the report's plots as PNG files into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with RunStore(run_dir, create=False) as store:
        coeff = store.fact("persona_coeff")
        figures = plots(
            summarise(store),
            store.readout(),
            store.fact("cos_persona_refusal"),
            f"persona x{coeff:g}" if coeff is not None else None,
        )
    paths = []
    for index, (_, data) in enumerate(figures):
        path = out / f"plot{index + 1}.png"
        path.write_bytes(base64.b64decode(data))
        paths.append(path)
    return paths
