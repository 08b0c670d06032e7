"""Power of the paired tests the verdicts use, before a run: for n prompts, an expected discordance
(the share of prompts on which two conditions disagree) and alpha, how likely each test is to decide,
and the smallest effect it detects with power 0.8.

- ``mcnemar_power``: the exact one-sided McNemar test, summed exactly over the binomial laws (scipy).
- ``tost_power``: paired TOST on binary differences, with the t critical value and a normal law for
  the mean difference (variance ``discordance - effect**2``), the approximation the test itself makes.
- ``bar_power``: a point estimate clearing a fixed bar (the empirical null's 95th percentile plus the
  margin), the estimate normal with the paired standard error.

Alpha may be divided by a family size first (Bonferroni, the worst step of Holm).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats as sps

from personagate.errors import PersonagateError

TARGET = 0.8


def _check(n: int, discordance: float, alpha: float) -> None:
    if n < 1:
        raise PersonagateError(f"power needs at least one prompt, got n = {n}")
    if not 0 < discordance <= 1:
        raise PersonagateError(f"discordance is a share of prompts in (0, 1], got {discordance}")
    if not 0 < alpha < 1:
        raise PersonagateError(f"alpha must be in (0, 1), got {alpha}")


def mcnemar_power(n: int, discordance: float, effect: float, alpha: float) -> float:
    """Power of the one-sided exact McNemar test to find a difference in refusal rate of ``effect``
    (its sign gives the direction; |effect| <= discordance) on ``n`` paired prompts."""
    _check(n, discordance, alpha)
    effect = abs(effect)
    if effect > discordance:
        raise PersonagateError(f"an effect of {effect} needs at least that share of discordant prompts")
    discordant = np.arange(n + 1)
    weights = sps.binom.pmf(discordant, n, discordance)
    # the largest count c with P(X <= c | D, 1/2) <= alpha rejects; -1 when even 0 does not
    cutoffs = sps.binom.ppf(alpha, discordant, 0.5).astype(int)
    cutoffs = np.where(sps.binom.cdf(cutoffs, discordant, 0.5) <= alpha, cutoffs, cutoffs - 1)
    up = (discordance - effect) / (2 * discordance)  # P(a discordant prompt is one where a refuses and b not)
    reject = np.where(cutoffs >= 0, sps.binom.cdf(cutoffs, discordant, up), 0.0)
    return float(np.sum(weights * reject))


def tost_power(n: int, discordance: float, margin: float, alpha: float, effect: float = 0.0) -> float:
    """Power of paired TOST to show |difference| < ``margin`` when the true difference is ``effect``."""
    _check(n, discordance, alpha)
    if n < 2:
        return 0.0
    variance = max(discordance - effect * effect, 1e-12)
    se = math.sqrt(variance / n)
    t = float(sps.t.ppf(1 - alpha, n - 1))
    upper = (margin - t * se - effect) / se
    lower = (-margin + t * se - effect) / se
    return float(max(0.0, sps.norm.cdf(upper) - sps.norm.cdf(lower)))


def bar_power(n: int, discordance: float, excess: float) -> float:
    """Power of a paired estimate to clear a fixed bar it truly exceeds by ``excess`` (one-sided, at the
    point estimate: the rule asks the estimate itself to clear the bar)."""
    _check(n, discordance, 0.5)
    se = math.sqrt(discordance / n)
    return float(sps.norm.cdf(excess / se))


def smallest_detectable(power: Callable[[float], float], upper: float, target: float = TARGET) -> float:
    """The smallest value in (0, upper] at which ``power(value)`` reaches ``target`` (power increasing in
    it), found by bisection; NaN when even ``upper`` does not reach it."""
    if power(upper) < target:
        return math.nan
    low, high = 0.0, upper
    for _ in range(40):
        middle = (low + high) / 2
        if power(middle) >= target:
            high = middle
        else:
            low = middle
    return high


def mcnemar_detectable(n: int, discordance: float, alpha: float) -> float:
    """The smallest difference in refusal rate the one-sided McNemar test finds with power 0.8."""
    return smallest_detectable(lambda e: mcnemar_power(n, discordance, e, alpha), discordance)


def tost_detectable(n: int, discordance: float, alpha: float) -> float:
    """The smallest margin within which paired TOST shows equivalence (true difference 0) with power 0.8."""
    return smallest_detectable(lambda m: tost_power(n, discordance, m, alpha), 1.0)


def bar_detectable(n: int, discordance: float) -> float:
    """How far above a bar the true value must lie for the estimate to clear it with power 0.8."""
    return float(sps.norm.ppf(TARGET) * math.sqrt(discordance / n))
