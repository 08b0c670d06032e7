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
    MAIN,
    PREREQUISITE,
    REPRODUCED,
    SENSITIVITY,
    STRADDLES,
    UNDERPOWERED,
    Amendment,
    EvidenceId,
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
    sets = [Evidence(measurements, spec, layout, 0, modes, MAIN)]
    for index, seed in enumerate(resamples or [0]):
        sets.append(Evidence(measurements, spec, layout, index, (sweep,), EvidenceId(seed, sweep)))
    out: list[Verdict] = []
    for evidence in sets:
        done: dict[str, Verdict] = {}
        for finding in spec.findings:
            if finding.frame and not evidence.id.is_main:
                continue  # the multi-turn family is measured on resample 0 only: no resample verdicts
            verdict = _with_sensitivity(evidence, finding).of_kind(finding.kind)
            for amendment in (_prerequisite(verdict, done.get(finding.requires)), _min_n(verdict, spec.verdicts.min_n)):
                if amendment is not None:
                    verdict = verdict.amended(amendment)
            done[finding.id] = verdict
            out.append(verdict)
    return tuple(out)


def _prerequisite(verdict: Verdict, required: Verdict | None) -> Amendment | None:
    """A finding that requires another is not reproduced on its own: inconclusive unless that one is."""
    if required is None or required.outcome == REPRODUCED or verdict.outcome != REPRODUCED:
        return None
    return Amendment(PREREQUISITE, f"requires {required.finding!r}, which is {required.outcome}")


def _min_n(verdict: Verdict, min_n: int) -> Amendment | None:
    """Fewer prompts than ``min_n``: underpowered, said even when the numbers are inconclusive anyway
    (straddling the margin is what too few prompts looks like)."""
    if not 0 < verdict.n < min_n:
        return None
    pointing = "" if verdict.outcome == INCONCLUSIVE else f"; the numbers point to {verdict.outcome}"
    return Amendment(UNDERPOWERED, f"underpowered (n={verdict.n} < {min_n}{pointing})", replace_reason=(STRADDLES,))


def _with_sensitivity(evidence: Evidence, finding: Finding) -> Verdict:
    """The rule on coherent pairs, then with incoherent replies counted as refusals: the primary
    verdict stands only when both reach the same outcome."""
    rule = RULES[finding.rule]
    evidence = evidence.framed(finding.frame)
    primary = rule.decide(evidence.with_incoherent("exclude"), finding)
    sensitivity = rule.decide(evidence.with_incoherent("refuse"), finding)
    if primary.outcome == sensitivity.outcome:
        if not primary.excluded:
            return primary
        note = (
            f"{primary.excluded} prompt(s) with an incoherent reply left out; counting them as refusals "
            "gives the same outcome"
        )
        return primary.amended(Amendment(note=note))
    words = f"on coherent pairs {primary.outcome}, with incoherent replies counted as refusals {sensitivity.outcome}"
    return primary.amended(Amendment(SENSITIVITY, words))
