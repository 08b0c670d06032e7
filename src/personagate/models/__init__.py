"""Model loading, the bundled default model, and per-architecture module maps."""

from personagate.models.adapters import ADAPTERS, ArchitectureAdapter, adapter_for, architecture_of
from personagate.models.loading import ChatModel, load_model

__all__ = ["ADAPTERS", "ArchitectureAdapter", "ChatModel", "adapter_for", "architecture_of", "load_model"]
