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
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import COMPLIANT_SYSTEM, HARMFUL_VAL, Group, Mode, Role
from personagate.experiments.design.spec import StudySpec
from personagate.interventions import Ablate, Add, Clamp, Program, Window

STYLES = ("pirate", "butler", "scientist")


def _span(window: tuple[int, int]) -> str:
    return f"[{window[0]}:{window[1]})"


def persona_op(coeff: float, layer: int) -> Add:
    return Add("persona", coeff, layer)


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
                Program([persona_op(coeff, layout.injection)]),
                main,
                prompts=HARMFUL_VAL,
                axis=coeff,
            )
        )
    return out


# --- the test conditions ---------------------------------------------------------------------------


def main_conditions(
    spec: StudySpec, layout: Layout, coeff: float, baseline_projection: Sequence[float]
) -> list[Condition]:
    """Every arm on the test prompts, resample 0: the headline arms in the main mode (those the spec
    lists in ``generation.generate_roles``; the others screened), sweeps and nulls in the sweep mode,
    with the headline conditions they are compared with measured that way too."""
    main, sweep = spec.generation.main, spec.generation.sweep

    def mode(role: Role) -> Mode:
        return main if role in spec.generation.generate_roles else sweep

    p, late = layout.injection, layout.late
    steer = persona_op(coeff, p)
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
            Program([steer, persona_op(-coeff, p)]),
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
                system=COMPLIANT_SYSTEM,
                over_refusal=True,
            )
        )
    # the late window in the main mode (the window sweep measures every window, this one included, screened)
    ablate_late = Ablate("persona", Window(*late))
    common = {"axis": float(late[0]), "window": late}
    if main != sweep and mode(Role.PERSONA_LATE_WINDOW) == main:
        out.append(
            Condition(
                f"{base} - persona in {_span(late)}",
                Group.PERSONA_WINDOW,
                Role.PERSONA_LATE_WINDOW,
                Program([steer, ablate_late]),
                main,
                over_refusal=True,
                **common,
            )
        )
    if main != sweep and mode(Role.PROJECTION_ONLY_LATE) == main:
        name = f"- persona in {_span(late)} (unsteered)"
        program = Program([ablate_late])
        out.append(Condition(name, Group.PROJECTION_ONLY, Role.PROJECTION_ONLY_LATE, program, main, **common))
    if spec.windows.natural and main != sweep and mode(Role.NATURAL_LATE_WINDOW) == main:
        out.append(
            Condition(
                f"natural persona - persona in {_span(late)}",
                Group.NATURAL_WINDOW,
                Role.NATURAL_LATE_WINDOW,
                Program([ablate_late]),
                main,
                system=COMPLIANT_SYSTEM,
                **common,
            )
        )
    if spec.windows.positive_control:
        out.append(
            Condition(
                f"{base} - injected vector in {_span(late)}",
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
    out += reintroduce_family(spec, layout, coeff, resample=0)
    if spec.windows.mediation:
        for window in layout.windows:
            clamp = Clamp("refusal", tuple(baseline_projection), Window(*window), scope="last")
            out.append(
                Condition(
                    f"{base}, refusal clamped to baseline in {_span(window)}",
                    Group.MEDIATION,
                    Role.MEDIATION,
                    Program([steer, clamp]),
                    sweep,
                    axis=window[0],
                    window=window,
                )
            )
    return out


def window_sweep(spec: StudySpec, layout: Layout, coeff: float, resample: int) -> list[Condition]:
    """Every window: persona projected out under steering, on the unsteered model and on the natural
    persona; the random null of every window (and of the natural arm's late window)."""
    sweep = spec.generation.sweep
    steer = persona_op(coeff, layout.injection)
    base = f"persona x{coeff:g}"
    suffix = "" if resample == 0 else f" [r{resample}]"
    out: list[Condition] = []
    for window in layout.windows:
        is_late = window == layout.late
        # the late window's null carries a verdict; the others (and the natural arm's) only draw a band
        n_seeds = spec.windows.random_seeds if is_late else spec.windows.side_seeds if resample == 0 else 0
        natural_seeds = spec.windows.side_seeds if spec.windows.natural and is_late and resample == 0 else 0
        ablate = Ablate("persona", Window(*window))
        common = {"axis": float(window[0]), "window": window, "resample": resample}
        if resample == 0 or is_late:
            out.append(
                Condition(
                    f"{base} - persona in {_span(window)}{suffix} [{sweep}]",
                    Group.PERSONA_WINDOW,
                    Role.PERSONA_LATE_WINDOW if is_late else Role.PERSONA_WINDOW,
                    Program([steer, ablate]),
                    sweep,
                    **common,
                )
            )
        if resample == 0:
            out.append(
                Condition(
                    f"- persona in {_span(window)} (unsteered) [{sweep}]",
                    Group.PROJECTION_ONLY,
                    Role.PROJECTION_ONLY_LATE if is_late else Role.PROJECTION_ONLY,
                    Program([ablate]),
                    sweep,
                    **common,
                )
            )
            if spec.windows.natural:
                out.append(
                    Condition(
                        f"natural persona - persona in {_span(window)} [{sweep}]",
                        Group.NATURAL_WINDOW,
                        Role.NATURAL_LATE_WINDOW if is_late else Role.NATURAL_WINDOW,
                        Program([ablate]),
                        sweep,
                        system=COMPLIANT_SYSTEM,
                        **common,
                    )
                )
        for seed in range(max(n_seeds, natural_seeds)):  # interleaved: neighbours share a batch
            random = Ablate(f"random-{seed}", Window(*window))
            if seed < n_seeds:
                out.append(
                    Condition(
                        f"{base} - random-{seed} in {_span(window)}{suffix}",
                        Group.RANDOM_WINDOW,
                        Role.RANDOM_LATE_WINDOW if is_late else Role.RANDOM_WINDOW,
                        Program([steer, random]),
                        sweep,
                        seed=seed,
                        **common,
                    )
                )
            if seed < natural_seeds:
                out.append(
                    Condition(
                        f"natural persona - random-{seed} in {_span(window)}",
                        Group.NATURAL_RANDOM_WINDOW,
                        Role.NATURAL_RANDOM_LATE_WINDOW,
                        Program([random]),
                        sweep,
                        system=COMPLIANT_SYSTEM,
                        seed=seed,
                        **common,
                    )
                )
    return out


def reintroduce_family(
    spec: StudySpec, layout: Layout, coeff: float, resample: int, doses: Sequence[float] | None = None
) -> list[Condition]:
    """The refusal direction added back under persona steering: every layer (stride) x every dose."""
    steer = persona_op(coeff, layout.injection)
    base = f"persona x{coeff:g}"
    suffix = "" if resample == 0 else f" [r{resample}]"
    # mean_diff: each layer's own difference in means; residual_norm: each layer's unit vector times the
    # layer's mean residual norm; selected_raw (v1): the one selected vector, the same at every layer
    key = {"mean_diff": "refusal", "residual_norm": "refusal-norm", "selected_raw": "refusal-selected"}
    out = []
    for layer in layout.reintroduce_layers:
        for scale in doses if doses is not None else spec.reintroduce.coeffs:
            op = Add(key[spec.reintroduce.dose], scale, layer)
            out.append(
                Condition(
                    f"{base} + refusal @ {layer} x{scale:g}{suffix}",
                    Group.REINTRODUCE,
                    Role.REINTRODUCE,
                    Program([steer, op]),
                    spec.generation.sweep,
                    axis=float(layer),
                    dose=scale,
                    resample=resample,
                )
            )
    return out


def resample_conditions(spec: StudySpec, layout: Layout, coeff: float, resample: int) -> list[Condition]:
    """What a resample of the training prompts re-measures, in the sweep mode: the conditions every
    verdict rests on, with that resample's directions."""
    sweep = spec.generation.sweep
    steer = persona_op(coeff, layout.injection)
    out = [
        Condition(
            f"persona x{coeff:g} [r{resample}] [{sweep}]",
            Group.REFERENCE,
            Role.PERSONA,
            Program([steer]),
            sweep,
            resample=resample,
            axis=coeff,
        )
    ]
    if spec.windows.positive_control:
        out.append(
            Condition(
                f"persona x{coeff:g} - injected vector in {_span(layout.late)} [r{resample}] [{sweep}]",
                Group.POSITIVE_CONTROL,
                Role.POSITIVE_CONTROL,
                Program([steer, Ablate("injected", Window(*layout.late))]),
                sweep,
                resample=resample,
                window=layout.late,
            )
        )
    family = reintroduce_family(spec, layout, coeff, resample, spec.reintroduce.resample_coeffs)
    return out + window_sweep(spec, layout, coeff, resample) + family
