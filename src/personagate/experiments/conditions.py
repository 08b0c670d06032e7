"""The conditions of the paper's protocol, as data: a name, a group and a program of ops.

Ops name their direction by key (``refusal``, ``persona``, ``random-SEED``), so a condition can be
listed, stored and described before the directions exist; ``program(directions)`` binds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from personagate.directions import Direction
from personagate.experiments import groups
from personagate.experiments.groups import Mode
from personagate.interventions import Ablate, Add, Program, Window


@dataclass(frozen=True)
class Condition:
    """One arm of the study. ``axis`` places it on its sweep's plot (a layer, a window start, a coefficient)."""

    name: str
    group: str
    ops: Program
    mode: Mode
    axis: float | None = None
    seed: int | None = None

    def program(self, directions: dict[str, Direction]) -> Program:
        return self.ops.bind(directions)

    def describe(self, n_layers: int | None = None) -> str:
        return self.ops.summary(n_layers)


def persona_op(coeff: float, layer: int) -> Add:
    return Add("persona", coeff, layer)


def first_stage(n_layers: int, persona_layer: int, coeffs: list[float], main: Mode) -> list[Condition]:
    """Baseline, the refusal-ablation sanity check, and the persona coefficient sweep."""
    return [
        Condition("baseline", groups.BASELINE, Program(), main),
        Condition("refusal ablated", groups.REFUSAL_ABLATED, Program([Ablate("refusal", Window(0, n_layers))]), main),
        *[
            Condition(f"persona x{c:g}", groups.PERSONA_SWEEP, Program([persona_op(c, persona_layer)]), main, axis=c)
            for c in coeffs
        ],
    ]


def sliding_windows(n_layers: int, width: int, stride: int) -> list[tuple[int, int]]:
    starts = list(range(0, max(n_layers - width, 0) + 1, stride))
    if starts[-1] + width < n_layers:
        starts.append(n_layers - width)  # the last window always reaches the final block
    return [(s, s + width) for s in starts]


def second_stage(
    n_layers: int,
    persona_layer: int,
    coeff: float,
    *,
    reintroduce_coeff: float,
    layer_stride: int,
    reintroduce_windows: list[tuple[int, int]],
    windows: list[tuple[int, int]],
    seeds: list[int],
    sweep: Mode,
    main: Mode | None = None,
) -> list[Condition]:
    """Persona steering at the chosen coefficient combined with each manipulation of the protocol."""
    steer = persona_op(coeff, persona_layer)
    base = f"persona x{coeff:g}"
    out: list[Condition] = []
    if sweep != main:  # the sweeps' references, measured the way the sweeps are
        out.append(Condition(f"baseline [{sweep}]", groups.REFERENCE, Program(), sweep))
        out.append(Condition(f"{base} [{sweep}]", groups.REFERENCE, Program([steer]), sweep, axis=coeff))
    for layer in range(0, n_layers, layer_stride):
        program = Program([steer, Add("refusal", reintroduce_coeff, layer)])
        out.append(Condition(f"{base} + refusal @ {layer}", groups.REINTRODUCE_LAYER, program, sweep, axis=layer))
    for start, stop in reintroduce_windows:
        program = Program([steer, Add("refusal", reintroduce_coeff / (stop - start), Window(start, stop))])
        name = f"{base} + refusal in [{start}:{stop})"
        out.append(Condition(name, groups.REINTRODUCE_WINDOW, program, sweep, axis=start))
    for start, stop in windows:
        program = Program([steer, Ablate("persona", Window(start, stop))])
        name = f"{base} - persona in [{start}:{stop})"
        out.append(Condition(name, groups.PERSONA_WINDOW, program, sweep, axis=start))
    for seed in seeds:
        for start, stop in windows:
            program = Program([steer, Ablate(f"random-{seed}", Window(start, stop))])
            name = f"{base} - random-{seed} in [{start}:{stop})"
            out.append(Condition(name, groups.RANDOM_WINDOW, program, sweep, axis=start, seed=seed))
    return out
