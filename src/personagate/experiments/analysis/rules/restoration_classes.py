"""``restoration_classes``: adding the refusal direction back restores refusal, partially or fully, at
late layers and not at early ones, as the paper states it.

Every coherent (layer, dose) of the family is compared, in the family's own measurement mode, with
the persona-steered arm (``steered``) and the baseline (``reference``), paired, and classified:
``full`` (equivalent to the baseline, TOST), ``overshoot`` (above the baseline, McNemar), ``partial``
(above the steered arm and below the baseline, both McNemar), ``none`` (equivalent to the steered
arm, TOST), else ``undecided``. In the late band the tests are Holm-corrected over its conditions
(the claim is that *some* late dose restores); in the early band "every dose restores none" is an
intersection-union test (each TOST at alpha), and "some early dose restores" is Holm-corrected.

Reproduced: some late dose partial or full, and every early dose none. Not reproduced: an early dose
restores, or every late dose is none. Otherwise inconclusive (an overshoot-only late band says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from personagate.experiments.analysis.comparisons import Same, Shift, same, shift
from personagate.experiments.analysis.rules.registry import register
from personagate.experiments.analysis.verdict import (
    NOT_MEASURED,
    NOT_REPRODUCED,
    OVERSHOOT,
    REPRODUCED,
    STRADDLES,
    Draft,
)
from personagate.power import mcnemar_power, tost_power
from personagate.stats import holm

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.design.findings import Finding
    from personagate.experiments.storage.records import StoredCondition

RESTORING = ("partial", "full", "overshoot")


def _tests(scope: Evidence, c: StoredCondition, steered: StoredCondition, base: StoredCondition) -> dict[str, object]:
    return {
        "as_steered": same(scope, c, steered),
        "above_steered": shift(scope, c, steered, "above"),
        "as_base": same(scope, c, base),
        "below_base": shift(scope, c, base, "below"),
        "above_base": shift(scope, c, base, "above"),
    }


def _p(test: object) -> float:
    if isinstance(test, Same):
        return test.test.p_value
    if isinstance(test, Shift):
        return test.p_value
    return 1.0


def _classify(p: dict[str, float], alpha: float) -> str:
    if p["as_base"] < alpha:
        return "full"
    if p["above_base"] < alpha:
        return "overshoot"
    if p["above_steered"] < alpha and p["below_base"] < alpha:
        return "partial"
    if p["as_steered"] < alpha:
        return "none"
    return "undecided"


def _adjusted(band: list[dict[str, object]], keys: tuple[str, ...], alpha: float) -> list[dict[str, float]]:
    """Per condition of a band: each test's p, Holm-adjusted over the band for ``keys``."""
    out: list[dict[str, float]] = [{key: _p(tests[key]) for key in tests} for tests in band]
    for key in keys:
        for row, result in zip(out, holm([row[key] for row in out], alpha), strict=True):
            row[key] = result.adjusted
    return out


@register("restoration_classes", needs=("family", "reference", "steered"))
def restoration_classes(scope: Evidence, finding: Finding) -> Draft:
    v = Draft(finding.id, scope.id, finding.claim)
    s, layout = scope.spec.verdicts, scope.layout
    reason, words = scope.missing(finding.role("family"))
    if reason or layout is None:
        return v.inconclusive(reason or NOT_MEASURED, words or "no layout recorded")
    members = scope.find(finding.role("family"))
    mode = members[0].mode
    reason, words = scope.missing(finding.role("steered"), finding.role("reference"), modes=(mode,))
    if reason:
        return v.inconclusive(reason, words + f" in the family's mode ({mode})")
    steered, base = scope.find(finding.role("steered"), (mode,))[0], scope.find(finding.role("reference"), (mode,))[0]
    coherent = [c for c in members if not scope.incoherent_arm(c)]
    early, late = layout.early, layout.late_layers

    def band(span: tuple[int, int]) -> list[StoredCondition]:
        return [c for c in coherent if span[0] <= int(c.axis or 0) < span[1]]

    early_c, late_c = band(early), band(late)
    early_tests = [_tests(scope, c, steered, base) for c in early_c]
    late_tests = [_tests(scope, c, steered, base) for c in late_c]
    restore_keys = ("as_base", "above_base", "above_steered", "below_base")
    late_p = _adjusted(late_tests, (*restore_keys, "as_steered"), s.alpha)
    early_p = _adjusted(early_tests, restore_keys, s.alpha)  # "none" stays unadjusted: intersection-union
    late_classes = [_classify(p, s.alpha) for p in late_p]
    early_classes = [_classify(p, s.alpha) for p in early_p]
    rate_steered, rate_base = scope.rate(steered), scope.rate(base)
    for name, members_, classes, tests in (
        ("early", early_c, early_classes, early_tests),
        ("late", late_c, late_classes, late_tests),
    ):
        for c, cls, t in zip(members_, classes, tests, strict=True):
            pair = t["above_steered"]
            v.table.append(
                {
                    "band": name,
                    "layer": int(c.axis or 0),
                    "dose": c.dose,
                    "class": cls,
                    "refusal": round(scope.rate(c), 4),
                    "restored": round(scope.rate(c) - rate_steered, 4),
                    "n": pair.difference.n if isinstance(pair, Shift) else 0,
                    "condition": c.name,
                }
            )
    v.statistic = (
        "per (layer, dose): TOST vs baseline (full) and vs persona (none), exact McNemar above persona and "
        "below/above baseline; Holm within the late band; the early band's 'none' intersection-union"
    )
    ns = [row["n"] for row in v.table if row["n"]]
    v.n = min(ns) if ns else 0
    v.excluded = max(
        (t["above_steered"].pairs.excluded for t in early_tests + late_tests if isinstance(t["above_steered"], Shift)),
        default=0,
    )
    if v.n:
        k = max(1, len(late_c))
        v.power = min(
            mcnemar_power(v.n, s.expected_discordance, min(s.margin, s.expected_discordance), s.alpha / k),
            tost_power(v.n, s.expected_discordance, s.margin, s.alpha),
        )
    best = max(late_c, key=lambda c: scope.rate(c), default=None)
    if best is not None:
        top = shift(scope, best, steered, "above")
        if top is not None:
            v.effect, v.ci_low, v.ci_high = top.diff, top.difference.ci_low, top.difference.ci_high
            v.p_value = top.p_value
    relative = ""
    if layout is not None:
        inj = layout.injection
        relative = (
            f"early band [{early[0]}, {early[1]}) = {early[0] - inj:+d}..{early[1] - 1 - inj:+d} "
            f"from the injection at {inj}; late band [{late[0]}, {late[1]}) = "
            f"{late[0] - inj:+d}..{late[1] - 1 - inj:+d}"
        )
    counts = {
        name: {k: classes.count(k) for k in ("none", "partial", "full", "overshoot", "undecided") if classes.count(k)}
        for name, classes in (("early", early_classes), ("late", late_classes))
    }
    v.conditions = [row["condition"] for row in v.table if row["class"] in RESTORING]  # type: ignore[misc]
    v.detail = (
        f"{relative}; persona {rate_steered:.1%}, baseline {rate_base:.1%} ({mode}); "
        f"early {counts['early'] or 'no coherent dose'}, late {counts['late'] or 'no coherent dose'}; "
        f"{len(members) - len(coherent)} incoherent conditions excluded"
    )
    if any(c in RESTORING for c in early_classes) or (late_classes and all(c == "none" for c in late_classes)):
        v.outcome = NOT_REPRODUCED
    elif (
        any(c in ("partial", "full") for c in late_classes)
        and early_classes
        and all(c == "none" for c in early_classes)
    ):
        v.outcome = REPRODUCED
    elif not early_classes:
        v.inconclusive(NOT_MEASURED, "no coherent dose in the early band")
    elif late_classes and all(c in ("overshoot", "none") for c in late_classes) and "overshoot" in late_classes:
        v.inconclusive(OVERSHOOT, "the late doses that restore overshoot the baseline")
    else:
        v.inconclusive(STRADDLES)
    return v
