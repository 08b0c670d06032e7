"""The protocol's arms as data: windows downstream of the injection, doses on each layer's scale,
unique names, and programs of op references bound to a resample's directions later."""

from __future__ import annotations

import pytest
import torch

from personagate import Direction, PersonagateError
from personagate.experiments.design import names as g
from personagate.experiments.design.framing import COMPLIANT_FRAMING
from personagate.experiments.design.layout import Layout, sliding
from personagate.experiments.design.names import Group, Role
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.protocols import load_spec
from personagate.experiments.protocols.v3.arms import (
    main_conditions as build_test_conditions,
)
from personagate.experiments.protocols.v3.arms import validation_conditions
from personagate.experiments.protocols.v3.sweeps import fixed_doses, reintroduce_family, resample_conditions
from personagate.interventions import Ablate, Add, Clamp


def spec(tmp_path, body: str = "") -> StudySpec:
    path = tmp_path / "spec.toml"
    path.write_text(body)
    return load_spec(path)


def test_sliding_windows_start_where_asked_and_reach_the_last_block():
    assert sliding(7, 24, 6, 3) == [(7, 13), (10, 16), (13, 19), (16, 22), (18, 24)]
    assert sliding(0, 10, 4, 4) == [(0, 4), (4, 8), (6, 10)]
    assert sliding(23, 24, 6, 3) == [(23, 24)]


@pytest.mark.parametrize("layer", [0.25, 0.5, 3, 10])
def test_downstream_windows_never_contain_the_injection(tmp_path, layer):
    s = spec(tmp_path, f"[persona]\nlayer = {layer}\n[windows]\nlate = '3/4:1'\n")
    layout = Layout.of(s, 24)
    assert layout.windows and all(not a <= layout.injection < b for a, b in layout.windows)
    assert all(a > layout.injection for a, _ in layout.windows)
    assert layout.late in layout.windows


def test_a_late_window_over_the_injection_is_refused_unless_asked(tmp_path):
    s = spec(tmp_path, "[persona]\nlayer = 0.75\n[windows]\nlate = '2/3:1'\n")
    with pytest.raises(PersonagateError, match="contains the injection layer 18"):
        Layout.of(s, 24)
    allowed = spec(tmp_path, "[persona]\nlayer = 0.75\n[windows]\nlate = '2/3:1'\ncontain_injection = true\n")
    assert Layout.of(allowed, 24).late == (16, 24)


def test_v1_places_windows_at_absolute_depths_around_the_injection():
    v1 = load_spec(protocol="v1")
    layout = Layout.of(v1, 24)
    assert layout.injection == 12 and (0, 6) in layout.windows
    assert any(a <= 12 < b for a, b in layout.windows)  # v1 let windows contain the injection


def test_every_arm_has_a_unique_name_and_its_group(tmp_path):
    s = load_spec()
    layout = Layout.of(s, 24)
    doses = {layer: [(0.3, 0.05), (0.5, 0.1)] for layer in layout.reintroduce_layers}  # as calibrated
    conditions = validation_conditions(s, layout) + build_test_conditions(s, layout, 4.0, [0.5] * 24, doses)
    conditions += resample_conditions(s, layout, 4.0, 1, doses)
    names = [c.name for c in conditions]
    assert len(names) == len(set(names))
    groups = {c.group for c in conditions}
    for group in (
        Group.BASELINE,
        Group.PERSONA,
        Group.SANITY,
        Group.STYLE,
        Group.RANDOM_ADD,
        Group.NATURAL,
        Group.PERSONA_WINDOW,
    ):
        assert group in groups
    for group in (
        Group.PROJECTION_ONLY,
        Group.NATURAL_WINDOW,
        Group.RANDOM_WINDOW,
        Group.POSITIVE_CONTROL,
        Group.REINTRODUCE,
        Group.MEDIATION,
        Group.STYLE_WINDOW,
    ):
        assert group in groups
    assert len([c for c in conditions if c.role == Role.RANDOM_ADD]) == len(s.persona.random_adds) >= 20
    assert len([c for c in conditions if c.role == Role.STYLE_LATE_WINDOW]) == 3  # the named nulls
    assert min(c.axis for c in conditions if c.group == Group.REINTRODUCE) == 1  # layer 0 adds nothing
    resampled = {c.dose for c in conditions if c.group == Group.REINTRODUCE and c.resample == 1}
    assert resampled == set(s.reintroduce.resample_coeffs)
    assert all(c.ops.ops[0].direction == "persona-norm" for c in conditions if c.group == Group.PERSONA)
    late_random = [c for c in conditions if c.role == "random_late_window" and c.resample == 0]
    assert len(late_random) == s.windows.random_seeds >= 20
    for window in layout.windows:  # the other windows draw a band from fewer seeds
        if window != layout.late:
            side = [c for c in conditions if c.role == "random_window" and c.window == window]
            assert len(side) == s.windows.side_seeds < s.windows.random_seeds
    assert len([c for c in conditions if c.group == Group.NATURAL_RANDOM_WINDOW]) == s.windows.side_seeds
    assert all(
        c.prompts == g.HARMFUL_VAL for c in conditions if c.group == Group.PERSONA_SWEEP
    )  # choices on validation
    natural = [c for c in conditions if c.group == Group.NATURAL]
    assert natural and all(c.framing == COMPLIANT_FRAMING and len(c.ops) == 0 for c in natural)


def test_doses_use_each_layers_own_vector(tmp_path):
    v2 = load_spec(protocol="v2")
    layout = Layout.of(v2, 24)
    family = reintroduce_family(v2, layout, 4.0, 0, fixed_doses(layout, v2.reintroduce.coeffs))
    assert {c.dose for c in family} == set(v2.reintroduce.coeffs)
    op = family[-1].ops.ops[1]
    assert isinstance(op, Add) and op.direction == "refusal" and op.layers == family[-1].axis
    v1 = load_spec(protocol="v1")
    v1_layout = Layout.of(v1, 24)
    v1_family = reintroduce_family(v1, v1_layout, 4.0, 0, fixed_doses(v1_layout, v1.reintroduce.coeffs))
    assert all(c.ops.ops[1].direction == "refusal-selected" for c in v1_family)  # one raw vector at every layer
    v3 = load_spec()
    calibrated = {1: [(0.5, 0.07)], 17: [(0.5, 0.4)]}  # the same effect needs another fraction at each layer
    ops = [c.ops.ops[1] for c in reintroduce_family(v3, Layout.of(v3, 24), 0.5, 0, calibrated)]
    assert [(op.direction, op.coeff) for op in ops] == [("refusal-norm", 0.07), ("refusal-norm", 0.4)]


def test_mediation_clamps_refusal_at_the_last_prompt_token_to_the_baseline_values():
    s = load_spec()
    layout = Layout.of(s, 24)
    values = [float(i) for i in range(24)]
    mediation = [c for c in build_test_conditions(s, layout, 4.0, values, {}) if c.group == Group.MEDIATION]
    assert len(mediation) == len(layout.windows)
    clamp = mediation[0].ops.ops[1]
    assert isinstance(clamp, Clamp) and clamp.value == tuple(values) and clamp.scope == "last"


def test_conditions_bind_their_directions_by_key():
    directions = {name: Direction(torch.randn(4, 8), name=name) for name in ("persona", "refusal-selected")}
    s = load_spec()
    layout = Layout(4, 1, (2, 4), ((2, 4),), (0, 1, 2, 3), (0, 1), (2, 4))
    arms = build_test_conditions(s, layout, 2.0, [0.0] * 4, {})
    condition = next(c for c in arms if c.group == Group.REFUSAL_ABLATED)
    program = condition.program(directions)
    assert isinstance(program.ops[0], Ablate) and program.ops[0].direction is directions["refusal-selected"]
    assert condition.ops.ops[0].direction == "refusal-selected"  # the condition itself stays unbound
