"""The conditions of the paper's protocol, as data: which ops, on which directions, where.

Ops name their direction by key (``refusal``, ``persona``, ``random-SEED``) so a condition can be
listed, stored and described before the directions exist; ``materialise`` turns it into a Program.
"""

from __future__ import annotations

from dataclasses import dataclass

from personagate.directions import Direction
from personagate.interventions import Ablate, Add, Program, Window


@dataclass(frozen=True)
class OpSpec:
    kind: str  # "add" | "ablate"
    direction: str
    coeff: float = 0.0
    layers: tuple[int, ...] = ()
    window: tuple[int, int] | None = None


@dataclass(frozen=True)
class Condition:
    name: str
    group: str
    ops: tuple[OpSpec, ...]
    mode: str  # "generate" | "first_token"
    x: float | None = None  # the layer or window start, for plots
    seed: int | None = None

    def program(self, directions: dict[str, Direction]) -> Program:
        return materialise(self.ops, directions)

    def describe(self) -> str:
        if not self.ops:
            return "no intervention"
        parts = []
        for op in self.ops:
            if op.kind == "add":
                where = f"layer {op.layers[0]}" if len(op.layers) == 1 else f"layers {op.layers[0]}..{op.layers[-1]}"
                parts.append(f"add {op.coeff:g} x {op.direction} at {where}")
            else:
                assert op.window is not None
                parts.append(f"project {op.direction} out of [{op.window[0]}, {op.window[1]})")
        return "; then ".join(parts)


def materialise(ops: tuple[OpSpec, ...], directions: dict[str, Direction]) -> Program:
    program = []
    for op in ops:
        d = directions[op.direction]
        if op.kind == "add":
            program.append(Add(d, op.coeff, list(op.layers)))
        else:
            assert op.window is not None
            program.append(Ablate(d, Window(*op.window)))
    return Program(program)


def persona_op(coeff: float, layer: int) -> OpSpec:
    return OpSpec("add", "persona", coeff, (layer,))


def first_stage(n_layers: int, persona_layer: int, coeffs: list[float], main: str) -> list[Condition]:
    """Baseline, the refusal-ablation sanity check, and the persona coefficient sweep."""
    return [
        Condition("baseline", "baseline", (), main),
        Condition("refusal ablated", "refusal_ablated", (OpSpec("ablate", "refusal", window=(0, n_layers)),), main),
        *[Condition(f"persona x{c:g}", "persona_sweep", (persona_op(c, persona_layer),), main, x=c) for c in coeffs],
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
    sweep: str,
    main: str | None = None,
) -> list[Condition]:
    """Persona steering at the chosen coefficient combined with each manipulation of the protocol."""
    steer = persona_op(coeff, persona_layer)
    base = f"persona x{coeff:g}"
    out: list[Condition] = []
    if sweep != main:  # the sweeps' references, measured the way the sweeps are
        out.append(Condition(f"baseline [{sweep}]", "reference", (), sweep))
        out.append(Condition(f"{base} [{sweep}]", "reference", (steer,), sweep, x=coeff))
    for layer in range(0, n_layers, layer_stride):
        out.append(
            Condition(
                f"{base} + refusal @ {layer}",
                "reintroduce_layer",
                (steer, OpSpec("add", "refusal", reintroduce_coeff, (layer,))),
                sweep,
                x=layer,
            )
        )
    for start, stop in reintroduce_windows:
        per_layer = reintroduce_coeff / (stop - start)
        out.append(
            Condition(
                f"{base} + refusal in [{start}:{stop})",
                "reintroduce_window",
                (steer, OpSpec("add", "refusal", per_layer, tuple(range(start, stop)))),
                sweep,
                x=start,
            )
        )
    for start, stop in windows:
        out.append(
            Condition(
                f"{base} - persona in [{start}:{stop})",
                "persona_window",
                (steer, OpSpec("ablate", "persona", window=(start, stop))),
                sweep,
                x=start,
            )
        )
    for seed in seeds:
        for start, stop in windows:
            out.append(
                Condition(
                    f"{base} - random-{seed} in [{start}:{stop})",
                    "random_window",
                    (steer, OpSpec("ablate", f"random-{seed}", window=(start, stop))),
                    sweep,
                    x=start,
                    seed=seed,
                )
            )
    return out
