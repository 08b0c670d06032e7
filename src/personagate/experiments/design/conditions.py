"""A condition of a study, as data: a name, a group, a role, a program of ops, and how it is measured.

Ops name their direction by key (``refusal``, ``persona``, ``random-3``...), so a condition can be
listed, stored and described before the directions exist; ``program(directions)`` binds the keys
to the directions of the condition's resample.
"""

from __future__ import annotations

from dataclasses import dataclass

from personagate.directions import Direction
from personagate.experiments.design.framing import DEFAULT_FRAMING, Framing
from personagate.experiments.design.names import HARMFUL, Group, Mode, Role
from personagate.interventions import Program


@dataclass(frozen=True)
class Condition:
    """One arm of the study.

    ``role`` names what a verdict rule refers to (``Role.BASELINE``, ``Role.PERSONA_LATE_WINDOW``...);
    ``prompts`` the prompt set it is measured on (the test split, or the validation split for a
    choice); ``framing`` how the prompts are framed (the default persona, the compliant personas in
    turn for the natural-persona arm, or a multi-turn conversation); ``axis`` places it on its sweep's plot.
    """

    name: str
    group: Group
    role: Role
    ops: Program
    mode: Mode
    prompts: str = HARMFUL
    framing: Framing = DEFAULT_FRAMING
    resample: int = 0
    axis: float | None = None
    seed: int | None = None
    dose: float | None = None
    window: tuple[int, int] | None = None
    over_refusal: bool = False
    guard: bool = True

    def program(self, directions: dict[str, Direction]) -> Program:
        return self.ops.bind(directions)

    def describe(self, n_layers: int | None = None) -> str:
        return self.ops.summary(n_layers)
