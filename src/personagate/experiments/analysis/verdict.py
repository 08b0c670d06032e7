"""``Verdict``: what one rule concluded about one finding in one scope, with the numbers behind it,
the reason when it could not conclude, and the power its test had to conclude."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
OUTCOMES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

# Why a verdict is inconclusive (its ``reason`` column), in words a reader can act on.
UNDERPOWERED = "underpowered"
STRADDLES = "straddles the margin"
PREREQUISITE = "prerequisite not met"
INCOHERENT_ARM = "incoherent arm"
OVERSHOOT = "overshoot"
FEW_SEEDS = "too few seeds"
NOT_MEASURED = "not measured"
SENSITIVITY = "incoherence changes the outcome"
BLIND_MODE = "measured by the first token only"
REASONS = (UNDERPOWERED, STRADDLES, PREREQUISITE, INCOHERENT_ARM, OVERSHOOT, FEW_SEEDS, NOT_MEASURED, SENSITIVITY)

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


@dataclass
class Verdict:
    """Filled in by a rule as it goes (a rule starts inconclusive and says why it concludes more).

    ``kind``: whether the row tests the paper's claim as stated (``as claimed``) or its specificity
    (``specific``); ``statistic``: the test behind ``p_value`` and the interval; ``excluded``: prompt
    pairs left out because a reply was incoherent; ``power``: the test's power at the declared margin
    and expected discordance for this n; ``detectable``: the smallest effect it finds with power 0.8.
    """

    finding: str
    scope: str
    outcome: str
    claim: str
    kind: str = "as claimed"
    reason: str = ""
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
    table: list[dict[str, object]] = field(default_factory=list)  # a rule's per-condition table (report)

    def inconclusive(self, reason: str, detail: str = "") -> Verdict:
        """Mark it inconclusive for ``reason`` (the first reason given is kept), prefixing ``detail``."""
        self.outcome = INCONCLUSIVE
        self.reason = self.reason or reason
        if detail:
            self.detail = f"{detail}; {self.detail}" if self.detail else detail
        return self

    def as_row(self) -> dict[str, object]:
        """A row of verdicts.csv."""
        row: dict[str, object] = {k: getattr(self, k) for k in VERDICT_COLUMNS if k != "conditions"}
        for key in ("effect", "ci_low", "ci_high", "p_value", "power", "detectable"):
            value = getattr(self, key)
            row[key] = round(value, 4) if math.isfinite(value) else math.nan
        row["conditions"] = "; ".join(self.conditions)
        return row
