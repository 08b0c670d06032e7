"""``projection_trend``: the persona projection at the probe turn rises with the family's axis (k).

The projection is read at each probe's last prompt token (where the reply is predicted), at the
injection layer, on the persona direction's unit vector; the family's arms are paired by prompt.
A within-prompt permutation test of Page's weighted sum tests a rising trend; the mean change from
the smallest k to the largest, with its paired bootstrap 95% CI, is the effect. Reproduced when the
trend is significant and the CI lies above zero; not reproduced when the CI lies at or below zero;
inconclusive otherwise. No reply is read, so incoherence does not enter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import (
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    STRADDLES,
    Draft,
)
from personagate.stats import bootstrap_mean_ci, paired_trend

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.design.findings import Finding


@register("projection_trend", needs=("family",))
def projection_trend(scope: Evidence, finding: Finding) -> Draft:
    v = Draft(finding.id, scope.id, finding.claim)
    reason, words = scope.missing(finding.role("family"))
    if reason:
        return v.inconclusive(reason, words)
    family = sorted(scope.find(finding.role("family")), key=lambda c: float(c.axis or 0))
    v.conditions = [c.name for c in family]
    read = [scope.measurements.projections.get(c.name) for c in family]
    if len(family) < 3 or any(r is None for r in read):
        return v.inconclusive(NOT_MEASURED, "the projection was not read at 3 or more points on the axis")
    shared = sorted(set.intersection(*(set(r) for r in read if r is not None)))
    columns = [[r[i] for i in shared] for r in read if r is not None]
    v.n = len(shared)
    if not shared:
        return v.inconclusive(NOT_MEASURED, "no prompt was read under every arm")
    s = scope.spec.verdicts
    change = [b - a for a, b in zip(columns[0], columns[-1], strict=True)]
    v.effect, v.ci_low, v.ci_high = bootstrap_mean_ci(change, n_boot=s.bootstrap, seed=s.seed)
    v.p_value = paired_trend(columns, decreasing=False, n_resamples=s.bootstrap, seed=s.seed)
    v.statistic = (
        "within-prompt permutation test of a rising trend (Page's weighted sum) + paired bootstrap 95% CI of the "
        "projection at the largest k minus the smallest"
    )
    by_axis = ", ".join(f"k={c.axis:g}: {sum(col) / len(col):+.2f}" for c, col in zip(family, columns, strict=True))
    v.detail = f"mean persona projection {by_axis}"
    if v.p_value < s.alpha and v.ci_low > 0:
        v.outcome = REPRODUCED
    elif v.ci_high <= 0:
        v.outcome = NOT_REPRODUCED
    else:
        v.inconclusive(STRADDLES, "the projection's change straddles zero")
    return v
