"""Protocol v2's own rules (``equivalent``, ``late_not_early``), kept for comparing designs: each can
reproduce, fail and be inconclusive on laid-out stores, under v3's measurement (coherent pairs)."""

from __future__ import annotations

from personagate.experiments.analysis import verdict as vd
from personagate.experiments.analysis.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from personagate.experiments.design.names import Role

from laid_out import SWEEP, V2_FINDINGS, LaidOut, pattern


def verdicts_of(layout: LaidOut, path, **kwargs):
    results = layout.results(path, findings=V2_FINDINGS, protocol="v2", **kwargs)
    return {v.finding: v for v in results.verdicts if v.scope.is_main}


def base_layout(window: int = 60) -> LaidOut:
    late = {"window": (16, 24), "axis": 16.0}
    return (
        LaidOut()
        .add("baseline", Role.BASELINE, pattern(60))
        .add("persona", Role.PERSONA, pattern(20))
        .add("persona - persona late", Role.PERSONA_LATE_WINDOW, pattern(window), **late)
    )


def test_equivalence_to_baseline(tmp_path):
    assert verdicts_of(base_layout(60), tmp_path / "a")["window_restores"].outcome == REPRODUCED
    half = verdicts_of(base_layout(35), tmp_path / "b")["window_restores"]
    assert half.outcome == NOT_REPRODUCED and half.ci_high < -0.10
    near = verdicts_of(base_layout(52), tmp_path / "c")["window_restores"]
    assert near.outcome == INCONCLUSIVE and near.reason == vd.STRADDLES


def with_reintroduction(layout: LaidOut, early: int, late: int) -> LaidOut:
    for layer in (1, 5, 17, 21):
        rate = early if layer < 8 else late
        for dose in (0.5, 1.0):
            name = f"+ refusal @ {layer} x{dose:g}"
            layout.add(name, Role.REINTRODUCE, pattern(rate), mode=SWEEP, axis=float(layer), dose=dose)
    return layout


def test_late_not_early(tmp_path):
    found = verdicts_of(with_reintroduction(base_layout(), 20, 60), tmp_path / "a")["reintroduce_late"]
    assert found.outcome == REPRODUCED and "late layers 16-23: 4 of 4" in found.detail
    assert verdicts_of(with_reintroduction(base_layout(), 60, 60), tmp_path / "b")["reintroduce_late"].outcome == (
        NOT_REPRODUCED
    )
    partial = verdicts_of(with_reintroduction(base_layout(), 20, 40), tmp_path / "c")["reintroduce_late"]
    assert partial.outcome == NOT_REPRODUCED  # v2 scores a partial restoration as failure: why v3 exists
