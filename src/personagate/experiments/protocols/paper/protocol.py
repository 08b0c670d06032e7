"""Protocol ``paper``: Zhong & Li's experiment arm for arm (their blocks, vectors made by our code,
their test set, system prompt, length and regex rule), judged by the same rules as protocol v3."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from personagate.experiments.design.names import Role
from personagate.experiments.design.plan import ArmPlan, ArmValues, ModelShape
from personagate.experiments.design.registries import SpecLayers
from personagate.experiments.protocols.base import Protocol

if TYPE_CHECKING:
    from personagate.experiments.design.spec import StudySpec
    from personagate.experiments.execution.runner import StudyRunner

ROLES = frozenset(
    {
        Role.BASELINE,
        Role.PERSONA,
        Role.REINTRODUCE,
        Role.REINTRODUCE_KNOCKOUT,
        Role.PERSONA_WINDOW,
        Role.PERSONA_LATE_WINDOW,
        Role.PROJECTION_ONLY_LATE,
        Role.RANDOM_LATE_WINDOW,
        Role.SINGLE_RANDOM_LATE_WINDOW,
    }
)
QUICK = {"paper": {"questions": 4, "response_tokens": 24, "benign": 8}}


class Paper(Protocol):
    name: ClassVar[str] = "paper"
    help: ClassVar[str] = "Zhong & Li's own experiment"
    spec: ClassVar[SpecLayers] = SpecLayers("paper", ("paper",), QUICK, ROLES)

    def benign_prompts(self, spec: StudySpec) -> int:
        return spec.paper.benign  # their coherence arm's prompts

    def plan(self, spec: StudySpec, shape: ModelShape, values: ArmValues | None = None) -> ArmPlan:
        """One stage: their arms at their blocks on this model (they depend on no value the run chooses)."""
        from personagate.experiments.protocols.paper.arms import PaperBlocks, paper_conditions

        blocks = PaperBlocks.of(spec, shape.n_layers, shape.name)
        return ArmPlan((("paper", tuple(paper_conditions(spec, blocks, spec.windows.random_seeds))),))

    def run(self, runner: StudyRunner) -> None:
        from personagate.experiments.protocols.paper.stages import run_paper_stages

        run_paper_stages(self, runner)
