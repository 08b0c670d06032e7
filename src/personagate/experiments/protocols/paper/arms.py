"""Protocol ``paper``: Zhong & Li's experiment arm for arm, as their code runs it
(github.com/violazhong/refusal-downstream-persona; docs/paper_protocol.md), placed on any model.

Their indices, mapped once here: a vector of "row r" is their ``hidden_states[r]``, our layer ``r``;
"block k" is the output of decoder block ``k``, where their forward hook adds or projects, which is
the residual stream entering block ``k + 1``: our layer ``k + 1``. On the models their code ran (the
spec's ``paper.exact_models``) their block numbers are used as they are; on any other model each is
scaled by depth from the 28 blocks of Qwen2.5-7B-Instruct (``round(k * L / 28)``).

Their vectors are single vectors (one row), added at other layers than the one they were read at,
so the directions here are shared vectors (the same at every layer): ``paper-persona`` (the unit
model-persona vector of the injection row times the I-Thou vector's norm there), ``paper-refusal``
(the unit refusal vector of the refusal row times the same norm), ``paper-unit`` (the unit persona
vector: what a knockout projects out), ``paper-random`` (their one Gaussian direction), and our
``random-S`` null, matched on the energy the knockout removes.
"""

from __future__ import annotations

from dataclasses import dataclass

from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import BENIGN, Group, Role
from personagate.experiments.design.spec import StudySpec
from personagate.interventions import Add, Program
from personagate.interventions.project import Project


@dataclass(frozen=True)
class PaperBlocks:
    """Their block numbers on this model (block outputs), and the layers (our ``resid_pre``) they edit."""

    n_layers: int
    inject: int
    refusal_row: int
    late_refusal: tuple[int, ...]
    knockouts: tuple[int, ...]
    late_knockout: int
    exact: bool

    @classmethod
    def of(cls, spec: StudySpec, n_layers: int, model_id: str) -> PaperBlocks:
        p = spec.paper
        exact = model_id in p.exact_models

        def block(k: int) -> int:
            mapped = k if exact else round(k * n_layers / p.reference_blocks)
            return min(mapped, n_layers - 2)  # a block output that is still a block's input

        return cls(
            n_layers=n_layers,
            inject=block(p.inject_block),
            refusal_row=block(p.refusal_block),
            late_refusal=tuple(dict.fromkeys(block(k) for k in p.late_refusal)),  # blocks that map to one: once
            knockouts=tuple(dict.fromkeys(block(k) for k in p.knockout_blocks)),
            late_knockout=block(p.late_knockout),
            exact=exact,
        )

    @staticmethod
    def site(block: int) -> int:
        """The layer (our ``resid_pre``) a hook on block ``block``'s output edits."""
        return block + 1

    def layout(self) -> Layout:
        """The study layout the rules read: the knockout sites as one-block windows, the reintroduction
        layers, and the bands on either side of the injection."""
        inject = self.site(self.inject)
        windows = tuple(sorted({(self.site(k), self.site(k) + 1) for k in self.knockouts}))
        late = (self.site(self.late_knockout), self.site(self.late_knockout) + 1)
        layers = (self.site(self.refusal_row), *(self.site(k) for k in self.late_refusal[:1]))
        return Layout(self.n_layers, inject, late, windows, layers, (0, inject), (inject + 1, self.n_layers))


def paper_conditions(spec: StudySpec, blocks: PaperBlocks, null_seeds: int) -> list[Condition]:
    """Their arms (the persona arm, reintroduction early and late, knockouts at each site, the early
    reintroduction with the knockout, their random knockout), beside ours: the same knockout on the
    unsteered model (the difference in differences needs it), a null of ``null_seeds`` random
    directions, screened twins for the null's comparison, and their benign coherence arm."""
    p, main, sweep = spec.paper, spec.generation.main, spec.generation.sweep
    site = blocks.site
    persona = Add("paper-persona", p.persona_alpha, site(blocks.inject))
    early = Add("paper-refusal", p.refusal_alpha, site(blocks.refusal_row))
    late_ko = Project("paper-unit", site(blocks.late_knockout))

    def knock(k: int) -> dict:
        return {"axis": float(site(k)), "window": (site(k), site(k) + 1)}

    out = [
        Condition("baseline", Group.BASELINE, Role.BASELINE, Program(), main, over_refusal=True),
        Condition("persona (mp_only)", Group.PERSONA, Role.PERSONA, Program([persona]), main, over_refusal=True),
        Condition(
            f"persona + refusal @ block {blocks.refusal_row} (mp_early_refusal)",
            Group.REINTRODUCE,
            Role.REINTRODUCE,
            Program([persona, early]),
            main,
            axis=float(site(blocks.refusal_row)),
            dose=p.refusal_alpha,
        ),
    ]
    for count in range(1, len(blocks.late_refusal) + 1):
        at = blocks.late_refusal[:count]
        adds = [Add("paper-refusal", p.refusal_alpha, site(k)) for k in at]
        label = "+".join(str(k) for k in at)
        out.append(
            Condition(
                f"persona + refusal @ block {label} (mp_late_refusal)",
                Group.REINTRODUCE,
                Role.REINTRODUCE,
                Program([persona, *adds]),
                main,
                axis=float(site(at[0])),
                dose=p.refusal_alpha * count,
            )
        )
    for k in blocks.knockouts:
        late = k == blocks.late_knockout
        out.append(
            Condition(
                f"persona - persona @ block {k} (mp_only_ko)",
                Group.PERSONA_WINDOW,
                Role.PERSONA_LATE_WINDOW if late else Role.PERSONA_WINDOW,
                Program([persona, Project("paper-unit", site(k))]),
                main,
                over_refusal=late,
                **knock(k),
            )
        )
    common = knock(blocks.late_knockout)
    out += [
        Condition(
            f"persona + refusal @ block {blocks.refusal_row} - persona @ block {blocks.late_knockout} "
            "(mp_early_ref_ko)",
            Group.REINTRODUCE,
            Role.REINTRODUCE_KNOCKOUT,
            Program([persona, early, late_ko]),
            main,
            **common,
        ),
        Condition(
            f"persona - their random direction @ block {blocks.late_knockout} (mp_random_ko)",
            Group.RANDOM_WINDOW,
            Role.SINGLE_RANDOM_LATE_WINDOW,
            Program([persona, Project("paper-random", site(blocks.late_knockout))]),
            main,
            seed=p.random_seed,
            **common,
        ),
        Condition(
            f"- persona @ block {blocks.late_knockout} (unsteered; ours)",
            Group.PROJECTION_ONLY,
            Role.PROJECTION_ONLY_LATE,
            Program([late_ko]),
            main,
            **common,
        ),
    ]
    # ours beside theirs: a null of random directions matched on what the knockout removes, in the
    # sweep mode, with the arms it is compared with measured the same way
    out += [
        Condition(f"baseline [{sweep}]", Group.REFERENCE, Role.BASELINE, Program(), sweep),
        Condition(f"persona (mp_only) [{sweep}]", Group.REFERENCE, Role.PERSONA, Program([persona]), sweep),
        Condition(
            f"persona - persona @ block {blocks.late_knockout} [{sweep}]",
            Group.REFERENCE,
            Role.PERSONA_LATE_WINDOW,
            Program([persona, late_ko]),
            sweep,
            **common,
        ),
        Condition(
            f"persona - their random direction @ block {blocks.late_knockout} [{sweep}]",
            Group.REFERENCE,
            Role.SINGLE_RANDOM_LATE_WINDOW,
            Program([persona, Project("paper-random", site(blocks.late_knockout))]),
            sweep,
            seed=p.random_seed,
            **common,
        ),
    ]
    for seed in range(null_seeds):
        out.append(
            Condition(
                f"persona - random-{seed} @ block {blocks.late_knockout} (ours)",
                Group.RANDOM_WINDOW,
                Role.RANDOM_LATE_WINDOW,
                Program([persona, Project(f"random-{seed}", site(blocks.late_knockout))]),
                sweep,
                seed=seed,
                **common,
            )
        )
    # their coherence check: baseline, persona, the late knockout, their random knockout, late refusal
    inject = site(blocks.inject)
    benign_arms = [
        c
        for c in out
        if c.mode == main and (c.role in BENIGN_ROLES or (c.role == Role.REINTRODUCE and (c.axis or 0) > inject))
    ]
    out += [
        Condition(f"{c.name} [benign]", Group.BENIGN, c.role, c.ops, main, prompts=BENIGN, axis=c.axis, guard=False)
        for c in benign_arms
    ]
    return out


BENIGN_ROLES = (Role.BASELINE, Role.PERSONA, Role.PERSONA_LATE_WINDOW, Role.SINGLE_RANDOM_LATE_WINDOW)
