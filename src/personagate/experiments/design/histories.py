"""The conversation histories of the multi-turn family: per form, the exchanges a conversation of k
exchanges starts with (``data/multiturn.json`` or a file like it), checked against the spec before any
model loads. Each test prompt is the probe after the first k exchanges of a form; the history is the
same for every probe, so its keys and values are computed once (``prefill``'s shared prefix)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from personagate import checks
from personagate.conversations import Conversation
from personagate.errors import PersonagateError
from personagate.experiments.design.spec import StudySpec

BUILTIN = "builtin"


@dataclass(frozen=True)
class Histories:
    """Per form, the exchanges (user, assistant) a conversation of k exchanges starts with."""

    forms: dict[str, tuple[tuple[str, str], ...]]

    @classmethod
    def of(cls, spec: StudySpec) -> Histories:
        """The spec's histories, checked: every form it names, long enough for its largest k."""
        section = spec.multiturn
        if section.data == BUILTIN:
            text, where = resources.files("personagate").joinpath("data/multiturn.json").read_text(), "multiturn.json"
        else:
            path = spec.path(section.data)
            text, where = checks.read_text(path, "multi-turn histories"), str(path)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PersonagateError(f"multiturn.data: {where} is not JSON ({exc})") from None
        forms = data.get("forms") if isinstance(data, dict) else None
        if not isinstance(forms, dict):
            raise PersonagateError(f'multiturn.data: {where} must hold {{"forms": {{NAME: [[user, assistant], ...]}}}}')
        out: dict[str, tuple[tuple[str, str], ...]] = {}
        longest = max(section.exchanges)
        for form in section.forms:
            exchanges = forms.get(form)
            if not isinstance(exchanges, list):
                raise PersonagateError(f"multiturn.forms names {form!r}, which {where} does not have")
            if len(exchanges) < longest:
                raise PersonagateError(
                    f"multiturn.exchanges goes up to {longest}, but form {form!r} in {where} has {len(exchanges)}"
                )
            pairs = []
            for index, pair in enumerate(exchanges[:longest]):
                ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) and t.strip() for t in pair)
                if not ok:
                    raise PersonagateError(f"{where}: {form}[{index}] must be [user text, assistant text]")
                pairs.append((pair[0], pair[1]))
            out[form] = tuple(pairs)
        return cls(out)

    def conversation(self, form: str, exchanges: int, probe: str) -> Conversation:
        return Conversation.of(self.forms[form][:exchanges], probe)
