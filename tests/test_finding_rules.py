"""The shipped v3 [[findings]] rules, computed on run stores whose outcomes are laid out by hand: each rule
must be able to say reproduced, not reproduced and inconclusive, for each reason it states."""

from __future__ import annotations

from pathlib import Path

import pytest

from personagate.experiments.analysis import verdict as vd
from personagate.experiments.analysis.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Verdict
from personagate.experiments.design.names import Role

from laid_out import SWEEP, LaidOut, garble, pattern

N = 100


def verdicts_of(layout: LaidOut, path: Path, **kwargs) -> dict[str, Verdict]:
    return {v.finding: v for v in layout.results(path, **kwargs).verdicts if v.scope.is_main}


def base_layout(persona: int = 20, n: int = N) -> LaidOut:
    return LaidOut().add("baseline", Role.BASELINE, pattern(60, n)).add("persona", Role.PERSONA, pattern(persona, n))


# --- finding 1: persona suppresses refusal (decrease) ---------------------------------------------


def test_suppression_reproduces_fails_and_straddles(tmp_path):
    found = verdicts_of(base_layout(persona=20), tmp_path / "a")["persona_suppresses"]
    assert found.outcome == REPRODUCED and found.kind == "as claimed" and found.reason == ""
    assert found.effect == pytest.approx(-0.40) and found.p_value < 1e-9
    assert 0.6 < found.power < 0.75 and 0.1 < found.detectable < 0.15  # McNemar: n = 100, 20% discordant, 10 points
    assert verdicts_of(base_layout(persona=58), tmp_path / "b")["persona_suppresses"].outcome == NOT_REPRODUCED
    straddling = verdicts_of(base_layout(persona=51), tmp_path / "c")["persona_suppresses"]
    assert straddling.outcome == INCONCLUSIVE and straddling.reason == vd.STRADDLES  # -9 points, CI crosses -10


def test_fewer_prompts_than_min_n_is_underpowered_whatever_the_numbers(tmp_path):
    found = verdicts_of(base_layout(n=50), tmp_path)["persona_suppresses"]
    assert found.outcome == INCONCLUSIVE and found.reason == vd.UNDERPOWERED
    assert "the numbers point to reproduced" in found.detail


def test_an_incoherent_arm_carries_no_verdict(tmp_path):
    found = verdicts_of(base_layout(), tmp_path, incoherent={"persona": 30})["persona_suppresses"]
    assert found.outcome == INCONCLUSIVE and found.reason == vd.INCOHERENT_ARM


def test_incoherent_replies_are_left_out_and_the_sensitivity_analysis_can_overrule(tmp_path):
    # persona: 0-19 refuse, 60-89 incoherent. Left out, it refuses 20 of 70 against 60 of 70: reproduced.
    # Counted as refusals, 50 against 60 with 30 prompts the other way: not shown. The verdict cannot stand.
    layout = (
        LaidOut().add("baseline", Role.BASELINE, pattern(60)).add("persona", Role.PERSONA, garble(pattern(20), 60, 90))
    )
    found = verdicts_of(layout, tmp_path, verdicts={"max_incoherent": 0.5, "min_n": 50})["persona_suppresses"]
    assert found.excluded == 30 and found.n == 70
    assert found.outcome == INCONCLUSIVE and found.reason == vd.SENSITIVITY
    agreeing = (
        LaidOut().add("baseline", Role.BASELINE, pattern(60)).add("persona", Role.PERSONA, garble(pattern(20), 20, 30))
    )
    kept = verdicts_of(agreeing, tmp_path / "b", verdicts={"min_n": 50})["persona_suppresses"]
    assert kept.outcome == REPRODUCED and kept.excluded == 10 and "gives the same outcome" in kept.detail


def test_a_first_token_arm_carries_no_verdict(tmp_path):
    layout = LaidOut().add("baseline", Role.BASELINE, pattern(60), mode="first_token")
    layout.add("persona", Role.PERSONA, pattern(20), mode="first_token")
    found = verdicts_of(layout, tmp_path)["persona_suppresses"]
    assert found.outcome == INCONCLUSIVE and found.reason == vd.BLIND_MODE


# --- finding 5: specific to the compliant persona (exceeds_each) ----------------------------------


def with_comparators(layout: LaidOut, style_rates: tuple[int, ...], seeds: int, random_rate: int = 58) -> LaidOut:
    layout.add("baseline [screen]", Role.BASELINE, pattern(60), mode=SWEEP)
    layout.add("persona [screen]", Role.PERSONA, pattern(20), mode=SWEEP)
    for k, rate in enumerate(style_rates):
        layout.add(f"style {k}", Role.STYLE, pattern(rate), mode=SWEEP)
    for seed in range(seeds):
        layout.add(f"random add {seed}", Role.RANDOM_ADD, pattern(random_rate, first=seed % 3), mode=SWEEP, seed=seed)
    return layout


def test_specificity_reproduces_fails_and_needs_seeds(tmp_path):
    found = verdicts_of(with_comparators(base_layout(), (55, 58, 59), 20), tmp_path / "a")["persona_specific"]
    assert found.outcome == REPRODUCED and found.kind == "specific"
    assert found.effect == pytest.approx(-0.35)  # the closest comparator: 20% against 55%
    matched = verdicts_of(with_comparators(base_layout(), (55, 22, 59), 20), tmp_path / "b")["persona_specific"]
    assert matched.outcome == NOT_REPRODUCED  # a style persona suppresses as much: not specific
    random = verdicts_of(with_comparators(base_layout(), (55, 58, 59), 20, random_rate=15), tmp_path / "c")
    assert random["persona_specific"].outcome == NOT_REPRODUCED  # random vectors suppress as much
    few = verdicts_of(with_comparators(base_layout(), (55, 58, 59), 5), tmp_path / "d")["persona_specific"]
    assert few.outcome == INCONCLUSIVE and few.reason == vd.FEW_SEEDS


# --- finding 2: restoration classes ---------------------------------------------------------------


def with_reintroduction(layout: LaidOut, early: int, late: int, early_first: int = 0) -> LaidOut:
    layout.add("baseline [screen]", Role.BASELINE, pattern(60), mode=SWEEP)
    layout.add("persona [screen]", Role.PERSONA, pattern(20), mode=SWEEP)
    for layer in (1, 5, 17, 21):
        outcomes = pattern(early, first=early_first) if layer < 8 else pattern(late)
        for dose in (0.3, 0.7):
            name = f"+ refusal @ {layer} x{dose:g}"
            layout.add(name, Role.REINTRODUCE, outcomes, mode=SWEEP, axis=float(layer), dose=dose)
    return layout


@pytest.mark.parametrize(
    ("early", "first", "late", "outcome", "reason", "late_class"),
    [
        (20, 0, 40, REPRODUCED, "", "partial"),  # the paper's claim: partial at late layers, none early
        (20, 0, 60, REPRODUCED, "", "full"),
        (20, 0, 95, INCONCLUSIVE, vd.OVERSHOOT, "overshoot"),
        (45, 0, 40, NOT_REPRODUCED, "", "partial"),  # an early dose restores
        (20, 0, 20, NOT_REPRODUCED, "", "none"),  # no late dose restores
        (28, 15, 40, INCONCLUSIVE, vd.STRADDLES, "partial"),  # early: neither shown none nor shown to restore
    ],
)
def test_restoration_classes(tmp_path, early, first, late, outcome, reason, late_class):
    layout = with_reintroduction(base_layout(), early, late, early_first=first)
    found = verdicts_of(layout, tmp_path)["reintroduce_late"]
    assert found.outcome == outcome and found.reason == reason
    assert {row["class"] for row in found.table if row["band"] == "late"} == {late_class}
    assert "from the injection at 6" in found.detail


def test_restoration_needs_coherent_early_doses(tmp_path):
    layout = with_reintroduction(base_layout(), 20, 40)
    broken = {f"+ refusal @ {layer} x{d:g}": 40 for layer in (1, 5) for d in (0.3, 0.7)}
    found = verdicts_of(layout, tmp_path, incoherent=broken)["reintroduce_late"]
    assert found.outcome == INCONCLUSIVE and found.reason == vd.NOT_MEASURED
    assert "4 incoherent conditions excluded" in found.detail


# --- finding 3: the late window, beyond the projection's own effect --------------------------------


def with_windows(layout: LaidOut, window: int, control: int, earlier: int) -> LaidOut:
    late = {"window": (16, 24), "axis": 16.0}
    layout.add("persona - persona late", Role.PERSONA_LATE_WINDOW, pattern(window), **late)
    layout.add("- persona late (unsteered)", Role.PROJECTION_ONLY_LATE, pattern(control), **late)
    layout.add("persona - persona late [screen]", Role.PERSONA_LATE_WINDOW, pattern(window), mode=SWEEP, **late)
    early = {"window": (7, 15), "axis": 7.0}
    layout.add("persona - persona early [screen]", Role.PERSONA_WINDOW, pattern(earlier), mode=SWEEP, **early)
    return layout


def test_window_restores_beyond_its_own_effect(tmp_path):
    found = verdicts_of(with_windows(base_layout(), 60, 60, 25), tmp_path / "a")["window_restores"]
    assert found.outcome == REPRODUCED and found.effect == pytest.approx(0.40) and found.ci_low > 0.25
    # the projection alone raises refusal as much as it "restores" it: the difference is 0
    own = verdicts_of(with_windows(base_layout(), 60, 100, 25), tmp_path / "b")["window_restores"]
    assert own.outcome != REPRODUCED and own.effect == pytest.approx(0.0)
    half = verdicts_of(with_windows(base_layout(), 35, 60, 25), tmp_path / "c")["window_restores"]
    assert half.outcome == NOT_REPRODUCED  # shown unequal to the baseline
    earlier = verdicts_of(with_windows(base_layout(), 60, 60, 90), tmp_path / "d")["window_restores"]
    assert earlier.outcome == NOT_REPRODUCED  # an earlier window restores more


# --- finding 4: the random null, matched on what it removes (exceeds_null) ------------------------


def with_null(layout: LaidOut, seeds: int, random_rate: int, style_rate: int = 22) -> LaidOut:
    late = {"window": (16, 24), "axis": 16.0}
    layout.add("persona [screen]", Role.PERSONA, pattern(20), mode=SWEEP)
    layout.add("persona - persona late [screen]", Role.PERSONA_LATE_WINDOW, pattern(60), mode=SWEEP, **late)
    for k in range(3):
        layout.add(f"style null {k}", Role.STYLE_LATE_WINDOW, pattern(style_rate), mode=SWEEP, **late)
    for seed in range(seeds):  # each seed refuses a different stretch of prompts, at the same rate
        name = f"random-{seed}"
        layout.add(name, Role.RANDOM_LATE_WINDOW, pattern(random_rate, first=seed), mode=SWEEP, seed=seed, **late)
    return layout


def test_the_null_reproduces_fails_and_needs_seeds(tmp_path):
    found = verdicts_of(with_null(base_layout(), 20, random_rate=22), tmp_path / "a")["random_does_not"]
    assert found.outcome == REPRODUCED and found.p_value == pytest.approx(1 / 21)
    assert found.effect == pytest.approx(0.40) and 0.25 < found.ci_low < 0.40 < found.ci_high
    restoring = verdicts_of(with_null(base_layout(), 20, random_rate=60), tmp_path / "b")["random_does_not"]
    assert restoring.outcome == NOT_REPRODUCED  # random directions restore as much
    named = verdicts_of(with_null(base_layout(), 20, random_rate=22, style_rate=60), tmp_path / "c")
    assert named["random_does_not"].outcome == NOT_REPRODUCED  # a named null (a style direction) restores as much
    close = verdicts_of(with_null(base_layout(), 20, random_rate=55), tmp_path / "d")["random_does_not"]
    assert close.outcome == INCONCLUSIVE and close.reason == vd.STRADDLES  # above the bar, by less than the margin
    few = verdicts_of(with_null(base_layout(), 19, random_rate=22), tmp_path / "e")["random_does_not"]
    assert few.outcome == INCONCLUSIVE and few.reason == vd.FEW_SEEDS


def test_requires_names_its_prerequisite(tmp_path):
    layout = with_null(base_layout(persona=58), 20, random_rate=22)
    found = verdicts_of(layout, tmp_path)
    assert found["persona_suppresses"].outcome == NOT_REPRODUCED
    assert found["random_does_not"].reason == vd.PREREQUISITE
    assert "requires 'persona_suppresses'" in found["random_does_not"].detail


def test_compare_puts_two_designs_side_by_side(tmp_path, capsys):
    from personagate.cli import main

    with base_layout(persona=20).store(tmp_path / "a"):
        pass
    with base_layout(persona=58).store(tmp_path / "b"):
        pass
    page = tmp_path / "compare.html"
    assert main(["compare", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"), "--out", str(page)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| persona_suppresses"))
    assert "reproduced" in row and "not reproduced" in row and "DIFFERENT" in row
    assert "persona_suppresses" in page.read_text()
