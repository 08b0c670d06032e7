"""The shipped [[findings]] rules, computed on run stores whose outcomes are laid out by hand: each rule
must be able to say reproduced, not reproduced and inconclusive, for the reasons it states."""

from __future__ import annotations

from pathlib import Path

import pytest

from personagate.experiments.analysis.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Verdict
from personagate.experiments.design.names import Role

from laid_out import SWEEP, LaidOut, pattern

N = 100


def verdicts_of(layout: LaidOut, path: Path, **kwargs) -> dict[str, Verdict]:
    return {v.finding: v for v in layout.results(path, **kwargs).verdicts if v.scope == "main"}


def base_layout(persona: int = 20, window: int = 60, n: int = N) -> LaidOut:
    return (
        LaidOut()
        .add("baseline", Role.BASELINE, pattern(60, n))
        .add("persona", Role.PERSONA, pattern(persona, n))
        .add("persona - persona late", Role.PERSONA_LATE_WINDOW, pattern(window, n))
    )


def test_a_clear_suppression_reproduces_and_a_small_one_does_not(tmp_path):
    found = verdicts_of(base_layout(persona=20), tmp_path / "a")
    assert found["persona_suppresses"].outcome == REPRODUCED
    assert found["persona_suppresses"].effect == pytest.approx(-0.40)
    assert found["persona_suppresses"].p_value < 1e-9  # 40 discordant prompts, all one way
    assert found["window_restores"].outcome == REPRODUCED  # TOST: identical to the baseline
    small = verdicts_of(base_layout(persona=58), tmp_path / "b")
    assert small["persona_suppresses"].outcome == NOT_REPRODUCED  # the CI excludes a 10-point drop
    assert small["window_restores"].outcome == INCONCLUSIVE  # nothing to restore: it requires finding 1
    assert "requires 'persona_suppresses'" in small["window_restores"].detail


def test_fewer_prompts_than_min_n_is_inconclusive_whatever_the_numbers(tmp_path):
    found = verdicts_of(base_layout(n=50), tmp_path)
    assert found["persona_suppresses"].outcome == INCONCLUSIVE
    assert "underpowered" in found["persona_suppresses"].detail and "reproduced" in found["persona_suppresses"].detail


def test_a_window_that_restores_only_half_way_is_not_equivalent(tmp_path):
    found = verdicts_of(base_layout(window=35), tmp_path)
    assert found["window_restores"].outcome == NOT_REPRODUCED
    assert found["window_restores"].ci_high < -0.10


def test_an_incoherent_treated_arm_cannot_carry_a_verdict(tmp_path):
    found = verdicts_of(base_layout(), tmp_path, incoherent={"persona": 30})
    assert found["persona_suppresses"].outcome == INCONCLUSIVE
    assert "incoherent" in found["persona_suppresses"].detail


def with_null(layout: LaidOut, seeds: int, random_rate: int, window: int = 60) -> LaidOut:
    layout.add("persona [screen]", Role.PERSONA, pattern(20), mode=SWEEP)
    layout.add("persona - persona late [screen]", Role.PERSONA_LATE_WINDOW, pattern(window), mode=SWEEP)
    for seed in range(seeds):  # each seed refuses a different stretch of prompts, at the same rate
        layout.add(f"random-{seed}", Role.RANDOM_LATE_WINDOW, pattern(random_rate, first=seed), mode=SWEEP, seed=seed)
    return layout


def test_the_random_null_reproduces_fails_and_needs_enough_seeds(tmp_path):
    found = verdicts_of(with_null(base_layout(), 20, random_rate=22), tmp_path / "a")
    v = found["random_does_not"]
    assert v.outcome == REPRODUCED and v.p_value == pytest.approx(1 / 21)
    assert v.effect == pytest.approx(0.40) and 0.25 < v.ci_low < 0.40 < v.ci_high  # the restoration's own interval
    restoring = verdicts_of(with_null(base_layout(), 20, random_rate=60), tmp_path / "b")
    assert restoring["random_does_not"].outcome == NOT_REPRODUCED  # random directions restore as much
    few = verdicts_of(with_null(base_layout(), 19, random_rate=22), tmp_path / "c")
    assert few["random_does_not"].outcome == INCONCLUSIVE and "cannot reach" in few["random_does_not"].detail


def with_reintroduction(layout: LaidOut, early_rate: int, late_rate: int) -> LaidOut:
    for layer in (0, 4, 16, 20):
        rate = early_rate if layer < 8 else late_rate
        for dose in (0.5, 1.0):
            layout.add(
                f"+ refusal @ {layer} x{dose:g}",
                Role.REINTRODUCE,
                pattern(rate),
                mode=SWEEP,
                axis=float(layer),
                dose=dose,
            )
    return layout


def test_reintroduction_late_not_early(tmp_path):
    found = verdicts_of(with_reintroduction(base_layout(), early_rate=20, late_rate=60), tmp_path / "a")
    assert found["reintroduce_late"].outcome == REPRODUCED
    assert "late layers 16-23: 4 of 4" in found["reintroduce_late"].detail
    everywhere = verdicts_of(with_reintroduction(base_layout(), early_rate=60, late_rate=60), tmp_path / "b")
    assert everywhere["reintroduce_late"].outcome == NOT_REPRODUCED  # early layers restore too
    nowhere = verdicts_of(with_reintroduction(base_layout(), early_rate=20, late_rate=20), tmp_path / "c")
    assert nowhere["reintroduce_late"].outcome == NOT_REPRODUCED


def test_incoherent_reintroductions_are_excluded_not_counted(tmp_path):
    layout = with_reintroduction(base_layout(), early_rate=20, late_rate=60)
    broken = {f"+ refusal @ 0 x{d:g}": 40 for d in (0.5, 1.0)} | {f"+ refusal @ 4 x{d:g}": 40 for d in (0.5, 1.0)}
    found = verdicts_of(layout, tmp_path, incoherent=broken)
    assert "4 conditions excluded as incoherent" in found["reintroduce_late"].detail
    assert "early layers 0-7: 0 of 0" in found["reintroduce_late"].detail
    assert found["reintroduce_late"].outcome == INCONCLUSIVE  # late restores, but nothing early was testable
