"""``Verdict``: what one rule concluded about one finding on one set of evidence, with the numbers
behind it, the reason when it could not conclude, and the power its test had to conclude.

A rule fills a ``Draft`` as it goes (it starts inconclusive and says why it concludes more) and the
registry seals it into a frozen ``Verdict``. What is decided after the rule (the sensitivity analysis,
a prerequisite, the minimum n) is an ``Amendment``: its own value, applied by ``Verdict.amended``, so
that a verdict is never edited in place once its rule returned.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"


class Reason(StrEnum):
    """Why a verdict is inconclusive (its ``reason`` column), in words a reader can act on."""

    NONE = ""
    UNDERPOWERED = "underpowered"
    STRADDLES = "straddles the margin"
    PREREQUISITE = "prerequisite not met"
    INCOHERENT_ARM = "incoherent arm"
    OVERSHOOT = "overshoot"
    FEW_SEEDS = "too few seeds"
    NOT_MEASURED = "not measured"
    SENSITIVITY = "incoherence changes the outcome"
    BLIND_MODE = "measured by the first token only"


REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE
OUTCOMES = tuple(Outcome)
UNDERPOWERED, STRADDLES, PREREQUISITE = Reason.UNDERPOWERED, Reason.STRADDLES, Reason.PREREQUISITE
INCOHERENT_ARM, OVERSHOOT, FEW_SEEDS = Reason.INCOHERENT_ARM, Reason.OVERSHOOT, Reason.FEW_SEEDS
NOT_MEASURED, SENSITIVITY, BLIND_MODE = Reason.NOT_MEASURED, Reason.SENSITIVITY, Reason.BLIND_MODE
REASONS = tuple(r for r in Reason if r is not Reason.NONE)


@dataclass(frozen=True)
class EvidenceId:
    """Which set of verdicts a verdict belongs to: the main one (``resample`` None) or the robustness
    set of one resample of the directions, measured in ``mode``. Written as text in verdicts.csv."""

    resample: int | None = None
    mode: str = ""

    @property
    def is_main(self) -> bool:
        return self.resample is None

    def __str__(self) -> str:
        return "main" if self.is_main else f"resample {self.resample} ({self.mode})"


MAIN = EvidenceId()

VERDICT_COLUMNS = (
    "finding",
    "kind",
    "scope",
    "outcome",
    "reason",
    "claim",
    "statistic",
    "effect",
    "ci_low",
    "ci_high",
    "p_value",
    "n",
    "excluded",
    "power",
    "detectable",
    "detail",
    "conditions",
)


@dataclass(frozen=True)
class Amendment:
    """A decision taken after the rule returned: make the verdict inconclusive for ``reason`` (unless it
    already is for another), note ``detail``; ``replace_reason`` swaps a reason the amendment explains
    better (too few prompts is what straddling the margin looks like)."""

    reason: Reason = Reason.NONE
    detail: str = ""
    note: str = ""  # appended to the detail without changing the outcome
    replace_reason: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """``kind``: whether the row tests the paper's claim as stated (``as claimed``) or its specificity
    (``specific``); ``statistic``: the test behind ``p_value`` and the interval; ``excluded``: prompt
    pairs left out because a reply was incoherent; ``power``: the test's power at the declared margin
    and expected discordance for this n; ``detectable``: the smallest effect it finds with power 0.8.
    """

    finding: str
    scope: EvidenceId
    outcome: Outcome
    claim: str
    kind: str = "as claimed"
    reason: Reason = Reason.NONE
    statistic: str = ""
    effect: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    n: int = 0
    excluded: int = 0
    power: float = math.nan
    detectable: float = math.nan
    detail: str = ""
    conditions: tuple[str, ...] = ()
    table: tuple[dict[str, object], ...] = ()  # a rule's per-condition table (report)

    def amended(self, amendment: Amendment) -> Verdict:
        """A new verdict with ``amendment`` applied (the first reason given is kept)."""
        detail = self.detail
        if amendment.note:
            detail = f"{detail}; {amendment.note}" if detail else amendment.note
        if not amendment.reason:
            return dataclasses.replace(self, detail=detail)
        reason = self.reason or amendment.reason
        if reason in amendment.replace_reason:
            reason = amendment.reason
        if amendment.detail:
            detail = f"{amendment.detail}; {detail}" if detail else amendment.detail
        return dataclasses.replace(self, outcome=INCONCLUSIVE, reason=reason, detail=detail)

    def of_kind(self, kind: str) -> Verdict:
        return dataclasses.replace(self, kind=kind)

    def as_row(self) -> dict[str, object]:
        """A row of verdicts.csv (plain text and numbers)."""
        row: dict[str, object] = {k: getattr(self, k) for k in VERDICT_COLUMNS if k != "conditions"}
        row["scope"], row["outcome"], row["reason"] = str(self.scope), str(self.outcome), str(self.reason)
        for key in ("effect", "ci_low", "ci_high", "p_value", "power", "detectable"):
            value = getattr(self, key)
            row[key] = round(value, 4) if math.isfinite(value) else math.nan
        row["conditions"] = "; ".join(self.conditions)
        return row


@dataclass
class Draft:
    """A verdict while its rule is still deciding; ``seal`` gives the frozen ``Verdict``."""

    finding: str
    scope: EvidenceId
    claim: str
    outcome: Outcome = INCONCLUSIVE
    reason: Reason = Reason.NONE
    statistic: str = ""
    effect: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    n: int = 0
    excluded: int = 0
    power: float = math.nan
    detectable: float = math.nan
    detail: str = ""
    conditions: list[str] = field(default_factory=list)
    table: list[dict[str, object]] = field(default_factory=list)

    def inconclusive(self, reason: Reason, detail: str = "") -> Draft:
        """Mark it inconclusive for ``reason`` (the first reason given is kept), prefixing ``detail``."""
        self.outcome = INCONCLUSIVE
        self.reason = self.reason or reason
        if detail:
            self.detail = f"{detail}; {self.detail}" if self.detail else detail
        return self

    def seal(self) -> Verdict:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["conditions"], values["table"] = tuple(self.conditions), tuple(self.table)
        return Verdict(**values)
