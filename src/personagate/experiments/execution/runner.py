"""Measuring conditions into the run store, and the stages of a study in order.

Conditions are measured side by side (each batch row its own program): generated replies get the
detector's flag, a three-way label (with the reply's log-likelihood under the unsteered model) and
the first-token score for free; screened conditions get the first-token score; every distinct
program gets the coherence guard (its effect on the likelihood of neutral passages). Every batch is
one transaction, and re-running resumes: nothing done is lost and nothing is done twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence

from tqdm.auto import tqdm

from personagate.conversations import TurnSpans
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.experiments.design import names as g
from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.framing import DEFAULT_FRAMING, Framing
from personagate.experiments.design.histories import Histories
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.design.splits import PromptSplits, persona_split
from personagate.experiments.execution.executors import Executor, InProcess
from personagate.experiments.execution.units import Kind, Unit, cut
from personagate.experiments.execution.units import Settings as UnitSettings
from personagate.experiments.storage.facts import REFUSAL_TOKENS
from personagate.experiments.storage.profile import TimeProfile
from personagate.experiments.storage.records import StoredCondition
from personagate.experiments.storage.store import RunStore
from personagate.extraction import find_refusal_tokens, projections_by_layer
from personagate.models.loading import ChatModel
from personagate.persona_directions import PersonaSet
from personagate.prompts import ChatFormatter
from personagate.scoring.coherence import CoherenceRule
from personagate.scoring.first_token import RefusalTokens
from personagate.scoring.judge import make_judge

# Rows of one side-by-side batch (conditions x prompts): large enough to amortise reading the weights
# on a CPU, small enough for the KV cache and the vocabulary logits.
ROWS_PER_BATCH = 128
# A screening unit holds few prompts and many conditions: neighbouring conditions (the random seeds of
# one window) share every block before the window, which the prefill then runs once for all of them.
SCREEN_PROMPTS = 4

# The coherence guard scores a fixed stretch of each neutral passage after a few tokens of context
# (every scored token costs a pass through the vocabulary projection).
GUARD_CONTEXT, GUARD_TOKENS = 8, 16


class StudyRunner:
    """Holds the loaded model, the directions and the store for one run."""

    def __init__(
        self,
        spec: StudySpec,
        chat: ChatModel,
        store: RunStore,
        splits: PromptSplits,
        progress: bool,
        executor: Executor | None = None,
    ) -> None:
        self.spec, self.chat, self.store, self.splits, self.progress = spec, chat, store, splits, progress
        self.executor: Executor = executor or InProcess(chat)
        self.n_layers = chat.n_layers
        self.batch = spec.generation.batch_size
        self.directions: dict[int, dict[str, Direction]] = {}
        self.refusal_tokens: RefusalTokens | None = None
        self.rule = CoherenceRule(spec.scoring.min_loglik, spec.scoring.max_repetition, spec.scoring.max_nonlanguage)
        scoring = spec.scoring
        self.judge = make_judge(
            scoring.judge,
            scoring.judge_url,
            scoring.judge_model,
            scoring.judge_key_env,
            scoring.judge_kind,
            scoring.judge_device,
        )
        self._ids: dict[tuple[str, Framing], list[list[int]]] = {}
        self._spans: dict[tuple[str, Framing], list[TurnSpans]] = {}  # conversation framings: where the turns lie
        self._histories: Histories | None = None
        self._neutral: list[tuple[list[int], list[int]]] | None = None
        self.profile = TimeProfile(store)  # where this session's time goes, added to the store's

    # --- inputs -----------------------------------------------------------------------------------

    def texts(self, prompt_set: str) -> list[str]:
        return {
            g.HARMFUL: self.splits.harmful_test,
            g.HARMFUL_VAL: self.splits.harmful_val,
            g.HARMLESS_VAL: self.splits.harmless_val,
            g.SAFE: self.splits.safe,
            g.BENIGN: self.splits.benign,
        }[prompt_set]

    def formatter(self) -> ChatFormatter:
        """The chat format of every prompt framed by the spec's system prompt (``prompts.system``)."""
        system = self.spec.prompts.system
        return ChatFormatter(self.chat.tokenizer) if system == "default" else ChatFormatter(self.chat.tokenizer, system)

    def ids(self, prompt_set: str, framing: Framing) -> list[list[int]]:
        """Token ids of a prompt set framed by the default persona, or by the compliant personas in turn
        (those held out of the main resample's persona direction: the natural arm never reuses them)."""
        key = (prompt_set, framing)
        if key not in self._ids:
            texts = self.texts(prompt_set)
            if framing.is_multiturn:
                self._conversations(key, texts, framing)
            elif framing == DEFAULT_FRAMING:
                fmt = self.formatter()
                self._ids[key] = [fmt.encode(t) for t in texts]
            else:
                holdout, first = self.spec.directions.natural_holdout, self.spec.directions.resamples[0]
                _, held = persona_split(PersonaSet.builtin().compliant, holdout, first)
                personas = [ChatFormatter(self.chat.tokenizer, s) for s in held]
                self._ids[key] = [personas[i % len(personas)].encode(t) for i, t in enumerate(texts)]
        return self._ids[key]

    def spans(self, prompt_set: str, framing: Framing) -> list[TurnSpans] | None:
        """Where the turns lie in each prompt of a conversation framing (None for single-turn framings)."""
        self.ids(prompt_set, framing)
        return self._spans.get((prompt_set, framing))

    def _conversations(self, key: tuple[str, Framing], texts: Sequence[str], framing: Framing) -> None:
        """Each prompt as the probe after ``framing.exchanges`` exchanges of ``framing.form`` (the first
        ``multiturn.probes`` prompts, or all), framed by the spec's system prompt."""
        if self._histories is None:
            self._histories = Histories.of(self.spec)
        probes = self.spec.multiturn.probes
        fmt = self.formatter()
        encoded = [
            fmt.encode_conversation(self._histories.conversation(str(framing.form), int(framing.exchanges or 0), t))
            for t in (texts[:probes] if probes else texts)
        ]
        self._ids[key] = [e.ids for e in encoded]
        self._spans[key] = [e.spans for e in encoded]

    def neutral_items(self) -> list[tuple[list[int], list[int]]]:
        """The neutral passages as (context, scored tokens): plain text, no chat template."""
        if self._neutral is None:
            items = []
            for text in self.splits.neutral:
                tokens = self.chat.tokenizer(text, add_special_tokens=False)["input_ids"]
                context = max(1, min(GUARD_CONTEXT, len(tokens) - 1))
                items.append((tokens[:context], tokens[context : context + GUARD_TOKENS]))
            self._neutral = items
        return self._neutral

    # --- measuring --------------------------------------------------------------------------------

    def register(self, conditions: Sequence[Condition]) -> None:
        names = [c.name for c in conditions]
        if len(set(names)) != len(names):
            repeated = next(n for n in names if names.count(n) > 1)
            raise PersonagateError(f"two conditions are both named {repeated!r}; the spec lays out the same arm twice")
        known = {c.name for c in self.store.conditions()}
        position = len(known)
        for c in conditions:
            if c.name not in known:
                self.store.add_condition(StoredCondition.of(c, position, self.n_layers))
                position += 1

    def measure(self, conditions: Sequence[Condition], desc: str) -> None:
        """Every condition on its prompt set in its mode, over-refusal where asked, and the guard: cut
        into units, computed by the executor, each unit's rows committed in one transaction."""
        self.register(conditions)
        units: list[Unit] = []
        generated = [c for c in conditions if c.mode == "generate"]
        for (prompt_set, framing), batch in _by_prompts(generated).items():
            units += self._units("generate", batch, prompt_set, framing)
        for (_, framing), batch in _by_prompts([c for c in generated if c.over_refusal]).items():
            units += self._units("generate", batch, g.SAFE, framing)
        for mode in ("screen", "first_token"):
            screened = [c for c in conditions if c.mode == mode]
            for (prompt_set, framing), batch in _by_prompts(screened).items():
                units += self._units(mode, batch, prompt_set, framing)
        units += self._guard_units(conditions)
        pending = [u for u in units if not self._done(u)]
        bar = tqdm(total=len(pending), desc=desc, disable=not self.progress, unit="unit")
        waited = time.perf_counter()
        for unit, computed in self.executor.run(pending, self.directions, self.unit_settings()):
            rows = computed.rows
            done = {
                (r.condition, r.prompt_id)
                for r in rows
                if r.prompt_id in self.store.done_ids(r.condition, r.prompt_set)
            }
            rows = [r for r in rows if (r.condition, r.prompt_id) not in done]
            if self.judge is not None and unit.kind == "generate":
                texts = self.texts(unit.prompt_set)
                flags = self.judged([texts[r.prompt_id] for r in rows], [r.text or "" for r in rows])
                rows = [dataclasses.replace(r, judge=f) for r, f in zip(rows, flags, strict=True)]
            self.store.write_rows(rows)
            # the driver's wall time per unit (waiting, judging, writing): with a pool, units overlap
            now = time.perf_counter()
            self.profile.add(unit.kind, dataclasses.replace(computed.cost, seconds=now - waited), units=1)
            waited = now
            bar.update()
        bar.close()
        self.profile.save()

    def judged(self, prompts: Sequence[str], replies: Sequence[str]) -> list[int | None]:
        """The judge's flags, each asked once per (judge, prompt and reply): cached in the run store."""
        assert self.judge is not None
        keys = [hashlib.sha256(f"{p}\x00{r}".encode()).hexdigest() for p, r in zip(prompts, replies, strict=True)]
        known = self.store.judgements(self.judge.identity, keys)
        todo = [i for i, key in enumerate(keys) if key not in known]
        if todo:
            flags = self.judge.judge([prompts[i] for i in todo], [replies[i] for i in todo])
            new = {keys[i]: flag for i, flag in zip(todo, flags, strict=True)}
            self.store.remember(self.judge.identity, new)
            known.update(new)
        return [known[key] for key in keys]

    def unit_settings(self) -> UnitSettings:
        assert self.refusal_tokens is not None
        return UnitSettings(
            max_new_tokens=self.spec.generation.max_new_tokens,
            screen_tokens=self.spec.generation.screen_tokens,
            batch_size=self.batch,
            refusal_token_ids=tuple(self.refusal_tokens.ids),
            rule=self.rule,
        )

    def _units(self, kind: Kind, conditions: Sequence[Condition], prompt_set: str, framing: Framing) -> list[Unit]:
        ids = self.ids(prompt_set, framing)
        items = [(i, tuple(tokens), ()) for i, tokens in enumerate(ids)]
        programs = [(c.name, c.resample, c.ops.to_table()) for c in conditions]
        prompts = min(SCREEN_PROMPTS, self.batch) if kind in ("screen", "first_token") else self.batch
        return cut(kind, prompt_set, programs, items, prompts, ROWS_PER_BATCH, self.spans(prompt_set, framing))

    def _guard_units(self, conditions: Sequence[Condition]) -> list[Unit]:
        """One guard per distinct program (identity and resample): conditions sharing a program share it."""
        guarded = {(c.identity, c.resample) for c in self.store.conditions() if self.store.done_ids(c.name, g.NEUTRAL)}
        todo: dict[tuple[str, int], Condition] = {}
        for c in conditions:
            key = (c.ops.identity(), c.resample)
            if c.guard and key not in guarded and key not in todo:
                todo[key] = c
        items = [(i, tuple(context), tuple(scored)) for i, (context, scored) in enumerate(self.neutral_items())]
        programs = [(c.name, c.resample, c.ops.to_table()) for c in todo.values()]
        return cut("guard", g.NEUTRAL, programs, items, len(items), ROWS_PER_BATCH) if items else []

    def _done(self, unit: Unit) -> bool:
        wanted = {i for i, _, _ in unit.items}
        return all(wanted <= self.store.done_ids(name, unit.prompt_set) for name, _, _ in unit.programs)

    # --- stages -----------------------------------------------------------------------------------

    def learn_refusal_tokens(self) -> None:
        with self.profile.timed("refusal tokens"):
            tokens = self.store.fact(REFUSAL_TOKENS)
            settings = self.spec.directions
            if tokens is None and settings.refusal_tokens:
                ids = [
                    self.chat.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in settings.refusal_tokens
                ]
                tokens = {"ids": ids, "tokens": list(settings.refusal_tokens)}
                self.store.set_fact(REFUSAL_TOKENS, tokens)
            if tokens is None:
                n = self.spec.generation.refusal_token_prompts
                found = find_refusal_tokens(
                    self.chat,
                    self.formatter(),
                    self.splits.harmful_val[:n],
                    self.splits.harmless_val[: max(2, n // 2)],
                    batch_size=self.batch,
                    progress=self.progress,
                )
                tokens = found.to_dict()
                self.store.set_fact(REFUSAL_TOKENS, tokens)
            self.refusal_tokens = RefusalTokens.from_dict(tokens)

    def readout(self, conditions: Sequence[Condition], resample: int = 0) -> None:
        """Per prompt and layer: the projection onto each layer's own refusal direction at the last token."""
        have = self.store.readout()
        refusal = self.directions[resample]["refusal"]
        todo = [c for c in conditions if c.name not in have]
        with self.profile.timed("readout"):
            for c in todo:
                values = projections_by_layer(
                    self.chat,
                    self.ids(c.prompts, c.framing),
                    refusal,
                    program=c.program(self.directions[c.resample]),
                    batch_size=self.batch,
                    progress=False,
                )
                self.store.write_readout(c.name, values.tolist())


def _by_prompts(conditions: Sequence[Condition]) -> dict[tuple[str, Framing], list[Condition]]:
    out: dict[tuple[str, Framing], list[Condition]] = {}
    for c in conditions:
        out.setdefault((c.prompts, c.framing), []).append(c)
    return out
