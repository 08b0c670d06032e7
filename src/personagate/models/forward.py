"""One call into a Hugging Face causal LM, with the conventions spelled out once.

- transformers >= 5.2x names the KV cache argument ``cache``, earlier releases ``past_key_values``;
- position ids count real tokens, so left padding is invisible to RoPE;
- ``logits_to_keep=1`` computes the LM head only at the last position (the vocabulary projection
  is the largest matmul of a small model's forward pass).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn


def cache_keyword(model: nn.Module) -> str:
    """The name of the forward's KV-cache argument for this transformers release."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def new_cache(model: nn.Module) -> Any:
    """An empty growing KV cache for ``model``."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def run_model(
    model: nn.Module,
    *,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    cache: Any = None,
) -> torch.Tensor:
    """One forward pass; the logits ``[B, vocab]`` at the last position. With a ``cache`` the keys and
    values are appended to it."""
    return run_model_tail(
        model,
        1,
        attention_mask=attention_mask,
        position_ids=position_ids,
        input_ids=input_ids,
        inputs_embeds=inputs_embeds,
        cache=cache,
    )[:, -1]


def run_model_tail(
    model: nn.Module,
    keep: int,
    *,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    cache: Any = None,
) -> torch.Tensor:
    """One forward pass; the logits ``[B, keep, vocab]`` at the last ``keep`` positions."""
    kwargs: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids, "logits_to_keep": keep}
    if input_ids is not None:
        kwargs["input_ids"] = input_ids
    else:
        kwargs["inputs_embeds"] = inputs_embeds
    if cache is not None:
        kwargs[cache_keyword(model)] = cache
        kwargs["use_cache"] = True
    else:
        kwargs["use_cache"] = False
    return model(**kwargs).logits
