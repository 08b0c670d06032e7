"""The run facts: every key the run store's ``facts`` table holds, declared once with the JSON type of
its value, so that a stage writes and an analysis reads the same key by name, never by a literal.

A ``Fact`` is one key; a ``FactFamily`` is a set of keys ``PREFIX:name`` (one per condition, form or
pole). ``RunStore.set_fact`` refuses a value of the wrong type, so a mistyped fact fails where it is
written, not in a report hours later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# JSON value types: what ``json.loads`` gives back (an int is also accepted where a float is declared)
_JSON_TYPES: dict[type, tuple[type, ...]] = {
    dict: (dict,),
    list: (list, tuple),
    str: (str,),
    float: (float, int),
    int: (int,),
}


@dataclass(frozen=True)
class Fact(Generic[T]):
    key: str
    kind: type[T]
    doc: str

    def check(self, value: object) -> None:
        """Raise TypeError (a programming error, not a user's) when ``value`` is not of the declared type."""
        if isinstance(value, bool) or not isinstance(value, _JSON_TYPES[self.kind]):
            raise TypeError(f"run fact {self.key!r} holds {self.kind.__name__}, not {type(value).__name__}")


@dataclass(frozen=True)
class FactFamily(Generic[T]):
    prefix: str
    kind: type[T]
    doc: str

    def of(self, name: str) -> Fact[T]:
        return Fact(f"{self.prefix}:{name}", self.kind, self.doc)


def _fact(key: str, kind: type[T], doc: str) -> Fact[T]:
    fact = Fact(key, kind, doc)
    FACTS[key] = fact
    return fact


def _family(prefix: str, kind: type[T], doc: str) -> FactFamily[T]:
    family = FactFamily(prefix, kind, doc)
    FAMILIES[prefix] = family
    return family


FACTS: dict[str, Fact[Any]] = {}
FAMILIES: dict[str, FactFamily[Any]] = {}

LAYOUT = _fact("layout", dict, "the study's layers: injection, early and late bands, windows")
PAPER_BLOCKS = _fact("paper_blocks", dict, "protocol paper: the blocks its arms use")
STOPPED = _fact("stopped_before_test", str, "why the run stopped before its test stage (the model cannot carry it)")
STOPPED_LEGACY = _fact("no_coherent_persona_dose", str, "STOPPED as stores before v3 wrote it (read only)")
GEOMETRY = _fact("geometry", dict, "protocol paper: cosine per layer between the vectors it made")
RESAMPLE_SEEDS = _fact("resample_seeds", list, "the seeds of the directions' resamples, in order")
COS_PERSONA_REFUSAL = _fact("cos_persona_refusal", list, "cosine per layer of the persona and refusal directions")
PERSONA_COEFF = _fact("persona_coeff", float, "the persona coefficient chosen on validation")
PERSONA_COEFF_RULE = _fact("persona_coeff_rule", str, "how the persona coefficient was chosen")
CALIBRATION = _fact("calibration", dict, "the reintroduction doses' calibration")
REFUSAL_SELECTED = _fact("refusal_selected", dict, "the refusal direction's chosen position and layer")
REFUSAL_TOKENS = _fact("refusal_tokens", dict, "the first tokens that mark a refusal (ids and text)")
SECONDS_LAST_SESSION = _fact("seconds_last_session", float, "wall seconds of the last session on this store")
PROFILE = _fact("time_profile", list, "seconds, tokens and rows per stage and unit kind, summed over sessions")

PAPER_FILTER = _family("paper_filter", dict, "protocol paper: replies generated and kept per pole of the contrast")
PROJECTION = _family("multiturn_projection", dict, "the persona projection at each probe's last token, per condition")
DRIFT = _family("multiturn_drift", dict, "projections at every turn's last token of the longest conversation, per form")


def is_declared(key: str) -> bool:
    """Whether ``key`` is a declared fact or a member of a declared family."""
    return key in FACTS or (key.partition(":")[0] in FAMILIES and ":" in key)
