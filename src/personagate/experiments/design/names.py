"""The names every stage shares, written once: condition groups, roles, measurement modes, prompt sets
and outcomes (no torch behind them).

Groups and roles are string enums: a member *is* its value (``Role.BASELINE == "baseline"``), prints
as it, and is stored and exported as it, so the store, the CSV exports and ``study.toml`` keep plain
words while the code never spells one twice.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from personagate.errors import PersonagateError


class Name(str, Enum):
    """A str enum that prints as its value (``f"{Role.BASELINE}"`` is ``baseline`` on every Python)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def parse(cls, value: str, where: str) -> Name:
        """The member named ``value``, or the package's one-line error listing the known ones."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise PersonagateError(f"{where}: unknown {cls.__name__.lower()} {value!r}; use one of {known}") from None


class Group(Name):
    """The arms of the protocol: a plot or a table section each."""

    BASELINE = "baseline"
    REFUSAL_ABLATED = "refusal_ablated"
    PERSONA_SWEEP = "persona_sweep"  # the coefficient sweep, on the validation prompts
    PERSONA = "persona"  # persona steering at the chosen coefficient
    SANITY = "sanity"  # the injected vector removed again at the injection site: must equal baseline
    STYLE = "style"  # non-compliant personas injected at the same norm (specificity of finding 1)
    RANDOM_ADD = "random_add"  # random vectors added at the persona vector's norm
    NATURAL = "natural"  # the compliant system prompts themselves, no vector
    REFERENCE = "reference"  # a headline condition measured the way the sweeps are
    REINTRODUCE = "reintroduce"  # refusal direction added back: layer x dose
    PERSONA_WINDOW = "persona_window"  # persona steering, persona projected out of a window
    PROJECTION_ONLY = "projection_only"  # the same projection on the unsteered model
    NATURAL_WINDOW = "natural_window"  # natural persona, persona projected out of a window
    RANDOM_WINDOW = "random_window"  # persona steering, a matched random direction projected out
    STYLE_WINDOW = "style_window"  # persona steering, a style persona's direction projected out (named nulls)
    NATURAL_RANDOM_WINDOW = "natural_random_window"
    CALIBRATION = "calibration"  # the refusal direction added to the unsteered model on harmless validation prompts
    BENIGN = "benign"  # protocol paper: arms on benign prompts (their coherence check)
    POSITIVE_CONTROL = "positive_control"  # the injected vector itself projected out of the late window
    MEDIATION = "mediation"  # refusal's projection clamped to its baseline value in a window
    MULTITURN = "multiturn"  # the persona built over k prior exchanges, then a harmful probe


class Role(Name):
    """What a verdict rule (a ``[[findings]]`` entry) and the report refer to a condition by."""

    BASELINE = "baseline"
    REFUSAL_ABLATED = "refusal_ablated"
    PERSONA_SWEEP = "persona_sweep"
    PERSONA = "persona"
    SANITY = "sanity"
    STYLE = "style"
    RANDOM_ADD = "random_add"
    NATURAL = "natural"
    REINTRODUCE = "reintroduce"
    PERSONA_WINDOW = "persona_window"
    PERSONA_LATE_WINDOW = "persona_late_window"
    PROJECTION_ONLY = "projection_only"
    PROJECTION_ONLY_LATE = "projection_only_late"
    NATURAL_WINDOW = "natural_window"
    NATURAL_LATE_WINDOW = "natural_late_window"
    RANDOM_WINDOW = "random_window"
    RANDOM_LATE_WINDOW = "random_late_window"
    STYLE_LATE_WINDOW = "style_late_window"
    SINGLE_RANDOM_LATE_WINDOW = "single_random_late_window"  # protocol paper: their one random direction
    REINTRODUCE_KNOCKOUT = "reintroduce_knockout"  # protocol paper: early refusal added back, then the knockout
    NATURAL_RANDOM_LATE_WINDOW = "natural_random_late_window"
    POSITIVE_CONTROL = "positive_control"
    MEDIATION = "mediation"
    CALIBRATION = "calibration"
    MULTITURN = "multiturn"  # a conversation of k exchanges, no intervention (axis = k)
    MULTITURN_KNOCKOUT = "multiturn_knockout"  # the persona projected out of the late window at the probe turn
    MULTITURN_NULL = "multiturn_null"  # a matched random direction projected out instead
    MULTITURN_STEER_ALL = "multiturn_steer_all"  # persona steering on every turn of the conversation
    MULTITURN_STEER_PROBE = "multiturn_steer_probe"  # persona steering on the probe turn only


# generate: the reply, labelled three ways; screen: its first few tokens, refuse or not by the
# detector (validated against generate: benchmarks/RESULTS.md); first_token: the refusal-token score.
Mode = Literal["generate", "screen", "first_token"]
MODES: tuple[Mode, ...] = ("generate", "screen", "first_token")

# Prompt sets a condition is measured on.
HARMFUL = "harmful"  # the test split
HARMFUL_VAL = "harmful_val"  # the validation split: choices only
HARMLESS_VAL = "harmless_val"  # harmless validation prompts: the reintroduction doses' calibration
BENIGN = "benign"  # protocol paper: benign prompts for its coherence arm
SAFE = "safe"  # over-refusal
NEUTRAL = "neutral"  # coherence guard passages

# Outcomes of a generated reply.
REFUSE, COMPLY, INCOHERENT = "refuse", "comply", "incoherent"

# The headline arms (by role) that a spec may have generated rather than screened, in report order.
HEADLINE_ROLES: tuple[Role, ...] = (
    Role.BASELINE,
    Role.REFUSAL_ABLATED,
    Role.PERSONA,
    Role.STYLE,
    Role.RANDOM_ADD,
    Role.NATURAL,
    Role.PERSONA_LATE_WINDOW,
    Role.PROJECTION_ONLY_LATE,
    Role.NATURAL_LATE_WINDOW,
    Role.POSITIVE_CONTROL,
)
