"""The paired comparisons the rules share, each with its power at the spec's margin and expected
discordance: one arm below (or above) another by the margin (exact McNemar + paired bootstrap CI),
and two arms equal within the margin (paired TOST)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from personagate.power import mcnemar_detectable, mcnemar_power, tost_detectable, tost_power
from personagate.stats import Equivalence, PairedDifference, mcnemar_exact, paired_difference, tost_paired

if TYPE_CHECKING:  # rules import this module, and the spec imports the rules: no run-time tie to the scope
    from personagate.experiments.analysis.evidence import Evidence, Pairs
    from personagate.experiments.storage.records import StoredCondition


@dataclass(frozen=True)
class Shift:
    """mean(a) - mean(b) on paired prompts, the one-sided exact McNemar p in the tested direction."""

    difference: PairedDifference
    p_value: float
    pairs: Pairs
    power: float
    detectable: float

    @property
    def diff(self) -> float:
        return self.difference.diff


def shift(
    scope: Evidence, a: StoredCondition, b: StoredCondition, direction: str, alpha: float | None = None
) -> Shift | None:
    """Is ``a`` ``"below"`` / ``"above"`` ``b``? ``alpha`` (default the spec's) sets the power's level;
    None when the two share no coherent prompt."""
    s = scope.spec.verdicts
    pairs = scope.pairs(a, b)
    if not pairs.n:
        return None
    x, y = pairs.columns
    level = s.alpha if alpha is None else alpha
    difference = paired_difference(x, y, n_boot=s.bootstrap, seed=s.seed)
    p = mcnemar_exact(x, y, alternative="less" if direction == "below" else "greater")
    n = difference.n
    margin = min(s.margin, s.expected_discordance)
    return Shift(
        difference,
        p,
        pairs,
        mcnemar_power(n, s.expected_discordance, margin, level),
        mcnemar_detectable(n, s.expected_discordance, level),
    )


@dataclass(frozen=True)
class Same:
    """Paired TOST of a against b within the spec's margin."""

    test: Equivalence
    pairs: Pairs
    power: float
    detectable: float


def same(scope: Evidence, a: StoredCondition, b: StoredCondition, alpha: float | None = None) -> Same | None:
    """None when the two share no coherent prompt."""
    s = scope.spec.verdicts
    level = s.alpha if alpha is None else alpha
    pairs = scope.pairs(a, b)
    if not pairs.n:
        return None
    x, y = pairs.columns
    test = tost_paired(x, y, s.margin, level)
    n = test.n
    return Same(
        test,
        pairs,
        tost_power(n, s.expected_discordance, s.margin, level),
        tost_detectable(n, s.expected_discordance, level),
    )


def rates(x: list[int], y: list[int]) -> str:
    return f"refusal {sum(x) / len(x):.1%} vs {sum(y) / len(y):.1%}" if x else "no shared coherent prompts"
