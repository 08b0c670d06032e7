import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from personagate.models import ChatModel

from tiny import tiny_model


def hook_counts(module: torch.nn.Module) -> dict[str, tuple[int, int, int, int]]:
    """Per-module counts of (forward pre-hooks, forward hooks, backward hooks, personagate's own hooks).

    transformers installs its own ``output_hidden_states`` recorders lazily on first use; the
    fixtures warm models up so those exist before a test takes its snapshot.
    """
    counts = {}
    for name, m in module.named_modules():
        hooks = [*m._forward_pre_hooks.values(), *m._forward_hooks.values()]
        ours = sum(1 for h in hooks if getattr(h, "__module__", "").startswith("personagate"))
        counts[name] = (len(m._forward_pre_hooks), len(m._forward_hooks), len(m._backward_hooks), ours)
    return counts


@pytest.fixture(params=["qwen2", "llama", "gemma2"])
def chat(request) -> ChatModel:
    return tiny_model(request.param)


@pytest.fixture
def qwen() -> ChatModel:
    return tiny_model("qwen2")
