"""Teacher-forced log-likelihood of given continuations, under no program, one program, or one per row.

Two uses: the coherence of a generated reply (its mean per-token log-likelihood under the
*unsteered* model, given the prompt), and the coherence guard of a condition (how much a program
lowers the model's likelihood of fixed neutral passages; it does not move when the model merely
starts refusing, since nothing in a neutral passage is there to refuse).

Only the positions that predict continuation tokens reach the LM head (``logits_to_keep``), and
batches are cut small enough that ``[batch, positions, vocab]`` logits stay within a memory budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from personagate.interventions import Program, steer
from personagate.models.forward import run_model_tail
from personagate.models.loading import ChatModel
from personagate.prefill import PrefixCache, prefill
from personagate.prompts import left_pad

# Logit elements (batch x positions x vocabulary) computed at once: 2^27 floats = 512 MB in fp32.
MAX_LOGIT_ELEMENTS = 1 << 27

Item = tuple[Sequence[int], Sequence[int]]  # (context token ids, continuation token ids)


def _batches(items: Sequence[Item], order: list[int], vocab: int, batch_size: int) -> list[list[int]]:
    """Consecutive runs of ``order`` whose logits fit the memory budget."""
    out: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = max([len(items[i][1]) for i in current] + [len(items[index][1])]) + 1
        if current and (len(current) >= batch_size or (len(current) + 1) * width * vocab > MAX_LOGIT_ELEMENTS):
            out.append(current)
            current = []
        current.append(index)
    if current:
        out.append(current)
    return out


@torch.inference_mode()
def continuation_logliks(
    chat: ChatModel,
    items: Sequence[Item],
    *,
    programs: Sequence[Program] | None = None,
    row_programs: Sequence[int] | None = None,
    batch_size: int = 16,
) -> list[tuple[float, int]]:
    """(sum of log-probabilities, token count) of each continuation given its context.

    ``programs`` with ``row_programs[i]`` runs item ``i`` under ``programs[row_programs[i]]`` (several
    conditions side by side in one batch); without them the model runs unsteered. An empty
    continuation gives ``(0.0, 0)``.
    """
    if any(len(context) == 0 for context, _ in items):
        raise ValueError("every item needs at least one context token")
    plans = list(programs) if programs else [Program()]
    rows = list(row_programs) if row_programs is not None else [0] * len(items)
    results: list[tuple[float, int]] = [(0.0, 0)] * len(items)
    todo = sorted((i for i in range(len(items)) if len(items[i][1])), key=lambda i: len(items[i][0]) + len(items[i][1]))
    vocab = int(chat.model.config.vocab_size)
    with steer(chat, plans) as steering:
        for batch in _batches(items, todo, vocab, batch_size):
            sequences = [list(items[i][0]) + list(items[i][1]) for i in batch]
            padded = left_pad(sequences, chat.tokenizer.pad_token_id, chat.device)
            keep = max(len(items[i][1]) for i in batch) + 1
            steering.set_prompt_length(padded.input_ids.shape[1])
            steering.set_rows([rows[i] for i in batch], chat.device)
            logits = run_model_tail(
                chat.model,
                keep,
                input_ids=padded.input_ids,
                attention_mask=padded.attention_mask,
                position_ids=padded.position_ids,
            )
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, index in enumerate(batch):
                continuation = torch.tensor(list(items[index][1]), device=logprobs.device)
                n = len(continuation)
                predicted = logprobs[row, keep - 1 - n : keep - 1]  # position t predicts token t + 1
                total = predicted.gather(-1, continuation.unsqueeze(-1)).sum()
                results[index] = (float(total), n)
    return results


def mean_loglik(results: Sequence[tuple[float, int]]) -> list[float]:
    """Per item: mean log-probability per token (NaN for an empty continuation)."""
    return [total / n if n else float("nan") for total, n in results]


@torch.inference_mode()
def unsteered_logliks(
    chat: ChatModel, items: Sequence[Item], *, batch_size: int = 16, prefix_cache: PrefixCache | None = None
) -> list[tuple[float, int]]:
    """``continuation_logliks`` for the unsteered model, each distinct context run once: replies of many
    conditions to the same prompt share the prompt's keys and values, and only the replies run per row.

    Contexts are prefilled into a cache (what they share, such as a conversation's history, once, and
    kept in ``prefix_cache`` when given), the cache is widened to the rows, and the continuations
    follow right-padded (a padded tail cannot change what precedes it).
    """
    if any(len(context) == 0 for context, _ in items):
        raise ValueError("every item needs at least one context token")
    results: list[tuple[float, int]] = [(0.0, 0)] * len(items)
    order = sorted((i for i in range(len(items)) if len(items[i][1])), key=lambda i: tuple(items[i][0]))
    pad = chat.tokenizer.pad_token_id
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        contexts: list[tuple[int, ...]] = []
        for i in batch:
            if tuple(items[i][0]) not in contexts:
                contexts.append(tuple(items[i][0]))
        with steer(chat, Program()) as steering:  # no edits: for the shared-prefix prefill only
            prefilled = prefill(chat, [list(c) for c in contexts], steering, prefix_cache=prefix_cache)
        first, cache = prefilled.logits, prefilled.cache
        which = torch.tensor([contexts.index(tuple(items[i][0])) for i in batch], device=chat.device)
        cache.batch_select_indices(which)
        width = max(len(items[i][1]) for i in batch)
        tokens = torch.full((len(batch), width), pad, dtype=torch.long, device=chat.device)
        tail_mask = torch.zeros((len(batch), width), dtype=prefilled.mask.dtype, device=chat.device)
        for row, i in enumerate(batch):
            tokens[row, : len(items[i][1])] = torch.tensor(list(items[i][1]), device=chat.device)
            tail_mask[row, : len(items[i][1])] = 1
        mask = torch.cat([prefilled.mask[which], tail_mask], dim=1)
        positions = prefilled.last_position[which] + 1 + torch.arange(width, device=chat.device).unsqueeze(0)
        logits = run_model_tail(
            chat.model, width, input_ids=tokens, attention_mask=mask, position_ids=positions, cache=cache
        )
        # token 0 is predicted by the context's last position; token j by the continuation's position j - 1
        predictions = torch.cat([first[which].unsqueeze(1), logits[:, :-1]], dim=1)
        logprobs = torch.log_softmax(predictions.float(), dim=-1)
        for row, i in enumerate(batch):
            n = len(items[i][1])
            total = logprobs[row, :n].gather(-1, tokens[row, :n].unsqueeze(-1)).sum()
            results[i] = (float(total), n)
    return results
