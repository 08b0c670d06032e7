"""Where a site's hook sits, and the hooks that edit the stream there: one registration for the dynamic
path (``steering``) and the static one (``static``).

``resid_pre[0]`` is block 0's input (a pre-hook, with the hidden states as the first argument or the
``hidden_states`` keyword); ``resid_pre[l]`` is block ``l-1``'s output; ``attn_out[l]`` / ``mlp_out[l]``
the output of the module whose output block ``l`` adds to the stream. Every hook is registered in
front of any other, so that transformers' own ``output_hidden_states`` recorder sees the edited stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from personagate.interventions.edits import Site
from personagate.models.adapters import ArchitectureAdapter

StreamEdit = Callable[[torch.Tensor], torch.Tensor]


def site_module(adapter: ArchitectureAdapter, blocks: nn.ModuleList, site: Site) -> nn.Module:
    """The module whose hook edits ``site``."""
    kind, layer = site
    if kind == "resid_pre":
        return blocks[max(layer - 1, 0)]
    block = blocks[layer]
    return adapter.get_attn_out(block) if kind == "attn_out" else adapter.get_mlp_out(block)


def register_site(adapter: ArchitectureAdapter, blocks: nn.ModuleList, site: Site, edit: StreamEdit) -> RemovableHandle:
    """Hook ``edit`` onto ``site`` (in front of any other hook); the caller removes the handle."""
    module = site_module(adapter, blocks, site)
    if site == ("resid_pre", 0):
        return module.register_forward_pre_hook(_input_hook(edit), with_kwargs=True, prepend=True)
    return module.register_forward_hook(_output_hook(edit), prepend=True)


def _output_hook(edit: StreamEdit):
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (edit(output[0]), *output[1:])
        return edit(output)

    return hook


def _input_hook(edit: StreamEdit):
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (edit(args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = edit(kwargs["hidden_states"])
        return args, kwargs

    return hook
