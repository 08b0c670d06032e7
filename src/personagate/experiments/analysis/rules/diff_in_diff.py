"""``diff_in_diff``: projecting the persona direction out of a late window restores refusal to baseline,
beyond what the same projection does to the unsteered model, and more than earlier windows do.

Three parts, all on coherent prompts shared by the arms they compare:
1. the difference in differences, per prompt (treated - steered) - (control - reference): the
   restoration under steering minus the projection's own effect on the unsteered model, with a
   paired bootstrap 95% CI (it must be above 0);
2. the treated arm equivalent to the reference (paired TOST within the margin);
3. the late window restoring more than each earlier window (``family``, exact McNemar, Holm), in the
   mode the windows were swept in.
Reproduced when all three hold; not reproduced when the difference in differences is at most 0, the
treated arm is shown unequal to the reference, or an earlier window restores significantly more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from personagate.experiments.analysis.comparisons import rates, same, shift
from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import (
    INCOHERENT_ARM,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    STRADDLES,
    Draft,
)
from personagate.stats import bootstrap_mean_ci, holm

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.design.findings import Finding


@register("diff_in_diff", needs=("treated", "steered", "reference", "control"))
def diff_in_diff(scope: Evidence, finding: Finding) -> Draft:
    v = Draft(finding.id, scope.id, finding.claim)
    s = scope.spec.verdicts
    roles = [finding.role(k) for k in ("treated", "steered", "reference", "control")]
    reason, words = scope.missing(*roles)
    if reason:
        return v.inconclusive(reason, words)
    treated = scope.find(roles[0])[0]
    mode = treated.mode
    reason, words = scope.missing(*roles[1:], modes=(mode,))
    if reason:
        return v.inconclusive(reason, words + f" in the treated arm's mode ({mode})")
    steered, reference, control = (scope.find(r, (mode,))[0] for r in roles[1:])
    v.conditions = [treated.name, steered.name, reference.name, control.name]
    pairs = scope.pairs(treated, steered, reference, control)
    if not pairs.n:
        return v.inconclusive(NOT_MEASURED, "no prompt with four coherent replies")
    t, st, ref, ctl = (np.asarray(x, dtype=float) for x in pairs.columns)
    did = (t - st) - (ctl - ref)
    estimate, low, high = bootstrap_mean_ci(did, n_boot=s.bootstrap, seed=s.seed)
    v.effect, v.ci_low, v.ci_high, v.n, v.excluded = estimate, low, high, pairs.n, pairs.excluded
    equal = same(scope, treated, reference)
    if equal is None:
        return v.inconclusive(NOT_MEASURED, "no shared coherent prompts with the reference")
    v.p_value, v.power, v.detectable = equal.test.p_value, equal.power, equal.detectable
    earlier, comparisons = _earlier_windows(scope, finding, treated)
    v.statistic = (
        "difference in differences (treated - steered) - (control - reference), paired bootstrap 95% CI; "
        f"p = paired TOST vs {reference.name!r} within {s.margin:g}; late vs {len(earlier)} earlier window(s): "
        "exact McNemar, Holm"
    )
    restoration, own = float((t - st).mean()), float((ctl - ref).mean())
    v.detail = (
        f"restoration under steering {restoration:+.1%}, the projection's own effect on the unsteered model "
        f"{own:+.1%}, difference {estimate:+.1%} [{low:+.1%}, {high:+.1%}]; {rates(*equal.pairs.columns)} "
        f"(TOST {'equivalent' if equal.test.equivalent else 'not shown equivalent'}, 90% CI "
        f"[{equal.test.ci_low:+.3f}, {equal.test.ci_high:+.3f}])"
    )
    later_wins, earlier_wins = True, False
    if comparisons:
        above = holm([c[1].p_value for c in comparisons], s.alpha)
        below = holm([c[2].p_value for c in comparisons], s.alpha)
        later_wins = all(r.reject for r in above)
        earlier_wins = any(r.reject for r in below)
        v.detail += "; late minus earlier windows: " + ", ".join(f"{name} {c.diff:+.1%}" for name, c, _ in comparisons)
    else:
        v.detail += "; no earlier window measured"
    for c in (treated, control):
        if why := scope.incoherent_arm(c):
            return v.inconclusive(INCOHERENT_ARM, why)
    unequal = equal.test.ci_high < -s.margin or equal.test.ci_low > s.margin
    if low > 0 and equal.test.equivalent and later_wins and comparisons:
        v.outcome = REPRODUCED
    elif high <= 0 or unequal or earlier_wins:
        v.outcome = NOT_REPRODUCED
    elif not comparisons:
        v.inconclusive(NOT_MEASURED, "no earlier window to compare the late one with")
    else:
        v.inconclusive(STRADDLES)
    return v


def _earlier_windows(scope: Evidence, finding: Finding, treated) -> tuple[list, list]:
    """The windows before the late one (``family``) and, per window, (name, late above it, late below it),
    the late window taken in the same mode as the sweep."""
    family = finding.optional("family")
    if family is None or treated.window is None:
        return [], []
    windows = [c for c in scope.find(family) if c.window is not None and c.window[0] < treated.window[0]]
    if not windows:
        return [], []
    mode = windows[0].mode
    late = [c for c in scope.find(finding.role("treated"), (mode,)) if c.window == treated.window]
    if not late:
        return windows, []
    out = []
    for c in windows:
        up, down = shift(scope, late[0], c, "above"), shift(scope, late[0], c, "below")
        if up is not None and down is not None:
            out.append((f"[{c.window[0]}:{c.window[1]})", up, down))
    return windows, out
