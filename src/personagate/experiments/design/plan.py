"""A protocol's arm plan: the one list of every condition it lays out, by stage, built from the spec,
the model's shape and the values the run has established (placeholders before the load). The check
before the model loads and the stages that measure read the same plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from personagate.errors import PersonagateError
from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.names import Role

if TYPE_CHECKING:
    from personagate.experiments.design.spec import StudySpec

Doses = Mapping[int, Sequence[tuple[float, float]]]  # per layer: (dose as stated, the op's coefficient)


@dataclass(frozen=True)
class ModelShape:
    """What a plan needs of the model before its weights load (read from its config)."""

    n_layers: int
    name: str


@dataclass(frozen=True)
class ArmValues:
    """What a run establishes before it lays out its test arms: the persona coefficient chosen on
    validation, the baseline's mean refusal projection per layer (validation prompts: the mediation
    target), the reintroduction doses. Before the load a plan takes placeholders: they change names
    and doses, never which roles there are."""

    coeff: float
    baseline_projection: tuple[float, ...]
    doses: Doses = field(default_factory=dict)


@dataclass(frozen=True)
class ArmPlan:
    """Every condition a protocol lays out, by stage, in the order the stages measure them."""

    stages: tuple[tuple[str, tuple[Condition, ...]], ...]

    def stage(self, name: str) -> list[Condition]:
        for stage, conditions in self.stages:
            if stage == name:
                return list(conditions)
        raise KeyError(name)  # a programming error: the stages ask only for stages their plan lays out

    def names(self) -> list[str]:
        return [name for name, _ in self.stages]

    def roles(self) -> set[Role]:
        return {c.role for _, conditions in self.stages for c in conditions}


def check_findings_laid_out(spec: StudySpec, roles: set[Role], rule_needs: Mapping[str, tuple[str, ...]]) -> None:
    """Every role a finding's rule reads is one the plan lays out: an error before the load, not a
    "not measured" after the whole run (a misspelt role is caught earlier, by the role names)."""
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
        for key in rule_needs[finding.rule]:
            role = finding.role(key)
            if role not in roles:
                raise PersonagateError(
                    f"findings: {finding.id!r} needs {key} = {str(role)!r}, an arm this spec never lays out "
                    "(switched off in its sections, or not part of its protocol); change the finding or the spec"
                )
