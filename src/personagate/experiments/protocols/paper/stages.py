"""The stages of protocol ``paper``: their vectors, their arms (and ours beside them) on their test set,
their benign coherence arm, and the geometry they report (cosines per layer between the vectors)."""

from __future__ import annotations

import dataclasses
import math

from personagate.activations import second_moments
from personagate.directions import Direction, energy_matched_direction
from personagate.experiments.design.framing import DEFAULT_FRAMING
from personagate.experiments.design.names import HARMFUL_VAL, Role
from personagate.experiments.design.plan import ModelShape
from personagate.experiments.execution.artifacts import VectorCache
from personagate.experiments.execution.runner import StudyRunner
from personagate.experiments.protocols.base import Protocol
from personagate.experiments.protocols.paper.arms import PaperBlocks
from personagate.experiments.protocols.paper.vectors import KINDS, POSITIONS, PaperVectors, VectorsUnavailable
from personagate.experiments.storage.facts import GEOMETRY, LAYOUT, PAPER_BLOCKS, RESAMPLE_SEEDS, STOPPED
from personagate.interventions import Add, Program, steer


def run_paper_stages(protocol: Protocol, runner: StudyRunner) -> None:
    spec, store, chat, profile = runner.spec, runner.store, runner.chat, runner.profile
    blocks = PaperBlocks.of(spec, runner.n_layers, chat.name)
    with profile.stage("directions"):
        store.set_fact(LAYOUT, blocks.layout().to_fact())
        store.set_fact(PAPER_BLOCKS, dataclasses.asdict(blocks))
        runner.learn_refusal_tokens()
        try:
            with profile.timed("directions"):
                directions = PaperVectors(runner).make(blocks)
        except VectorsUnavailable as exc:
            store.set_fact(STOPPED, str(exc))
            return
        with profile.timed("stream energy"):
            directions.update(null_directions(runner, blocks, directions))
    directions["refusal"] = directions["paper-refusal-layers"]  # the readout's per-layer refusal direction
    runner.directions[0] = directions
    with profile.stage("paper"):
        conditions = protocol.plan(spec, ModelShape(runner.n_layers, chat.name)).stage("paper")
        runner.measure(conditions, "paper")
        roles = (Role.PERSONA, Role.PERSONA_LATE_WINDOW)
        main = spec.generation.main
        runner.readout([c for c in conditions if c.role in roles and c.mode == main and c.prompts == "harmful"])
    store.set_fact(GEOMETRY, geometry(directions, runner.n_layers))
    store.set_fact(RESAMPLE_SEEDS, [spec.directions.resamples[0]])


def null_directions(runner: StudyRunner, blocks: PaperBlocks, directions: dict[str, Direction]) -> dict[str, Direction]:
    """Our null beside their one random direction: random directions carrying as much of the steered
    stream at the knockout site (validation prompts) as the persona unit vector does there."""
    site = blocks.site(blocks.late_knockout)
    persona = Program([Add("paper-persona", runner.spec.paper.persona_alpha, blocks.site(blocks.inject))])
    with steer(runner.chat, persona.bind(directions)):
        moments = second_moments(
            runner.chat, runner.ids(HARMFUL_VAL, DEFAULT_FRAMING), [site], batch_size=runner.batch, progress=False
        )
    cache = VectorCache(runner.store.path / "vectors", runner.spec, runner.chat)
    unit = directions["paper-unit"]
    return {
        f"random-{seed}": cache.get(
            "r0",
            f"random-{seed}",
            lambda seed=seed: energy_matched_direction(
                unit, moments, seed, n_layers=runner.n_layers, name=f"random-{seed}"
            ),
        )
        for seed in range(runner.spec.windows.random_seeds)
    }


def geometry(directions: dict[str, Direction], n_layers: int) -> dict[str, list[float]]:
    """Cosine per layer between the persona vectors (three positions), the user-persona and I-Thou
    vectors, the refusal direction, and their random direction: what the authors report."""
    named = {f"{k}@{p}": directions[f"paper-{k}-{p}"] for k in KINDS for p in POSITIONS}
    named["refusal"] = directions["paper-refusal-layers"]
    named["random (theirs)"] = directions["paper-random"]
    anchor = "model_persona@prompt_end"
    out = {}
    for name, direction in named.items():
        if name != anchor:
            values = directions_cosine(named[anchor], direction, n_layers)
            out[f"{anchor} vs {name}"] = values
    out["model_persona@prompt_end vs model_persona@response_avg"] = directions_cosine(
        named["model_persona@prompt_end"], named["model_persona@response_avg"], n_layers
    )
    out["i_thou@prompt_end vs refusal"] = directions_cosine(named["i_thou@prompt_end"], named["refusal"], n_layers)
    return out


def directions_cosine(a: Direction, b: Direction, n_layers: int) -> list[float]:
    values = a.cosine(b, n_layers).tolist()
    return [v if math.isfinite(v) else 0.0 for v in values]
