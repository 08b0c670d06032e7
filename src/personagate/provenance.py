"""What a direction file records about where it came from: the model, its config hash, the data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from personagate._version import __version__


def prompt_set_hash(prompts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()[:16]


def provenance(chat: Any, **extra: Any) -> dict[str, Any]:
    """The model a direction was made with (name, config hash, shape), this package's version, and ``extra``."""
    return {
        "model": chat.name,
        "config_hash": chat.config_hash(),
        "n_layers": chat.n_layers,
        "hidden_size": chat.hidden_size,
        "package_version": __version__,
        **extra,
    }
