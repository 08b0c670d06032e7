"""The protocol's arms as conditions, laid out from the spec and what the run has established so far
(the block count, the injection layer, the coefficient chosen on validation, the windows).

Protocol v2 (DESIGN.md, "Study design rules"): doses on each layer's own scale, windows downstream
of the injection paired with the same projection on the unsteered model, random controls matched on
their overlap with the injected vector (many seeds, and a positive control), a natural-persona arm,
specificity controls, mediation by clamping. Protocol v1 is the same code under v1's options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from personagate.errors import PersonagateError
from personagate.experiments import groups as g
from personagate.experiments.conditions import Condition
from personagate.experiments.groups import Mode
from personagate.experiments.spec import StudySpec
from personagate.interventions import Ablate, Add, Clamp, Program, Window

STYLES = ("pirate", "butler", "scientist")


@dataclass(frozen=True)
class Layout:
    """Where things sit in this model: everything the conditions need that the spec leaves to the model."""

    n_layers: int
    injection: int
    late: tuple[int, int]
    windows: tuple[tuple[int, int], ...]
    reintroduce_layers: tuple[int, ...]
    early: tuple[int, int]
    late_layers: tuple[int, int]

    @classmethod
    def of(cls, spec: StudySpec, n_layers: int) -> Layout:
        injection = spec.persona_layer(n_layers)
        late = _blocks(spec.windows.late, n_layers)
        allow = spec.windows.contain_injection
        if not allow and late[0] <= injection < late[1]:
            raise PersonagateError(
                f"windows.late {spec.windows.late} = blocks [{late[0]}, {late[1]}) contains the injection layer "
                f"{injection}; move one of them, or set windows.contain_injection = true"
            )
        width = StudySpec.blocks(spec.windows.width, n_layers)
        stride = StudySpec.blocks(spec.windows.stride, n_layers)
        first = injection + 1 if spec.windows.placement == "downstream" else 0
        windows = [w for w in sliding(first, n_layers, width, stride) if allow or not w[0] <= injection < w[1]]
        if late not in windows:
            windows.append(late)
        if not windows:
            raise PersonagateError(
                f"no projection window fits after the injection layer {injection} of {n_layers} blocks; "
                "inject earlier (persona.layer) or narrow windows.width"
            )
        layers = tuple(range(0, n_layers, spec.reintroduce.layer_stride))
        return cls(
            n_layers=n_layers,
            injection=injection,
            late=late,
            windows=tuple(sorted(set(windows))),
            reintroduce_layers=layers,
            early=_blocks(spec.reintroduce.early, n_layers),
            late_layers=_blocks(spec.reintroduce.late, n_layers),
        )


def _blocks(text: str, n_layers: int) -> tuple[int, int]:
    blocks = Window.parse(text).resolve(n_layers)
    return blocks.start, blocks.stop


def sliding(first: int, n_layers: int, width: int, stride: int) -> list[tuple[int, int]]:
    """Windows of ``width`` blocks from ``first`` every ``stride`` blocks; the last reaches the final block."""
    width = min(width, n_layers - first)
    if width < 1:
        return []
    starts = list(range(first, n_layers - width + 1, stride))
    if not starts or starts[-1] + width < n_layers:
        starts.append(n_layers - width)
    return [(s, s + width) for s in starts]


def _span(window: tuple[int, int]) -> str:
    return f"[{window[0]}:{window[1]})"


def persona_op(coeff: float, layer: int) -> Add:
    return Add("persona", coeff, layer)


# --- validation: the persona coefficient ------------------------------------------------------------


def validation_conditions(spec: StudySpec, layout: Layout) -> list[Condition]:
    """Baseline and the persona coefficient sweep on the validation prompts (the choice of coefficient)."""
    main = spec.generation.main
    out = [Condition("baseline [val]", g.BASELINE, Program(), main, role="baseline", prompts=g.HARMFUL_VAL)]
    for coeff in spec.persona.coeffs:
        out.append(
            Condition(
                f"persona x{coeff:g} [val]",
                g.PERSONA_SWEEP,
                Program([persona_op(coeff, layout.injection)]),
                main,
                role="persona_sweep",
                prompts=g.HARMFUL_VAL,
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

    def mode(role: str) -> Mode:
        return main if role in spec.generation.generate_roles else sweep

    p, late = layout.injection, layout.late
    steer = persona_op(coeff, p)
    base = f"persona x{coeff:g}"
    out: list[Condition] = [
        Condition("baseline", g.BASELINE, Program(), mode("baseline"), role="baseline", over_refusal=True),
        Condition(
            "refusal ablated",
            g.REFUSAL_ABLATED,
            Program([Ablate("refusal-selected", Window(0, layout.n_layers))]),
            mode("refusal_ablated"),
            role="refusal_ablated",
            over_refusal=True,
        ),
        Condition(base, g.PERSONA, Program([steer]), mode("persona"), role="persona", axis=coeff, over_refusal=True),
        Condition(
            f"{base}, injection removed again",
            g.SANITY,
            Program([steer, persona_op(-coeff, p)]),
            sweep,
            role="sanity",
        ),
    ]
    if spec.persona.styles:
        for style in STYLES:
            op = Add(f"style-{style}", coeff, p)  # style vectors are scaled to the persona vector's norm at p
            name = f"{style} persona at the norm of {base}"
            out.append(Condition(name, g.STYLE, Program([op]), mode("style"), role="style"))
    for seed in spec.persona.random_adds:
        op = Add(f"random-add-{seed}", coeff, p)
        name = f"random vector {seed} at the norm of {base}"
        out.append(Condition(name, g.RANDOM_ADD, Program([op]), mode("random_add"), role="random_add", seed=seed))
    if spec.windows.natural:
        out.append(
            Condition(
                "natural persona",
                g.NATURAL,
                Program(),
                mode("natural"),
                role="natural",
                system="compliant",
                over_refusal=True,
            )
        )
    # the late window in the main mode (the window sweep measures every window, this one included, screened)
    ablate_late = Ablate("persona", Window(*late))
    common = {"axis": float(late[0]), "window": late}
    if main != sweep and mode("persona_late_window") == main:
        out.append(
            Condition(
                f"{base} - persona in {_span(late)}",
                g.PERSONA_WINDOW,
                Program([steer, ablate_late]),
                main,
                role="persona_late_window",
                over_refusal=True,
                **common,
            )
        )
    if main != sweep and mode("projection_only_late") == main:
        name = f"- persona in {_span(late)} (unsteered)"
        program = Program([ablate_late])
        out.append(Condition(name, g.PROJECTION_ONLY, program, main, role="projection_only_late", **common))
    if spec.windows.natural and main != sweep and mode("natural_late_window") == main:
        out.append(
            Condition(
                f"natural persona - persona in {_span(late)}",
                g.NATURAL_WINDOW,
                Program([ablate_late]),
                main,
                role="natural_late_window",
                system="compliant",
                **common,
            )
        )
    if spec.windows.positive_control:
        out.append(
            Condition(
                f"{base} - injected vector in {_span(late)}",
                g.POSITIVE_CONTROL,
                Program([steer, Ablate("injected", Window(*late))]),
                mode("positive_control"),
                role="positive_control",
                window=late,
            )
        )
    # the sweep mode: references, then the sweeps and the nulls
    if sweep != main:
        for condition in [c for c in out if c.role in ("baseline", "persona", "natural") and c.mode == main]:
            out.append(
                replace(
                    condition, name=f"{condition.name} [{sweep}]", group=g.REFERENCE, mode=sweep, over_refusal=False
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
                    g.MEDIATION,
                    Program([steer, clamp]),
                    sweep,
                    role="mediation",
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
                    g.PERSONA_WINDOW,
                    Program([steer, ablate]),
                    sweep,
                    role="persona_late_window" if is_late else "persona_window",
                    **common,
                )
            )
        if resample == 0:
            out.append(
                Condition(
                    f"- persona in {_span(window)} (unsteered) [{sweep}]",
                    g.PROJECTION_ONLY,
                    Program([ablate]),
                    sweep,
                    role="projection_only_late" if is_late else "projection_only",
                    **common,
                )
            )
            if spec.windows.natural:
                out.append(
                    Condition(
                        f"natural persona - persona in {_span(window)} [{sweep}]",
                        g.NATURAL_WINDOW,
                        Program([ablate]),
                        sweep,
                        role="natural_late_window" if is_late else "natural_window",
                        system="compliant",
                        **common,
                    )
                )
        for seed in range(max(n_seeds, natural_seeds)):  # interleaved: neighbours share a batch
            random = Ablate(f"random-{seed}", Window(*window))
            if seed < n_seeds:
                out.append(
                    Condition(
                        f"{base} - random-{seed} in {_span(window)}{suffix}",
                        g.RANDOM_WINDOW,
                        Program([steer, random]),
                        sweep,
                        role="random_late_window" if is_late else "random_window",
                        seed=seed,
                        **common,
                    )
                )
            if seed < natural_seeds:
                out.append(
                    Condition(
                        f"natural persona - random-{seed} in {_span(window)}",
                        g.NATURAL_RANDOM_WINDOW,
                        Program([random]),
                        sweep,
                        role="natural_random_late_window",
                        system="compliant",
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
                    g.REINTRODUCE,
                    Program([steer, op]),
                    spec.generation.sweep,
                    role="reintroduce",
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
            g.REFERENCE,
            Program([steer]),
            sweep,
            role="persona",
            resample=resample,
            axis=coeff,
        )
    ]
    if spec.windows.positive_control:
        out.append(
            Condition(
                f"persona x{coeff:g} - injected vector in {_span(layout.late)} [r{resample}] [{sweep}]",
                g.POSITIVE_CONTROL,
                Program([steer, Ablate("injected", Window(*layout.late))]),
                sweep,
                role="positive_control",
                resample=resample,
                window=layout.late,
            )
        )
    family = reintroduce_family(spec, layout, coeff, resample, spec.reintroduce.resample_coeffs)
    return out + window_sweep(spec, layout, coeff, resample) + family
