"""``Scope``: the conditions one set of verdicts is computed on (a resample, and the measurement modes
to prefer), and the questions every rule asks of them: which condition plays a role, may it carry a
verdict, and its outcomes paired prompt by prompt with another's."""

from __future__ import annotations

import math

from personagate.experiments.analysis.measurements import Measurements
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import HARMFUL, Mode, Role
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.storage.records import StoredCondition


class Scope:
    def __init__(
        self,
        measurements: Measurements,
        spec: StudySpec,
        layout: Layout | None,
        resample: int,
        modes: tuple[Mode, ...],
        label: str,
    ) -> None:
        self.measurements, self.spec, self.layout = measurements, spec, layout
        self.resample, self.modes, self.label = resample, modes, label

    def find(self, role: Role, modes: tuple[Mode, ...] | None = None) -> list[StoredCondition]:
        """Conditions with ``role`` on the test prompts in this resample (falling back to resample 0 for
        arms that use no resampled direction, such as the baseline), in the first of ``modes`` that
        has any."""
        for mode in modes or self.modes:
            for resample in (self.resample, 0):
                found = [
                    c
                    for c in self.measurements.conditions
                    if c.role == role and c.mode == mode and c.resample == resample and c.prompts == HARMFUL
                ]
                if found:
                    return found
        return []

    def incoherent(self, condition: StoredCondition) -> str:
        """Why the condition may not carry a verdict (its guard over the limit, or too many incoherent
        replies), or empty when it may."""
        rate = self.measurements.rates[condition.name]
        delta = self.measurements.guard.get(condition.name, math.nan)
        limit = self.spec.scoring.max_nll_delta
        if math.isfinite(delta) and delta > limit:
            return f"{condition.name!r} fails the coherence guard (NLL +{delta:.2f} > {limit})"
        if rate.n and rate.incoherent_rate > self.spec.verdicts.max_incoherent:
            return f"{condition.name!r} has {rate.incoherent_rate:.0%} incoherent replies"
        return ""

    def paired(self, a: StoredCondition, b: StoredCondition) -> tuple[list[int], list[int]]:
        """The two conditions' refusal outcomes on the prompts both were measured on, in prompt order."""
        x, y = self.measurements.outcomes[a.name], self.measurements.outcomes[b.name]
        shared = sorted(set(x) & set(y))
        return [x[i] for i in shared], [y[i] for i in shared]

    def refusal_rate(self, condition: StoredCondition) -> float:
        return self.measurements.rates[condition.name].refusal_rate
