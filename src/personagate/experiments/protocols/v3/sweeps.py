"""The protocol's sweeps: every projection window with its nulls, the refusal direction added back at
every layer and dose, and what each resample of the directions re-measures. Shared by the test stage
(``protocol.main_conditions``) and the resamples."""

from __future__ import annotations

from collections.abc import Sequence

from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.framing import COMPLIANT_FRAMING
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import HARMLESS_VAL, Group, Role
from personagate.experiments.design.plan import Doses
from personagate.experiments.design.spec import StudySpec
from personagate.interventions import Ablate, Add, Program, Window


def span(window: tuple[int, int]) -> str:
    return f"[{window[0]}:{window[1]})"


STYLES = ("pirate", "butler", "scientist")
# The refusal vector a reintroduction dose multiplies. mean_diff: each layer's own difference in means;
# residual_norm and calibrated: each layer's unit vector times the layer's mean residual norm;
# selected_raw (v1): the one selected vector, the same at every layer.
REFUSAL_KEYS = {
    "mean_diff": "refusal",
    "residual_norm": "refusal-norm",
    "calibrated": "refusal-norm",
    "selected_raw": "refusal-selected",
}


def injected_key(spec: StudySpec) -> str:
    """The direction the persona arm adds: the raw difference in means, or its residual-norm form."""
    return "persona-norm" if spec.persona.dose == "residual_norm" else "persona"


def persona_op(spec: StudySpec, coeff: float, layer: int) -> Add:
    return Add(injected_key(spec), coeff, layer)


def fixed_doses(layout: Layout, coeffs: Sequence[float]) -> dict[int, list[tuple[float, float]]]:
    """The same coefficients at every reintroduction layer (doses not calibrated)."""
    return {layer: [(c, c) for c in coeffs] for layer in layout.reintroduce_layers}


def calibration_conditions(spec: StudySpec, layout: Layout) -> list[Condition]:
    """The refusal direction added to the unsteered model at every reintroduction layer and every
    fraction of the residual norm in ``reintroduce.grid``, on harmless validation prompts, by the first
    token (a calibration, never a verdict): which dose induces which refusal rate at which layer."""
    base = Condition(
        "no intervention [harmless val]",
        Group.CALIBRATION,
        Role.CALIBRATION,
        Program(),
        "first_token",
        prompts=HARMLESS_VAL,
        dose=0.0,
    )
    out = [base]
    for layer in layout.reintroduce_layers:
        for f in spec.reintroduce.grid:
            out.append(
                Condition(
                    f"+ refusal @ {layer} x{f:g} residual norm [harmless val]",
                    Group.CALIBRATION,
                    Role.CALIBRATION,
                    Program([Add("refusal-norm", f, layer)]),
                    "first_token",
                    prompts=HARMLESS_VAL,
                    axis=float(layer),
                    dose=f,
                )
            )
    return out


def window_sweep(spec: StudySpec, layout: Layout, coeff: float, resample: int) -> list[Condition]:
    """Every window: persona projected out under steering, on the unsteered model and on the natural
    persona; the random null of every window (and of the natural arm's late window)."""
    sweep = spec.generation.sweep
    steer = persona_op(spec, coeff, layout.injection)
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
                    f"{base} - persona in {span(window)}{suffix} [{sweep}]",
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
                    f"- persona in {span(window)} (unsteered) [{sweep}]",
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
                        f"natural persona - persona in {span(window)} [{sweep}]",
                        Group.NATURAL_WINDOW,
                        Role.NATURAL_LATE_WINDOW if is_late else Role.NATURAL_WINDOW,
                        Program([ablate]),
                        sweep,
                        framing=COMPLIANT_FRAMING,
                        **common,
                    )
                )
        if is_late and resample == 0 and spec.windows.style_nulls and spec.persona.styles:
            for style in STYLES:  # the style personas' directions projected out: named nulls
                out.append(
                    Condition(
                        f"{base} - style-{style} in {span(window)}",
                        Group.STYLE_WINDOW,
                        Role.STYLE_LATE_WINDOW,
                        Program([steer, Ablate(f"style-{style}", Window(*window))]),
                        sweep,
                        **common,
                    )
                )
        for seed in range(max(n_seeds, natural_seeds)):  # interleaved: neighbours share a batch
            random = Ablate(f"random-{seed}", Window(*window))
            if seed < n_seeds:
                out.append(
                    Condition(
                        f"{base} - random-{seed} in {span(window)}{suffix}",
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
                        f"natural persona - random-{seed} in {span(window)}",
                        Group.NATURAL_RANDOM_WINDOW,
                        Role.NATURAL_RANDOM_LATE_WINDOW,
                        Program([random]),
                        sweep,
                        framing=COMPLIANT_FRAMING,
                        seed=seed,
                        **common,
                    )
                )
    return out


def reintroduce_family(spec: StudySpec, layout: Layout, coeff: float, resample: int, doses: Doses) -> list[Condition]:
    """The refusal direction added back under persona steering: every layer x its doses."""
    steer = persona_op(spec, coeff, layout.injection)
    base = f"persona x{coeff:g}"
    suffix = "" if resample == 0 else f" [r{resample}]"
    unit = " (induced harmless refusal)" if spec.reintroduce.dose == "calibrated" else ""
    out = []
    for layer in layout.reintroduce_layers:
        for dose, coefficient in doses.get(layer, ()):
            op = Add(REFUSAL_KEYS[spec.reintroduce.dose], coefficient, layer)
            out.append(
                Condition(
                    f"{base} + refusal @ {layer} x{dose:g}{unit}{suffix}",
                    Group.REINTRODUCE,
                    Role.REINTRODUCE,
                    Program([steer, op]),
                    spec.generation.sweep,
                    axis=float(layer),
                    dose=dose,
                    resample=resample,
                )
            )
    return out


def resample_conditions(spec: StudySpec, layout: Layout, coeff: float, resample: int, doses: Doses) -> list[Condition]:
    """What a resample of the training prompts re-measures, in the sweep mode: the conditions every
    verdict rests on, with that resample's directions."""
    sweep = spec.generation.sweep
    steer = persona_op(spec, coeff, layout.injection)
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
                f"persona x{coeff:g} - injected vector in {span(layout.late)} [r{resample}] [{sweep}]",
                Group.POSITIVE_CONTROL,
                Role.POSITIVE_CONTROL,
                Program([steer, Ablate("injected", Window(*layout.late))]),
                sweep,
                resample=resample,
                window=layout.late,
            )
        )
    again = set(spec.reintroduce.resample_coeffs)
    chosen = {layer: [d for d in pairs if d[0] in again] for layer, pairs in doses.items()}
    family = reintroduce_family(spec, layout, coeff, resample, chosen)
    return out + window_sweep(spec, layout, coeff, resample) + family
