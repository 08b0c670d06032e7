"""Verdicts computed from rules the spec declared before the run: reproduced, not reproduced, or
inconclusive, with the numbers behind each.

Every comparison pairs conditions prompt by prompt (they share the test prompts): exact McNemar and a
paired bootstrap interval for a difference, paired TOST for "equal within the margin", Holm within a
family of sweeps, an empirical p-value over random seeds for a control. A condition that is not
coherent (its guard over the limit, or too many incoherent replies) cannot carry a verdict, and a
verdict on fewer prompts than ``min_n`` is inconclusive (underpowered), whatever its numbers say.

Verdicts are computed twice: the main ones (resample 0, verdict-carrying conditions in the main
mode), and per resample of the directions in the sweep mode (like with like), for robustness. The
rules themselves live in ``analysis.rules``, one module each.
"""

from __future__ import annotations

from collections.abc import Sequence

from personagate.experiments.analysis.evidence import Evidence
from personagate.experiments.analysis.measurements import Measurements
from personagate.experiments.analysis.rules import RULES
from personagate.experiments.analysis.verdict import (
    INCONCLUSIVE,
    PREREQUISITE,
    REPRODUCED,
    SENSITIVITY,
    STRADDLES,
    UNDERPOWERED,
    Verdict,
)
from personagate.experiments.design.findings import Finding
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.spec import StudySpec


def compute_verdicts(
    measurements: Measurements, spec: StudySpec, layout: Layout | None, resamples: Sequence[int]
) -> tuple[Verdict, ...]:
    """The main verdicts, then one set per resample of the directions (sweep mode)."""
    if not spec.findings:
        return ()
    main, sweep = spec.generation.main, spec.generation.sweep
    modes = tuple(dict.fromkeys((main, sweep, spec.multiturn.mode)))  # the multi-turn family has its own mode
    scopes = [Evidence(measurements, spec, layout, 0, modes, "main")]
    for index, seed in enumerate(resamples or [0]):
        scopes.append(Evidence(measurements, spec, layout, index, (sweep,), f"resample {seed} ({sweep})"))
    out: list[Verdict] = []
    for scope in scopes:
        done: dict[str, Verdict] = {}
        for finding in spec.findings:
            if finding.frame and scope.label != "main":
                continue  # the multi-turn family is measured on resample 0 only: no resample verdicts
            verdict = _with_sensitivity(scope, finding)
            verdict.kind = finding.kind
            required = done.get(finding.requires)
            if required is not None and required.outcome != REPRODUCED and verdict.outcome == REPRODUCED:
                verdict.inconclusive(PREREQUISITE, f"requires {required.finding!r}, which is {required.outcome}")
            min_n = spec.verdicts.min_n
            if 0 < verdict.n < min_n:  # said even when the numbers are inconclusive anyway
                pointing = "" if verdict.outcome == INCONCLUSIVE else f"; the numbers point to {verdict.outcome}"
                verdict.inconclusive(UNDERPOWERED, f"underpowered (n={verdict.n} < {min_n}{pointing})")
                if verdict.reason == STRADDLES:  # straddling the margin is what too few prompts looks like
                    verdict.reason = UNDERPOWERED
            done[finding.id] = verdict
            out.append(verdict)
    return tuple(out)


def _with_sensitivity(scope: Evidence, finding: Finding) -> Verdict:
    """The rule on coherent pairs, then with incoherent replies counted as refusals: the primary
    verdict stands only when both reach the same outcome."""
    rule = RULES[finding.rule]
    scope = scope.framed(finding.frame)
    primary = rule.compute(scope.with_incoherent("exclude"), finding)
    sensitivity = rule.compute(scope.with_incoherent("refuse"), finding)
    if primary.outcome == sensitivity.outcome:
        if primary.excluded:
            primary.detail += (
                f"; {primary.excluded} prompt(s) with an incoherent reply left out; counting them as refusals "
                "gives the same outcome"
            )
        return primary
    return primary.inconclusive(
        SENSITIVITY,
        f"on coherent pairs {primary.outcome}, with incoherent replies counted as refusals {sensitivity.outcome}",
    )
