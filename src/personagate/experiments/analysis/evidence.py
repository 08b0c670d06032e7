"""``Evidence``: the conditions one set of verdicts is computed on (a resample, the measurement modes to
prefer, and how incoherent replies count), and the questions every rule asks of them: which
condition plays a role, may it carry a verdict, its outcomes paired prompt by prompt with others'.

Incoherence is its own outcome. The primary analysis leaves out every prompt on which any compared
reply is incoherent (``incoherent="exclude"``); the sensitivity analysis counts incoherent replies
as refusals (``"refuse"``); ``compute_verdicts`` runs every rule under both, and a verdict stands
only when they agree. A first-token arm cannot see incoherence, so no verdict rests on one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from personagate.experiments.analysis.measurements import Measurements
from personagate.experiments.analysis.verdict import BLIND_MODE, NOT_MEASURED, EvidenceId, Reason
from personagate.experiments.design.names import HARMFUL, INCOHERENT, REFUSE, Mode, Role

if TYPE_CHECKING:
    from personagate.experiments.design.layout import Layout
    from personagate.experiments.design.spec import StudySpec
    from personagate.experiments.storage.records import StoredCondition

Incoherent = Literal["exclude", "refuse"]
SIGHTED: tuple[Mode, ...] = ("generate", "screen")  # the modes that see incoherence


@dataclass(frozen=True)
class Pairs:
    """Outcomes (1 = refused) of several conditions on the prompts they share, in prompt order, and
    how many shared prompts were left out because a reply was incoherent."""

    columns: tuple[list[int], ...]
    excluded: int

    @property
    def n(self) -> int:
        return len(self.columns[0]) if self.columns else 0


class Evidence:
    def __init__(
        self,
        measurements: Measurements,
        spec: StudySpec,
        layout: Layout | None,
        resample: int,
        modes: tuple[Mode, ...],
        id: EvidenceId,
        incoherent: Incoherent = "exclude",
        frame: str = "",
    ) -> None:
        self.measurements, self.spec, self.layout = measurements, spec, layout
        self.resample, self.id, self.incoherent = resample, id, incoherent
        self.modes = tuple(m for m in modes if m in SIGHTED)
        self.frame = frame  # a multi-turn form: roles are looked up among its conversations only

    def with_incoherent(self, incoherent: Incoherent) -> Evidence:
        return Evidence(
            self.measurements, self.spec, self.layout, self.resample, self.modes, self.id, incoherent, self.frame
        )

    def framed(self, frame: str) -> Evidence:
        return Evidence(
            self.measurements, self.spec, self.layout, self.resample, self.modes, self.id, self.incoherent, frame
        )

    def _in_frame(self, condition: StoredCondition) -> bool:
        if not self.frame:
            return True
        return condition.framing.is_multiturn and condition.framing.form == self.frame

    def find(self, role: Role, modes: tuple[Mode, ...] | None = None) -> list[StoredCondition]:
        """Conditions with ``role`` on the test prompts in this resample (falling back to resample 0 for
        arms that use no resampled direction, such as the baseline), in the first of ``modes`` that
        has any; never a first-token arm."""
        for mode in modes or self.modes:
            if mode not in SIGHTED:
                continue
            for resample in (self.resample, 0):
                found = [
                    c
                    for c in self.measurements.conditions
                    if c.role == role
                    and c.mode == mode
                    and c.resample == resample
                    and c.prompts == HARMFUL
                    and self._in_frame(c)
                ]
                if found:
                    return found
        return []

    def missing(self, *roles: Role, modes: tuple[Mode, ...] | None = None) -> tuple[Reason, str]:
        """(reason, words) when some of ``roles`` have no condition here (never measured, or measured by
        the first token only, which cannot see incoherence); ("", "") when all are here."""
        absent = [r for r in roles if not self.find(r, modes)]
        if not absent:
            return Reason.NONE, ""
        blind = [r for r in absent if any(c.role == r for c in self.measurements.conditions)]
        if blind and all(c.mode not in SIGHTED for c in self.measurements.conditions if c.role in blind):
            return BLIND_MODE, f"{', '.join(map(str, blind))} measured by the first token only"
        return NOT_MEASURED, f"{', '.join(map(str, absent))} not measured in this scope"

    def incoherent_arm(self, condition: StoredCondition) -> str:
        """Why the condition may not carry a verdict (its guard over the limit, or too many incoherent
        replies), or empty when it may."""
        rate = self.measurements.rates[condition.name]
        if rate.nonfinite:
            return f"{condition.name!r} ran into non-finite activations on {rate.nonfinite} prompt(s)"
        delta = self.measurements.guard.get(condition.name, math.nan)
        limit = self.spec.scoring.max_nll_delta
        if math.isfinite(delta) and delta > limit:
            return f"{condition.name!r} fails the coherence guard (NLL +{delta:.2f} > {limit})"
        if rate.n and rate.incoherent_rate > self.spec.verdicts.max_incoherent:
            return f"{condition.name!r} has {rate.incoherent_rate:.0%} incoherent replies"
        return ""

    def pairs(self, *conditions: StoredCondition) -> Pairs:
        """The conditions' outcomes on their shared test prompts, under this scope's incoherence rule."""
        labels = [self.measurements.labels[c.name] for c in conditions]
        shared = sorted(set.intersection(*(set(x) for x in labels))) if labels else []
        columns: tuple[list[int], ...] = tuple([] for _ in conditions)
        excluded = 0
        for prompt in shared:
            row = [x[prompt] for x in labels]
            if self.incoherent == "exclude" and INCOHERENT in row:
                excluded += 1
                continue
            for column, value in zip(columns, row, strict=True):
                column.append(int(value in (REFUSE, INCOHERENT)))
        return Pairs(columns, excluded)

    def paired(self, a: StoredCondition, b: StoredCondition) -> tuple[list[int], list[int]]:
        pairs = self.pairs(a, b)
        return pairs.columns[0], pairs.columns[1]

    def rate(self, condition: StoredCondition) -> float:
        """The refusal rate under this scope's incoherence rule: among coherent replies, or with
        incoherent replies counted as refusals."""
        values = list(self.measurements.labels[condition.name].values())
        if self.incoherent == "exclude":
            values = [v for v in values if v != INCOHERENT]
        return sum(v in (REFUSE, INCOHERENT) for v in values) / len(values) if values else math.nan
