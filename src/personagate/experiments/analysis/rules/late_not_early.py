"""``late_not_early`` (protocol v2): adding the refusal direction back restores refusal at late layers and not at
early ones (paired TOST against the reference per coherent (layer, dose), Holm within the family)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import (
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    STRADDLES,
    Draft,
)
from personagate.stats import holm, mcnemar_exact, tost_paired

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.design.findings import Finding
    from personagate.experiments.storage.records import StoredCondition


@register("late_not_early", needs=("family", "reference"))
def late_not_early(scope: Evidence, finding: Finding) -> Draft:
    v = Draft(finding.id, scope.id, finding.claim)
    members = scope.find(finding.role("family"))
    reference = scope.find(finding.role("reference"))
    if not members or not reference or scope.layout is None:
        reason, words = scope.missing(finding.role("family"), finding.role("reference"))
        return v.inconclusive(reason or NOT_MEASURED, words or "no layout recorded")
    s = scope.spec.verdicts
    early, late = scope.layout.early, scope.layout.late_layers
    coherent = [c for c in members if not scope.incoherent_arm(c)]
    tests = []
    for c in coherent:
        a, b = scope.paired(c, reference[0])
        tests.append((c, tost_paired(a, b, s.margin, s.alpha), mcnemar_exact(a, b, "less"), len(a)))
    equivalence = holm([t[1].p_value for t in tests], s.alpha)
    deficit = holm([t[2] for t in tests], s.alpha)
    restores = {t[0].name: e.reject for t, e in zip(tests, equivalence, strict=True)}
    below = {t[0].name: d.reject and t[1].diff <= -s.margin for t, d in zip(tests, deficit, strict=True)}

    def within(c: StoredCondition, span: tuple[int, int]) -> bool:
        return span[0] <= float(c.axis or 0) < span[1]

    early_c = [c for c in coherent if within(c, early)]
    late_c = [c for c in coherent if within(c, late)]
    late_restoring = [c for c in late_c if restores[c.name]]
    early_restoring = [c for c in early_c if restores[c.name]]
    v.statistic = f"paired TOST per (layer, dose) vs baseline, Holm over {len(tests)} coherent conditions"
    v.n = min((t[3] for t in tests), default=0)
    v.conditions = [c.name for c in late_restoring + early_restoring]
    smallest: dict[float, float] = {}
    for c in coherent:
        if restores[c.name]:
            layer = float(c.axis or 0)
            smallest[layer] = min(smallest.get(layer, math.inf), float(c.dose or 0))
    dropped = len(members) - len(coherent)
    v.detail = (
        f"late layers {late[0]}-{late[1] - 1}: {len(late_restoring)} of {len(late_c)} coherent conditions restore; "
        f"early layers {early[0]}-{early[1] - 1}: {len(early_restoring)} of {len(early_c)} restore; "
        f"{dropped} conditions excluded as incoherent; smallest restoring dose by layer: "
        + (", ".join(f"{int(layer)}: x{dose:g}" for layer, dose in sorted(smallest.items())) or "none")
    )
    if early_restoring or (late_c and not late_restoring and all(below[c.name] for c in late_c)):
        v.outcome = NOT_REPRODUCED
    elif late_restoring and early_c and all(below[c.name] for c in early_c):  # no early evidence: inconclusive
        v.outcome = REPRODUCED
    else:
        v.inconclusive(STRADDLES)
    return v
