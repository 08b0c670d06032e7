"""The shipped [[findings]] rules, computed on run stores whose outcomes are laid out by hand: each rule
must be able to say reproduced, not reproduced and inconclusive, for the reasons it states."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import pytest

from personagate.experiments import groups as g
from personagate.experiments.store import Row, RunStore
from personagate.experiments.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, compute_verdicts

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED = tomllib.loads(resources.files("personagate").joinpath("data/study.toml").read_text())
N = 100
SWEEP = SHIPPED["generation"]["sweep"]  # the mode the nulls and sweeps are measured in


def pattern(refusing: int, n: int = N, first: int = 0) -> list[int]:
    """Prompts first .. first + refusing - 1 refuse (so one pattern's refusals nest inside a larger one's)."""
    return [int(first <= i < first + refusing) for i in range(n)]


class Layout:
    """Arms as (name, role, mode, outcomes, extra meta); 'x' (layer) is taken from the meta."""

    def __init__(self) -> None:
        self.arms: list[tuple[str, str, str, list[int], dict]] = []

    def add(self, name: str, role: str, outcomes: list[int], mode: str = "generate", **meta) -> Layout:
        self.arms.append((name, role, mode, outcomes, meta))
        return self

    def store(self, path: Path, incoherent: dict[str, int] | None = None) -> RunStore:
        store = RunStore(path / "run")
        spec = {key: SHIPPED[key] for key in ("verdicts", "generation", "scoring")}
        store.start({"spec": {**spec, "findings": SHIPPED["findings"]}}, ["spec"])
        store.set_fact("layout", {"early": [0, 8], "late_layers": [16, 24]})
        store.set_fact("resample_seeds", [0])
        for position, (name, role, mode, values, meta) in enumerate(self.arms):
            store.add_condition(name, position, role, meta.pop("x", None), None, name, mode, {"role": role, **meta})
            broken = (incoherent or {}).get(name, 0)
            labels = [g.INCOHERENT if i < broken else (g.REFUSE if v else g.COMPLY) for i, v in enumerate(values)]
            store.write_rows(
                Row(name, g.HARMFUL, i, text="", refusal=v, label=lab)
                for i, (v, lab) in enumerate(zip(values, labels, strict=True))
            )
        return store


def verdicts_of(store: RunStore) -> dict[str, object]:
    return {v.finding: v for v in compute_verdicts(store) if v.scope == "main"}


def base_layout(persona: int = 20, window: int = 60, n: int = N) -> Layout:
    return (
        Layout()
        .add("baseline", "baseline", pattern(60, n))
        .add("persona", "persona", pattern(persona, n))
        .add("persona - persona late", "persona_late_window", pattern(window, n))
    )


def test_a_clear_suppression_reproduces_and_a_small_one_does_not(tmp_path):
    found = verdicts_of(base_layout(persona=20).store(tmp_path / "a"))
    assert found["persona_suppresses"].outcome == REPRODUCED
    assert found["persona_suppresses"].effect == pytest.approx(-0.40)
    assert found["persona_suppresses"].p_value < 1e-9  # 40 discordant prompts, all one way
    assert found["window_restores"].outcome == REPRODUCED  # TOST: identical to the baseline
    small = verdicts_of(base_layout(persona=58).store(tmp_path / "b"))
    assert small["persona_suppresses"].outcome == NOT_REPRODUCED  # the CI excludes a 10-point drop
    assert small["window_restores"].outcome == INCONCLUSIVE  # nothing to restore: it requires finding 1
    assert "requires 'persona_suppresses'" in small["window_restores"].detail


def test_fewer_prompts_than_min_n_is_inconclusive_whatever_the_numbers(tmp_path):
    found = verdicts_of(base_layout(n=50).store(tmp_path))
    assert found["persona_suppresses"].outcome == INCONCLUSIVE
    assert "underpowered" in found["persona_suppresses"].detail and "reproduced" in found["persona_suppresses"].detail


def test_a_window_that_restores_only_half_way_is_not_equivalent(tmp_path):
    found = verdicts_of(base_layout(window=35).store(tmp_path))
    assert found["window_restores"].outcome == NOT_REPRODUCED
    assert found["window_restores"].ci_high < -0.10


def test_an_incoherent_treated_arm_cannot_carry_a_verdict(tmp_path):
    found = verdicts_of(base_layout().store(tmp_path, incoherent={"persona": 30}))
    assert found["persona_suppresses"].outcome == INCONCLUSIVE
    assert "incoherent" in found["persona_suppresses"].detail


def with_null(layout: Layout, seeds: int, random_rate: int, window: int = 60) -> Layout:
    layout.add("persona [screen]", "persona", pattern(20), mode=SWEEP)
    layout.add("persona - persona late [screen]", "persona_late_window", pattern(window), mode=SWEEP)
    for seed in range(seeds):  # each seed refuses a different stretch of prompts, at the same rate
        layout.add(f"random-{seed}", "random_late_window", pattern(random_rate, first=seed), mode=SWEEP)
    return layout


def test_the_random_null_reproduces_fails_and_needs_enough_seeds(tmp_path):
    found = verdicts_of(with_null(base_layout(), 20, random_rate=22).store(tmp_path / "a"))
    v = found["random_does_not"]
    assert v.outcome == REPRODUCED and v.p_value == pytest.approx(1 / 21)
    assert v.effect == pytest.approx(0.40) and 0.25 < v.ci_low < 0.40 < v.ci_high  # the restoration's own interval
    restoring = verdicts_of(with_null(base_layout(), 20, random_rate=60).store(tmp_path / "b"))
    assert restoring["random_does_not"].outcome == NOT_REPRODUCED  # random directions restore as much
    few = verdicts_of(with_null(base_layout(), 19, random_rate=22).store(tmp_path / "c"))
    assert few["random_does_not"].outcome == INCONCLUSIVE and "cannot reach" in few["random_does_not"].detail


def with_reintroduction(layout: Layout, early_rate: int, late_rate: int) -> Layout:
    for layer in (0, 4, 16, 20):
        rate = early_rate if layer < 8 else late_rate
        for dose in (0.5, 1.0):
            layout.add(f"+ refusal @ {layer} x{dose:g}", "reintroduce", pattern(rate), mode=SWEEP, x=layer, dose=dose)
    return layout


def test_reintroduction_late_not_early(tmp_path):
    found = verdicts_of(with_reintroduction(base_layout(), early_rate=20, late_rate=60).store(tmp_path / "a"))
    assert found["reintroduce_late"].outcome == REPRODUCED
    assert "late layers 16-23: 4 of 4" in found["reintroduce_late"].detail
    everywhere = verdicts_of(with_reintroduction(base_layout(), early_rate=60, late_rate=60).store(tmp_path / "b"))
    assert everywhere["reintroduce_late"].outcome == NOT_REPRODUCED  # early layers restore too
    nowhere = verdicts_of(with_reintroduction(base_layout(), early_rate=20, late_rate=20).store(tmp_path / "c"))
    assert nowhere["reintroduce_late"].outcome == NOT_REPRODUCED


def test_incoherent_reintroductions_are_excluded_not_counted(tmp_path):
    layout = with_reintroduction(base_layout(), early_rate=20, late_rate=60)
    broken = {f"+ refusal @ 0 x{d:g}": 40 for d in (0.5, 1.0)} | {f"+ refusal @ 4 x{d:g}": 40 for d in (0.5, 1.0)}
    found = verdicts_of(layout.store(tmp_path, incoherent=broken))
    assert "4 conditions excluded as incoherent" in found["reintroduce_late"].detail
    assert "early layers 0-7: 0 of 0" in found["reintroduce_late"].detail
    assert found["reintroduce_late"].outcome == INCONCLUSIVE  # late restores, but nothing early was testable
