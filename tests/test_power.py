"""Power of the paired tests, against a known value and against simulating the tests themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from personagate.power import (
    bar_detectable,
    bar_power,
    mcnemar_detectable,
    mcnemar_power,
    tost_detectable,
    tost_power,
)
from personagate.stats import mcnemar_exact, tost_paired


def simulate(n: int, p10: float, p01: float, trials: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """Paired outcomes (a, b) with P(a=1, b=0) = p10 and P(a=0, b=1) = p01, the rest concordant."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(trials):
        kind = rng.choice(3, size=n, p=[p10, p01, 1 - p10 - p01])
        a = [int(k == 0) for k in kind]
        b = [int(k == 1) for k in kind]
        out.append((a, b))
    return out


def test_tost_power_matches_the_known_value_at_n_100():
    # the review's figure: n = 100, margin 10 points, 20% discordance -> power 0.43
    assert tost_power(100, 0.2, 0.1, 0.05) == pytest.approx(0.43, abs=0.01)
    assert tost_power(100, 0.2, 0.1, 0.05 / 11) < 0.05  # after Holm over 11 tests: "inconclusive" built in
    assert tost_power(400, 0.2, 0.1, 0.05) > 0.99


def test_power_matches_simulating_the_tests():
    n, trials = 120, 400
    runs = simulate(n, 0.05, 0.15, trials, seed=1)  # a refuses 10 points less than b, 20% discordant
    simulated = np.mean([mcnemar_exact(a, b, "less") < 0.05 for a, b in runs])
    assert mcnemar_power(n, 0.2, 0.10, 0.05) == pytest.approx(simulated, abs=0.07)
    equal = simulate(n, 0.1, 0.1, trials, seed=2)
    simulated = np.mean([tost_paired(a, b, 0.12, 0.05).equivalent for a, b in equal])
    assert tost_power(n, 0.2, 0.12, 0.05) == pytest.approx(simulated, abs=0.08)


def test_power_grows_with_n_and_effect_and_detectable_effects_shrink():
    assert mcnemar_power(50, 0.2, 0.1, 0.05) < mcnemar_power(200, 0.2, 0.1, 0.05)
    assert mcnemar_power(100, 0.3, 0.05, 0.05) < mcnemar_power(100, 0.3, 0.2, 0.05)
    assert mcnemar_detectable(400, 0.2, 0.05) < mcnemar_detectable(100, 0.2, 0.05) <= 0.2
    assert tost_detectable(400, 0.2, 0.05) < tost_detectable(100, 0.2, 0.05)
    assert mcnemar_power(100, 0.2, 0.2, 0.05) > 0.99  # every discordant prompt one way
    assert math.isnan(mcnemar_detectable(5, 0.1, 0.05))  # 5 prompts can never decide


def test_bar_power_is_one_half_at_the_bar():
    assert bar_power(100, 0.2, 0.0) == pytest.approx(0.5)
    assert bar_power(100, 0.2, bar_detectable(100, 0.2)) == pytest.approx(0.8)
