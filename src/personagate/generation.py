"""Batched greedy generation and single-forward next-token logits, under an optional program.

Our own decode loop (not ``model.generate``) so that: left padding is invisible (position ids count
real tokens), finished rows leave the batch and the KV cache at once, stop strings end a row, and
the steering context spans prefill and every decode step.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from personagate.errors import PersonagateError
from personagate.interventions import Program, steer
from personagate.models.loading import ChatModel
from personagate.prompts import left_pad, length_sorted_batches

Finish = Literal["eos", "stop", "length"]


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


def generate(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    *,
    program: Program | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    stop_strings: Sequence[str] = (),
    progress: bool = True,
    desc: str = "generating",
    force: bool = False,
) -> list[Completion]:
    """Greedy completions for each prompt's token ids, in input order."""
    if max_new_tokens < 1:
        raise PersonagateError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    results: list[Completion | None] = [None] * len(token_lists)
    bar = tqdm(total=len(token_lists), desc=desc, disable=not progress, unit="prompt")
    with _steering(chat, program, force):
        for indices in length_sorted_batches(token_lists, batch_size):
            batch = [token_lists[i] for i in indices]
            for row, completion in enumerate(_generate_batch(chat, batch, max_new_tokens, stop_strings)):
                completion.index = indices[row]
                results[indices[row]] = completion
            bar.update(len(indices))
    bar.close()
    return [c for c in results if c is not None]


@torch.inference_mode()
def _generate_batch(
    chat: ChatModel, token_lists: Sequence[Sequence[int]], max_new_tokens: int, stop_strings: Sequence[str]
) -> list[Completion]:
    model, tokenizer = chat.model, chat.tokenizer
    eos = eos_token_ids(chat)
    padded = left_pad(token_lists, tokenizer.pad_token_id, chat.device)
    cache = _new_cache(model)
    cache_kw = _cache_kwarg(model)
    mask, last_position = padded.attention_mask, padded.position_ids[:, -1:]
    generated: list[list[int]] = [[] for _ in token_lists]
    finish: list[Finish | None] = [None] * len(token_lists)
    texts: list[str | None] = [None] * len(token_lists)
    active = list(range(len(token_lists)))  # original row of each live batch row

    logits = model(
        input_ids=padded.input_ids,
        attention_mask=mask,
        position_ids=padded.position_ids,
        use_cache=True,
        logits_to_keep=1,
        **{cache_kw: cache},
    ).logits[:, -1]
    for step in range(max_new_tokens):
        next_tokens = logits.argmax(-1).tolist()
        keep: list[int] = []
        for live, row in enumerate(active):
            token = next_tokens[live]
            if token in eos:
                finish[row] = "eos"
                continue
            generated[row].append(token)
            if stop_strings:
                text = tokenizer.decode(generated[row], skip_special_tokens=True)
                hits = [text.find(s) for s in stop_strings if s in text]
                if hits:
                    finish[row], texts[row] = "stop", text[: min(hits)]
                    continue
            keep.append(live)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(index)
            mask, last_position = mask[index], last_position[index]
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
    with _steering(chat, program, force):
        for indices in length_sorted_batches(token_lists, batch_size):
            padded = left_pad([token_lists[i] for i in indices], chat.tokenizer.pad_token_id, chat.device)
            logits = chat.model(
                input_ids=padded.input_ids,
                attention_mask=padded.attention_mask,
                position_ids=padded.position_ids,
                use_cache=False,
                logits_to_keep=1,
            ).logits[:, -1]
            for row, i in enumerate(indices):
                rows[i] = logits[row].to(torch.float32).cpu()
            bar.update(len(indices))
    bar.close()
    return torch.stack([r for r in rows if r is not None])
