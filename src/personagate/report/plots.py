"""The report's figures, from a run's results: every rate with its 95% interval as a shaded band (a
null as the band its random seeds span), and the incoherent share on every plot.

Each function returns ``(caption, png bytes)`` or None when the run has no data for it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from personagate.experiments.analysis.results import Results
from personagate.experiments.analysis.summary import ConditionSummary
from personagate.experiments.design.names import Group, Role
from personagate.stats import bootstrap_mean_ci

Figure = tuple[str, bytes]


def _figure(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _band(ax: Any, rows: Sequence[ConditionSummary], label: str, style: str = "o-", color: str | None = None) -> None:
    """A rate curve with its Wilson band, and the incoherent share (dotted) or guard failures (x)."""
    xs = [float(r.condition.axis or 0) for r in rows]
    line = ax.plot(xs, [r.refusal_rate for r in rows], style, ms=4, label=label, color=color)[0]
    bands = [r.rates.refuse.interval for r in rows]
    ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], alpha=0.18, color=line.get_color())
    if any(r.condition.mode == "generate" for r in rows):
        incoherent = [r.rates.incoherent_rate for r in rows]
        ax.plot(xs, incoherent, ":", color=line.get_color(), lw=1, label=f"{label}: incoherent")
    flagged = [(x, r.refusal_rate) for x, r in zip(xs, rows, strict=True) if "guard" in r.flags]
    if flagged:
        ax.plot([f[0] for f in flagged], [f[1] for f in flagged], "x", color="tab:red", ms=9, mew=2)


def _level(ax: Any, row: ConditionSummary | None, label: str, color: str, style: str) -> None:
    if row is not None and math.isfinite(row.refusal_rate):
        rate = row.refusal_rate
        ax.axhline(rate, color=color, ls=style, lw=1, label=f"{label} {rate:.0%} ({row.condition.mode})")
        ax.axhspan(*row.rates.refuse.interval, color=color, alpha=0.07)


def _by_axis(rows: Sequence[ConditionSummary]) -> list[ConditionSummary]:
    return sorted(rows, key=lambda r: float(r.condition.axis or 0))


def _finish(ax: Any, fig: Any, caption: str) -> Figure:
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="best")
    return caption, _png(fig)


def persona_sweep(results: Results) -> Figure | None:
    rows = _by_axis(results.of_group(Group.PERSONA_SWEEP))
    if not rows:
        return None
    fig, ax = _figure(
        "Persona coefficient on the validation prompts", "coefficient (x persona difference in means)", "rate"
    )
    _band(ax, rows, "refusal")
    prompts = rows[0].condition.prompts
    base = next((s for s in results.of_group(Group.BASELINE) if s.condition.prompts == prompts), None)
    _level(ax, base, "baseline", "k", "--")
    ax.set_xscale("log", base=2)
    guard = ax.twinx()
    guard.plot([r.condition.axis for r in rows], [r.nll_delta for r in rows], "s--", color="tab:gray", ms=3)
    guard.set_ylabel("guard: NLL increase (nats/token)", color="tab:gray", fontsize=8)
    return _finish(
        ax, fig, "Choosing the persona coefficient: refusal, incoherent share and the coherence guard, on validation."
    )


def reintroduction(results: Results) -> Figure | None:
    rows = results.of_group(Group.REINTRODUCE)
    if not rows:
        return None
    fig, ax = _figure("Refusal direction added back at one layer, under persona steering", "layer", "refusal rate")
    layout = results.facts.layout
    if layout is not None:  # the bands the verdict compares, placed relative to the injection
        ax.axvspan(layout.early[0] - 0.5, layout.early[1] - 0.5, color="tab:blue", alpha=0.06, label="early band")
        ax.axvspan(
            layout.late_layers[0] - 0.5, layout.late_layers[1] - 0.5, color="tab:orange", alpha=0.08, label="late band"
        )
        ax.axvline(layout.injection, color="tab:red", lw=0.8, ls="-.", label=f"persona injected at {layout.injection}")
    calibrated = results.spec.reintroduce.dose == "calibrated"
    for dose in sorted({float(r.condition.dose or 0) for r in rows}):
        label = f"dose: {dose:.0%} induced harmless refusal" if calibrated else f"dose x{dose:g}"
        _band(ax, _by_axis([r for r in rows if float(r.condition.dose or 0) == dose]), label)
    mode = rows[0].condition.mode
    _level(ax, results.find(Role.BASELINE, mode), "baseline", "k", "--")
    _level(ax, results.find(Role.PERSONA, mode), "persona", "tab:red", ":")
    return _finish(
        ax,
        fig,
        "Dose-response: refusal when each layer's own refusal direction is added back (x: flagged by the guard).",
    )


def windows(results: Results) -> Figure | None:
    persona = _by_axis([r for r in results.of_group(Group.PERSONA_WINDOW) if r.condition.mode != "generate"])
    if not persona:
        return None
    mode = persona[0].condition.mode
    fig, ax = _figure(
        "Persona projected out of windows downstream of the injection", "window start (block)", "refusal rate"
    )
    _band(ax, persona, "persona steering - persona", color="tab:blue")
    for group, label, color in (
        (Group.PROJECTION_ONLY, "unsteered - persona", "tab:green"),
        (Group.NATURAL_WINDOW, "natural persona - persona", "tab:purple"),
    ):
        rows = _by_axis([r for r in results.of_group(group, resample=None) if r.condition.mode == mode])
        if rows:
            _band(ax, rows, label, "s-", color=color)
    randoms = results.of_group(Group.RANDOM_WINDOW)
    if randoms:
        by_x: dict[float, list[float]] = {}
        for r in randoms:
            by_x.setdefault(float(r.condition.axis or 0), []).append(r.refusal_rate)
        xs = sorted(by_x)
        low = [_quantile(by_x[x], 0.05) for x in xs]
        high = [_quantile(by_x[x], 0.95) for x in xs]
        counts = sorted({len(by_x[x]) for x in xs})
        seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        ax.fill_between(xs, low, high, color="tab:gray", alpha=0.3, label=f"matched random (5-95%, {seeds} seeds)")
        ax.plot(xs, [_quantile(by_x[x], 0.5) for x in xs], color="tab:gray", lw=1)
    _level(ax, results.find(Role.BASELINE, mode), "baseline", "k", "--")
    _level(ax, results.find(Role.PERSONA, mode), "persona", "tab:red", ":")
    return _finish(
        ax, fig, "Windows: the persona direction vs matched random directions projected out (shaded: the null)."
    )


def mediation(shares: Sequence[tuple[float, float, float, float]]) -> Figure | None:
    """``shares``: (window start, share, ci_low, ci_high)."""
    if not shares:
        return None
    fig, ax = _figure(
        "Refusal's projection clamped to its baseline value in a window",
        "window start (block)",
        "share of the persona effect undone",
    )
    xs = [s[0] for s in shares]
    ax.errorbar(
        xs,
        [s[1] for s in shares],
        yerr=[[s[1] - s[2] for s in shares], [s[3] - s[1] for s in shares]],
        fmt="o-",
        capsize=3,
    )
    ax.axhline(0, color="k", lw=0.6)
    ax.axhline(1, color="k", lw=0.6, ls="--")
    ax.legend(["share undone (95% bootstrap CI)"], fontsize=7)
    return "Mediation: how much of the persona effect on refusal the clamp removes, by window.", _png(fig)


def readout(projections: Mapping[str, list[list[float]]]) -> Figure | None:
    if not projections:
        return None
    fig, ax = _figure("Projection on each layer's refusal direction (test prompts, last token)", "layer", "projection")
    for name, layers in projections.items():
        stats = [bootstrap_mean_ci(values, n_boot=2000, seed=0) for values in layers]
        xs = list(range(len(stats)))
        line = ax.plot(xs, [s[0] for s in stats], "o-", ms=3, label=name)[0]
        ax.fill_between(xs, [s[1] for s in stats], [s[2] for s in stats], alpha=0.2, color=line.get_color())
    ax.legend(fontsize=7)
    return (
        "Upstream/downstream readout: where refusal is computed and where it is expressed (95% bootstrap CIs).",
        _png(fig),
    )


def cosine(values: Sequence[float] | None) -> Figure | None:
    if not values:
        return None
    fig, ax = _figure("cos(persona, refusal) per layer", "layer", "cosine")
    ax.plot(range(len(values)), values, "o-", color="tab:purple")
    ax.axhline(0, color="k", lw=0.5)
    return "Geometry: cosine between the persona and refusal directions at each layer.", _png(fig)


def geometry(cosines: Mapping[str, Sequence[float]]) -> Figure | None:
    """Protocol paper: the cosine per layer between the persona vectors and the others."""
    if not cosines:
        return None
    fig, ax = _figure("Geometry of the paper's vectors (cosine per layer)", "layer", "cosine")
    for name, values in cosines.items():
        ax.plot(range(len(values)), values, "-", lw=1.2, label=name)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(-1.02, 1.02)
    ax.legend(fontsize=6, loc="best")
    return (
        "Geometry: the model-persona vector (last prompt token) against the other positions, the user-persona "
        "and I-Thou vectors, the refusal direction and the paper's random direction, at every layer.",
        _png(fig),
    )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
