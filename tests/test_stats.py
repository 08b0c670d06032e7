"""Paired statistics over prompts, checked against values computed by hand (derivations in the comments)."""

from __future__ import annotations

import ast
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from personagate.errors import PersonagateError
from personagate.stats import (
    bootstrap_mean_ci,
    empirical_p_value,
    holm,
    mcnemar_exact,
    paired_difference,
    tost_paired,
)

STATS_SOURCE = Path(__file__).resolve().parents[1] / "src" / "personagate" / "stats.py"


def pairs(n11: int, n10: int, n01: int, n00: int) -> tuple[list[int], list[int]]:
    """Outcome vectors with the given 2x2 table of (a, b) counts."""
    a = [1] * n11 + [1] * n10 + [0] * n01 + [0] * n00
    b = [1] * n11 + [0] * n10 + [1] * n01 + [0] * n00
    return a, b


# --- McNemar -----------------------------------------------------------------------------------------------


def test_mcnemar_exact_known_values():
    a, b = pairs(n11=7, n10=10, n01=2, n00=5)
    # 12 discordant prompts, X ~ Binom(12, 1/2), x = b10 = 10.
    # P(X <= 2) = (C(12,0) + C(12,1) + C(12,2)) / 2^12 = (1 + 12 + 66) / 4096 = 79 / 4096.
    # two-sided (symmetric at p = 1/2): 2 * 79 / 4096 = 158 / 4096 = 0.03857421875
    assert mcnemar_exact(a, b) == pytest.approx(0.03857421875, abs=1e-15)
    # greater (a refuses more): P(X >= 10) = P(X <= 2) = 79 / 4096 = 0.019287109375
    assert mcnemar_exact(a, b, alternative="greater") == pytest.approx(0.019287109375, abs=1e-15)
    # less (a refuses less): P(X <= 10) = 1 - P(X >= 11) = 1 - (12 + 1) / 4096 = 4083 / 4096
    assert mcnemar_exact(a, b, alternative="less") == pytest.approx(4083 / 4096, abs=1e-15)


def test_mcnemar_other_direction_and_small_count():
    # b10 = 0, b01 = 5: two-sided 2 * P(Binom(5, 1/2) = 0) = 2 / 32 = 0.0625; "less" is 1/32 = 0.03125.
    a, b = pairs(n11=3, n10=0, n01=5, n00=4)
    assert mcnemar_exact(a, b) == pytest.approx(0.0625, abs=1e-15)
    assert mcnemar_exact(a, b, alternative="less") == pytest.approx(0.03125, abs=1e-15)
    assert mcnemar_exact(a, b, alternative="greater") == pytest.approx(1.0, abs=1e-15)
    # swapping the conditions swaps the one-sided alternatives
    assert mcnemar_exact(b, a, alternative="greater") == pytest.approx(0.03125, abs=1e-15)


def test_mcnemar_ignores_concordant_prompts():
    # Only discordant prompts carry information: adding prompts both refuse (or both answer) changes nothing.
    few = pairs(n11=0, n10=10, n01=2, n00=0)
    many = pairs(n11=500, n10=10, n01=2, n00=300)
    assert mcnemar_exact(*many) == pytest.approx(mcnemar_exact(*few), abs=1e-15)
    assert mcnemar_exact(*many) == pytest.approx(0.03857421875, abs=1e-15)


def test_mcnemar_no_discordant_pairs_is_one():
    a, b = pairs(n11=4, n10=0, n01=0, n00=6)
    for alternative in ("two-sided", "less", "greater"):
        assert mcnemar_exact(a, b, alternative=alternative) == 1.0


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([1, 0, 0.5], [0, 0, 1], {}, "binary"),
        ([1, 0], [0, 1], {"alternative": "bigger"}, "alternative"),
        ([1, 0, 1], [0, 1], {}, "same prompts"),
        ([], [], {}, "empty"),
    ],
)
def test_mcnemar_bad_inputs(a, b, kwargs, match):
    with pytest.raises(PersonagateError, match=match):
        mcnemar_exact(a, b, **kwargs)


# --- paired bootstrap of a difference ----------------------------------------------------------------------


def test_paired_difference_point_estimate_and_counts():
    a, b = pairs(n11=7, n10=10, n01=2, n00=5)  # n = 24, mean(a) = 17/24, mean(b) = 9/24
    result = paired_difference(a, b, n_boot=200)
    assert result.diff == pytest.approx(8 / 24)
    assert (result.n, result.b10, result.b01) == (24, 10, 2)
    assert result.ci_low <= result.diff <= result.ci_high
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.diff = 0.0  # type: ignore[misc]


def test_paired_difference_fractional_outcomes_are_never_discordant():
    result = paired_difference([1.0, 0.5, 0.0, 1.0], [0.0, 0.0, 0.5, 1.0], n_boot=100)
    assert result.diff == pytest.approx((1.0 + 0.5 - 0.5 + 0.0) / 4)
    assert (result.b10, result.b01) == (1, 0)


def test_paired_bootstrap_has_no_width_when_conditions_agree_on_every_prompt():
    # a == b prompt by prompt: every paired replicate has difference exactly 0. An unpaired bootstrap
    # (independent indices for a and b) would give a wide interval here, since mean(a) itself varies.
    a = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0] * 5
    result = paired_difference(a, list(a), n_boot=2000, seed=3)
    assert (result.diff, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)


def test_pairing_narrows_the_interval_for_correlated_conditions():
    # 200 prompts, 100 refused under both conditions, 15 refused only under a, 85 refused by neither:
    # a and b are strongly correlated. Var(mean d) = Var(a) + Var(b) - 2 Cov(a, b) is far below the
    # unpaired Var(a) + Var(b), so the paired interval must be clearly narrower.
    a, b = pairs(n11=100, n10=15, n01=0, n00=85)
    av, bv = np.asarray(a, float), np.asarray(b, float)
    paired = paired_difference(a, b, n_boot=4000, seed=11)

    rng = np.random.default_rng(12)  # reference unpaired bootstrap: independent indices for a and b
    ia = rng.integers(0, av.size, size=(4000, av.size))
    ib = rng.integers(0, bv.size, size=(4000, bv.size))
    unpaired = av[ia].mean(axis=1) - bv[ib].mean(axis=1)
    unpaired_width = np.quantile(unpaired, 0.975) - np.quantile(unpaired, 0.025)

    paired_width = paired.ci_high - paired.ci_low
    # Normal-theory widths: paired 2*1.96*sqrt(0.075*0.925/200) ~ 0.073, unpaired ~ 2*1.96*0.0496 ~ 0.194.
    assert paired_width < 0.5 * unpaired_width
    assert paired_width == pytest.approx(2 * 1.959964 * math.sqrt(0.075 * 0.925 / 200), rel=0.15)


def test_paired_bootstrap_matches_normal_theory_and_contains_true_difference():
    # Simulated study with a known true difference: b refuses with prob 0.3; a refuses whenever b does and
    # on another 20% of prompts (true diff = 0.7 * 0.2 = 0.14). With n = 400 the percentile interval must be
    # close to mean(d) +- 1.96 * sd(d) / sqrt(n) and (for this fixed sample) contain 0.14.
    rng = np.random.default_rng(2024)
    b = (rng.random(400) < 0.3).astype(int)
    a = np.where(b == 1, 1, (rng.random(400) < 0.2).astype(int))
    d = a - b
    half = 1.959964 * d.std() / math.sqrt(d.size)
    result = paired_difference(a, b, n_boot=10000, seed=5)
    assert result.diff == pytest.approx(d.mean())
    assert result.ci_low == pytest.approx(d.mean() - half, abs=0.008)
    assert result.ci_high == pytest.approx(d.mean() + half, abs=0.008)
    assert result.ci_low < 0.14 < result.ci_high


def test_paired_bootstrap_coverage_is_near_nominal():
    # 200 simulated studies (60 correlated prompts, true diff 0.7 * 0.25 = 0.175): a 95% interval must cover
    # the truth in roughly 95% of them. Too narrow (wrong scale) or unpaired (over-covers, ~100%) both fail.
    rng = np.random.default_rng(7)
    covered = 0
    for rep in range(200):
        b = (rng.random(60) < 0.3).astype(int)
        a = np.where(b == 1, 1, (rng.random(60) < 0.25).astype(int))
        result = paired_difference(a, b, n_boot=1000, seed=rep)
        covered += result.ci_low <= 0.175 <= result.ci_high
    assert 0.88 <= covered / 200 <= 0.985


def test_paired_bootstrap_is_reproducible_and_depends_on_seed():
    # fractional outcomes (e.g. a judge's score): with 0/1 outcomes the quantiles sit on a 1/n grid and two
    # seeds often land on the same grid points, which would hide a seed that is ignored
    rng = np.random.default_rng(0)
    b = rng.random(100)
    a = np.clip(b + rng.normal(0.05, 0.1, size=100), 0.0, 1.0)
    first = paired_difference(a, b, n_boot=2000, seed=1)
    assert paired_difference(a, b, n_boot=2000, seed=1) == first
    other = paired_difference(a, b, n_boot=2000, seed=2)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)
    assert other.diff == first.diff
    # a Generator is accepted in place of an integer seed and gives the same stream
    assert paired_difference(a, b, n_boot=2000, seed=np.random.default_rng(1)) == first


def test_paired_bootstrap_confidence_controls_width():
    a, b = pairs(n11=30, n10=12, n01=4, n00=54)
    wide = paired_difference(a, b, n_boot=4000, seed=0, confidence=0.99)
    narrow = paired_difference(a, b, n_boot=4000, seed=0, confidence=0.5)
    assert wide.ci_low < narrow.ci_low <= narrow.ci_high < wide.ci_high


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([], [], {}, "empty"),
        ([1, 0, 1], [1, 0], {}, "same prompts"),
        ([1, 2], [0, 1], {}, r"\[0, 1\]"),
        ([1, -0.5], [0, 1], {}, r"\[0, 1\]"),
        ([1, float("nan")], [0, 1], {}, "NaN"),
        ([[1, 0]], [[0, 1]], {}, "one-dimensional"),
        (["x", 1], [0, 1], {}, "numbers"),
        ([1, 0], [0, 1], {"n_boot": 0}, "n_boot"),
        ([1, 0], [0, 1], {"confidence": 1.0}, "confidence"),
    ],
)
def test_paired_difference_bad_inputs(a, b, kwargs, match):
    with pytest.raises(PersonagateError, match=match):
        paired_difference(a, b, **kwargs)


# --- TOST --------------------------------------------------------------------------------------------------


def test_tost_equivalent_case_by_hand():
    # d = a - b = [1/4, 0, 0]: mean 1/12, sample sd (ddof 1) = 1/4 * sqrt(1/3), se = sd / sqrt(3) = 1/12.
    # margin 1/2: t_low = (1/12 + 1/2) / (1/12) = 7, t_high = (1/12 - 1/2) / (1/12) = -5, df = 2.
    # The t(2) CDF is F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so
    #   p_low  = 1 - F(7)  = 1/2 - 7 / (2 sqrt(51)) ~ 0.0099
    #   p_high = F(-5)     = 1/2 - 5 / (2 sqrt(27)) ~ 0.018875  -> p = max = p_high.
    # 90% interval: t_0.95(2) solves t / (2 sqrt(2 + t^2)) = 0.45, i.e. t^2 = 1.62 / 0.19.
    result = tost_paired([0.25, 0.0, 0.0], [0.0, 0.0, 0.0], margin=0.5)
    assert result.diff == pytest.approx(1 / 12)
    assert result.p_value == pytest.approx(0.5 - 5 / (2 * math.sqrt(27)), rel=1e-9)
    assert result.p_value == pytest.approx(0.018874775675, rel=1e-9)
    assert result.equivalent is True
    t_crit = math.sqrt(1.62 / 0.19)  # 2.9199855803...
    assert result.ci_low == pytest.approx(1 / 12 - t_crit / 12, rel=1e-9)
    assert result.ci_high == pytest.approx(1 / 12 + t_crit / 12, rel=1e-9)
    assert (result.margin, result.alpha, result.n) == (0.5, 0.05, 3)


def test_tost_not_equivalent_binary_case_by_hand():
    # a = [1, 1, 0], b = [0, 1, 0]: d = [1, 0, 0], mean 1/3, sd = sqrt(1/3), se = 1/3, df = 2.
    # margin 1/2: t_low = (1/3 + 1/2) * 3 = 2.5, t_high = (1/3 - 1/2) * 3 = -0.5.
    #   p_low  = 1/2 - 2.5 / (2 sqrt(8.25)) ~ 0.0648
    #   p_high = 1/2 - 0.5 / (2 sqrt(2.25)) = 1/2 - 1/6 = 1/3  -> p = 1/3, not equivalent.
    result = tost_paired([1, 1, 0], [0, 1, 0], margin=0.5)
    assert result.p_value == pytest.approx(1 / 3, rel=1e-9)
    assert result.equivalent is False
    t_crit = math.sqrt(1.62 / 0.19)
    assert (result.ci_low, result.ci_high) == pytest.approx((1 / 3 - t_crit / 3, 1 / 3 + t_crit / 3), rel=1e-9)


def test_tost_decision_agrees_with_interval_and_tightens_with_margin():
    # TOST at level alpha rejects iff the (1 - 2 alpha) interval lies inside (-margin, margin).
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        b = (rng.random(80) < 0.4).astype(int)
        a = np.where(rng.random(80) < 0.85, b, 1 - b)
        for margin in (0.05, 0.1, 0.2):
            r = tost_paired(a, b, margin=margin, alpha=0.05)
            assert r.equivalent == (-margin < r.ci_low and r.ci_high < margin)
            seen.add(r.equivalent)
        p_values = [tost_paired(a, b, margin=m).p_value for m in (0.05, 0.1, 0.2, 0.4)]
        assert p_values == sorted(p_values, reverse=True)
    assert seen == {True, False}  # both decisions were exercised


def test_tost_zero_variance_rule():
    same = [1, 0, 1, 1, 0]
    r = tost_paired(same, same, margin=0.1)
    assert (r.diff, r.p_value, r.equivalent, r.ci_low, r.ci_high) == (0.0, 0.0, True, 0.0, 0.0)
    # every prompt refused under a and answered under b: d = 1 everywhere, outside any margin below 1
    r = tost_paired([1, 1, 1], [0, 0, 0], margin=0.5)
    assert (r.diff, r.p_value, r.equivalent) == (1.0, 1.0, False)
    # the bound is strict: |diff| == margin is not equivalence
    r = tost_paired([0.5, 0.5], [0.0, 0.0], margin=0.5)
    assert (r.p_value, r.equivalent) == (1.0, False)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([1, 0], [1, 0], {"margin": 0.0}, "margin"),
        ([1, 0], [1, 0], {"margin": -0.1}, "margin"),
        ([1, 0], [1, 0], {"margin": float("nan")}, "margin"),
        ([1, 0], [1, 0], {"margin": 0.1, "alpha": 0.5}, "alpha"),
        ([1, 0], [1, 0, 1], {"margin": 0.1}, "same prompts"),
        ([], [], {"margin": 0.1}, "empty"),
    ],
)
def test_tost_bad_inputs(a, b, kwargs, match):
    with pytest.raises(PersonagateError, match=match):
        tost_paired(a, b, **kwargs)


# --- Holm --------------------------------------------------------------------------------------------------


def adjusted_and_rejected(p_values, alpha=0.05):
    results = holm(p_values, alpha=alpha)
    return [r.adjusted for r in results], [r.reject for r in results]


def test_holm_known_example():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> running max 0.06;
    # back in input order [0.01, 0.04, 0.03, 0.005]: [0.03, 0.06, 0.06, 0.02].
    adjusted, rejected = adjusted_and_rejected([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]
    assert [r.p_value for r in holm([0.01, 0.04, 0.03, 0.005])] == [0.01, 0.04, 0.03, 0.005]


def test_holm_rejects_more_than_bonferroni():
    # sorted: 0.001 * 3 = 0.003, 0.02 * 2 = 0.04, 0.03 * 1 = 0.03 -> 0.04 by monotonicity: all rejected,
    # whereas Bonferroni (times 3) would give 0.06 and 0.09 and reject only the first.
    adjusted, rejected = adjusted_and_rejected([0.03, 0.001, 0.02])
    assert adjusted == pytest.approx([0.04, 0.003, 0.04])
    assert rejected == [True, True, True]


def test_holm_caps_at_one_and_handles_ties_and_edges():
    # 0.4 * 3 = 1.2 -> 1; 0.45 * 2 = 0.9 -> max(1, 0.9) = 1; 0.5 -> 1.
    assert adjusted_and_rejected([0.5, 0.4, 0.45])[0] == pytest.approx([1.0, 1.0, 1.0])
    assert adjusted_and_rejected([0.01, 0.01])[0] == pytest.approx([0.02, 0.02])
    assert adjusted_and_rejected([0.2]) == ([0.2], [False])
    assert holm([]) == []
    # rejection is adjusted p <= alpha: 0.025 * 2 is exactly 0.05 in binary floating point
    assert adjusted_and_rejected([0.025, 0.025]) == ([0.05, 0.05], [True, True])
    assert adjusted_and_rejected([0.01, 0.04, 0.03, 0.005], alpha=0.01)[1] == [False, False, False, False]


@pytest.mark.parametrize(
    ("p_values", "alpha"), [([0.1, 1.5], 0.05), ([-0.1], 0.05), ([float("nan")], 0.05), ([0.1], 0)]
)
def test_holm_bad_inputs(p_values, alpha):
    with pytest.raises(PersonagateError):
        holm(p_values, alpha=alpha)


# --- empirical p-value -------------------------------------------------------------------------------------


def test_empirical_p_value_examples():
    null = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert empirical_p_value(4.0, null) == pytest.approx((1 + 2) / 6)  # 4 and 5 are >= 4
    assert empirical_p_value(3.0, null) == pytest.approx((1 + 3) / 6)  # ties count against the observed
    assert empirical_p_value(6.0, null) == pytest.approx(1 / 6)  # never 0: smallest possible is 1/(1+n)
    assert empirical_p_value(0.0, null) == pytest.approx(1.0)
    assert empirical_p_value(2.0, null, greater=False) == pytest.approx((1 + 2) / 6)  # 1 and 2 are <= 2
    assert empirical_p_value(0.5, null, greater=False) == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    ("observed", "null", "match"), [(1.0, [], "empty"), (float("nan"), [1.0], "finite"), (1.0, [1.0, np.inf], "NaN")]
)
def test_empirical_p_value_bad_inputs(observed, null, match):
    with pytest.raises(PersonagateError, match=match):
        empirical_p_value(observed, null)


# --- bootstrap of a mean -----------------------------------------------------------------------------------


def test_bootstrap_mean_ci_exact_two_point_case():
    # values [0, 1]: a resampled mean is 0, 1/2, 1 with probability 1/4, 1/2, 1/4.
    # 95%: the 2.5% quantile is 0 and the 97.5% quantile is 1. 40%: the 30% and 70% quantiles are both 1/2
    # (P(mean = 0) = 0.25 < 0.30 and P(mean <= 1/2) = 0.75 > 0.70; 10000 draws keep the fractions within ~0.01).
    assert bootstrap_mean_ci([0.0, 1.0]) == (0.5, 0.0, 1.0)
    assert bootstrap_mean_ci([0.0, 1.0], confidence=0.4) == (0.5, 0.5, 0.5)


def test_bootstrap_mean_ci_matches_normal_theory():
    values = np.random.default_rng(9).normal(loc=2.0, scale=3.0, size=500)
    half = 1.959964 * values.std() / math.sqrt(values.size)
    mean, low, high = bootstrap_mean_ci(values, n_boot=10000, seed=4)
    assert mean == pytest.approx(values.mean())
    assert low == pytest.approx(values.mean() - half, abs=0.03)  # half ~ 0.26, bootstrap noise ~ 0.01
    assert high == pytest.approx(values.mean() + half, abs=0.03)


def test_bootstrap_mean_ci_reproducible_and_seeded():
    values = [0.3, -1.2, 2.5, 0.0, 4.1, -0.7, 1.9, 0.8]
    assert bootstrap_mean_ci(values, n_boot=500, seed=8) == bootstrap_mean_ci(values, n_boot=500, seed=8)
    assert bootstrap_mean_ci(values, n_boot=500, seed=8) != bootstrap_mean_ci(values, n_boot=500, seed=9)
    assert bootstrap_mean_ci([2.5] * 4) == (2.5, 2.5, 2.5)


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        ([], {}, "empty"),
        ([1.0, float("inf")], {}, "NaN"),
        ([1.0], {"n_boot": -5}, "n_boot"),
        ([1.0], {"confidence": 0}, "confidence"),
    ],
)
def test_bootstrap_mean_ci_bad_inputs(values, kwargs, match):
    with pytest.raises(PersonagateError, match=match):
        bootstrap_mean_ci(values, **kwargs)


# --- dependency ground -------------------------------------------------------------------------------------


def test_stats_imports_only_numpy_scipy_errors_and_stdlib():
    tree = ast.parse(STATS_SOURCE.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    third_party = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
    assert third_party <= {"numpy", "scipy", "personagate.errors"}, third_party
    assert "numpy" in third_party and "scipy" in third_party


def test_share_restored_known_values_and_interval():
    from personagate.stats import share_restored

    baseline = [1] * 10 + [0] * 10  # 50%
    steered = [1] * 2 + [0] * 18  # 10%
    treated = [1] * 6 + [0] * 14  # 30%: half of the 40-point effect undone
    share, low, high = share_restored(treated, steered, baseline, n_boot=2000, seed=1)
    assert share == pytest.approx(0.5)
    assert low < 0.5 < high
    assert math.isnan(share_restored([1, 0], [1, 0], [1, 0])[0])  # no effect: no share
    with pytest.raises(PersonagateError):
        share_restored([1], [1, 0], [1, 0])
