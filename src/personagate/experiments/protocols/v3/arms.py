"""The protocol's arms as conditions, laid out from the spec and what the run has established so far
(the block count, the injection layer, the coefficient chosen on validation, the windows).

Protocol v2 (DESIGN.md, "Study design rules"): doses on each layer's own scale, windows downstream
of the injection paired with the same projection on the unsteered model, random controls matched on
their overlap with the injected vector (many seeds, and a positive control), a natural-persona arm,
specificity controls, mediation by clamping. Protocol v1 is the same code under v1's options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.framing import COMPLIANT_FRAMING
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import HARMFUL_VAL, Group, Mode, Role
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.protocols.v3.sweeps import (
    STYLES,
    Doses,
    persona_op,
    reintroduce_family,
    span,
    window_sweep,
)
from personagate.interventions import Ablate, Add, Clamp, Program, Window

# --- validation: the persona coefficient ------------------------------------------------------------


def validation_conditions(spec: StudySpec, layout: Layout) -> list[Condition]:
    """Baseline and the persona coefficient sweep on the validation prompts (the choice of coefficient)."""
    main = spec.generation.main
    out = [Condition("baseline [val]", Group.BASELINE, Role.BASELINE, Program(), main, prompts=HARMFUL_VAL)]
    for coeff in spec.persona.coeffs:
        out.append(
            Condition(
                f"persona x{coeff:g} [val]",
                Group.PERSONA_SWEEP,
                Role.PERSONA_SWEEP,
                Program([persona_op(spec, coeff, layout.injection)]),
                main,
                prompts=HARMFUL_VAL,
                axis=coeff,
            )
        )
    return out


# --- the test conditions ---------------------------------------------------------------------------


def main_conditions(
    spec: StudySpec, layout: Layout, coeff: float, baseline_projection: Sequence[float], doses: Doses
) -> list[Condition]:
    """Every arm on the test prompts, resample 0: the headline arms in the main mode (those the spec
    lists in ``generation.generate_roles``; the others screened), sweeps and nulls in the sweep mode,
    with the headline conditions they are compared with measured that way too."""
    main, sweep = spec.generation.main, spec.generation.sweep

    def mode(role: Role) -> Mode:
        return main if role in spec.generation.generate_roles else sweep

    p, late = layout.injection, layout.late
    steer = persona_op(spec, coeff, p)
    base = f"persona x{coeff:g}"
    out: list[Condition] = [
        Condition("baseline", Group.BASELINE, Role.BASELINE, Program(), mode(Role.BASELINE), over_refusal=True),
        Condition(
            "refusal ablated",
            Group.REFUSAL_ABLATED,
            Role.REFUSAL_ABLATED,
            Program([Ablate("refusal-selected", Window(0, layout.n_layers))]),
            mode(Role.REFUSAL_ABLATED),
            over_refusal=True,
        ),
        Condition(
            base, Group.PERSONA, Role.PERSONA, Program([steer]), mode(Role.PERSONA), axis=coeff, over_refusal=True
        ),
        Condition(
            f"{base}, injection removed again",
            Group.SANITY,
            Role.SANITY,
            Program([steer, persona_op(spec, -coeff, p)]),
            sweep,
        ),
    ]
    if spec.persona.styles:
        for style in STYLES:
            op = Add(f"style-{style}", coeff, p)  # style vectors are scaled to the persona vector's norm at p
            name = f"{style} persona at the norm of {base}"
            out.append(Condition(name, Group.STYLE, Role.STYLE, Program([op]), mode(Role.STYLE)))
    for seed in spec.persona.random_adds:
        op = Add(f"random-add-{seed}", coeff, p)
        name = f"random vector {seed} at the norm of {base}"
        out.append(Condition(name, Group.RANDOM_ADD, Role.RANDOM_ADD, Program([op]), mode(Role.RANDOM_ADD), seed=seed))
    if spec.windows.natural:
        out.append(
            Condition(
                "natural persona",
                Group.NATURAL,
                Role.NATURAL,
                Program(),
                mode(Role.NATURAL),
                framing=COMPLIANT_FRAMING,
                over_refusal=True,
            )
        )
    # the late window in the main mode (the window sweep measures every window, this one included, screened)
    ablate_late = Ablate("persona", Window(*late))
    common = {"axis": float(late[0]), "window": late}
    if main != sweep and mode(Role.PERSONA_LATE_WINDOW) == main:
        out.append(
            Condition(
                f"{base} - persona in {span(late)}",
                Group.PERSONA_WINDOW,
                Role.PERSONA_LATE_WINDOW,
                Program([steer, ablate_late]),
                main,
                over_refusal=True,
                **common,
            )
        )
    if main != sweep and mode(Role.PROJECTION_ONLY_LATE) == main:
        name = f"- persona in {span(late)} (unsteered)"
        program = Program([ablate_late])
        out.append(Condition(name, Group.PROJECTION_ONLY, Role.PROJECTION_ONLY_LATE, program, main, **common))
    if spec.windows.natural and main != sweep and mode(Role.NATURAL_LATE_WINDOW) == main:
        out.append(
            Condition(
                f"natural persona - persona in {span(late)}",
                Group.NATURAL_WINDOW,
                Role.NATURAL_LATE_WINDOW,
                Program([ablate_late]),
                main,
                framing=COMPLIANT_FRAMING,
                **common,
            )
        )
    if spec.windows.positive_control:
        out.append(
            Condition(
                f"{base} - injected vector in {span(late)}",
                Group.POSITIVE_CONTROL,
                Role.POSITIVE_CONTROL,
                Program([steer, Ablate("injected", Window(*late))]),
                mode(Role.POSITIVE_CONTROL),
                window=late,
            )
        )
    # the sweep mode: references, then the sweeps and the nulls
    if sweep != main:
        for condition in [c for c in out if c.role in (Role.BASELINE, Role.PERSONA, Role.NATURAL) and c.mode == main]:
            out.append(
                replace(
                    condition, name=f"{condition.name} [{sweep}]", group=Group.REFERENCE, mode=sweep, over_refusal=False
                )
            )
    out += window_sweep(spec, layout, coeff, resample=0)
    out += reintroduce_family(spec, layout, coeff, 0, doses)
    if spec.windows.mediation:
        for window in layout.windows:
            # the target: the baseline's mean projection on the validation prompts, never the test prompts
            clamp = Clamp("refusal", tuple(baseline_projection), Window(*window), scope="last")
            out.append(
                Condition(
                    f"{base}, refusal clamped to baseline in {span(window)}",
                    Group.MEDIATION,
                    Role.MEDIATION,
                    Program([steer, clamp]),
                    sweep,
                    axis=window[0],
                    window=window,
                )
            )
    return out
