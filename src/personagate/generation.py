"""Batched greedy generation and single-forward next-token logits, under an optional program.

Our own decode loop (not ``model.generate``) so that: left padding is invisible (position ids count
real tokens), finished rows leave the batch and the KV cache at once, stop strings end a row, and
the steering context spans prefill and every decode step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from personagate.errors import PersonagateError
from personagate.interventions import Program, RowSteering, steer, steer_rows
from personagate.models.loading import ChatModel
from personagate.prompts import left_pad, length_sorted_batches

Finish = Literal["eos", "stop", "decided", "length"]

# Prompts in a batch usually share a chat-template header (system prompt and all); when at least
# this many tokens are shared, they are prefilled once and the KV cache is copied to every row.
MIN_SHARED_PREFIX = 8


@dataclass
class Completion:
    """One generated reply; ``tokens`` excludes the EOS token, ``text`` ends before any stop string."""

    index: int
    text: str
    tokens: list[int]
    finish: Finish


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


def _cache_kwarg(model: torch.nn.Module) -> str:
    """transformers >= 5.2x names the KV cache ``cache``; earlier releases ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _new_cache(model: torch.nn.Module) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _steering(chat: ChatModel, program: Program | None, force: bool):
    return steer(chat, program, force=force) if program is not None and len(program) else nullcontext()


def shared_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving at least one token of each prompt to run per row."""
    if len(token_lists) < 2:
        return 0
    first, shortest = token_lists[0], min(len(t) for t in token_lists)
    n = 0
    while n < shortest - 1 and all(t[n] == first[n] for t in token_lists):
        n += 1
    return n if n >= MIN_SHARED_PREFIX else 0


@dataclass
class _Prefilled:
    logits: torch.Tensor  # [B, vocab] at the last prompt position
    mask: torch.Tensor  # [B, T] attention mask over prompt positions
    last_position: torch.Tensor  # [B, 1]
    cache: Any


def _prefill(
    chat: ChatModel, token_lists: Sequence[Sequence[int]], steering: Any, row_programs: Sequence[int] | None = None
) -> _Prefilled:
    """Run the prompts into a fresh KV cache; a shared prefix is computed once per program and copied
    to every row running that program.

    The steering handle (if any) is told the padded prompt length, so token scopes stay exact.
    """
    model = chat.model
    cache, cache_kw = _new_cache(model), _cache_kwarg(model)
    shared = shared_prefix_length(token_lists)
    rest = left_pad([t[shared:] for t in token_lists], chat.tokenizer.pad_token_id, chat.device)
    if steering is not None:
        steering.prompt_length = shared + rest.input_ids.shape[1]
    rows = len(token_lists)
    programs = list(row_programs) if row_programs is not None else [0] * rows
    if shared:
        groups = sorted(set(programs))
        prefix = torch.tensor([list(token_lists[0][:shared])] * len(groups), device=chat.device)
        if isinstance(steering, RowSteering):
            steering.set_rows(groups, chat.device)
        model(
            input_ids=prefix,
            attention_mask=torch.ones_like(prefix),
            position_ids=torch.arange(shared, device=chat.device).unsqueeze(0).expand(len(groups), -1),
            use_cache=True,
            logits_to_keep=1,
            **{cache_kw: cache},
        )
        cache.batch_select_indices(torch.tensor([groups.index(p) for p in programs], device=chat.device))
    if isinstance(steering, RowSteering):
        steering.set_rows(programs, chat.device)
    ones = torch.ones((rows, shared), dtype=rest.attention_mask.dtype, device=chat.device)
    mask = torch.cat([ones, rest.attention_mask], dim=1)
    positions = rest.position_ids + shared
    logits = model(
        input_ids=rest.input_ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **{cache_kw: cache},
    ).logits[:, -1]
    return _Prefilled(logits, mask, positions[:, -1:], cache)


def _settled(text: str) -> str:
    """The text up to its last word boundary: a partly generated word can still change a decision."""
    cut = max(text.rfind(" "), text.rfind("\n"))
    return text[:cut] if cut >= 0 else ""


def generate(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    *,
    program: Program | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    stop_strings: Sequence[str] = (),
    stop_when: Callable[[str], bool] | None = None,
    stop_at_eos: bool = True,
    progress: bool = True,
    desc: str = "generating",
    force: bool = False,
) -> list[Completion]:
    """Greedy completions for each prompt's token ids, in input order.

    ``stop_when(text)`` ends a row as soon as it is true of the reply so far (judged up to its last
    word boundary), e.g. once a refusal is certain: for a detector whose verdict cannot be undone
    by more text, the decision equals that of the full token budget, at a fraction of the compute.
    """
    if max_new_tokens < 1:
        raise PersonagateError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    results: list[Completion | None] = [None] * len(token_lists)
    bar = tqdm(total=len(token_lists), desc=desc, disable=not progress, unit="prompt")
    with _steering(chat, program, force) as steering:
        for indices in length_sorted_batches(token_lists, batch_size):
            batch = [token_lists[i] for i in indices]
            completions = _generate_batch(
                chat, batch, max_new_tokens, stop_strings, stop_when, steering, stop_at_eos=stop_at_eos
            )
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
    max_new_tokens: int,
    stop_strings: Sequence[str],
    stop_when: Callable[[str], bool] | None,
    steering: Any,
    row_programs: Sequence[int] | None = None,
    stop_at_eos: bool = True,
) -> list[Completion]:
    model, tokenizer = chat.model, chat.tokenizer
    eos = eos_token_ids(chat) if stop_at_eos else set()  # off: every row runs the full budget (benchmarks)
    cache_kw = _cache_kwarg(model)
    prefilled = _prefill(chat, token_lists, steering, row_programs)
    cache, mask, last_position, logits = prefilled.cache, prefilled.mask, prefilled.last_position, prefilled.logits
    generated: list[list[int]] = [[] for _ in token_lists]
    finish: list[Finish | None] = [None] * len(token_lists)
    texts: list[str | None] = [None] * len(token_lists)
    active = list(range(len(token_lists)))  # original row of each live batch row
    for step in range(max_new_tokens):
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
            if isinstance(steering, RowSteering):
                steering.keep(index)
            active = [active[i] for i in keep]
        step_tokens = torch.tensor([[next_tokens[i]] for i in keep], device=mask.device)
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        last_position = last_position + 1
        logits = model(
            input_ids=step_tokens,
            attention_mask=mask,
            position_ids=last_position,
            use_cache=True,
            logits_to_keep=1,
            **{cache_kw: cache},
        ).logits[:, -1]
    out = []
    for row in range(len(token_lists)):
        text = texts[row] if texts[row] is not None else tokenizer.decode(generated[row], skip_special_tokens=True)
        out.append(Completion(index=row, text=text, tokens=generated[row], finish=finish[row] or "length"))
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
    rows: list[torch.Tensor | None] = [None] * len(token_lists)
    bar = tqdm(total=len(token_lists), desc=desc, disable=not progress, unit="prompt", leave=False)
    with _steering(chat, program, force) as steering:
        for indices in length_sorted_batches(token_lists, batch_size):
            logits = _prefill(chat, [token_lists[i] for i in indices], steering).logits
            for row, i in enumerate(indices):
                rows[i] = logits[row].to(torch.float32).cpu()
            bar.update(len(indices))
    bar.close()
    return torch.stack([r for r in rows if r is not None])


def generate_grid(
    chat: ChatModel,
    programs: Mapping[str, Program | None],
    token_lists: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    stop_strings: Sequence[str] = (),
    stop_when: Callable[[str], bool] | None = None,
    progress: bool = True,
    desc: str = "grid",
    force: bool = False,
) -> dict[str, list[Completion]]:
    """Greedy completions of every prompt under every program, the conditions side by side in one batch.

    Same results as one ``generate`` call per program (each row runs only its own program); faster
    where decoding is bound by reading the weights, as on a CPU.
    """
    if max_new_tokens < 1:
        raise PersonagateError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    names = list(programs)
    plans = [programs[name] or Program() for name in names]
    rows = [(k, i) for k in range(len(names)) for i in range(len(token_lists))]
    row_tokens = [token_lists[i] for _, i in rows]
    results: dict[str, list[Completion | None]] = {name: [None] * len(token_lists) for name in names}
    bar = tqdm(total=len(rows), desc=desc, disable=not progress, unit="row")
    with steer_rows(chat, plans, force=force) as steering:
        for indices in length_sorted_batches(row_tokens, batch_size):
            batch_programs = [rows[r][0] for r in indices]
            completions = _generate_batch(
                chat,
                [row_tokens[r] for r in indices],
                max_new_tokens,
                stop_strings,
                stop_when,
                steering,
                batch_programs,
            )
            for r, completion in zip(indices, completions, strict=True):
                program, prompt = rows[r]
                completion.index = prompt
                results[names[program]][prompt] = completion
            bar.update(len(indices))
    bar.close()
    return {name: [c for c in values if c is not None] for name, values in results.items()}
