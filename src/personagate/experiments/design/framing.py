"""How a condition's prompts are framed: the model's default persona, the compliant personas in turn
(the natural-persona arm), or each prompt as the probe after k exchanges of a multi-turn form.

A value with a JSON schema of its own, stored as such in the run store: no module parses it out of
a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from personagate.errors import PersonagateError


class FramingKind(StrEnum):
    DEFAULT = "default"  # the model's own default persona
    COMPLIANT = "compliant"  # the compliant personas in turn
    MULTITURN = "multiturn"  # the probe after ``exchanges`` exchanges of ``form``


@dataclass(frozen=True)
class Framing:
    kind: FramingKind = FramingKind.DEFAULT
    form: str | None = None
    exchanges: int | None = None

    def __post_init__(self) -> None:
        if self.is_multiturn:
            ok = isinstance(self.form, str) and type(self.exchanges) is int and self.exchanges >= 0
        else:
            ok = self.form is None and self.exchanges is None
        if not ok:
            raise ValueError(f"not a framing: {self!r}")

    @classmethod
    def multiturn(cls, form: str, exchanges: int) -> Framing:
        return cls(FramingKind.MULTITURN, form, exchanges)

    @property
    def is_multiturn(self) -> bool:
        return self.kind is FramingKind.MULTITURN

    def to_json(self) -> dict[str, str | int | None]:
        return {"kind": self.kind.value, "form": self.form, "exchanges": self.exchanges}

    @classmethod
    def from_json(cls, data: object, where: str) -> Framing:
        """The framing a run store recorded; anything no version of personagate writes is an error."""
        if isinstance(data, Mapping) and set(data) == {"kind", "form", "exchanges"}:
            try:
                return cls(FramingKind(data["kind"]), data["form"], data["exchanges"])
            except ValueError:  # an unknown kind, or fields that do not fit it
                pass
        raise PersonagateError(f"{where} records a framing personagate never writes: {data!r}")

    @classmethod
    def from_legacy(cls, system: str, where: str) -> Framing:
        """The framing of a store written before framings were values (``default``, ``compliant``,
        ``multiturn:FORM:K``): the one place that text is read."""
        parts = system.split(":")
        if len(parts) == 3 and parts[0] == FramingKind.MULTITURN and parts[2].isdigit():
            return cls.multiturn(parts[1], int(parts[2]))
        if system in (FramingKind.DEFAULT, FramingKind.COMPLIANT):
            return cls(FramingKind(system))
        raise PersonagateError(f"{where} records a framing personagate never writes: {system!r}")


DEFAULT_FRAMING = Framing()
COMPLIANT_FRAMING = Framing(FramingKind.COMPLIANT)
