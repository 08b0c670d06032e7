"""Vector files a run makes and keeps in its directory (``vectors/r*/``), reused on a resume only when
they were made for the same study: each file records the fingerprint of the spec, the prompt sets'
contents and the model it was made from, and a file made for anything else is refused with the fix
(a spec naming one persona file never runs with a vector left over from another)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.experiments.design.spec import StudySpec
from personagate.models.loading import ChatModel


def study_fingerprint(spec: StudySpec, chat: ChatModel) -> str:
    """What a run's vectors depend on: the whole spec, its prompt sets' contents, the model's config."""
    sets = {key: spec.prompt_set(key) for key in ("harmful", "harmless")}
    if spec.prompts.test:
        sets["test"] = spec.prompt_set("test")
    text = json.dumps([spec.to_dict(), sets, chat.config_hash()], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class VectorCache:
    """``vectors/`` of one run: ``get(folder, key, make)`` loads a file made for this study or makes it."""

    def __init__(self, root: Path, spec: StudySpec, chat: ChatModel) -> None:
        self.root, self.chat = root, chat
        self.fingerprint = study_fingerprint(spec, chat)

    def path(self, folder: str, key: str) -> Path:
        return self.root / folder / f"{key}.safetensors"

    def has(self, folder: str, key: str) -> bool:
        return self.path(folder, key).is_file()

    def get(self, folder: str, key: str, make: Callable[[], Direction]) -> Direction:
        path = self.path(folder, key)
        if path.is_file():
            direction = Direction.load(path)
            made_for = direction.meta.get("made_for")
            if made_for != self.fingerprint:
                raise PersonagateError(
                    f"{path} was made for another study (fingerprint {made_for or 'none'}, this one "
                    f"{self.fingerprint}): a run reuses only its own vectors; delete {self.root} or "
                    "choose another --out"
                )
        else:
            direction = make()
            direction = direction.renamed(direction.name, made_for=self.fingerprint)
            direction.save(path)
        direction.check_fits(self.chat.n_layers, self.chat.hidden_size, model_hash=self.chat.config_hash())
        return direction

    def put(self, folder: str, key: str, direction: Direction) -> Direction:
        """Save a direction made elsewhere (several at once) with this study's fingerprint."""
        stamped = direction.renamed(direction.name, made_for=self.fingerprint)
        stamped.save(self.path(folder, key))
        return stamped
