"""``equivalent``: the treated arm refuses as often as the reference, within the margin (paired TOST)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Verdict
from personagate.stats import tost_paired

if TYPE_CHECKING:
    from personagate.experiments.analysis.scope import Scope
    from personagate.experiments.design.findings import Finding


@register("equivalent", needs=("treated", "reference"))
def equivalent(scope: Scope, finding: Finding) -> Verdict:
    v = Verdict(finding.id, scope.label, INCONCLUSIVE, finding.claim)
    treated, reference = scope.find(finding.role("treated")), scope.find(finding.role("reference"))
    if not treated or not reference:
        v.detail = "not measured in this scope"
        return v
    a, b = scope.paired(treated[0], reference[0])
    v.conditions = [treated[0].name, reference[0].name]
    if not a:
        v.detail = "no shared prompts"
        return v
    s = scope.spec.verdicts
    tost = tost_paired(a, b, s.margin, s.alpha)
    v.statistic, v.n = f"paired TOST, margin {s.margin:g} ({1 - 2 * s.alpha:.0%} CI)", tost.n
    v.effect, v.ci_low, v.ci_high, v.p_value = tost.diff, tost.ci_low, tost.ci_high, tost.p_value
    v.detail = f"refusal {sum(a) / len(a):.1%} vs {sum(b) / len(b):.1%}"
    if reason := scope.incoherent(treated[0]):
        v.detail = reason + "; " + v.detail
        return v
    if tost.equivalent:
        v.outcome = REPRODUCED
    elif tost.ci_high < -s.margin or tost.ci_low > s.margin:
        v.outcome = NOT_REPRODUCED
    return v
