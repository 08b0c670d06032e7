"""The protocol's conditions as data: names, groups, programs of op references bound later."""

from __future__ import annotations

import torch

from personagate import Direction
from personagate.experiments import groups
from personagate.experiments.conditions import first_stage, second_stage, sliding_windows


def test_sliding_windows_always_reach_the_last_block():
    assert sliding_windows(24, 6, 3) == [(0, 6), (3, 9), (6, 12), (9, 15), (12, 18), (15, 21), (18, 24)]
    assert sliding_windows(10, 4, 4) == [(0, 4), (4, 8), (6, 10)]


def test_stages_name_group_and_describe_every_arm():
    stage1 = first_stage(4, 2, [1.0, 3.0], "generate")
    assert [c.name for c in stage1] == ["baseline", "refusal ablated", "persona x1", "persona x3"]
    assert [c.group for c in stage1] == [
        groups.BASELINE,
        groups.REFUSAL_ABLATED,
        groups.PERSONA_SWEEP,
        groups.PERSONA_SWEEP,
    ]
    stage2 = second_stage(
        4,
        2,
        3.0,
        reintroduce_coeff=1.0,
        layer_stride=2,
        reintroduce_windows=[(0, 2)],
        windows=[(2, 4)],
        seeds=[7],
        sweep="first_token",
        main="generate",
    )
    names = [c.name for c in stage2]
    assert names == [
        "baseline [first_token]",
        "persona x3 [first_token]",
        "persona x3 + refusal @ 0",
        "persona x3 + refusal @ 2",
        "persona x3 + refusal in [0:2)",
        "persona x3 - persona in [2:4)",
        "persona x3 - random-7 in [2:4)",
    ]
    assert len(set(names)) == len(names)
    window = next(c for c in stage2 if c.group == groups.REINTRODUCE_WINDOW)
    assert window.describe(4) == (
        "add 3 x persona to the residual stream entering block 2; "
        "then add 0.5 x refusal to the residual stream entering blocks 0..1"
    )
    assert stage2[-1].seed == 7 and stage2[-1].axis == 2


def test_conditions_bind_their_directions_by_key():
    directions = {name: Direction(torch.randn(4, 8), name=name) for name in ("persona", "refusal", "random-7")}
    condition = first_stage(4, 2, [1.0], "generate")[1]
    program = condition.program(directions)
    assert program.ops[0].direction is directions["refusal"]
    assert condition.ops.ops[0].direction == "refusal"  # the condition itself stays unbound
