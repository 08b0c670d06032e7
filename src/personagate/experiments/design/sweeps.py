"""The protocol's sweeps: every projection window with its nulls, the refusal direction added back at
every layer and dose, and what each resample of the directions re-measures. Shared by the test stage
(``protocol.main_conditions``) and the resamples."""

from __future__ import annotations

from collections.abc import Sequence

from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import COMPLIANT_SYSTEM, Group, Role
from personagate.experiments.design.spec import StudySpec
from personagate.interventions import Ablate, Add, Program, Window


def span(window: tuple[int, int]) -> str:
    return f"[{window[0]}:{window[1]})"


def persona_op(coeff: float, layer: int) -> Add:
    return Add("persona", coeff, layer)


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
                        system=COMPLIANT_SYSTEM,
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
                f"persona x{coeff:g} - injected vector in {span(layout.late)} [r{resample}] [{sweep}]",
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
