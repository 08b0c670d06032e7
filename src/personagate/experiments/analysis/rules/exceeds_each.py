"""``exceeds_each``: the treated arm's suppression of refusal is specific to it: it exceeds, by the
margin, the suppression of each named comparator (the style personas injected at the same norm;
paired, exact McNemar, Holm over them) and the 95th percentile of a null of random vectors added at
the same norm (``null``, at least ``verdicts.min_seeds`` seeds), all in the comparators' mode.

Reproduced when it beats every comparator and the null by the margin; not reproduced when some
comparator is shown to suppress within the margin of it (the paired CI of the difference lies above
minus the margin) or its suppression does not reach the null's 95th percentile; else inconclusive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from personagate.experiments.analysis.comparisons import shift
from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import (
    FEW_SEEDS,
    INCOHERENT_ARM,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    STRADDLES,
    Draft,
)
from personagate.stats import holm

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.design.findings import Finding


@register("exceeds_each", needs=("treated", "reference", "named", "null"))
def exceeds_each(scope: Evidence, finding: Finding) -> Draft:
    v = Draft(finding.id, scope.id, finding.claim)
    s = scope.spec.verdicts
    reason, words = scope.missing(finding.role("named"))
    if reason:
        return v.inconclusive(reason, words)
    named = scope.find(finding.role("named"))
    mode = named[0].mode
    reason, words = scope.missing(
        finding.role("treated"), finding.role("reference"), finding.role("null"), modes=(mode,)
    )
    if reason:
        return v.inconclusive(reason, words + f" in the comparators' mode ({mode})")
    treated, reference = (
        scope.find(finding.role("treated"), (mode,))[0],
        scope.find(finding.role("reference"), (mode,))[0],
    )
    nulls = [c for c in scope.find(finding.role("null"), (mode,)) if not scope.incoherent_arm(c)]
    comparators = [c for c in named if not scope.incoherent_arm(c)]
    results = [(c, shift(scope, treated, c, "below")) for c in comparators]
    results = [(c, r) for c, r in results if r is not None]
    if not results:
        return v.inconclusive(NOT_MEASURED, "no coherent comparator shares prompts with the treated arm")
    adjusted = holm([r.p_value for _, r in results], s.alpha)
    suppression = scope.rate(reference) - scope.rate(treated)
    null = [scope.rate(reference) - scope.rate(c) for c in nulls]
    bar = float(np.quantile(null, 0.95)) if null else float("nan")
    weakest = max(results, key=lambda item: item[1].diff)  # the comparator closest to the treated arm
    w = weakest[1]
    v.conditions = [
        treated.name,
        reference.name,
        *(c.name for c, _ in results),
        f"{len(nulls)} x {finding.role('null')}",
    ]
    v.statistic = (
        f"exact McNemar (one-sided), Holm over {len(results)} comparators, paired bootstrap 95% CI; "
        f"suppression vs the 95th percentile of {len(null)} random additions + margin"
    )
    v.effect, v.ci_low, v.ci_high, v.p_value = w.diff, w.difference.ci_low, w.difference.ci_high, w.p_value
    v.n, v.excluded, v.power, v.detectable = w.difference.n, w.pairs.excluded, w.power, w.detectable
    per = ", ".join(f"{c.name}: {r.diff:+.1%}" for c, r in results)
    v.detail = f"suppression {suppression:+.1%} ({mode}); treated minus each comparator: {per}; random additions " + (
        f"median {float(np.median(null)):+.1%}, 95th percentile {bar:+.1%}" if null else "none coherent"
    )
    if why := scope.incoherent_arm(treated):
        return v.inconclusive(INCOHERENT_ARM, why)
    beats = all(a.reject and r.diff <= -s.margin for (_, r), a in zip(results, adjusted, strict=True))
    matched = any(r.difference.ci_low > -s.margin for _, r in results)
    if (null and suppression <= bar) or matched:
        v.outcome = NOT_REPRODUCED
    elif len(null) < s.min_seeds:
        v.inconclusive(FEW_SEEDS, f"{len(null)} coherent random additions < {s.min_seeds}")
    elif beats and suppression >= bar + s.margin:
        v.outcome = REPRODUCED
    else:
        v.inconclusive(STRADDLES)
    return v
