"""Run a study spec into a run store: directions, conditions in stages, readout, exports, report.

Re-running the same command resumes: vectors on disk are reused, finished batches are skipped, so
nothing done is lost and nothing is done twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from personagate.directions import Direction, cosine_by_layer, random_direction
from personagate.experiments import groups
from personagate.experiments.conditions import Condition, first_stage, persona_op, second_stage, sliding_windows
from personagate.experiments.results import summarise
from personagate.experiments.spec import StudySpec
from personagate.experiments.splits import PromptSplits
from personagate.experiments.store import Row, RunStore
from personagate.extraction import (
    PersonaSet,
    RefusalSelection,
    find_refusal_tokens,
    first_token_kl,
    persona_direction,
    projection_by_layer,
    refusal_direction,
)
from personagate.generation import generate_grid, next_token_logits, next_token_logits_grid
from personagate.interventions import Ablate, Program, Window
from personagate.models.loading import ChatModel
from personagate.prompts import ChatFormatter
from personagate.scoring.first_token import RefusalTokens
from personagate.scoring.judge import make_judge
from personagate.scoring.phrases import is_refusal


class StudyRunner:
    """Holds the loaded model, the directions and the store for one run."""

    def __init__(self, spec: StudySpec, chat: ChatModel, store: RunStore, splits: PromptSplits, progress: bool) -> None:
        self.spec, self.chat, self.store, self.splits, self.progress = spec, chat, store, splits, progress
        self.fmt = ChatFormatter(chat.tokenizer)
        self.n_layers = chat.n_layers
        self.batch = spec.generation.batch_size
        self.directions: dict[str, Direction] = {}
        self.refusal_tokens: RefusalTokens | None = None
        self._ids: dict[str, list[list[int]]] = {}
        self._baseline_kl_logits: torch.Tensor | None = None
        scoring = spec.scoring
        self.judge = make_judge(scoring.judge, scoring.judge_url, scoring.judge_model, scoring.judge_key_env)

    # --- inputs -----------------------------------------------------------------------------------

    def ids(self, name: str) -> list[list[int]]:
        if name not in self._ids:
            self._ids[name] = [self.fmt.encode(p) for p in getattr(self.splits, name)]
        return self._ids[name]

    def vector_path(self, name: str) -> Path:
        return self.store.path / "vectors" / f"{name}.safetensors"

    def _load_or_make(self, name: str, make) -> Direction:
        path = self.vector_path(name)
        if path.is_file():
            direction = Direction.load(path)
        else:
            direction = make()
            direction.save(path)
        direction.check_fits(self.n_layers, self.chat.hidden_size, model_hash=self.chat.config_hash())
        self.directions[name] = direction
        return direction

    def make_directions(self) -> None:
        settings, splits = self.spec.directions, self.splits
        tokens = self.store.fact("refusal_tokens")
        if tokens is None and settings.refusal_tokens:
            ids = [self.chat.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in settings.refusal_tokens]
            tokens = {"ids": ids, "tokens": list(settings.refusal_tokens)}
            self.store.set_fact("refusal_tokens", tokens)
        if tokens is None:
            n = self.spec.generation.refusal_token_prompts
            found = find_refusal_tokens(
                self.chat,
                self.fmt,
                (splits.harmful_train + splits.harmful_val)[:n],
                (splits.harmless_train + splits.harmless_val)[: max(2, n // 2)],
                batch_size=self.batch,
                progress=self.progress,
            )
            self.store.set_fact("refusal_tokens", found.to_dict())
            tokens = found.to_dict()
        self.refusal_tokens = RefusalTokens.from_dict(tokens)

        def make_refusal() -> Direction:
            if settings.refusal:
                return Direction.load(self.spec.path(settings.refusal))
            selection = RefusalSelection(
                max_kl=settings.refusal_max_kl,
                positions=settings.refusal_positions,
                layer_stride=settings.refusal_layer_stride,
                n_val=len(splits.harmful_val),
            )
            found = refusal_direction(
                self.chat,
                splits.harmful_train,
                splits.harmless_train,
                splits.harmful_val,
                splits.harmless_val,
                selection=selection,
                refusal_tokens=self.refusal_tokens,
                batch_size=self.batch,
                progress=self.progress,
            )
            found.save_candidates(self.store.path / "refusal_candidates.csv")
            return found.direction

        def make_persona() -> Direction:
            if settings.persona:
                return Direction.load(self.spec.path(settings.persona))
            personas = PersonaSet.builtin()
            personas.questions = personas.questions[: settings.persona_questions]
            return persona_direction(
                self.chat, personas, against=settings.persona_against, batch_size=self.batch, progress=self.progress
            )

        refusal = self._load_or_make("refusal", make_refusal)
        persona = self._load_or_make("persona", make_persona)
        for seed in settings.random_seeds:
            self._load_or_make(
                f"random-{seed}", lambda seed=seed: random_direction(persona, seed, orthogonal_to=(persona, refusal))
            )

    # --- evaluation -------------------------------------------------------------------------------

    def baseline_kl_logits(self) -> torch.Tensor:
        if self._baseline_kl_logits is None:
            self._baseline_kl_logits = next_token_logits(
                self.chat, self.ids("harmless_kl"), batch_size=self.batch, progress=False
            )
        return self._baseline_kl_logits

    def run_conditions(self, conditions: Sequence[Condition], desc: str) -> None:
        known = {c["name"] for c in self.store.conditions()}
        position = len(known)
        for condition in conditions:
            if condition.name not in known:
                self.store.add_condition(
                    condition.name,
                    position,
                    condition.group,
                    condition.axis,
                    condition.seed,
                    condition.describe(self.n_layers),
                    condition.mode,
                )
                position += 1
        generating = [c for c in conditions if c.mode == "generate"]
        if generating:
            self._generate_side_by_side(generating, desc)
        self._first_token_side_by_side(conditions, desc)

    def _first_token_side_by_side(self, conditions: Sequence[Condition], desc: str) -> None:
        """First-token refusal scores of the screened conditions and first-token KL of every condition,
        several conditions per batch (``CONDITIONS_PER_BATCH``, each row its own program) so blocks
        before the layer where they part ways run once per prompt; every condition's rows of a chunk
        are committed together."""
        assert self.refusal_tokens is not None
        screened = {c.name for c in conditions if c.mode != "generate"}
        sets = [
            (groups.HARMFUL, self.ids("harmful_test")),
            (groups.SAFE, self.ids("safe")),
            (groups.KL, self.ids("harmless_kl")),
        ]
        work = [
            (prompt_set, ids, chunk, conditions[g : g + CONDITIONS_PER_BATCH])
            for prompt_set, ids in sets
            for chunk in _chunks(len(ids), self.batch)
            for g in range(0, len(conditions), CONDITIONS_PER_BATCH)
        ]
        for prompt_set, ids, chunk, group in tqdm(work, desc=desc, disable=not self.progress, unit="batch"):
            pending = [
                c
                for c in group
                if (prompt_set == groups.KL or c.name in screened)
                and not set(chunk) <= self.store.done_ids(c.name, prompt_set)
            ]
            if not pending:
                continue
            programs = [c.program(self.directions) for c in pending]
            logits = next_token_logits_grid(
                self.chat, programs, [ids[i] for i in chunk], batch_size=len(pending) * len(chunk)
            )
            base = self.baseline_kl_logits()[chunk] if prompt_set == groups.KL else None
            rows: list[Row] = []
            for condition, program, values in zip(pending, programs, logits, strict=True):
                if base is not None:
                    kl = first_token_kl(base, values).tolist() if len(program) else [0.0] * len(chunk)
                    rows += [Row(condition.name, groups.KL, i, kl=k) for i, k in zip(chunk, kl, strict=True)]
                else:
                    scores = self.refusal_tokens.score(values).tolist()
                    rows += [
                        Row(condition.name, prompt_set, i, refusal=int(score > 0), score=float(score))
                        for i, score in zip(chunk, scores, strict=True)
                    ]
            self.store.write_rows(rows)

    def _generate_side_by_side(self, conditions: Sequence[Condition], desc: str) -> None:
        """Generate for several conditions in one batch (each row its own program), one prompt chunk at a
        time, committing every condition's rows of a chunk together."""
        budget = self.spec.generation.max_new_tokens
        for prompt_set, name in ((groups.HARMFUL, "harmful_test"), (groups.SAFE, "safe")):
            ids = self.ids(name)
            chunks = _chunks(len(ids), self.batch)
            for chunk in tqdm(chunks, desc=f"{desc}: {prompt_set}", disable=not self.progress, unit="chunk"):
                pending = [c for c in conditions if not set(chunk) <= self.store.done_ids(c.name, prompt_set)]
                if not pending:
                    continue
                programs = {c.name: c.program(self.directions) for c in pending}
                out = generate_grid(
                    self.chat,
                    programs,
                    [ids[i] for i in chunk],
                    max_new_tokens=budget,
                    batch_size=len(pending) * len(chunk),
                    stop_when=is_refusal,
                    progress=False,
                )
                rows = [
                    Row(c.name, prompt_set, i, text=reply.text, refusal=int(is_refusal(reply.text)))
                    for c in pending
                    for i, reply in zip(chunk, out[c.name], strict=True)
                ]
                if self.judge is not None:
                    prompts = getattr(self.splits, name)
                    labels = self.judge.judge([prompts[r.prompt_id] for r in rows], [r.text or "" for r in rows])
                    rows = [dataclasses.replace(r, judge=label) for r, label in zip(rows, labels, strict=True)]
                self.store.write_rows(rows)

    # --- stages -----------------------------------------------------------------------------------

    def choose_persona_coeff(self, sweep: Sequence[Condition]) -> float:
        """The coherence rule: the strongest refusal suppression whose first-token KL stays <= the limit."""
        limit = self.spec.steering.coherence_max_kl
        summary = {row["condition"]: row for row in summarise(self.store)}
        ok = [c for c in sweep if summary[c.name]["kl"] <= limit]
        pool = ok or sorted(sweep, key=lambda c: float(c.axis or 0))[:1]
        best = min(pool, key=lambda c: (summary[c.name]["refusal_rate"], float(c.axis or 0)))
        self.store.set_fact("persona_coeff", best.axis)
        self.store.set_fact("persona_coeff_rule", "coherent" if ok else "no coefficient within the KL limit; smallest")
        return float(best.axis or 0)

    def run(self) -> None:
        steering, generation, n_layers = self.spec.steering, self.spec.generation, self.n_layers
        self.make_directions()
        persona_layer = self.spec.persona_layer(n_layers)
        self.store.set_fact("persona_layer", persona_layer)
        stage1 = first_stage(n_layers, persona_layer, steering.persona_coeffs, generation.main)
        self.run_conditions(stage1, "baseline and persona sweep")
        coeff = self.choose_persona_coeff([c for c in stage1 if c.group == groups.PERSONA_SWEEP])
        width = self.spec.blocks(steering.window_width, n_layers)
        stride = self.spec.blocks(steering.window_stride, n_layers)
        reintroduce = [Window.parse(w).resolve(n_layers) for w in steering.reintroduce_windows]
        stage2 = second_stage(
            n_layers,
            persona_layer,
            coeff,
            reintroduce_coeff=steering.reintroduce_coeff,
            layer_stride=steering.reintroduce_layer_stride,
            reintroduce_windows=[(blocks.start, blocks.stop) for blocks in reintroduce],
            windows=sliding_windows(n_layers, width, stride),
            seeds=self.spec.directions.random_seeds,
            sweep=generation.sweep,
            main=generation.main,
        )
        self.run_conditions(stage2, "protocol grid")
        self.readout(persona_layer, coeff)
        self.store.set_fact(
            "cos_persona_refusal",
            cosine_by_layer(self.directions["persona"], self.directions["refusal"], n_layers).tolist(),
        )

    def readout(self, persona_layer: int, coeff: float) -> None:
        """Per-layer projection onto the refusal direction at the last prompt token of harmful prompts."""
        late = Window.parse(self.spec.steering.late_window).resolve(self.n_layers)
        steer_op = persona_op(coeff, persona_layer)
        programs = {
            "baseline": Program(),
            f"persona x{coeff:g}": Program([steer_op]),
            f"persona x{coeff:g} - persona in [{late.start}:{late.stop})": Program(
                [steer_op, Ablate("persona", Window(late.start, late.stop))]
            ),
        }
        have = self.store.readout()
        for name, program in programs.items():
            if name in have:
                continue
            values = projection_by_layer(
                self.chat,
                self.ids("harmful_test"),
                self.directions["refusal"],
                program=program.bind(self.directions),
                batch_size=self.batch,
                progress=False,
            )
            self.store.write_readout(name, values.tolist())


# First-token conditions evaluated side by side per batch (rows = this x the prompt chunk).
CONDITIONS_PER_BATCH = 8


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]
