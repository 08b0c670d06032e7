"""Greedy decoding with a static KV cache and fixed steering buffers: every decode step has the same
shapes and reads the same memory, so on a GPU it can be captured once as a CUDA graph
(``torch.compile(mode="reduce-overhead")``) and replayed, and a new program of the same layout is
loaded by copying values, not by capturing again.

The eager path (``personagate.generation``) stays the reference: this one must give identical
tokens (tested on CPU, where ``compile`` is off by default). It runs one program for the whole
batch, no token scopes, and no early stopping (a static batch keeps its rows to the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from personagate.errors import PersonagateError
from personagate.generation import Completion, check_context, eos_token_ids
from personagate.interventions.program import Program
from personagate.interventions.static import StaticSteering, layout_of
from personagate.models.forward import run_model
from personagate.models.loading import ChatModel
from personagate.prompts import left_pad


class StaticDecoder:
    """One model, one static cache of ``max_batch`` rows x ``max_len`` positions, one captured step."""

    def __init__(self, chat: ChatModel, *, max_batch: int, max_len: int, compile: bool | None = None) -> None:
        from transformers import StaticCache

        self.chat, self.max_batch, self.max_len = chat, max_batch, max_len
        self.cache = StaticCache(config=chat.model.config, max_cache_len=max_len)
        self.mask = torch.zeros((max_batch, max_len), dtype=torch.long, device=chat.device)
        self.compile = chat.device.type == "cuda" if compile is None else compile
        self.steering: StaticSteering | None = None
        self._step: Any = None

    def load(self, program: Program) -> StaticSteering:
        """Fill the steering buffers: in place when the layout is the one captured, else a new capture."""
        if self.steering is not None and layout_of(self.steering.compile(program)) == self.steering.layout:
            self.steering.load(program)
        else:
            self.steering = StaticSteering(self.chat, program)
            self._step = None  # other hooks: capture again
        return self.steering

    def _decode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return run_model(
            self.chat.model, input_ids=tokens, attention_mask=self.mask, position_ids=positions, cache=self.cache
        )

    @torch.inference_mode()
    def generate(
        self, token_lists: Sequence[Sequence[int]], program: Program, *, max_new_tokens: int, stop_at_eos: bool = True
    ) -> list[Completion]:
        if max_new_tokens < 1:
            raise PersonagateError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        check_context(self.chat, token_lists, max_new_tokens)
        steering = self.load(program)
        eos = eos_token_ids(self.chat) if stop_at_eos else set()
        out: list[Completion] = []
        with steering.active():
            if self._step is None:
                self._step = torch.compile(self._decode, mode="reduce-overhead") if self.compile else self._decode
            for start in range(0, len(token_lists), self.max_batch):
                batch = list(token_lists[start : start + self.max_batch])
                out += self._batch(batch, max_new_tokens, eos, start)
        return out

    def _batch(self, batch: list[Sequence[int]], max_new_tokens: int, eos: set[int], offset: int) -> list[Completion]:
        rows = len(batch)
        padded_batch = batch + [batch[-1]] * (self.max_batch - rows)  # fixed shapes: spare rows repeat the last
        prompt = left_pad(padded_batch, self.chat.tokenizer.pad_token_id, self.chat.device)
        width = prompt.input_ids.shape[1]
        if width + max_new_tokens > self.max_len:
            raise PersonagateError(
                f"prompts of {width} tokens and {max_new_tokens} new tokens exceed the static cache of {self.max_len}"
            )
        self.cache.reset()
        self.mask.zero_()
        self.mask[:, :width] = prompt.attention_mask
        logits = run_model(
            self.chat.model,
            input_ids=prompt.input_ids,
            attention_mask=self.mask,
            position_ids=prompt.position_ids,
            cache=self.cache,
        )
        positions = prompt.position_ids[:, -1:].clone()
        generated = torch.empty((self.max_batch, max_new_tokens), dtype=torch.long, device=self.chat.device)
        for step in range(max_new_tokens):
            tokens = logits.argmax(-1)
            generated[:, step] = tokens
            if step == max_new_tokens - 1:
                break
            self.mask[:, width + step] = 1
            positions += 1
            logits = self._step(tokens.unsqueeze(-1), positions)
        completions = []
        tokenizer = self.chat.tokenizer
        for row, ids in enumerate(generated[:rows].tolist()):
            cut = next((i for i, t in enumerate(ids) if t in eos), None)
            kept = ids if cut is None else ids[:cut]
            finish = "eos" if cut is not None else "length"
            completions.append(Completion(offset + row, tokenizer.decode(kept, skip_special_tokens=True), kept, finish))
        return completions
