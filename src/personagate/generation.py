"""Batched greedy generation and single-forward next-token logits, under an optional program.

Our own decode loop (not ``model.generate``) so that: left padding is invisible (position ids count
real tokens), finished rows leave the batch and the KV cache at once, stop strings end a row, and
the steering context spans prefill and every decode step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from personagate.conversations import TurnSpans
from personagate.errors import PersonagateError
from personagate.interventions import Program, Steering, steer
from personagate.models.forward import run_model
from personagate.models.loading import ChatModel
from personagate.prefill import PrefixCache, prefill
from personagate.prompts import length_sorted_batches

Finish = Literal["eos", "stop", "decided", "length"]


@dataclass
class Completion:
    """One generated reply; ``tokens`` excludes the EOS token, ``text`` ends before any stop string."""

    index: int
    text: str
    tokens: list[int]
    finish: Finish
    first_score: float | None = None  # ``first_token(logits)`` of the first reply token, when asked for
    finite: bool = True  # False when some step's logits were NaN, infinite or all equal: the reply means nothing


@dataclass(frozen=True)
class Decoding:
    """How replies are decoded (always greedily): the token budget, the batch size, and what ends a row
    early. ``stop_when(text)`` ends a row as soon as it is true of the reply so far (judged up to its
    last word boundary), e.g. once a refusal is certain: for a detector whose verdict cannot be undone
    by more text, the decision equals that of the full budget, at a fraction of the compute.
    ``stop_at_eos=False`` runs every row to the budget (benchmarks); ``first_token(logits)`` scores
    each reply's first-token logits for free from the prefill."""

    max_new_tokens: int = 64
    batch_size: int = 16
    stop_strings: Sequence[str] = ()
    stop_when: Callable[[str], bool] | None = None
    stop_at_eos: bool = True
    first_token: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise PersonagateError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise PersonagateError(f"batch_size must be at least 1, got {self.batch_size}")


DEFAULT_DECODING = Decoding()
GRID_DECODING = Decoding(batch_size=64)  # a grid's rows are conditions x prompts: larger batches


def eos_token_ids(chat: ChatModel) -> set[int]:
    """End-of-turn ids from the tokenizer and the generation config (Qwen ends turns with <|im_end|>)."""
    ids: set[int] = set()
    for source in (
        getattr(chat.tokenizer, "eos_token_id", None),
        getattr(getattr(chat.model, "generation_config", None), "eos_token_id", None),
    ):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return ids


def check_context(chat: ChatModel, token_lists: Sequence[Sequence[int]], new_tokens: int) -> None:
    """Every prompt plus its reply fits the model's context: longer is an error before any work, not a
    silent truncation or an out-of-memory after minutes."""
    limit = getattr(chat.model.config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return
    longest = max((len(t) for t in token_lists), default=0)
    if longest + new_tokens > limit:
        index = max(range(len(token_lists)), key=lambda i: len(token_lists[i]))
        raise PersonagateError(
            f"prompt {index} has {longest} tokens; with {new_tokens} new tokens that exceeds the model's context "
            f"of {limit}; shorten the prompt or lower max_new_tokens"
        )


def check_spans(token_lists: Sequence[Sequence[int]], spans: Sequence[TurnSpans] | None) -> None:
    """One span record per prompt, each ending where its prompt ends."""
    if spans is None:
        return
    if len(spans) != len(token_lists):
        raise PersonagateError(f"{len(spans)} turn spans for {len(token_lists)} prompts; give one per prompt")
    for index, (tokens, span) in enumerate(zip(token_lists, spans, strict=True)):
        if span.ends[-1] != len(tokens):
            raise PersonagateError(f"the turn spans of prompt {index} end at {span.ends[-1]}, not at {len(tokens)}")


def _settled(text: str) -> str:
    """The text up to its last word boundary: a partly generated word can still change a decision."""
    cut = max(text.rfind(" "), text.rfind("\n"))
    return text[:cut] if cut >= 0 else ""


def generate(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    *,
    program: Program | None = None,
    decoding: Decoding = DEFAULT_DECODING,
    progress: bool = True,
    desc: str = "generating",
    force: bool = False,
    spans: Sequence[TurnSpans] | None = None,
    prefix_cache: PrefixCache | None = None,
) -> list[Completion]:
    """Greedy completions for each prompt's token ids, in input order (see ``Decoding``). ``spans``:
    where the turns of conversation prompts lie (``ChatFormatter.encode_conversation``), for ops
    scoped to the probe or the assistant turns. ``prefix_cache``: keep shared prompt prefixes' keys and
    values across batches and calls (a conversation's history is computed once per program)."""
    check_context(chat, token_lists, decoding.max_new_tokens)
    check_spans(token_lists, spans)
    results: list[Completion | None] = [None] * len(token_lists)
    bar = tqdm(total=len(token_lists), desc=desc, disable=not progress, unit="prompt")
    with steer(chat, program or Program(), force=force) as steering:
        for indices in length_sorted_batches(token_lists, decoding.batch_size):
            batch_spans = [spans[i] for i in indices] if spans is not None else None
            batch = [token_lists[i] for i in indices]
            completions = _generate_batch(chat, batch, decoding, steering, spans=batch_spans, prefix_cache=prefix_cache)
            for row, completion in enumerate(completions):
                completion.index = indices[row]
                results[indices[row]] = completion
            bar.update(len(indices))
    bar.close()
    return [c for c in results if c is not None]


@torch.inference_mode()
def _generate_batch(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    decoding: Decoding,
    steering: Steering,
    row_programs: Sequence[int] | None = None,
    share_layers: bool = True,
    share_prefix: bool = True,
    spans: Sequence[TurnSpans] | None = None,
    prefix_cache: PrefixCache | None = None,
) -> list[Completion]:
    model, tokenizer = chat.model, chat.tokenizer
    max_new_tokens, stop_strings, stop_when = decoding.max_new_tokens, decoding.stop_strings, decoding.stop_when
    first_token = decoding.first_token
    eos = eos_token_ids(chat) if decoding.stop_at_eos else set()
    prefilled = prefill(
        chat,
        token_lists,
        steering,
        row_programs,
        share_layers=share_layers,
        share_prefix=share_prefix,
        spans=spans,
        prefix_cache=prefix_cache,
    )
    cache, mask, last_position, logits = prefilled.cache, prefilled.mask, prefilled.last_position, prefilled.logits
    first_scores = first_token(logits.float()).tolist() if first_token is not None else [None] * len(token_lists)
    generated: list[list[int]] = [[] for _ in token_lists]
    finish: list[Finish | None] = [None] * len(token_lists)
    texts: list[str | None] = [None] * len(token_lists)
    nonfinite = [False] * len(token_lists)
    active = list(range(len(token_lists)))  # original row of each live batch row
    for step in range(max_new_tokens):
        # NaN or infinite logits, or logits all equal (a norm whose square overflowed divides to 0): the
        # activations broke down and the "reply" is token 0 repeated, which means nothing
        broken = (~torch.isfinite(logits).all(-1) | (logits.amax(-1) == logits.amin(-1))).tolist()
        for live, row in enumerate(active):
            if broken[live]:
                nonfinite[row] = True
        next_tokens = logits.argmax(-1).tolist()
        keep: list[int] = []
        for live, row in enumerate(active):
            token = next_tokens[live]
            if token in eos:
                finish[row] = "eos"
                continue
            generated[row].append(token)
            if stop_strings or stop_when is not None:
                text = tokenizer.decode(generated[row], skip_special_tokens=True)
                hits = [text.find(s) for s in stop_strings if s in text]
                if hits:
                    finish[row], texts[row] = "stop", text[: min(hits)]
                    continue
                if stop_when is not None and stop_when(_settled(text)):
                    finish[row] = "decided"
                    continue
            keep.append(live)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(index)
            mask, last_position = mask[index], last_position[index]
            steering.keep(index)
            active = [active[i] for i in keep]
        step_tokens = torch.tensor([[next_tokens[i]] for i in keep], device=mask.device)
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        last_position = last_position + 1
        logits = run_model(model, input_ids=step_tokens, attention_mask=mask, position_ids=last_position, cache=cache)
    out = []
    for row in range(len(token_lists)):
        text = texts[row] if texts[row] is not None else tokenizer.decode(generated[row], skip_special_tokens=True)
        finished = finish[row] or "length"
        out.append(Completion(row, text, generated[row], finished, first_scores[row], not nonfinite[row]))
    return out


@torch.inference_mode()
def next_token_logits(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    *,
    program: Program | None = None,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "scoring",
    force: bool = False,
) -> torch.Tensor:
    """Logits of the first reply token for each prompt: ``[n_prompts, vocab]`` float32, one forward each."""
    check_context(chat, token_lists, 0)
    rows: list[torch.Tensor | None] = [None] * len(token_lists)
    bar = tqdm(total=len(token_lists), desc=desc, disable=not progress, unit="prompt", leave=False)
    with steer(chat, program or Program(), force=force) as steering:
        for indices in length_sorted_batches(token_lists, batch_size):
            logits = prefill(chat, [token_lists[i] for i in indices], steering).logits
            for row, i in enumerate(indices):
                rows[i] = logits[row].to(torch.float32).cpu()
            bar.update(len(indices))
    bar.close()
    return torch.stack([r for r in rows if r is not None])


@torch.inference_mode()
def next_token_logits_grid(
    chat: ChatModel,
    programs: Sequence[Program],
    token_lists: Sequence[Sequence[int]],
    *,
    batch_size: int = 128,
    share_layers: bool = True,
    force: bool = False,
    spans: Sequence[TurnSpans] | None = None,
    prefix_cache: PrefixCache | None = None,
) -> list[torch.Tensor]:
    """First-reply-token logits of every prompt under every program: one ``[n_prompts, vocab]`` float32
    tensor per program, as ``next_token_logits`` gives, with the programs side by side in a batch so
    that the blocks before the layer where they part ways run once per prompt."""
    check_spans(token_lists, spans)
    rows = [(k, i) for i in range(len(token_lists)) for k in range(len(programs))]
    row_tokens = [token_lists[i] for _, i in rows]
    out: list[list[torch.Tensor | None]] = [[None] * len(token_lists) for _ in programs]
    with steer(chat, list(programs) or [Program()], force=force) as steering:
        for indices in length_sorted_batches(row_tokens, batch_size):
            batch_programs = [rows[r][0] for r in indices]
            batch_spans = [spans[rows[r][1]] for r in indices] if spans is not None else None
            logits = prefill(
                chat,
                [row_tokens[r] for r in indices],
                steering,
                batch_programs,
                share_layers=share_layers,
                spans=batch_spans,
                prefix_cache=prefix_cache,
            ).logits
            for r, row in zip(indices, logits, strict=True):
                program, prompt = rows[r]
                out[program][prompt] = row.to(torch.float32).cpu()
    return [torch.stack([t for t in per_program if t is not None]) for per_program in out]


def generate_grid(
    chat: ChatModel,
    programs: Mapping[str, Program | None],
    token_lists: Sequence[Sequence[int]],
    *,
    decoding: Decoding = GRID_DECODING,
    progress: bool = True,
    desc: str = "grid",
    force: bool = False,
    share_layers: bool = True,
    share_prefix: bool = True,
    spans: Sequence[TurnSpans] | None = None,
    prefix_cache: PrefixCache | None = None,
) -> dict[str, list[Completion]]:
    """Greedy completions of every prompt under every program, the conditions side by side in one batch.

    Same results as one ``generate`` call per program (each row runs only its own program); faster
    where decoding is bound by reading the weights, as on a CPU. Blocks before the layer where two
    programs first differ are prefilled once for both (``share_layers=False``: every row runs every
    block, for comparison; ``share_prefix=False``: no row reuses the shared prompt prefix's keys and
    values). ``spans`` and ``prefix_cache`` as for ``generate``.
    """
    check_context(chat, token_lists, decoding.max_new_tokens)
    check_spans(token_lists, spans)
    names = list(programs)
    plans = [programs[name] or Program() for name in names]
    rows = [(k, i) for i in range(len(token_lists)) for k in range(len(names))]  # a prompt's rows side by side
    row_tokens = [token_lists[i] for _, i in rows]
    results: dict[str, list[Completion | None]] = {name: [None] * len(token_lists) for name in names}
    bar = tqdm(total=len(rows), desc=desc, disable=not progress, unit="row")
    with steer(chat, plans, force=force) as steering:
        for indices in length_sorted_batches(row_tokens, decoding.batch_size):
            batch_programs = [rows[r][0] for r in indices]
            batch = [row_tokens[r] for r in indices]
            batch_spans = [spans[rows[r][1]] for r in indices] if spans is not None else None
            completions = _generate_batch(
                chat,
                batch,
                decoding,
                steering,
                batch_programs,
                share_layers=share_layers,
                share_prefix=share_prefix,
                spans=batch_spans,
                prefix_cache=prefix_cache,
            )
            for r, completion in zip(indices, completions, strict=True):
                program, prompt = rows[r]
                completion.index = prompt
                results[names[program]][prompt] = completion
            bar.update(len(indices))
    bar.close()
    return {name: [c for c in values if c is not None] for name, values in results.items()}
