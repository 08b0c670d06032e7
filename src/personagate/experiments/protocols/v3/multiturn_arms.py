"""Protocol v3's multi-turn arm family: a persona built up over k prior exchanges, then a harmful probe.

Each test prompt is the probe of a conversation whose history (the first k exchanges of a form, from
``data/multiturn.json`` or a file like it) is the same for every probe, so the history's keys and
values are computed once per batch and program (``prefill``'s shared prefix). Arms: no intervention
at every k; at the largest k, the persona projected out of the late window at the probe turn, random
directions projected out there instead (the null), and persona steering on every turn or on the
probe turn only.
"""

from __future__ import annotations

import dataclasses

from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.framing import Framing
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import Group, Role
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.protocols.v3.sweeps import persona_op, span
from personagate.interventions import Ablate, Program, Window


def multiturn_conditions(spec: StudySpec, layout: Layout, coeff: float) -> list[Condition]:
    """The family's arms (none when the spec switches it off). Ops at the probe turn carry no
    coherence guard: the guard's neutral passages are no conversation; their replies' labels say
    when they are incoherent."""
    section = spec.multiturn
    if not section.enabled:
        return []
    mode, longest, late = section.mode, max(section.exchanges), layout.late
    knockout_window = Window(*late)
    steer = persona_op(spec, coeff, layout.injection)
    out: list[Condition] = []
    for form in section.forms:
        for k in sorted(section.exchanges):
            out.append(
                Condition(
                    f"{form} k={k}",
                    Group.MULTITURN,
                    Role.MULTITURN,
                    Program(),
                    mode,
                    framing=Framing.multiturn(form, k),
                    axis=float(k),
                )
            )
        framed = {"framing": Framing.multiturn(form, longest), "axis": float(longest)}
        out.append(
            Condition(
                f"{form} k={longest} - persona in {span(late)} at the probe",
                Group.MULTITURN,
                Role.MULTITURN_KNOCKOUT,
                Program([Ablate("persona", knockout_window, scope="probe")]),
                mode,
                window=late,
                guard=False,
                **framed,
            )
        )
        for seed in range(section.null_seeds):
            out.append(
                Condition(
                    f"{form} k={longest} - random {seed} in {span(late)} at the probe",
                    Group.MULTITURN,
                    Role.MULTITURN_NULL,
                    Program([Ablate(null_key(form, seed), knockout_window, scope="probe")]),
                    mode,
                    window=late,
                    seed=seed,
                    guard=False,
                    **framed,
                )
            )
        out.append(
            Condition(
                f"{form} k={longest} + persona x{coeff:g} on every turn",
                Group.MULTITURN,
                Role.MULTITURN_STEER_ALL,
                Program([steer]),
                mode,
                **framed,
            )
        )
        out.append(
            Condition(
                f"{form} k={longest} + persona x{coeff:g} at the probe",
                Group.MULTITURN,
                Role.MULTITURN_STEER_PROBE,
                Program([dataclasses.replace(steer, scope="probe")]),
                mode,
                guard=False,
                **framed,
            )
        )
    return out


def null_key(form: str, seed: int) -> str:
    """The direction key of a multi-turn null: energy-matched on that form's longest conversations."""
    return f"mt-random-{form}-{seed}"
