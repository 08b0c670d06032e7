"""``Verdict``: what one rule concluded about one finding in one scope, with the numbers behind it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
OUTCOMES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
VERDICT_COLUMNS = (
    "finding",
    "scope",
    "outcome",
    "claim",
    "statistic",
    "effect",
    "ci_low",
    "ci_high",
    "p_value",
    "n",
    "detail",
    "conditions",
)


@dataclass
class Verdict:
    """Filled in by a rule as it goes (a rule starts inconclusive and says why it concludes more)."""

    finding: str
    scope: str
    outcome: str
    claim: str
    statistic: str = ""
    effect: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    n: int = 0
    detail: str = ""
    conditions: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, object]:
        """A row of verdicts.csv."""
        row: dict[str, object] = {k: getattr(self, k) for k in VERDICT_COLUMNS if k != "conditions"}
        for key in ("effect", "ci_low", "ci_high", "p_value"):
            value = getattr(self, key)
            row[key] = round(value, 4) if math.isfinite(value) else math.nan
        row["conditions"] = "; ".join(self.conditions)
        return row
