"""The compliant-persona direction: the residual stream under compliant system prompts minus under the
model's default persona (or cautious contrast personas), on the same harmless questions, per layer.

No harmful prompt enters it, so it is not the refusal direction by construction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import torch

from personagate import checks
from personagate.activations import mean_activations
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.generation import Decoding, generate
from personagate.models.loading import ChatModel
from personagate.prompts import MODEL_DEFAULT, ChatFormatter, SystemPrompt
from personagate.provenance import prompt_set_hash, provenance

PersonaPositions = Literal["last", "post_instruction", "response"]


@dataclass
class PersonaSet:
    """System prompts: ``compliant`` personas, cautious ``contrast`` ones, non-compliant ``styles``
    (specificity controls), and the neutral ``questions`` asked under each."""

    compliant: list[str]
    contrast: list[str]
    questions: list[str]
    styles: dict[str, str] = field(default_factory=dict)

    @classmethod
    def builtin(cls) -> PersonaSet:
        data = json.loads(resources.files("personagate").joinpath("data/personas.json").read_text())
        return cls(data["compliant"], data["contrast"], data["questions"], dict(data.get("styles", {})))

    @classmethod
    def load(cls, path: str | Path) -> PersonaSet:
        """A JSON file with ``compliant`` and ``questions`` lists (and optionally ``contrast``)."""
        path = Path(path)
        text = checks.read_text(path, "persona")
        needs = "a persona file needs 'compliant' and 'questions' lists of texts"
        try:
            data = checks.nesting(json.loads(text), str(path))
            lists = [data["compliant"], data.get("contrast", []), data["questions"]]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise PersonagateError(f"{path}: {needs} ({type(exc).__name__})") from None
        if not all(isinstance(x, list) and all(isinstance(s, str) for s in x) for x in lists):
            raise PersonagateError(f"{path}: {needs}")
        return cls(*lists)


def _persona_mean(
    chat: ChatModel,
    systems: Sequence[SystemPrompt],
    questions: Sequence[str],
    positions: PersonaPositions,
    max_new_tokens: int,
    batch_size: int,
    progress: bool,
    desc: str,
) -> Direction:
    """The mean residual stream per layer over every (system prompt, question) pair."""
    sums = torch.zeros((chat.n_layers, chat.hidden_size), dtype=torch.float64)
    count = 0
    for system in systems:
        fmt = ChatFormatter(chat.tokenizer, system)
        ids = [fmt.encode(q) for q in questions]
        if positions == "response":
            replies = generate(
                chat, ids, decoding=Decoding(max_new_tokens=max_new_tokens, batch_size=batch_size), progress=False
            )
            full = [p + c.tokens for p, c in zip(ids, replies, strict=True) if c.tokens]
            spans = [(len(p), len(p) + len(c.tokens)) for p, c in zip(ids, replies, strict=True) if c.tokens]
            means = mean_activations(
                chat, full, positions="spans", spans=spans, batch_size=batch_size, progress=progress, desc=desc
            )
        else:
            means = mean_activations(
                chat,
                ids,
                positions=positions,
                post_instruction=fmt.post_instruction_length,
                batch_size=batch_size,
                progress=progress,
                desc=desc,
            )
        sums += means.sums
        count += means.count
    return Direction((sums / count).to(torch.float32), name=desc)


def persona_direction(
    chat: ChatModel,
    personas: PersonaSet | None = None,
    *,
    against: Literal["default", "contrast"] = "default",
    positions: PersonaPositions = "last",
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: bool = True,
) -> Direction:
    """Mean resid_pre under compliant system prompts minus under the model's default persona (or the
    cautious contrast personas), over the same harmless questions, at every layer."""
    personas = personas or PersonaSet.builtin()
    if against == "contrast" and not personas.contrast:
        raise PersonagateError("against='contrast' needs contrast personas in the persona set")
    base_systems: list[SystemPrompt] = [MODEL_DEFAULT] if against == "default" else list(personas.contrast)
    compliant = _persona_mean(
        chat,
        personas.compliant,
        personas.questions,
        positions,
        max_new_tokens,
        batch_size,
        progress,
        "compliant personas",
    )
    baseline = _persona_mean(
        chat, base_systems, personas.questions, positions, max_new_tokens, batch_size, progress, f"{against} persona"
    )
    meta = provenance(
        chat,
        method=f"system-prompt contrast vs {against}",
        positions=positions,
        data_hash=prompt_set_hash([*personas.compliant, *personas.contrast, *personas.questions]),
        n_questions=len(personas.questions),
        n_personas=len(personas.compliant),
    )
    return (compliant - baseline).renamed("persona", **meta)
