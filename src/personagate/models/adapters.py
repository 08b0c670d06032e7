"""Where each architecture keeps its decoder blocks and the modules that write to the residual stream.

Adapters are data keyed by the Hugging Face architecture class name (``config.architectures``),
never guessed from a path or a model id.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from personagate.errors import PersonagateError


@dataclass(frozen=True)
class ArchitectureAdapter:
    """Dotted module paths for one architecture.

    ``blocks`` is relative to the causal-LM module; ``attn_out`` and ``mlp_out`` are relative to one
    block and name the module whose *output is what gets added to the residual stream* (for
    Gemma-2 that is the post-attention / post-feedforward norm, not the attention module itself).
    ``backbone`` is the decoder model that receives the KV cache.
    """

    blocks: str = "model.layers"
    attn_out: str = "self_attn"
    mlp_out: str = "mlp"
    backbone: str = "model"

    def get_blocks(self, model: nn.Module) -> nn.ModuleList:
        blocks = _resolve(model, self.blocks)
        if not isinstance(blocks, nn.ModuleList):
            raise PersonagateError(
                f"adapter path {self.blocks!r} is a {type(blocks).__name__}, not the list of decoder blocks; "
                "fix the adapter's 'blocks' path"
            )
        return blocks

    def get_blocks_owner(self, model: nn.Module) -> tuple[nn.Module, str]:
        """The module holding the block list and its attribute name (to run a slice of the blocks)."""
        parent, _, name = self.blocks.rpartition(".")
        return (_resolve(model, parent) if parent else model), name

    def get_backbone(self, model: nn.Module) -> nn.Module:
        return _resolve(model, self.backbone)

    def get_attn_out(self, block: nn.Module) -> nn.Module:
        return _resolve(block, self.attn_out)

    def get_mlp_out(self, block: nn.Module) -> nn.Module:
        return _resolve(block, self.mlp_out)


def _resolve(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        if not hasattr(module, part):
            raise PersonagateError(
                f"{type(root).__name__} has no submodule {path!r}; pass an ArchitectureAdapter with the right paths"
            )
        module = getattr(module, part)
    return module


_PRE_NORM = ArchitectureAdapter()
_SANDWICH_NORM = ArchitectureAdapter(attn_out="post_attention_layernorm", mlp_out="post_feedforward_layernorm")

ADAPTERS: dict[str, ArchitectureAdapter] = {
    "LlamaForCausalLM": _PRE_NORM,
    "MistralForCausalLM": _PRE_NORM,
    "Qwen2ForCausalLM": _PRE_NORM,
    "Qwen3ForCausalLM": _PRE_NORM,
    "GemmaForCausalLM": _PRE_NORM,
    "Phi3ForCausalLM": _PRE_NORM,
    "Gemma2ForCausalLM": _SANDWICH_NORM,
    "Gemma3ForCausalLM": _SANDWICH_NORM,
}


def architecture_of(model: nn.Module) -> str:
    """The HF architecture class name, from the config when it says, else from the module's class."""
    config = getattr(model, "config", None)
    names = getattr(config, "architectures", None) or []
    return names[0] if names else type(model).__name__


def adapter_for(model: nn.Module, override: ArchitectureAdapter | None = None) -> ArchitectureAdapter:
    """The adapter for ``model``; ``override`` wins, an unknown architecture is an error naming the fix."""
    if override is not None:
        return override
    name = architecture_of(model)
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise PersonagateError(
            f"unknown architecture {name!r} (known: {known}); pass "
            "adapter=ArchitectureAdapter(blocks='model.layers', attn_out='self_attn', mlp_out='mlp') with "
            "your model's module paths to load_model, or --adapter model.layers,self_attn,mlp on the CLI"
        ) from None
