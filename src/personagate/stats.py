"""Paired statistics over prompts: every condition is scored on the SAME prompts, so conditions are compared
prompt by prompt (paired), which removes the prompt-to-prompt variance that an unpaired comparison would keep.

Outcomes are per-prompt values in [0, 1] (usually 1 = refused, 0 = did not). Exact tests come from
``scipy.stats``; the bootstrap uses a numpy ``Generator`` seeded by the caller, so results are reproducible.
Wilson intervals for single rates live in ``personagate.scoring.rates.wilson_interval``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

from personagate.errors import PersonagateError

Alternative = Literal["two-sided", "less", "greater"]
_ALTERNATIVES = ("two-sided", "less", "greater")
_BOOT_CHUNK_CELLS = 2_000_000  # resampled indices held in memory at once, whatever the number of prompts

__all__ = [
    "Equivalence",
    "HolmResult",
    "PairedDifference",
    "bootstrap_mean_ci",
    "empirical_p_value",
    "holm",
    "mcnemar_exact",
    "paired_difference",
    "tost_paired",
]


@dataclass(frozen=True)
class PairedDifference:
    """mean(a) - mean(b) with a paired percentile bootstrap CI and McNemar's discordant counts."""

    diff: float
    ci_low: float
    ci_high: float
    n: int
    b10: int  # prompts where a = 1 and b = 0
    b01: int  # prompts where a = 0 and b = 1
    confidence: float


@dataclass(frozen=True)
class Equivalence:
    """Result of a paired TOST: ``equivalent`` means |mean(a - b)| < margin was shown at level ``alpha``."""

    diff: float
    p_value: float
    equivalent: bool
    ci_low: float  # (1 - 2 * alpha) t interval of mean(a - b): inside (-margin, margin) iff equivalent
    ci_high: float
    margin: float
    alpha: float
    n: int


@dataclass(frozen=True)
class HolmResult:
    """One hypothesis after Holm-Bonferroni: its raw and adjusted p-values and whether it is rejected."""

    p_value: float
    adjusted: float
    reject: bool


def _values(x: Sequence[float] | np.ndarray, name: str, *, unit: bool) -> np.ndarray:
    """A non-empty, finite 1-D float array (within [0, 1] when ``unit``), or a PersonagateError saying why not."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PersonagateError(f"{name} must be a sequence of numbers ({exc})") from None
    if arr.ndim != 1:
        raise PersonagateError(f"{name} must be one-dimensional (one value per prompt), got shape {arr.shape}")
    if arr.size == 0:
        raise PersonagateError(f"{name} is empty: there is nothing to compute on")
    if not np.all(np.isfinite(arr)):
        raise PersonagateError(f"{name} contains NaN or infinite values")
    if unit and (arr.min() < 0.0 or arr.max() > 1.0):
        raise PersonagateError(f"{name} must hold per-prompt outcomes in [0, 1] (1 = refused)")
    return arr


def _pair(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both outcome vectors, checked to be scored on the same number of prompts (pairing needs that)."""
    av = _values(a, "a", unit=True)
    bv = _values(b, "b", unit=True)
    if av.size != bv.size:
        raise PersonagateError(
            f"a and b must be scored on the same prompts, but a has {av.size} values and b has {bv.size}"
        )
    return av, bv


def _check_boot(n_boot: int, confidence: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise PersonagateError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise PersonagateError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of ``values`` resampled with replacement, in chunks so memory stays bounded."""
    n = values.size
    rows = max(1, _BOOT_CHUNK_CELLS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def _percentile_ci(
    values: np.ndarray, n_boot: int, seed: int | np.random.Generator, confidence: float
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = _bootstrap_means(values, n_boot, rng)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _discordant(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """McNemar's off-diagonal counts; only prompts whose outcomes are exactly 0 or 1 can be discordant."""
    return int(np.sum((a == 1.0) & (b == 0.0))), int(np.sum((a == 0.0) & (b == 1.0)))


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 10000,
    seed: int | np.random.Generator = 0,
    confidence: float = 0.95,
) -> PairedDifference:
    """Difference in refusal rate mean(a) - mean(b) over the same prompts, with a paired percentile bootstrap CI.

    Each bootstrap replicate resamples prompt indices with replacement and uses the SAME indices for a and b,
    i.e. it resamples the per-prompt differences a_i - b_i: prompts that both conditions refuse (or both
    answer) add no noise, so the interval is much narrower than an unpaired one when a and b are correlated.
    ``b10``/``b01`` count prompts with (a, b) = (1, 0) / (0, 1); fractional outcomes never count as discordant.
    """
    av, bv = _pair(a, b)
    _check_boot(n_boot, confidence)
    d = av - bv
    low, high = _percentile_ci(d, n_boot, seed, confidence)
    b10, b01 = _discordant(av, bv)
    return PairedDifference(
        diff=float(d.mean()), ci_low=low, ci_high=high, n=int(d.size), b10=b10, b01=b01, confidence=confidence
    )


def mcnemar_exact(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alternative: Alternative = "two-sided"
) -> float:
    """Exact McNemar p-value: a binomial test of b10 successes in b10 + b01 discordant prompts at p = 0.5.

    Only discordant prompts carry information about which condition refuses more. ``"less"``: a refuses less
    often than b (b10 < b01); ``"greater"``: a refuses more often. With no discordant prompts, p = 1.0.
    Outcomes must be exactly 0 or 1.
    """
    if alternative not in _ALTERNATIVES:
        raise PersonagateError(f"alternative must be one of {', '.join(_ALTERNATIVES)}, got {alternative!r}")
    av, bv = _pair(a, b)
    if not (np.all((av == 0.0) | (av == 1.0)) and np.all((bv == 0.0) | (bv == 1.0))):
        raise PersonagateError("McNemar's test needs binary outcomes: every value of a and b must be 0 or 1")
    b10, b01 = _discordant(av, bv)
    if b10 + b01 == 0:
        return 1.0
    return float(sps.binomtest(k=b10, n=b10 + b01, p=0.5, alternative=alternative).pvalue)


def tost_paired(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, margin: float, alpha: float = 0.05
) -> Equivalence:
    """Paired equivalence test (TOST): is mean(a - b) within (-margin, +margin)?

    A non-significant difference test is not evidence of no effect; TOST makes "no effect" the alternative.
    Two one-sided one-sample t-tests on d_i = a_i - b_i reject H0_low: mean(d) <= -margin and
    H0_high: mean(d) >= +margin; p = max of the two, and ``equivalent`` = p < alpha, which matches the
    (1 - 2 * alpha) t interval lying inside (-margin, margin). The t-test treats the binary d_i as
    approximately normal in the mean, so it wants a reasonable number of prompts.

    Zero variance (all d_i equal, e.g. a == b on every prompt) leaves the t statistic undefined; then the
    difference is known without sampling noise within these prompts, so ``equivalent`` = |diff| < margin with
    p = 0.0 if so and 1.0 otherwise, and the interval is the single point (diff, diff).
    """
    av, bv = _pair(a, b)
    if not (isinstance(margin, (int, float, np.floating, np.integer)) and math.isfinite(margin) and margin > 0):
        raise PersonagateError(f"margin must be a positive number, got {margin!r}")
    if not 0.0 < alpha < 0.5:
        raise PersonagateError(f"alpha must be strictly between 0 and 0.5, got {alpha!r}")
    d = av - bv
    n = int(d.size)
    diff = float(d.mean())
    margin = float(margin)
    if np.all(d == d[0]):
        ok = abs(diff) < margin
        return Equivalence(diff, 0.0 if ok else 1.0, ok, diff, diff, margin, alpha, n)
    p_low = sps.ttest_1samp(d, popmean=-margin, alternative="greater").pvalue
    p_high = sps.ttest_1samp(d, popmean=margin, alternative="less").pvalue
    p = float(max(p_low, p_high))
    ci = sps.ttest_1samp(d, popmean=0.0).confidence_interval(confidence_level=1.0 - 2.0 * alpha)
    return Equivalence(diff, p, p < alpha, float(ci.low), float(ci.high), margin, alpha, n)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[HolmResult]:
    """Holm-Bonferroni step-down over a family of tests, in the input order.

    Controls the family-wise error rate like Bonferroni but rejects more: the i-th smallest p (1-based) is
    multiplied by m - i + 1, adjusted values are made monotone by a running maximum and capped at 1, and a
    hypothesis is rejected iff its adjusted p <= alpha.
    """
    if not 0.0 < alpha < 1.0:
        raise PersonagateError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    try:
        p = np.asarray(p_values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PersonagateError(f"p_values must be a sequence of numbers ({exc})") from None
    if p.ndim != 1:
        raise PersonagateError(f"p_values must be a flat sequence, got shape {p.shape}")
    if p.size == 0:
        return []
    if not np.all((p >= 0.0) & (p <= 1.0)):  # also false for NaN
        raise PersonagateError("every p-value must be a number in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = p[order] * np.arange(m, 0, -1)
    adjusted_sorted = np.minimum(np.maximum.accumulate(stepped), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return [HolmResult(float(pv), float(adj), bool(adj <= alpha)) for pv, adj in zip(p, adjusted, strict=True)]


def empirical_p_value(observed: float, null: Sequence[float] | np.ndarray, *, greater: bool = True) -> float:
    """Permutation-style p-value of ``observed`` against statistics from control runs (e.g. random directions).

    (1 + #{null >= observed}) / (1 + len(null)), or with <= when ``greater`` is False. The +1 counts the
    observed run as one draw under the null, so p is never 0 and stays valid with few control seeds.
    """
    if not math.isfinite(observed):
        raise PersonagateError(f"observed statistic must be finite, got {observed!r}")
    nv = _values(null, "null", unit=False)
    hits = int(np.sum(nv >= observed)) if greater else int(np.sum(nv <= observed))
    return (1 + hits) / (1 + nv.size)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 10000,
    seed: int | np.random.Generator = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Mean across prompts of real-valued per-prompt values (e.g. a layer's projection) and its percentile
    bootstrap CI, resampling prompts; returns (mean, ci_low, ci_high)."""
    v = _values(values, "values", unit=False)
    _check_boot(n_boot, confidence)
    low, high = _percentile_ci(v, n_boot, seed, confidence)
    return float(v.mean()), low, high


def share_restored(
    treated: Sequence[float] | np.ndarray,
    steered: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 10000,
    seed: int | np.random.Generator = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """The share of an effect a further intervention undoes, (mean(treated) - mean(steered)) /
    (mean(baseline) - mean(steered)), on the same prompts, with a percentile bootstrap CI that
    resamples prompts jointly for the three conditions (replicates whose effect is 0 are dropped).
    Returns (share, ci_low, ci_high); NaN when the effect itself is 0."""
    t = _values(treated, "treated", unit=False)
    s = _values(steered, "steered", unit=False)
    b = _values(baseline, "baseline", unit=False)
    if not len(t) == len(s) == len(b):
        raise PersonagateError(f"the three conditions must share their prompts; got {len(t)}, {len(s)}, {len(b)}")
    _check_boot(n_boot, confidence)
    effect = b.mean() - s.mean()
    if effect == 0:
        return math.nan, math.nan, math.nan
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    index = rng.integers(0, len(t), size=(n_boot, len(t)))
    denominators = b[index].mean(1) - s[index].mean(1)
    keep = denominators != 0
    shares = (t[index].mean(1) - s[index].mean(1))[keep] / denominators[keep]
    tail = (1 - confidence) / 2
    low, high = (float(x) for x in np.quantile(shares, [tail, 1 - tail])) if len(shares) else (math.nan, math.nan)
    return float((t.mean() - s.mean()) / effect), low, high


def paired_trend(
    columns: Sequence[Sequence[float]], *, decreasing: bool, n_resamples: int = 9999, seed: int = 0
) -> float:
    """One-sided p-value of a monotone trend across ordered conditions measured on the same units.

    ``columns[j][i]`` is unit ``i`` under the ``j``-th condition in order (e.g. refusal of prompt ``i``
    after ``k_j`` exchanges). The statistic is Page's weighted sum ``sum_j j * mean(columns[j])``;
    its null distribution comes from permuting each unit's values across the conditions
    (``scipy.stats.permutation_test``, ``permutation_type="samples"``: exact when the permutations
    are fewer than ``n_resamples``), which is valid for binary outcomes with many ties as for
    real-valued ones.
    """
    from scipy import stats as sps

    if len(columns) < 2:
        raise PersonagateError("a trend needs at least two ordered conditions")
    arrays = [_values(c, "values", unit=False) for c in columns]
    if len({a.size for a in arrays}) != 1 or arrays[0].size == 0:
        raise PersonagateError("every condition of a trend must be measured on the same, non-empty set of units")
    weights = np.arange(len(arrays), dtype=float)

    def weighted(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return sum(w * np.mean(s, axis=axis) for w, s in zip(weights, samples, strict=True))

    result = sps.permutation_test(
        arrays,
        weighted,
        permutation_type="samples",
        alternative="less" if decreasing else "greater",
        n_resamples=n_resamples,
        vectorized=True,
        random_state=seed,
    )
    return float(result.pvalue)
