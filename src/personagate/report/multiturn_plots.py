"""The multi-turn family's figures: refusal and the persona projection against the conversation's
length k (95% intervals), the interventions at the largest k beside them, and the drift turn by turn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from personagate.experiments.analysis.results import Results
from personagate.experiments.design.names import Group, Role
from personagate.report.plots import Figure, _band, _figure, _finish, _png
from personagate.stats import bootstrap_mean_ci

ARMS = (
    (Role.MULTITURN_KNOCKOUT, "persona knocked out at the probe", "tab:green", "^"),
    (Role.MULTITURN_STEER_ALL, "persona steered on every turn", "tab:red", "v"),
    (Role.MULTITURN_STEER_PROBE, "persona steered at the probe only", "tab:purple", "s"),
)


def _form(row: Any) -> str:
    return row.condition.framing.form or ""


def by_length(results: Results, form: str) -> Figure | None:
    rows = [r for r in results.of_group(Group.MULTITURN) if _form(r) == form]
    family = sorted((r for r in rows if r.condition.role == Role.MULTITURN), key=lambda r: float(r.condition.axis or 0))
    if not family:
        return None
    fig, ax = _figure(f"Refusal after k exchanges ({form})", "exchanges before the probe (k)", "refusal rate")
    _band(ax, family, "no intervention")
    for role, label, color, marker in ARMS:
        for r in (r for r in rows if r.condition.role == role):
            low, high = r.rates.refuse.interval
            x = float(r.condition.axis or 0)
            ax.errorbar(
                [x],
                [r.refusal_rate],
                [[r.refusal_rate - low], [high - r.refusal_rate]],
                fmt=marker,
                color=color,
                ms=6,
                capsize=3,
                label=f"{label} {r.refusal_rate:.0%}",
            )
    nulls = [r.refusal_rate for r in rows if r.condition.role == Role.MULTITURN_NULL]
    if nulls:
        x = float(family[-1].condition.axis or 0)
        ax.vlines(
            [x + 0.15],
            min(nulls),
            max(nulls),
            color="tab:gray",
            lw=4,
            alpha=0.5,
            label=f"random directions knocked out ({len(nulls)} seeds, range)",
        )
    projections = results.measurements.projections
    stats = [
        (float(r.condition.axis or 0), bootstrap_mean_ci(list(projections[r.name].values()), n_boot=2000, seed=0))
        for r in family
        if projections.get(r.name)
    ]
    if stats:
        twin = ax.twinx()
        xs = [x for x, _ in stats]
        twin.plot(xs, [s[0] for _, s in stats], "d--", color="tab:brown", ms=4)
        twin.fill_between(xs, [s[1] for _, s in stats], [s[2] for _, s in stats], color="tab:brown", alpha=0.12)
        twin.set_ylabel("persona projection at the probe (brown)", color="tab:brown", fontsize=8)
    return _finish(
        ax,
        fig,
        f"Multi-turn ({form}): refusal (Wilson 95% band) and the persona projection at the probe turn (bootstrap "
        "95% band, brown) against the number of prior exchanges; the interventions at the largest k beside them.",
    )


def drift(form: str, fact: Mapping[str, Any]) -> Figure | None:
    roles = list(fact.get("roles", []))
    if not roles:
        return None
    fig, ax = _figure(f"Drift turn by turn ({form}, longest conversation)", "turn", "projection")
    xs = list(range(1, len(roles) + 1))
    layers = fact.get("layers", {})
    for name, color in (("persona", "tab:brown"), ("refusal", "tab:blue")):
        if name in fact:
            ax.plot(xs, fact[name], "o-", color=color, ms=4, label=f"{name} direction (layer {layers.get(name)})")
    for x, role in zip(xs, roles, strict=True):
        if role == "assistant":
            ax.axvspan(x - 0.5, x + 0.5, color="tab:gray", alpha=0.08)
    ax.axvline(len(roles), color="tab:red", lw=0.8, ls="-.", label="the probe")
    ax.legend(fontsize=7)
    return (
        f"Drift ({form}): the persona and refusal projections at the last token of every turn of the longest "
        "conversation (grey: assistant turns; the history is the same for every probe, shown for the first).",
        _png(fig),
    )


def multiturn_figures(results: Results) -> list[tuple[str, Figure | None]]:
    out: list[tuple[str, Figure | None]] = []
    for form in results.spec.multiturn.forms if results.spec.multiturn.enabled else []:
        out.append((f"multiturn_{form}", by_length(results, form)))
        if form in results.drift:
            out.append((f"drift_{form}", drift(form, results.drift[form])))
    return out
