"""A condition of a study, as data: a name, a group, a role, a program of ops, and how it is measured.

Ops name their direction by key (``refusal``, ``persona``, ``matched-3``...), so a condition can be
listed, stored and described before the directions exist; ``program(directions)`` binds the keys
to the directions of the condition's resample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personagate.directions import Direction
from personagate.experiments import groups
from personagate.experiments.groups import Mode
from personagate.interventions import Program


@dataclass(frozen=True)
class Condition:
    """One arm of the study.

    ``role`` names what a verdict rule refers to (``baseline``, ``persona``, ``persona_late_window``...);
    ``prompts`` the prompt set it is measured on (the test split, or the validation split for a
    choice); ``system`` which system prompt frames the prompts (``default``, or ``compliant`` for
    the natural-persona arm: the compliant personas in turn); ``axis`` places it on its sweep's plot.
    """

    name: str
    group: str
    ops: Program
    mode: Mode
    role: str = ""
    prompts: str = groups.HARMFUL
    system: str = "default"
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

    def meta(self) -> dict[str, Any]:
        """What the store keeps beside the columns (for results, verdicts and the report)."""
        return {
            "role": self.role,
            "prompts": self.prompts,
            "system": self.system,
            "resample": self.resample,
            "dose": self.dose,
            "window": list(self.window) if self.window else None,
            "over_refusal": self.over_refusal,
        }
