"""The verdict as a value: sealed by its rule, amended only into a new value, its evidence set named by
a value rather than by text, its outcome and reason enums that read as the words in verdicts.csv."""

from __future__ import annotations

import dataclasses

import pytest

from personagate.experiments.analysis.verdict import (
    MAIN,
    Amendment,
    Draft,
    EvidenceId,
    Outcome,
    Reason,
)


def sealed(**changes) -> object:
    draft = Draft("f", MAIN, "claim")
    for key, value in changes.items():
        setattr(draft, key, value)
    return draft.seal()


def test_a_sealed_verdict_cannot_be_edited():
    verdict = sealed(outcome=Outcome.REPRODUCED, conditions=["a", "b"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.outcome = Outcome.INCONCLUSIVE  # type: ignore[misc]
    assert verdict.conditions == ("a", "b")


def test_an_amendment_gives_a_new_verdict_and_keeps_the_first_reason():
    verdict = sealed(outcome=Outcome.REPRODUCED, detail="numbers")
    amended = verdict.amended(Amendment(Reason.PREREQUISITE, "requires x"))
    assert verdict.outcome == Outcome.REPRODUCED and verdict.detail == "numbers"
    assert amended.outcome == Outcome.INCONCLUSIVE and amended.reason == Reason.PREREQUISITE
    assert amended.detail == "requires x; numbers"
    again = amended.amended(Amendment(Reason.UNDERPOWERED, "few"))
    assert again.reason == Reason.PREREQUISITE  # the first reason stays
    replaced = sealed(reason=Reason.STRADDLES).amended(
        Amendment(Reason.UNDERPOWERED, "few", replace_reason=(Reason.STRADDLES,))
    )
    assert replaced.reason == Reason.UNDERPOWERED
    noted = verdict.amended(Amendment(note="2 left out"))
    assert noted.outcome == Outcome.REPRODUCED and noted.detail == "numbers; 2 left out"


def test_the_evidence_id_reads_as_the_scope_column():
    assert str(MAIN) == "main" and MAIN.is_main
    resample = EvidenceId(7, "first_token")
    assert str(resample) == "resample 7 (first_token)" and not resample.is_main
    row = sealed(scope=resample, outcome=Outcome.NOT_REPRODUCED, reason=Reason.NONE).as_row()
    assert row["scope"] == "resample 7 (first_token)" and row["outcome"] == "not reproduced" and row["reason"] == ""
    assert type(row["outcome"]) is str and type(row["scope"]) is str
