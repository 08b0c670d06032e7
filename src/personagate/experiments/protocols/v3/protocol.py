"""Protocol v3 (ours): doses on each layer's own scale, windows downstream of the injection paired with
the same projection on the unsteered model, nulls matched on what they remove, the reintroduction
doses calibrated per layer, specificity controls, mediation, resamples of the directions, and the
multi-turn family. Protocols v2 and v1 are this code under their options (their spec files)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from personagate.experiments.design.layout import Layout
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
        Role.REFUSAL_ABLATED,
        Role.PERSONA_SWEEP,
        Role.PERSONA,
        Role.SANITY,
        Role.STYLE,
        Role.RANDOM_ADD,
        Role.NATURAL,
        Role.REINTRODUCE,
        Role.PERSONA_WINDOW,
        Role.PERSONA_LATE_WINDOW,
        Role.PROJECTION_ONLY,
        Role.PROJECTION_ONLY_LATE,
        Role.NATURAL_WINDOW,
        Role.NATURAL_LATE_WINDOW,
        Role.RANDOM_WINDOW,
        Role.RANDOM_LATE_WINDOW,
        Role.STYLE_LATE_WINDOW,
        Role.NATURAL_RANDOM_LATE_WINDOW,
        Role.POSITIVE_CONTROL,
        Role.MEDIATION,
        Role.CALIBRATION,
        Role.MULTITURN,
        Role.MULTITURN_KNOCKOUT,
        Role.MULTITURN_NULL,
        Role.MULTITURN_STEER_ALL,
        Role.MULTITURN_STEER_PROBE,
    }
)
QUICK_DOSES = {
    "persona": {"coeffs": [0.25, 0.5, 1.0]},
    "reintroduce": {"coeffs": [0.3, 0.7], "resample_coeffs": [0.5], "grid": [0.06, 0.25, 1.0]},
}


class V3(Protocol):
    name: ClassVar[str] = "v3"
    help: ClassVar[str] = "ours (the default)"
    spec: ClassVar[SpecLayers] = SpecLayers("v3", (), QUICK_DOSES, ROLES)

    def plan(self, spec: StudySpec, shape: ModelShape, values: ArmValues | None = None) -> ArmPlan:
        from personagate.experiments.design.histories import Histories
        from personagate.experiments.protocols.v3.arms import main_conditions, validation_conditions
        from personagate.experiments.protocols.v3.multiturn_arms import multiturn_conditions
        from personagate.experiments.protocols.v3.sweeps import (
            calibration_conditions,
            fixed_doses,
            resample_conditions,
        )

        layout = Layout.of(spec, shape.n_layers)
        if values is None:
            doses = fixed_doses(layout, spec.reintroduce.coeffs)
            values = ArmValues(1.0, (0.0,) * shape.n_layers, doses)
        multiturn, only = spec.multiturn.enabled, spec.multiturn.enabled and spec.multiturn.only
        stages = [("validation", validation_conditions(spec, layout))]
        if not only:
            if spec.reintroduce.dose == "calibrated":
                stages.append(("calibration", calibration_conditions(spec, layout)))
            test = main_conditions(spec, layout, values.coeff, values.baseline_projection, values.doses)
            stages.append(("test", test))
        if multiturn:
            Histories.of(spec)  # the forms and their lengths, checked before any model loads
            stages.append(("multi-turn", multiturn_conditions(spec, layout, values.coeff)))
        if not only:
            for index, seed in enumerate(spec.directions.resamples[1:], start=1):
                arms = resample_conditions(spec, layout, values.coeff, index, values.doses)
                stages.append((f"resample {seed}", arms))
        return ArmPlan(tuple((name, tuple(arms)) for name, arms in stages))

    def run(self, runner: StudyRunner) -> None:
        from personagate.experiments.protocols.v3.stages import run_stages

        run_stages(self, runner)
