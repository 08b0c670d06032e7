"""What the run store holds, typed: one ``Row`` per (condition, prompt) measurement, and one
``StoredCondition`` per arm, with every field a verdict, a table or a plot reads as a typed attribute.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from personagate.errors import PersonagateError
from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.framing import DEFAULT_FRAMING, Framing
from personagate.experiments.design.names import HARMFUL, MODES, Group, Mode, Role
from personagate.interventions.program import program_identity

EMPTY_PROGRAM = program_identity({"ops": []})  # the identity of no intervention (the baseline's program)
# The text of a row whose activations under its program were not finite (NaN or inf): no reply, labelled
# incoherent, and the condition it belongs to cannot carry a verdict.
NONFINITE_TEXT = "[no reply: the activations under this program were not finite]"
_LEGACY_BASELINE = "no intervention"


@dataclass(frozen=True)
class Row:
    """One (condition, prompt) measurement.

    A generated reply has ``text``, the detector's ``refusal`` flag, its three-way ``label``
    (refuse / comply / incoherent), ``score`` (the first-token refusal margin, free from the
    prefill) and ``loglik`` (its mean per-token log-likelihood under the unsteered model). A
    first-token row has ``score`` and ``refusal`` (score > 0: greedy decoding would start with a
    refusal token) only. A ``neutral`` row (coherence guard)
    holds in ``loglik`` the mean per-token log-likelihood of a neutral passage under the condition.
    """

    condition: str
    prompt_set: str
    prompt_id: int
    text: str | None = None
    refusal: int | None = None
    label: str | None = None
    score: float | None = None
    loglik: float | None = None
    judge: int | None = None  # the optional judge's refusal flag for a generated reply


@dataclass(frozen=True)
class StoredCondition:
    """One arm as recorded in a run: its design (group, role, mode, prompt set, system, resample), its
    program's table form and identity, and where it sits on its sweep (``axis``, ``seed``, ``dose``,
    ``window``). ``identity`` (a hash of the table form, see ``Program.identity``) is what says two
    conditions run the same program; ``description`` is only its words."""

    name: str
    group: Group
    role: Role
    mode: Mode
    description: str
    identity: str
    program: Mapping[str, Any] = field(default_factory=lambda: {"ops": []}, compare=False)
    position: int = 0
    prompts: str = HARMFUL
    framing: Framing = DEFAULT_FRAMING
    resample: int = 0
    axis: float | None = None
    seed: int | None = None
    dose: float | None = None
    window: tuple[int, int] | None = None
    over_refusal: bool = False

    @classmethod
    def of(cls, condition: Condition, position: int, n_layers: int | None) -> StoredCondition:
        """The record of a laid-out condition (its description resolved against the model's depth)."""
        table = condition.ops.to_table()
        return cls(
            name=condition.name,
            group=condition.group,
            role=condition.role,
            mode=condition.mode,
            description=condition.describe(n_layers),
            identity=program_identity(table),
            program=table,
            position=position,
            prompts=condition.prompts,
            framing=condition.framing,
            resample=condition.resample,
            axis=condition.axis,
            seed=condition.seed,
            dose=condition.dose,
            window=condition.window,
            over_refusal=condition.over_refusal,
        )

    def meta(self) -> str:
        """The JSON the store keeps beside its columns (name, position, group, axis, seed, description, mode)."""
        return json.dumps(
            {
                "role": self.role.value,
                "prompts": self.prompts,
                "framing": self.framing.to_json(),
                "resample": self.resample,
                "dose": self.dose,
                "window": list(self.window) if self.window else None,
                "over_refusal": self.over_refusal,
                "program": self.program,
                "identity": self.identity,
            }
        )

    @classmethod
    def from_columns(
        cls,
        name: str,
        position: int,
        group: str,
        axis: float | None,
        seed: int | None,
        description: str,
        mode: str,
        meta: str,
    ) -> StoredCondition:
        """A record from the store's columns; a value no version of personagate writes is an error."""
        where = f"condition {name!r} in the run store"
        try:
            extra = json.loads(meta)
        except ValueError:
            raise PersonagateError(f"{where} has unreadable metadata; the store was edited or damaged") from None
        if not isinstance(extra, dict) or mode not in MODES:
            raise PersonagateError(f"{where} is not a condition personagate wrote (mode {mode!r})")
        window = extra.get("window")
        program = extra.get("program")
        # stores written before programs were recorded: their identity can only come from their words
        identity = extra.get("identity") or (
            EMPTY_PROGRAM if description == _LEGACY_BASELINE else "words:" + program_identity({"words": description})
        )
        return cls(
            name=name,
            group=Group.parse(group, where),  # type: ignore[arg-type]
            role=Role.parse(extra.get("role") or group, where),  # type: ignore[arg-type]
            mode=mode,  # type: ignore[arg-type]
            description=description,
            identity=identity,
            program=program if isinstance(program, dict) else {"ops": []},
            position=position,
            prompts=str(extra.get("prompts", HARMFUL)),
            framing=(
                Framing.from_json(extra["framing"], where)
                if "framing" in extra
                else Framing.from_legacy(str(extra.get("system", "default")), where)
            ),
            resample=int(extra.get("resample", 0)),
            axis=axis,
            seed=seed,
            dose=extra.get("dose"),
            window=(int(window[0]), int(window[1])) if window else None,
            over_refusal=bool(extra.get("over_refusal", False)),
        )

    def columns(self) -> tuple[Any, ...]:
        """The store's columns, in its order."""
        return (
            self.name,
            self.position,
            self.group.value,
            self.axis,
            self.seed,
            self.description,
            self.mode,
            self.meta(),
        )
