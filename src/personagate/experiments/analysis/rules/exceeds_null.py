"""``exceeds_null``: the treated arm restores more refusal than random directions do, by the margin.

Restoration = refusal under the condition minus under the steered arm (``baseline`` in the finding),
all measured in the nulls' mode. The bar is the 95th percentile of the random seeds' restorations
(and every named null, e.g. the style personas' directions projected out); reproduced when the
restoration clears the bar by the margin, not reproduced when it does not reach the bar, inconclusive
in between. Fewer seeds than ``verdicts.min_seeds`` cannot decide. The empirical p-value
((1 + seeds restoring as much) / (1 + seeds)) and the restoration's paired bootstrap 95% CI are
reported beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

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
from personagate.experiments.design.names import Role
from personagate.power import bar_detectable, bar_power
from personagate.stats import empirical_p_value, paired_difference

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.design.findings import Finding


@register("exceeds_null", needs=("treated", "null", "baseline"))
def exceeds_null(scope: Evidence, finding: Finding) -> Draft:
    v = Draft(finding.id, scope.id, finding.claim)
    s, sweep = scope.spec.verdicts, scope.spec.generation.sweep
    null_role = finding.role("null")
    reason, words = scope.missing(null_role, modes=(sweep,))
    nulls = scope.find(null_role, (sweep,))
    if reason:
        return v.inconclusive(reason, words)
    mode = nulls[0].mode
    reason, words = scope.missing(finding.role("treated"), finding.role("baseline"), modes=(mode,))
    if reason:
        return v.inconclusive(reason, words + f" in the nulls' mode ({mode})")
    treated, steered = scope.find(finding.role("treated"), (mode,))[0], scope.find(finding.role("baseline"), (mode,))[0]
    named_role = finding.optional("named")
    named = scope.find(named_role, (mode,)) if named_role else []
    base = scope.rate(steered)
    observed = scope.rate(treated) - base
    null = [scope.rate(c) - base for c in nulls if not scope.incoherent_arm(c)]
    named_values = {c.name: scope.rate(c) - base for c in named if not scope.incoherent_arm(c)}
    v.conditions = [treated.name, steered.name, f"{len(nulls)} x {null_role}", *named_values]
    v.statistic = (
        f"restoration vs the 95th percentile of {len(null)} random seeds (and {len(named_values)} named nulls) "
        "+ margin; empirical p; paired bootstrap 95% CI of the restoration"
    )
    pairs = scope.pairs(treated, steered)
    v.n, v.excluded = pairs.n, pairs.excluded
    if pairs.n:
        diff = paired_difference(*pairs.columns, n_boot=s.bootstrap, seed=s.seed)
        v.ci_low, v.ci_high = diff.ci_low, diff.ci_high
        v.power = bar_power(pairs.n, s.expected_discordance, s.margin)
        v.detectable = s.margin + bar_detectable(pairs.n, s.expected_discordance)
    if not null or not np.isfinite(observed):
        return v.inconclusive(NOT_MEASURED, "no coherent random control")
    v.effect = observed
    v.p_value = empirical_p_value(observed, null, greater=True)
    bar = max([float(np.quantile(null, 0.95)), *named_values.values()])
    named_text = ", ".join(f"{k} {x:+.1%}" for k, x in named_values.items())
    positive = scope.find(Role.POSITIVE_CONTROL, (mode,))
    control = ""
    if positive:
        control = (
            f"; positive control (the injected vector projected out) restores {scope.rate(positive[0]) - base:+.1%}"
        )
    v.detail = (
        f"restores {observed:+.1%}; random seeds median {float(np.median(null)):+.1%}, 95th percentile "
        f"{float(np.quantile(null, 0.95)):+.1%} (range {min(null):+.1%} to {max(null):+.1%})"
        + (f"; named nulls {named_text}" if named_text else "")
        + f"; bar {bar:+.1%} + margin {s.margin:g}{control}"
    )
    if why := scope.incoherent_arm(treated):
        return v.inconclusive(INCOHERENT_ARM, why)
    if len(null) < s.min_seeds:
        return v.inconclusive(FEW_SEEDS, f"{len(null)} coherent seeds < {s.min_seeds}")
    if observed >= bar + s.margin:
        v.outcome = REPRODUCED
    elif observed <= bar:
        v.outcome = NOT_REPRODUCED
    else:
        v.inconclusive(STRADDLES)
    return v
