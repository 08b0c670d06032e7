"""``decrease``: the treated arm refuses less than the reference, by at least the margin (one-sided
exact McNemar on coherent pairs, paired bootstrap 95% CI of the difference)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from personagate.experiments.analysis.comparisons import rates, shift
from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import (
    INCOHERENT_ARM,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    STRADDLES,
    Draft,
)

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.design.findings import Finding


@register("decrease", needs=("treated", "reference"))
def decrease(scope: Evidence, finding: Finding) -> Draft:
    v = Draft(finding.id, scope.id, finding.claim)
    reason, words = scope.missing(finding.role("treated"), finding.role("reference"))
    if reason:
        return v.inconclusive(reason, words)
    treated, reference = scope.find(finding.role("treated"))[0], scope.find(finding.role("reference"))[0]
    v.conditions = [treated.name, reference.name]
    result = shift(scope, treated, reference, "below")
    if result is None:
        return v.inconclusive(NOT_MEASURED, "no shared coherent prompts")
    s, diff = scope.spec.verdicts, result.difference
    v.statistic = "exact McNemar (one-sided) + paired bootstrap 95% CI, coherent pairs"
    v.n, v.excluded, v.power, v.detectable = diff.n, result.pairs.excluded, result.power, result.detectable
    v.effect, v.ci_low, v.ci_high, v.p_value = diff.diff, diff.ci_low, diff.ci_high, result.p_value
    v.detail = f"{rates(*result.pairs.columns)}; discordant {diff.b10} up, {diff.b01} down"
    if why := scope.incoherent_arm(treated):
        return v.inconclusive(INCOHERENT_ARM, why)
    if result.p_value < s.alpha and diff.diff <= -s.margin:
        v.outcome = REPRODUCED
    elif diff.ci_low > -s.margin:
        v.outcome = NOT_REPRODUCED
    else:
        v.inconclusive(STRADDLES)
    return v
