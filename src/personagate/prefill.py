"""Running prompts into a KV cache, computing once what several rows of a batch have in common.

Two kinds of sharing, both exact:

- the chat-template header every prompt starts with is prefilled once per program and copied to
  every row running that program;
- in a grid batch (each row its own program, ``steer(chat, [programs])``), rows with the same prompt whose
  programs edit the stream identically up to some layer are identical up to there: the blocks
  before that layer run once for all of them, and the batch widens, block by block, only where the
  programs part ways (persona steering at layer 12 under five different late-layer edits runs
  blocks 0-10 once, not five times).

The layer sharing runs a slice of the decoder blocks at a time through the model's own forward
(``inputs_embeds`` = the residual stream entering the slice), each slice with a cache that holds
only its layers, then assembles one cache for the whole batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import DynamicLayer

from personagate.conversations import TurnSpans
from personagate.interventions import Steering
from personagate.interventions.edits import CONVERSATION_SCOPES
from personagate.models.forward import new_cache, run_model
from personagate.models.loading import ChatModel
from personagate.prompts import left_pad

# Prompts in a batch usually share a chat-template header (system prompt and all); when at least
# this many tokens are shared, they are prefilled once and the KV cache is copied to every row.
MIN_SHARED_PREFIX = 8

# Layer sharing pays for its extra forward calls only when it skips a good part of the block work.
MIN_LAYER_SAVING = 0.15


@dataclass
class Prefilled:
    logits: torch.Tensor  # [B, vocab] at the last prompt position
    mask: torch.Tensor  # [B, T] attention mask over prompt positions
    last_position: torch.Tensor  # [B, 1]
    cache: Any


@dataclass(frozen=True)
class Segment:
    """Blocks ``[start, stop)`` run once per class of rows; ``row_class[r]`` indexes ``reps``."""

    start: int
    stop: int
    reps: list[int]
    row_class: list[int]


def shared_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving at least one token of each prompt to run per row."""
    if len(token_lists) < 2:
        return 0
    first, shortest = token_lists[0], min(len(t) for t in token_lists)
    n = 0
    while n < shortest - 1 and all(t[n] == first[n] for t in token_lists):
        n += 1
    return n if n >= MIN_SHARED_PREFIX else 0


def layer_segments(
    token_lists: Sequence[Sequence[int]], programs: Sequence[int], divergence: Sequence[Sequence[int]], n_layers: int
) -> list[Segment]:
    """Split the blocks into runs over which the rows' classes stay the same.

    Block ``t`` writes ``resid_pre[t + 1]`` (its output hooks included), so two rows can share it when
    they have the same prompt and their programs agree through boundary ``t + 1``.
    """
    segments: list[Segment] = []
    for block in range(n_layers):
        classes: dict[tuple, int] = {}
        reps: list[int] = []
        row_class: list[int] = []
        for row, program in enumerate(programs):
            # The canonical program of the class: the first one that agrees with this one through block + 1.
            canonical = next(j for j in range(len(divergence)) if divergence[program][j] > block + 1)
            key = (tuple(token_lists[row]), canonical)
            if key not in classes:
                classes[key] = len(reps)
                reps.append(row)
            row_class.append(classes[key])
        if segments and len(segments[-1].reps) == len(reps):  # classes only split with depth: same count, same split
            last = segments[-1]
            segments[-1] = Segment(last.start, block + 1, last.reps, last.row_class)
        else:
            segments.append(Segment(block, block + 1, reps, row_class))
    return segments


def turn_masks(spans: Sequence[TurnSpans], shared: int, pads: Sequence[int], width: int) -> dict[str, torch.Tensor]:
    """Per row, the prompt positions each conversation scope covers, in cache coordinates: a token at
    index ``j`` of its prompt sits at ``j`` inside the shared prefix and at ``j + pad`` after it."""
    masks = {scope: torch.zeros((len(spans), shared + width), dtype=torch.bool) for scope in CONVERSATION_SCOPES}
    for row, (span, pad) in enumerate(zip(spans, pads, strict=True)):
        for scope, mask in masks.items():
            for start, stop in span.ranges(scope):
                mask[row, start : min(stop, shared)] = True
                mask[row, max(start, shared) + pad : stop + pad] = True
    return masks


def layer_sharing_applies(chat: ChatModel, cache: Any) -> bool:
    """Slices of blocks can run through the model's forward only when every layer is alike: one
    attention type (the forward indexes layer types by position in the slice) and a plain growing
    cache layer per block."""
    from transformers.cache_utils import DynamicLayer

    layer_types = set(getattr(chat.model.config, "layer_types", None) or ["one"])
    return len(layer_types) == 1 and all(type(layer) is DynamicLayer for layer in cache.layers)


class PrefixCache:
    """Keys and values of shared prompt prefixes (a conversation's history, a long system prompt) as
    each program leaves them, kept across batches and calls: every probe after the same history
    reuses them. A program whose ops touch no prefix position (ops scoped to the probe turn, the
    last prompt token or the reply) shares the unsteered entry. Least recently used entries go first.
    """

    def __init__(self, max_entries: int = 16) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return entry

    def put(self, key: Hashable, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self._entries[key] = layers
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def prefill(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    steering: Steering,
    row_programs: Sequence[int] | None = None,
    *,
    share_layers: bool = True,
    share_prefix: bool = True,
    spans: Sequence[TurnSpans] | None = None,
    prefix_cache: PrefixCache | None = None,
) -> Prefilled:
    """Run the prompts into a fresh KV cache, computing shared work once (see the module docstring).

    ``row_programs[i]`` is the program of row ``i`` when ``steering`` runs several; the handle is
    told the padded prompt length, so token scopes stay exact. ``spans`` places the turns of
    conversation prompts, for ops scoped to the probe or the assistant turns; the shared prefix then
    stops where the first probe turn starts. ``prefix_cache`` keeps the shared prefix's keys and values
    for later batches. ``share_prefix=False`` runs every row's whole prompt (for comparison).
    """
    model = chat.model
    shared = shared_prefix_length(token_lists) if share_prefix else 0
    if spans and shared:
        shared = min(shared, *(span.probe_start for span in spans))
        shared = shared if shared >= MIN_SHARED_PREFIX else 0
    rest = left_pad([t[shared:] for t in token_lists], chat.tokenizer.pad_token_id, chat.device)
    steering.set_prompt_length(shared + rest.input_ids.shape[1])
    masks = turn_masks(spans, shared, rest.pad_lengths, rest.input_ids.shape[1]) if spans else None
    steering.set_turns(masks, chat.device)
    rows = len(token_lists)
    programs = list(row_programs) if row_programs is not None else [0] * rows
    groups = sorted(set(programs))
    header = new_cache(model)
    if shared:
        _prefill_header(chat, header, list(token_lists[0][:shared]), groups, programs, steering, prefix_cache)
    header_row = torch.tensor([groups.index(p) for p in programs], device=chat.device)
    ones = torch.ones((rows, shared), dtype=rest.attention_mask.dtype, device=chat.device)
    mask = torch.cat([ones, rest.attention_mask], dim=1)
    positions = rest.position_ids + shared

    segments: list[Segment] = []
    if share_layers and len(groups) > 1 and layer_sharing_applies(chat, header):
        segments = layer_segments(token_lists, programs, steering.divergence, chat.n_layers)
        work = sum((s.stop - s.start) * len(s.reps) for s in segments)
        if work > (1 - MIN_LAYER_SAVING) * chat.n_layers * rows:
            segments = []
    if segments:
        logits, cache = _prefill_by_segments(
            chat, segments, rest.input_ids, mask, positions, header, header_row, shared, programs, steering
        )
        steering.set_rows(programs, chat.device)
        return Prefilled(logits, mask, positions[:, -1:], cache)

    if shared:
        header.batch_select_indices(header_row)
    steering.set_rows(programs, chat.device)
    logits = run_model(model, input_ids=rest.input_ids, attention_mask=mask, position_ids=positions, cache=header)
    return Prefilled(logits, mask, positions[:, -1:], header)


def _prefill_header(
    chat: ChatModel,
    header: Any,
    prefix: list[int],
    groups: list[int],
    programs: list[int],
    steering: Steering,
    cache: PrefixCache | None,
) -> None:
    """The shared prefix's keys and values for each program of the batch (``header`` row ``i`` for
    ``groups[i]``). With a cache, each distinct entry (prefix, what the program does to it) is run
    alone, once, and kept: a unit's rows then never depend on which units ran before it (a resumed or
    retried unit reproduces its tokens), and programs that leave the prefix alone share one entry."""
    if cache is None or not all(type(layer) is DynamicLayer for layer in header.layers):
        _run_prefix(chat, header, prefix, groups, list(range(len(groups))), programs, steering)
        return
    keys = [(tuple(prefix), steering.prefix_identity(g)) for g in groups]
    entries: dict[Hashable, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for i, key in enumerate(keys):
        if key in entries:
            continue
        entry = cache.get(key)
        if entry is None:
            computed = new_cache(chat.model)
            _run_prefix(chat, computed, prefix, groups, [i], programs, steering)
            entry = [(layer.keys.clone(), layer.values.clone()) for layer in computed.layers]
            cache.put(key, entry)
        entries[key] = entry
    for layer, target in enumerate(header.layers):  # every group's entry, in group order
        parts = [entries[key][layer] for key in keys]
        target.update(torch.cat([k for k, _ in parts]), torch.cat([v for _, v in parts]))


def _run_prefix(
    chat: ChatModel,
    into: Any,
    prefix: list[int],
    groups: list[int],
    which: list[int],
    programs: list[int],
    steering: Steering,
) -> None:
    """The prefix once for each of ``groups[i]``, ``i`` in ``which``, into the cache ``into``."""
    ids = torch.tensor([prefix] * len(which), device=chat.device)
    steering.set_rows([groups[i] for i in which], chat.device, turn_rows=[programs.index(groups[i]) for i in which])
    run_model(
        chat.model,
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        position_ids=torch.arange(len(prefix), device=chat.device).unsqueeze(0).expand(len(which), -1),
        cache=into,
    )


def _prefill_by_segments(
    chat: ChatModel,
    segments: Sequence[Segment],
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    header: Any,
    header_row: torch.Tensor,
    shared: int,
    programs: Sequence[int],
    steering: Steering,
) -> tuple[torch.Tensor, Any]:
    """Each segment's blocks on one row per class; the segment's cache layers widened to every row."""
    model, device = chat.model, chat.device
    blocks = chat.adapter.get_blocks(model)
    full = new_cache(model)
    hidden: torch.Tensor | None = None
    previous: Segment | None = None
    logits = torch.empty(0)
    for segment in segments:
        reps = torch.tensor(segment.reps, device=device)
        cache = new_cache(model)
        for layer in range(chat.n_layers):
            if shared and segment.start <= layer < segment.stop:  # the header's keys and values, as the reps see them
                keys, values = header.layers[layer].keys, header.layers[layer].values
                cache.layers[layer].update(keys[header_row[reps]], values[header_row[reps]])
            elif shared:  # outside the slice: only the length matters (masks and offsets read it)
                keys = header.layers[0].keys
                stand_in = keys.new_zeros(()).expand(len(segment.reps), *keys.shape[1:])
                cache.layers[layer].update(stand_in, stand_in)
        steering.set_rows([programs[r] for r in segment.reps], device, turn_rows=segment.reps)
        embeds = None
        if previous is not None:
            assert hidden is not None
            embeds = hidden[torch.tensor([previous.row_class[r] for r in segment.reps], device=device)]
        with _only_blocks(chat, blocks, segment.start, segment.stop) as captured:
            logits = run_model(
                model,
                input_ids=input_ids[reps] if embeds is None else None,
                inputs_embeds=embeds,
                attention_mask=mask[reps],
                position_ids=positions[reps],
                cache=cache,
            )
        hidden, previous = captured.get("hidden"), segment
        widen = torch.tensor(segment.row_class, device=device)
        for layer in range(segment.start, segment.stop):
            full.layers[layer].update(cache.layers[layer].keys[widen], cache.layers[layer].values[widen])
    assert previous is not None
    return logits[torch.tensor(previous.row_class, device=device)], full


@contextmanager
def _only_blocks(chat: ChatModel, blocks: nn.ModuleList, start: int, stop: int) -> Iterator[dict[str, torch.Tensor]]:
    """The backbone runs blocks ``[start, stop)`` only; yields a dict that receives their output
    (the residual stream entering block ``stop``, every edit at that boundary applied)."""
    parent, name = chat.adapter.get_blocks_owner(chat.model)
    captured: dict[str, torch.Tensor] = {}

    def capture(module: nn.Module, args: Any, output: Any) -> None:
        captured["hidden"] = output[0] if isinstance(output, tuple) else output

    handle = blocks[stop - 1].register_forward_hook(capture)  # after steering's hooks, which are prepended
    setattr(parent, name, nn.ModuleList(list(blocks)[start:stop]))
    try:
        yield captured
    finally:
        setattr(parent, name, blocks)
        handle.remove()
