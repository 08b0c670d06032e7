"""Work units: the pieces a study's measurements are cut into, and what computing one means.

A unit is one batch of side-by-side work (some conditions x some prompts of one prompt set, in one
mode), self-contained and serialisable: programs as their tables (directions by key), prompts as
token ids. Computing it needs only a model and the directions of the resamples it names; it returns
the rows, and the driver alone writes them to the run store, one unit per transaction. A unit that
is computed twice (a retry, a resumed run) gives the same rows, and the store takes them once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from personagate.conversations import TurnSpans
from personagate.directions import Direction
from personagate.experiments.design import names as g
from personagate.experiments.storage.profile import UnitCost
from personagate.experiments.storage.records import NONFINITE_TEXT, Row
from personagate.generation import Decoding, generate_grid, next_token_logits_grid
from personagate.interventions import Program
from personagate.likelihood import continuation_logliks, mean_loglik, unsteered_logliks
from personagate.models.loading import ChatModel
from personagate.prefill import PrefixCache
from personagate.scoring.coherence import CoherenceRule, label
from personagate.scoring.first_token import RefusalTokens
from personagate.scoring.phrases import is_refusal

Kind = Literal["generate", "screen", "first_token", "guard"]

# Scoring a token costs a pass through the vocabulary projection (the largest matmul of a small
# model), so a reply's likelihood is taken on its first tokens: where a steered model's decoding
# breaks down, if it does.
REPLY_TOKENS = 32


@dataclass(frozen=True)
class Unit:
    """``programs``: (condition name, resample index, program table) side by side; ``items``: per prompt,
    its id and token ids (a guard unit: context and scored tokens)."""

    kind: Kind
    prompt_set: str
    programs: tuple[tuple[str, int, dict[str, Any]], ...]
    items: tuple[tuple[int, tuple[int, ...], tuple[int, ...]], ...]
    spans: tuple[TurnSpans, ...] | None = None  # conversation prompts: where each item's turns lie

    @property
    def label(self) -> str:
        return f"{self.kind} {self.prompt_set} x{len(self.programs)} conditions x{len(self.items)} prompts"


@dataclass(frozen=True)
class Settings:
    """What computing a unit needs besides the model and the directions."""

    max_new_tokens: int
    screen_tokens: int
    batch_size: int
    refusal_token_ids: tuple[int, ...]
    rule: CoherenceRule


@dataclass(frozen=True)
class Computed:
    """A unit's rows and what computing them cost (the run's time profile adds the costs up)."""

    rows: list[Row]
    cost: UnitCost


def compute(
    chat: ChatModel,
    directions: dict[int, dict[str, Direction]],
    unit: Unit,
    settings: Settings,
    prefix_cache: PrefixCache | None = None,
) -> Computed:
    """The rows of one unit (deterministic: greedy decoding, fixed batches) and their cost.
    ``prefix_cache`` keeps shared prompt prefixes (a conversation's history) from one unit to the next."""
    started = time.perf_counter()
    rows, decoded = _rows(chat, directions, unit, settings, prefix_cache)
    prompt = sum(len(context) + len(scored) for _, context, scored in unit.items) * len(unit.programs)
    return Computed(rows, UnitCost(time.perf_counter() - started, prompt, decoded, len(rows)))


def _rows(
    chat: ChatModel,
    directions: dict[int, dict[str, Direction]],
    unit: Unit,
    settings: Settings,
    prefix_cache: PrefixCache | None,
) -> tuple[list[Row], int]:
    """The unit's rows and the number of tokens decoded for them."""
    programs = [Program.from_table(table, name).bind(directions[resample]) for name, resample, table in unit.programs]
    names = [name for name, _, _ in unit.programs]
    if unit.kind == "guard":
        return _guard(chat, names, programs, unit, settings), 0
    tokens = RefusalTokens(settings.refusal_token_ids)
    ids = [list(prompt) for _, prompt, _ in unit.items]
    prompt_ids = [i for i, _, _ in unit.items]
    if unit.kind == "first_token":
        logits = next_token_logits_grid(
            chat,
            programs,
            ids,
            batch_size=len(programs) * len(ids),
            spans=list(unit.spans) if unit.spans is not None else None,
            prefix_cache=prefix_cache,
        )
        rows = []
        for name, values in zip(names, logits, strict=True):
            scores = tokens.margin(values).tolist()
            broken = (~torch.isfinite(values).all(-1) | (values.amax(-1) == values.amin(-1))).tolist()
            rows += [
                Row(name, unit.prompt_set, i, text=NONFINITE_TEXT, refusal=0, label=g.INCOHERENT)
                if bad or not math.isfinite(s)
                else Row(name, unit.prompt_set, i, refusal=int(s > 0), score=float(s))
                for i, s, bad in zip(prompt_ids, scores, broken, strict=True)
            ]
        return rows, 0
    screen = unit.kind == "screen"
    out = generate_grid(
        chat,
        dict(zip(names, programs, strict=True)),
        ids,
        spans=list(unit.spans) if unit.spans is not None else None,
        prefix_cache=prefix_cache,
        decoding=Decoding(
            max_new_tokens=settings.screen_tokens if screen else settings.max_new_tokens,
            batch_size=len(programs) * len(ids),
            stop_when=is_refusal,
            first_token=tokens.margin,
        ),
        progress=False,
    )
    replies = [(name, row, reply) for name in names for row, reply in enumerate(out[name])]
    # generated and screened replies alike: refuse / comply / incoherent (the screen's 8 tokens too, so a
    # screened arm can carry a verdict; its likelihood is taken on what was generated)
    likelihood = unsteered_logliks(
        chat,
        [(ids[row], reply.tokens[:REPLY_TOKENS]) for _, row, reply in replies],
        batch_size=2 * settings.batch_size,
        prefix_cache=prefix_cache,
    )
    rows = []
    for (name, row, reply), loglik in zip(replies, mean_loglik(likelihood), strict=True):
        if not reply.finite:  # NaN or infinite activations: no reply to judge, never a compliance
            rows.append(Row(name, unit.prompt_set, prompt_ids[row], text=NONFINITE_TEXT, refusal=0, label=g.INCOHERENT))
            continue
        refused = is_refusal(reply.text)
        rows.append(
            Row(
                name,
                unit.prompt_set,
                prompt_ids[row],
                text=reply.text,
                refusal=int(refused),
                label=label(refused, reply.text, loglik, settings.rule),
                score=reply.first_score,
                loglik=loglik,
            )
        )
    return rows, sum(len(reply.tokens) for _, _, reply in replies)


def _guard(chat: ChatModel, names: list[str], programs: list[Program], unit: Unit, settings: Settings) -> list[Row]:
    """The neutral passages' mean log-likelihood per token under each program, side by side."""
    flat = [(list(context), list(scored)) for _ in programs for _, context, scored in unit.items]
    rows_of = [k for k in range(len(programs)) for _ in unit.items]
    values = mean_loglik(
        continuation_logliks(chat, flat, programs=programs, row_programs=rows_of, batch_size=settings.batch_size)
    )
    n = len(unit.items)
    return [
        Row(name, g.NEUTRAL, prompt_id, loglik=values[k * n + j])
        for k, name in enumerate(names)
        for j, (prompt_id, _, _) in enumerate(unit.items)
    ]


def cut(
    kind: Kind,
    prompt_set: str,
    programs: Sequence[tuple[str, int, dict[str, Any]]],
    items: Sequence[tuple[int, tuple[int, ...], tuple[int, ...]]],
    prompts_per_unit: int,
    rows_per_unit: int,
    spans: Sequence[TurnSpans] | None = None,
) -> list[Unit]:
    """Units of at most ``prompts_per_unit`` prompts and ``rows_per_unit`` rows (conditions x prompts),
    conditions kept in order so that neighbours (which share early blocks) share a batch."""
    out = []
    for start in range(0, len(items), prompts_per_unit):
        chunk = tuple(items[start : start + prompts_per_unit])
        chunk_spans = tuple(spans[start : start + prompts_per_unit]) if spans is not None else None
        per_unit = max(1, rows_per_unit // len(chunk))
        for first in range(0, len(programs), per_unit):
            out.append(Unit(kind, prompt_set, tuple(programs[first : first + per_unit]), chunk, chunk_spans))
    return out
