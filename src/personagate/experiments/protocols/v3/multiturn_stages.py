"""The multi-turn family's stage: its nulls, its arms, the persona projection at every probe turn,
and the drift turn by turn (issue 22; arms in ``multiturn_arms``)."""

from __future__ import annotations

from collections.abc import Sequence

from personagate.activations import last_token_stream, second_moments, turn_activations
from personagate.directions import Direction, energy_matched_direction
from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.framing import Framing
from personagate.experiments.design.histories import Histories
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import (
    HARMFUL,
    HARMFUL_VAL,
    Role,
)
from personagate.experiments.execution.artifacts import VectorCache
from personagate.experiments.execution.runner import StudyRunner
from personagate.experiments.protocols.v3.multiturn_arms import null_key
from personagate.experiments.storage.facts import DRIFT, PROJECTION
from personagate.generation import check_context


def run_multiturn(runner: StudyRunner, layout: Layout, conditions: Sequence[Condition]) -> None:
    """The family's nulls, its arms (the plan's ``multi-turn`` stage), the probe readout and the drift."""
    spec = runner.spec
    with runner.profile.timed("directions"):
        runner.directions[0].update(multiturn_nulls(runner, layout))
    runner.measure(conditions, "multi-turn")
    with runner.profile.timed("readout"):
        persona_readout(runner, [c for c in conditions if c.role == Role.MULTITURN], layout.injection)
        for form in spec.multiturn.forms:
            drift(runner, form, layout)


def check_multiturn_fits(runner: StudyRunner) -> None:
    """The longest conversation, with the longest probe and a full reply, fits the model's context:
    checked when the run starts, not when the family's turn comes."""
    spec = runner.spec
    if not spec.multiturn.enabled:
        return
    longest = max(spec.multiturn.exchanges)
    for form in spec.multiturn.forms:
        ids = runner.ids(HARMFUL, Framing.multiturn(form, longest))
        check_context(runner.chat, ids, spec.generation.max_new_tokens)


def multiturn_nulls(runner: StudyRunner, layout: Layout) -> dict[str, Direction]:
    """Per form, random directions carrying as much of the stream at the probe turns of its longest
    conversations (validation prompts, late window layers) as the persona direction does: what the
    knockout removes there, matched."""
    spec = runner.spec
    longest = max(spec.multiturn.exchanges)
    layers = list(range(*layout.late))
    cache = VectorCache(runner.store.path / "vectors", spec, runner.chat)
    persona = runner.directions[0]["persona"]
    out: dict[str, Direction] = {}
    for form in spec.multiturn.forms:
        keys = [null_key(form, seed) for seed in range(spec.multiturn.null_seeds)]
        if all(cache.has("r0", key) for key in keys):
            out.update({key: cache.get("r0", key, _unreachable) for key in keys})
            continue
        framing = Framing.multiturn(form, longest)
        spans = runner.spans(HARMFUL_VAL, framing) or []
        moments = second_moments(
            runner.chat,
            runner.ids(HARMFUL_VAL, framing),
            layers,
            batch_size=runner.batch,
            progress=runner.progress,
            desc=f"stream energy {form}",
            spans=[(s.probe_start, s.ends[-1]) for s in spans],
        )
        for seed, key in enumerate(keys):
            out[key] = cache.get(
                "r0",
                key,
                lambda seed=seed, key=key, moments=moments: energy_matched_direction(
                    persona, moments, seed, n_layers=runner.n_layers, name=key
                ),
            )
    return out


def persona_readout(runner: StudyRunner, conditions: Sequence[Condition], layer: int) -> None:
    """The persona direction's projection at each probe's last token (where the reply is predicted),
    at ``layer``, per condition: a run-store fact. The shared history is prefilled once per batch."""
    persona = runner.directions[0]["persona"].unit_at(layer)
    for c in conditions:
        key = PROJECTION.of(c.name)
        if runner.store.fact(key) is not None:
            continue
        ids = runner.ids(HARMFUL, c.framing)
        spans = runner.spans(HARMFUL, c.framing)
        values = last_token_stream(runner.chat, ids, layer, spans=spans, batch_size=runner.batch) @ persona
        runner.store.set_fact(key, {"layer": layer, "values": [round(float(v), 5) for v in values]})


def drift(runner: StudyRunner, form: str, layout: Layout) -> None:
    """The persona (at the injection layer) and refusal (at the late window's first layer) projections
    at the last token of every turn of the longest conversation: the history is the same for every
    probe, so one probe shows the drift (the probe turn itself varies: see ``persona_readout``)."""
    key = DRIFT.of(form)
    if runner.store.fact(key) is not None:
        return
    spec = runner.spec
    longest = max(spec.multiturn.exchanges)
    histories = Histories.of(spec)
    probe = runner.texts(HARMFUL)[0]
    encoded = runner.formatter().encode_conversation(histories.conversation(form, longest, probe))
    layers = {"persona": layout.injection, "refusal": layout.late[0]}
    fact: dict = {"roles": list(encoded.spans.roles), "layers": layers}
    (acts,) = turn_activations(runner.chat, [encoded], progress=False)  # one pass serves both readouts
    for name, layer in layers.items():
        values = acts[:, layer] @ runner.directions[0][name].unit_at(layer)
        fact[name] = [round(float(v), 5) for v in values]
    runner.store.set_fact(key, fact)


def _unreachable() -> Direction:
    raise AssertionError("checked with cache.has")
