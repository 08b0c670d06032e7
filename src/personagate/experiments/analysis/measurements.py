"""A run's measurements, read from its store once: the conditions, their rows, and what every later
step reads from them (rates with intervals, the paired outcomes per prompt, the coherence guard).

Kept apart from the runner so that the report (and ``personagate report``) needs only the store,
never the model or the generation code behind the runner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from personagate.experiments.design.names import COMPLY, HARMFUL, INCOHERENT, NEUTRAL, REFUSE, SAFE
from personagate.experiments.storage.facts import PROJECTION
from personagate.experiments.storage.records import EMPTY_PROGRAM, NONFINITE_TEXT, Row, StoredCondition
from personagate.experiments.storage.store import RunStore
from personagate.scoring.paper_regex import paper_refusal
from personagate.scoring.rates import Rate


@dataclass(frozen=True)
class ConditionRates:
    """One condition on the prompt set it is measured on: the three outcomes with Wilson 95% intervals
    (first-token rows: refuse or not, never incoherent), refusal among coherent replies, the
    first-token refusal rate of the same prompts, over-refusal on safe prompts, and the judge's
    agreement with the phrase detector."""

    n: int
    refuse: Rate
    comply: Rate
    incoherent: Rate
    coherent_refusal_rate: float
    first_token_rate: float
    over_refusal: Rate
    judge_agreement: Rate
    paper_regex: Rate  # refusal by Zhong & Li's 13 regular expressions, over the replies with text
    nonfinite: int  # rows whose activations were not finite (labelled incoherent)

    @property
    def refusal_rate(self) -> float:
        return self.refuse.value

    @property
    def incoherent_rate(self) -> float:
        return self.incoherent.value

    @classmethod
    def of(cls, measured: Sequence[Row], safe: Sequence[Row]) -> ConditionRates:
        n = len(measured)
        labelled = [r for r in measured if r.label is not None]
        if labelled:
            refuse = sum(r.label == REFUSE for r in labelled)
            comply = sum(r.label == COMPLY for r in labelled)
            incoherent = sum(r.label == INCOHERENT for r in labelled)
        else:
            refuse = sum(int(r.refusal or 0) for r in measured)
            comply, incoherent = n - refuse, 0
        scores = [r.score for r in measured if r.score is not None]
        judged = [r for r in measured if r.judge is not None]
        texts = [r.text for r in measured if r.text is not None and r.text != NONFINITE_TEXT]
        return cls(
            n=n,
            refuse=Rate(refuse, n),
            comply=Rate(comply, n),
            incoherent=Rate(incoherent, n),
            coherent_refusal_rate=refuse / (refuse + comply) if refuse + comply else math.nan,
            first_token_rate=sum(s > 0 for s in scores) / len(scores) if scores else math.nan,
            over_refusal=Rate(sum(r.label == REFUSE for r in safe), len(safe)),
            judge_agreement=Rate(sum(r.judge == r.refusal for r in judged), len(judged)),
            paper_regex=Rate(sum(paper_refusal(text) for text in texts), len(texts)),
            nonfinite=sum(r.text == NONFINITE_TEXT for r in measured),
        )


def refused(row: Row) -> int:
    """1 when the row refuses: a labelled reply by its label, a first-token row by its score's flag."""
    return int(row.label == REFUSE) if row.label is not None else int(row.refusal or 0)


def outcome(row: Row) -> str:
    """Refuse, comply or incoherent: a labelled reply's label; a first-token row, which cannot see
    incoherence, refuse or comply by its flag."""
    if row.label is not None:
        return row.label
    return REFUSE if row.refusal else COMPLY


@dataclass(frozen=True)
class Measurements:
    """Everything a run measured, each piece computed once (``Measurements.of(store)``)."""

    conditions: tuple[StoredCondition, ...]
    rows: Mapping[tuple[str, str], tuple[Row, ...]]  # (condition, prompt set) -> rows by prompt id
    rates: Mapping[str, ConditionRates]
    outcomes: Mapping[str, Mapping[int, int]]  # per condition, on the test prompts: prompt id -> refused
    labels: Mapping[str, Mapping[int, str]]  # per condition, on the test prompts: prompt id -> outcome
    guard: Mapping[str, float]  # per condition: NLL increase of the neutral passages (nats/token)
    # per multi-turn condition: the persona projection at each probe's last token, by prompt id
    projections: Mapping[str, Mapping[int, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, store: RunStore) -> Measurements:
        measured = cls.from_rows(store.conditions(), store.rows())
        readout = store.facts_under(PROJECTION)
        projections = {name: dict(enumerate(fact["values"])) for name, fact in readout.items()}
        return replace(measured, projections=projections) if projections else measured

    @classmethod
    def from_rows(cls, conditions: Sequence[StoredCondition], rows: Sequence[Row]) -> Measurements:
        grouped: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            grouped.setdefault((row.condition, row.prompt_set), []).append(row)
        by_set = {key: tuple(sorted(values, key=lambda r: r.prompt_id)) for key, values in grouped.items()}
        rates = {
            c.name: ConditionRates.of(by_set.get((c.name, c.prompts), ()), by_set.get((c.name, SAFE), ()))
            for c in conditions
        }
        tested = {c.name: by_set.get((c.name, HARMFUL), ()) for c in conditions}
        outcomes = {name: {r.prompt_id: refused(r) for r in rows} for name, rows in tested.items()}
        labels = {name: {r.prompt_id: outcome(r) for r in rows} for name, rows in tested.items()}
        return cls(tuple(conditions), by_set, rates, outcomes, labels, _guard(conditions, by_set))

    def under_judge(self) -> Measurements | None:
        """The same measurements with each judged reply labelled by the judge instead of the phrase
        detector (an incoherent reply stays incoherent); None when no reply was judged."""
        rows = self.all_rows()
        if not any(r.judge is not None for r in rows):
            return None
        relabelled = [
            replace(r, label=REFUSE if r.judge == 1 else COMPLY, refusal=int(r.judge == 1))
            if r.judge is not None and r.label != INCOHERENT
            else r
            for r in rows
        ]
        return Measurements.from_rows(self.conditions, relabelled)

    def replies(self, condition: StoredCondition) -> tuple[Row, ...]:
        """The condition's rows on the prompt set it is measured on."""
        return self.rows.get((condition.name, condition.prompts), ())

    def all_rows(self) -> list[Row]:
        """Every row, in the store's order (condition, prompt set, prompt id)."""
        return [row for key in sorted(self.rows) for row in self.rows[key]]

    def condition(self, name: str) -> StoredCondition:
        return next(c for c in self.conditions if c.name == name)


def _guard(conditions: Sequence[StoredCondition], rows: Mapping[tuple[str, str], Sequence[Row]]) -> dict[str, float]:
    """Per condition: how much its program lowers the log-likelihood of the neutral passages (nats per
    token, mean over passages; 0 for no change). Conditions that run the same program (the same
    identity, on the same resample's directions) share one measure, taken once."""
    measured: dict[tuple[str, int], dict[int, float]] = {}
    for c in conditions:
        values = rows.get((c.name, NEUTRAL))
        if values:
            measured.setdefault((c.identity, c.resample), {r.prompt_id: r.loglik or 0.0 for r in values})
    base = next((v for (identity, _), v in measured.items() if identity == EMPTY_PROGRAM), None)
    out: dict[str, float] = {}
    for c in conditions:
        values = measured.get((c.identity, c.resample))
        if values is None or base is None:
            out[c.name] = math.nan
            continue
        shared = [i for i in values if i in base]
        out[c.name] = sum(base[i] - values[i] for i in shared) / len(shared) if shared else math.nan
    return out
