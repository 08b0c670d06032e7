import sys
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from personagate.models import ChatModel

from tiny import tiny_model

# Every module that ever received a hook from personagate's code, so that after each test we can
# check that none of those hooks is still there (hooks are global state on the module).
_HOOKED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _ours(hook) -> bool:
    return getattr(hook, "__module__", "").startswith("personagate")


def _tracking(register):
    def tracked(self, hook, *args, **kwargs):
        if _ours(hook):
            _HOOKED.add(self)
        return register(self, hook, *args, **kwargs)

    return tracked


nn.Module.register_forward_hook = _tracking(nn.Module.register_forward_hook)
nn.Module.register_forward_pre_hook = _tracking(nn.Module.register_forward_pre_hook)


def personagate_hooks(module: nn.Module) -> int:
    return sum(1 for h in [*module._forward_pre_hooks.values(), *module._forward_hooks.values()] if _ours(h))


@pytest.fixture(autouse=True)
def no_hook_survives():
    """After every test, no module carries a hook registered by personagate."""
    yield
    leaked = [type(m).__name__ for m in list(_HOOKED) if personagate_hooks(m)]
    assert not leaked, f"personagate hooks left behind on {leaked}"


def hook_counts(module: torch.nn.Module) -> dict[str, tuple[int, int, int, int]]:
    """Per-module counts of (forward pre-hooks, forward hooks, backward hooks, personagate's own hooks).

    transformers installs its own ``output_hidden_states`` recorders lazily on first use; the
    fixtures warm models up so those exist before a test takes its snapshot.
    """
    counts = {}
    for name, m in module.named_modules():
        counts[name] = (len(m._forward_pre_hooks), len(m._forward_hooks), len(m._backward_hooks), personagate_hooks(m))
    return counts


@pytest.fixture(params=["qwen2", "llama", "gemma2"])
def chat(request) -> ChatModel:
    return tiny_model(request.param)


@pytest.fixture
def qwen() -> ChatModel:
    return tiny_model("qwen2")
