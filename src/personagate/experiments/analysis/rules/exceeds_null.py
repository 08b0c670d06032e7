"""``exceeds_null``: the treated arm restores more refusal than random directions do (an empirical
p-value over the null's seeds; restoration = refusal under the condition minus under the
``baseline`` arm, all in the nulls' mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Verdict
from personagate.experiments.design.names import Role
from personagate.stats import empirical_p_value, paired_difference

if TYPE_CHECKING:
    from personagate.experiments.analysis.scope import Scope
    from personagate.experiments.design.findings import Finding


@register("exceeds_null", needs=("treated", "null", "baseline"))
def exceeds_null(scope: Scope, finding: Finding) -> Verdict:
    v = Verdict(finding.id, scope.label, INCONCLUSIVE, finding.claim)
    s, sweep, main = scope.spec.verdicts, scope.spec.generation.sweep, scope.spec.generation.main
    nulls = scope.find(finding.role("null"), (sweep,))
    treated = scope.find(finding.role("treated"), (sweep,))
    steered = scope.find(finding.role("baseline"), (sweep,))
    if not nulls or not treated or not steered:
        v.detail = "not measured in this scope"
        return v
    base = scope.refusal_rate(steered[0])
    observed = scope.refusal_rate(treated[0]) - base
    null = [scope.refusal_rate(c) - base for c in nulls if not scope.incoherent(c)]
    v.statistic = (
        f"empirical p over {len(null)} random seeds ((1 + seeds restoring as much) / (1 + seeds)); "
        "paired bootstrap 95% CI of the restoration"
    )
    v.n = scope.measurements.rates[treated[0].name].n
    v.conditions = [treated[0].name, steered[0].name, f"{len(nulls)} x {finding.role('null')}"]
    if not null:
        v.detail = "no coherent random control"
        return v
    v.effect = observed
    v.p_value = empirical_p_value(observed, null, greater=True)
    null_sorted = sorted(null)
    median = null_sorted[len(null_sorted) // 2]
    a, b = scope.paired(treated[0], steered[0])  # the interval is the restoration's own (the null's range is in detail)
    if a:
        diff = paired_difference(a, b, n_boot=s.bootstrap, seed=s.seed)
        v.ci_low, v.ci_high = diff.ci_low, diff.ci_high
    positive = scope.find(Role.POSITIVE_CONTROL, (sweep, main))
    control = ""
    if positive:
        restored = scope.refusal_rate(positive[0]) - base
        control = f"; positive control (the injected vector projected out) restores {restored:+.1%}"
    spread = f"range {null_sorted[0]:+.1%} to {null_sorted[-1]:+.1%}"
    v.detail = f"persona window restores {observed:+.1%}; random seeds restore median {median:+.1%} ({spread}){control}"
    if reason := scope.incoherent(treated[0]):
        v.detail = reason + "; " + v.detail
        return v
    floor = 1 / (1 + len(null))
    if floor >= s.alpha:
        v.detail = f"{len(null)} seeds cannot reach p < {s.alpha} (smallest p {floor:.3f}); " + v.detail
        return v
    if v.p_value < s.alpha:
        v.outcome = REPRODUCED
    elif median >= observed or median >= s.margin:
        v.outcome = NOT_REPRODUCED
    return v
