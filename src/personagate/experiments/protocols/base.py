"""``Protocol``: one study design as one object, the seam every protocol package fills.

A protocol says what its spec is (``spec``: the override files it applies over ``study.toml``, what
``--quick`` changes for it, the roles its arms may take), which prompts it keeps apart
(``benign_prompts``), every arm it lays out (``plan``: by stage, from the spec, the model's shape and
the values the run establishes; placeholders before the load), and how its stages run (``run``).
``study.run_study`` and the checks before the load ask only this interface; nothing else tests a
protocol's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from personagate.experiments.design.plan import ArmPlan, ArmValues, ModelShape
from personagate.experiments.design.registries import SpecLayers

if TYPE_CHECKING:
    from personagate.experiments.design.spec import StudySpec
    from personagate.experiments.execution.runner import StudyRunner


class Protocol(ABC):
    """A study design. Subclasses set the class attributes and the two methods."""

    name: ClassVar[str]
    help: ClassVar[str]  # one line for ``--protocol``'s help
    spec: ClassVar[SpecLayers]

    def benign_prompts(self, spec: StudySpec) -> int:
        """Harmless prompts kept apart from every split for a coherence arm of the protocol's own."""
        return 0

    @abstractmethod
    def plan(self, spec: StudySpec, shape: ModelShape, values: ArmValues | None = None) -> ArmPlan:
        """Every arm, by stage. ``values`` None: the placeholders of the check before the load (names
        and doses differ from the run's; which roles there are does not). A design that does not fit
        the model (a window containing the injection layer) raises the package's error here."""

    @abstractmethod
    def run(self, runner: StudyRunner) -> None:
        """The stages in order, each measured into the run store before the next reads it."""
