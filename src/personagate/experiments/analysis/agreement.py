"""How the measures agree with one another, per condition group or role: the sweep mode with the
generated label (the same arm measured both ways), the first-token score with the generated label,
and the optional judge with the phrase detector. Each is ``{key: (agreeing, compared)}``."""

from __future__ import annotations

from personagate.experiments.analysis.measurements import Measurements
from personagate.experiments.design.names import HARMFUL, NEUTRAL, REFUSE
from personagate.scoring.paper_regex import paper_refusal

Agreement = dict[str, tuple[int, int]]


def judge_agreement(measurements: Measurements) -> Agreement:
    """Per condition group: (replies where the phrase detector and the judge agree, replies judged)."""
    group_of = {c.name: c.group.value for c in measurements.conditions}
    out: Agreement = {}
    for row in measurements.all_rows():
        if row.judge is None or row.refusal is None:
            continue
        agree, n = out.get(group_of[row.condition], (0, 0))
        out[group_of[row.condition]] = (agree + int(row.judge == row.refusal), n + 1)
    return out


def mode_agreement(measurements: Measurements, screen: str) -> Agreement:
    """Per role measured both ways on the same prompts (the headline arms and their references):
    (prompts where the ``screen``-mode decision equals the generated reply's label being refuse, prompts)."""
    conditions = measurements.conditions
    out: Agreement = {}
    for generated in (c for c in conditions if c.mode == "generate" and c.prompts == HARMFUL):
        twins = [
            c
            for c in conditions
            if c.mode == screen
            and c.role == generated.role
            and c.resample == generated.resample
            and c.framing == generated.framing
            and c.identity == generated.identity
        ]
        if not twins:
            continue
        labels = measurements.outcomes[generated.name]
        decisions = measurements.outcomes[twins[0].name]
        shared = set(labels) & set(decisions)
        agree, n = out.get(generated.role.value, (0, 0))
        out[generated.role.value] = (agree + sum(labels[i] == decisions[i] for i in shared), n + len(shared))
    return out


def screening_agreement(measurements: Measurements) -> Agreement:
    """Per condition group of generated conditions: (prompts where the first-token decision equals the
    generated reply's label being refuse, prompts with both)."""
    group_of = {c.name: c.group.value for c in measurements.conditions}
    out: Agreement = {}
    for row in measurements.all_rows():
        if row.label is None or row.score is None or row.prompt_set == NEUTRAL:
            continue
        agree, n = out.get(group_of[row.condition], (0, 0))
        out[group_of[row.condition]] = (agree + int((row.score > 0) == (row.label == REFUSE)), n + 1)
    return out


def paper_regex_agreement(measurements: Measurements) -> Agreement:
    """Per condition group: (replies where the paper's 13-regex rule and our label agree on refusal,
    labelled replies). Our incoherent label counts as not refusing here, as the regexes cannot see it."""
    group_of = {c.name: c.group.value for c in measurements.conditions}
    out: Agreement = {}
    for row in measurements.all_rows():
        if row.text is None or row.label is None or row.prompt_set == NEUTRAL:
            continue
        agree, n = out.get(group_of[row.condition], (0, 0))
        out[group_of[row.condition]] = (agree + int(paper_refusal(row.text) == (row.label == REFUSE)), n + 1)
    return out
