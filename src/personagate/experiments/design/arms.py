"""Which roles a spec lays out, known before any model loads: a finding that names an arm the spec
never lays out (a misspelt role is caught earlier, by the role names) is an error then, not a
"not measured" after the whole run."""

from __future__ import annotations

from personagate.errors import PersonagateError
from personagate.experiments.analysis.rules import RULES
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.multiturn import Histories, multiturn_conditions
from personagate.experiments.design.names import Role
from personagate.experiments.design.paper import PaperBlocks, paper_conditions
from personagate.experiments.design.protocol import main_conditions, validation_conditions
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.design.sweeps import fixed_doses, resample_conditions


def laid_out_roles(spec: StudySpec, n_layers: int, model_id: str) -> set[Role]:
    """Every role the spec's protocol lays out on a model of ``n_layers`` blocks (doses and the persona
    coefficient, chosen later, do not change which roles there are)."""
    if spec.protocol == "paper":
        blocks = PaperBlocks.of(spec, n_layers, model_id)
        return {c.role for c in paper_conditions(spec, blocks, spec.windows.random_seeds)}
    layout = Layout.of(spec, n_layers)
    doses = fixed_doses(layout, spec.reintroduce.coeffs)
    arms = validation_conditions(spec, layout) + main_conditions(spec, layout, 1.0, [0.0] * n_layers, doses)
    if spec.multiturn.enabled and spec.multiturn.only:
        arms = validation_conditions(spec, layout)
    elif len(spec.directions.resamples) > 1:
        arms += resample_conditions(spec, layout, 1.0, 1, doses)
    if spec.multiturn.enabled:
        Histories.of(spec)  # the forms and their lengths, checked before any model loads
        arms += multiturn_conditions(spec, layout, 1.0)
    return {c.role for c in arms}


def check_findings_laid_out(spec: StudySpec, roles: set[Role]) -> None:
    for finding in spec.findings:
        if finding.frame and not spec.multiturn.enabled:
            continue  # the multi-turn family switched off: its findings are reported as not measured
        if finding.frame and finding.frame not in spec.multiturn.forms:
            raise PersonagateError(
                f"findings: {finding.id!r} looks at the multi-turn form {finding.frame!r}, which multiturn.forms "
                f"({', '.join(spec.multiturn.forms)}) does not list; change the finding or the spec"
            )
        if spec.multiturn.enabled and spec.multiturn.only and not finding.frame:
            continue  # the multi-turn family alone: the other findings are reported as not measured
        for key in RULES[finding.rule].needs:
            role = finding.role(key)
            if role not in roles:
                raise PersonagateError(
                    f"findings: {finding.id!r} needs {key} = {str(role)!r}, an arm this spec never lays out "
                    "(switched off in its sections, or not part of its protocol); change the finding or the spec"
                )
