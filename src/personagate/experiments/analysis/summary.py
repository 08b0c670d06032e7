"""One summary per condition: its record, its rates, its coherence guard and the flags a reader needs,
typed for the report and the plots, and one ``as_row`` for summary.csv."""

from __future__ import annotations

import math
from dataclasses import dataclass

from personagate.experiments.analysis.measurements import ConditionRates, Measurements
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.storage.records import StoredCondition
from personagate.scoring.rates import Rate

SUMMARY_COLUMNS = (
    "condition",
    "group",
    "role",
    "mode",
    "prompts",
    "resample",
    "n",
    "refusal_rate",
    "ci_low",
    "ci_high",
    "comply_rate",
    "comply_ci_low",
    "comply_ci_high",
    "incoherent_rate",
    "incoherent_ci_low",
    "incoherent_ci_high",
    "coherent_refusal_rate",
    "first_token_rate",
    "paper_regex_rate",
    "nll_delta",
    "over_refusal",
    "over_refusal_n",
    "x",
    "seed",
    "dose",
    "window",
    "flags",
    "program",
    "description",
)


@dataclass(frozen=True)
class ConditionSummary:
    condition: StoredCondition
    rates: ConditionRates
    nll_delta: float  # the coherence guard: NLL increase of the neutral passages (nats/token)
    flags: tuple[str, ...]  # "guard", "incoherent replies", "not run"
    window: str  # "[16:24) +10": the window and where it starts relative to the injection

    @property
    def name(self) -> str:
        return self.condition.name

    @property
    def refusal_rate(self) -> float:
        return self.rates.refusal_rate

    def as_row(self) -> dict[str, object]:
        """A row of summary.csv (the columns of ``SUMMARY_COLUMNS``)."""
        c, r = self.condition, self.rates
        return {
            "condition": c.name,
            "group": c.group.value,
            "role": c.role.value,
            "mode": c.mode,
            "prompts": c.prompts,
            "resample": c.resample,
            "n": r.n,
            **_rate_cells("", r.refuse, "refusal_rate"),
            **_rate_cells("comply_", r.comply, "comply_rate"),
            **_rate_cells("incoherent_", r.incoherent, "incoherent_rate"),
            "coherent_refusal_rate": rounded(r.coherent_refusal_rate),
            "first_token_rate": rounded(r.first_token_rate),
            "paper_regex_rate": rounded(r.paper_regex.value),
            "nll_delta": rounded(self.nll_delta),
            "over_refusal": rounded(r.over_refusal.value),
            "over_refusal_n": r.over_refusal.n,
            "x": c.axis,
            "seed": c.seed,
            "dose": c.dose,
            "window": self.window,
            "flags": ";".join(self.flags),
            "program": c.identity,
            "description": c.description,
        }


def summarise(measurements: Measurements, spec: StudySpec, layout: Layout | None) -> tuple[ConditionSummary, ...]:
    """One summary per condition, in the order they were laid out."""
    injection = layout.injection if layout is not None else None
    out = []
    for c in measurements.conditions:
        r = measurements.rates[c.name]
        delta = measurements.guard.get(c.name, math.nan)
        flags = []
        if delta > spec.scoring.max_nll_delta:
            flags.append("guard")
        if r.n and r.incoherent_rate > spec.verdicts.max_incoherent:
            flags.append("incoherent replies")
        if r.n == 0:
            flags.append("not run")
        if r.nonfinite:
            flags.append("non-finite activations")
        out.append(ConditionSummary(c, r, delta, tuple(flags), window_cell(c.window, injection)))
    return tuple(out)


def window_cell(window: tuple[int, int] | None, injection: int | None) -> str:
    """``[16:24)``, with where it starts relative to the injection layer (``+10``) when that is known."""
    if not window:
        return ""
    cell = f"[{window[0]}:{window[1]})"
    return cell if injection is None else f"{cell} {window[0] - injection:+d}"


def _rate_cells(prefix: str, rate: Rate, name: str) -> dict[str, float]:
    low, high = rate.interval
    return {name: rounded(rate.value), f"{prefix}ci_low": rounded(low), f"{prefix}ci_high": rounded(high)}


def rounded(value: float) -> float:
    """Four decimals for a table; NaN for a missing or non-finite value."""
    return round(value, 4) if isinstance(value, float) and math.isfinite(value) else math.nan
