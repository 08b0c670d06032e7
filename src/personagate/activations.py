"""Record the residual stream entering every block at chosen token positions, in one forward pass per batch.

Statistics accumulate as running sums (float64) so memory does not grow with the number of prompts.
To record under an intervention, run the capture inside ``steer(...)``: the capture hooks are
registered after the steering hooks, so they see the edited stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.hooks import RemovableHandle
from tqdm.auto import tqdm

from personagate.conversations import EncodedConversation, TurnSpans
from personagate.errors import PersonagateError
from personagate.interventions import Program, Steering, steer
from personagate.models.forward import run_model
from personagate.models.loading import ChatModel
from personagate.prefill import PrefixCache, prefill, turn_masks
from personagate.prompts import PaddedBatch, left_pad, length_sorted_batches

Positions = Literal["last", "post_instruction", "spans", "all"]


@dataclass
class LayerMeans:
    """Per-layer running sums of resid_pre at the chosen positions; ``mean`` is ``[n_layers, d]`` float32."""

    sums: torch.Tensor  # [n_layers, d] float64
    count: int

    @property
    def mean(self) -> torch.Tensor:
        if self.count == 0:
            raise PersonagateError("no positions were recorded; the prompt set is empty")
        return (self.sums / self.count).to(torch.float32)


def _position_mask(
    batch: PaddedBatch, positions: Positions, post_instruction: int | None, spans: Sequence[tuple[int, int]] | None
) -> torch.Tensor:
    """Bool ``[B, T]`` of the positions to record, in padded coordinates."""
    rows, width = batch.input_ids.shape
    mask = torch.zeros((rows, width), dtype=torch.bool, device=batch.input_ids.device)
    if positions == "last":
        mask[:, -1] = True
    elif positions == "all":
        mask = batch.attention_mask.bool()
    elif positions == "post_instruction":
        if not post_instruction:
            raise PersonagateError(
                "positions='post_instruction' needs post_instruction (ChatFormatter.post_instruction_length)"
            )
        mask[:, width - post_instruction :] = True
    elif positions == "spans":
        if spans is None or len(spans) != rows:
            raise PersonagateError("positions='spans' needs one (start, stop) token span per prompt")
        for row, (start, stop) in enumerate(spans):
            pad = batch.pad_lengths[row]
            if not 0 <= start < stop <= width - pad:
                raise PersonagateError(f"span ({start}, {stop}) lies outside prompt {row} of {width - pad} tokens")
            mask[row, pad + start : pad + stop] = True
    else:
        raise PersonagateError(f"unknown positions {positions!r}; use last, post_instruction, spans or all")
    return mask


def _record(chat: ChatModel, batch: PaddedBatch, select: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass; resid_pre at the selected positions ``[n_selected, n_layers, d]`` (row-major
    over batch row, then position) and the last position's logits ``[B, vocab]``, float32."""
    blocks = chat.adapter.get_blocks(chat.model)
    recorded: list[torch.Tensor | None] = [None] * len(blocks)
    handles: list[RemovableHandle] = []

    def recorder(layer: int):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            recorded[layer] = hidden[select].to(torch.float32)

        return hook

    try:
        for layer, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(recorder(layer), with_kwargs=True))
        with torch.inference_mode():
            logits = run_model(
                chat.model,
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
            )
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([r for r in recorded if r is not None], dim=1), logits.to(torch.float32)


def _capture(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    select: Callable[[PaddedBatch, list[int]], torch.Tensor],
    consume: Callable[[list[int], torch.Tensor, torch.Tensor, torch.Tensor], None],
    batch_size: int,
    progress: bool,
    desc: str,
) -> None:
    """The one capture loop: length-sorted batches, left padding, one recording forward pass each;
    ``consume(indices, selected activations, selection mask, logits)`` keeps what the caller needs."""
    bar = tqdm(total=len(token_lists), desc=desc, disable=not progress, leave=False)
    for indices in length_sorted_batches(token_lists, batch_size):
        batch = left_pad([token_lists[i] for i in indices], chat.tokenizer.pad_token_id, chat.device)
        mask = select(batch, indices)
        acts, logits = _record(chat, batch, mask)
        consume(indices, acts.cpu(), mask, logits.cpu())
        bar.update(len(indices))
    bar.close()


def mean_activations(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    *,
    positions: Positions = "last",
    post_instruction: int | None = None,
    spans: Sequence[tuple[int, int]] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "activations",
) -> LayerMeans:
    """Mean of resid_pre over prompts and chosen positions, at every layer."""
    sums = torch.zeros((chat.n_layers, chat.hidden_size), dtype=torch.float64)
    count = 0

    def select(batch: PaddedBatch, indices: list[int]) -> torch.Tensor:
        batch_spans = [spans[i] for i in indices] if spans is not None else None
        return _position_mask(batch, positions, post_instruction, batch_spans)

    def consume(indices: list[int], acts: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> None:
        nonlocal count
        for layer in range(acts.shape[1]):  # per layer, summed as a contiguous block (same rounding as ever)
            sums[layer] += acts[:, layer].contiguous().sum(0).to(torch.float64)
        count += int(mask.sum())

    _capture(chat, token_lists, select, consume, batch_size, progress, desc)
    return LayerMeans(sums=sums, count=count)


def last_token_activations(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    *,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "activations",
) -> torch.Tensor:
    """resid_pre at the last prompt token for every prompt and layer: ``[n_prompts, n_layers, d]`` float32.

    Memory grows with the prompt count; use ``mean_activations`` when only the mean is needed.
    """
    out = torch.zeros((len(token_lists), chat.n_layers, chat.hidden_size), dtype=torch.float32)

    def consume(indices: list[int], acts: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> None:
        out[indices] = acts

    _capture(chat, token_lists, lambda b, i: _position_mask(b, "last", None, None), consume, batch_size, progress, desc)
    return out


def last_token_stream(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    layer: int,
    *,
    spans: Sequence[TurnSpans] | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """resid_pre[layer] at each prompt's last token, unsteered: ``[n_prompts, d]`` float32. Prompts
    that share a history (``spans``) go through ``prefill``, which computes the history once for every
    batch (kept in a ``PrefixCache``), so a family of long conversations costs its probes."""
    block = chat.adapter.get_blocks(chat.model)[layer]
    out = torch.zeros((len(token_lists), chat.hidden_size), dtype=torch.float32)
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"])[:, -1].float())

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    cache = PrefixCache()
    try:
        with steer(chat, Program()) as steering, torch.inference_mode():
            for start in range(0, len(token_lists), batch_size):
                batch = list(range(start, min(start + batch_size, len(token_lists))))
                seen.clear()
                batch_spans = [spans[i] for i in batch] if spans else None
                prefill(chat, [token_lists[i] for i in batch], steering, spans=batch_spans, prefix_cache=cache)
                out[batch] = seen[-1].cpu()  # the last pass is the one that ends at the prompts' last tokens
    finally:
        handle.remove()
    return out


def tail_activations(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    n_positions: int,
    *,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "activations",
) -> tuple[torch.Tensor, torch.Tensor]:
    """resid_pre at the last ``n_positions`` prompt tokens (e.g. the post-instruction tokens) and the
    first-reply-token logits, from the same forward pass.

    Returns ``([n_prompts, n_positions, n_layers, d], [n_prompts, vocab])``, float32 on the CPU.
    """
    acts_out = torch.zeros((len(token_lists), n_positions, chat.n_layers, chat.hidden_size), dtype=torch.float32)
    logits_out = torch.zeros((len(token_lists), 0))

    def consume(indices: list[int], acts: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> None:
        nonlocal logits_out
        if logits_out.shape[1] != logits.shape[1]:
            logits_out = torch.zeros((len(token_lists), logits.shape[1]), dtype=torch.float32)
        acts_out[indices] = acts.view(len(indices), n_positions, chat.n_layers, chat.hidden_size)
        logits_out[indices] = logits

    def select(batch: PaddedBatch, indices: list[int]) -> torch.Tensor:
        return _position_mask(batch, "post_instruction", n_positions, None)

    _capture(chat, token_lists, select, consume, batch_size, progress, desc)
    return acts_out, logits_out


def second_moments(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    layers: Sequence[int],
    *,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "second moments",
    spans: Sequence[tuple[int, int]] | None = None,
) -> dict[int, torch.Tensor]:
    """Per layer of ``layers``: ``E[h h^T]`` of resid_pre over every (non-padding) token of the prompts
    (or each prompt's token span ``[start, stop)``), ``[d, d]`` float64. The energy a unit direction
    ``u`` carries there is ``u^T M u``. Run inside ``steer(...)`` to measure the stream under an
    intervention."""
    sums = {layer: torch.zeros((chat.hidden_size, chat.hidden_size), dtype=torch.float64) for layer in layers}
    count = 0

    def consume(indices: list[int], acts: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> None:
        nonlocal count
        for layer in layers:
            h = acts[:, layer].to(torch.float64)
            sums[layer] += h.T @ h
        count += int(mask.sum())

    def select(batch: PaddedBatch, indices: list[int]) -> torch.Tensor:
        if spans is None:
            return _position_mask(batch, "all", None, None)
        return _position_mask(batch, "spans", None, [spans[i] for i in indices])

    _capture(chat, token_lists, select, consume, batch_size, progress, desc)
    if count == 0:
        raise PersonagateError("no positions were recorded; the prompt set is empty")
    return {layer: value / count for layer, value in sums.items()}


def turn_activations(
    chat: ChatModel,
    encoded: Sequence[EncodedConversation],
    *,
    steering: Steering | None = None,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "turns",
) -> list[torch.Tensor]:
    """resid_pre at the last token of every turn of each conversation, at every layer: one
    ``[n_turns, n_layers, d]`` float32 tensor per conversation. Inside ``steer(...)`` pass its handle,
    so ops scoped to the probe or the assistant turns know where the turns lie."""
    token_lists = [e.ids for e in encoded]
    out: list[torch.Tensor | None] = [None] * len(encoded)
    bar = tqdm(total=len(encoded), desc=desc, disable=not progress, leave=False)
    for indices in length_sorted_batches(token_lists, batch_size):
        batch = left_pad([token_lists[i] for i in indices], chat.tokenizer.pad_token_id, chat.device)
        spans = [encoded[i].spans for i in indices]
        width = batch.input_ids.shape[1]
        select = torch.zeros((len(indices), width), dtype=torch.bool, device=batch.input_ids.device)
        for row, (span, pad) in enumerate(zip(spans, batch.pad_lengths, strict=True)):
            select[row, [pad + t for t in span.last_tokens]] = True
        if steering is not None:
            steering.set_prompt_length(width)
            steering.set_turns(turn_masks(spans, 0, batch.pad_lengths, width), batch.input_ids.device)
            steering.set_rows([0] * len(indices), batch.input_ids.device)
        acts, _ = _record(chat, batch, select)
        counts = [len(s.last_tokens) for s in spans]
        for i, part in zip(indices, acts.cpu().split(counts), strict=True):
            out[i] = part
        bar.update(len(indices))
    bar.close()
    if steering is not None:
        steering.set_turns(None)
    return [t for t in out if t is not None]
