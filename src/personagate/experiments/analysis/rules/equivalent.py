"""``equivalent`` (protocol v2): the treated arm refuses as often as the reference, within the margin
(paired TOST on coherent pairs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import (
    INCOHERENT_ARM,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    STRADDLES,
    Draft,
)
from personagate.stats import tost_paired

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.design.findings import Finding


@register("equivalent", needs=("treated", "reference"))
def equivalent(scope: Evidence, finding: Finding) -> Draft:
    v = Draft(finding.id, scope.id, finding.claim)
    reason, words = scope.missing(finding.role("treated"), finding.role("reference"))
    if reason:
        return v.inconclusive(reason, words)
    treated, reference = scope.find(finding.role("treated")), scope.find(finding.role("reference"))
    a, b = scope.paired(treated[0], reference[0])
    v.conditions = [treated[0].name, reference[0].name]
    if not a:
        return v.inconclusive(NOT_MEASURED, "no shared coherent prompts")
    s = scope.spec.verdicts
    tost = tost_paired(a, b, s.margin, s.alpha)
    v.statistic, v.n = f"paired TOST, margin {s.margin:g} ({1 - 2 * s.alpha:.0%} CI)", tost.n
    v.effect, v.ci_low, v.ci_high, v.p_value = tost.diff, tost.ci_low, tost.ci_high, tost.p_value
    v.detail = f"refusal {sum(a) / len(a):.1%} vs {sum(b) / len(b):.1%}"
    if why := scope.incoherent_arm(treated[0]):
        return v.inconclusive(INCOHERENT_ARM, why)
    if tost.equivalent:
        v.outcome = REPRODUCED
    elif tost.ci_high < -s.margin or tost.ci_low > s.margin:
        v.outcome = NOT_REPRODUCED
    else:
        v.inconclusive(STRADDLES)
    return v
