"""The run store: one transaction per batch, no row twice, resume identity, facts and readout."""

from __future__ import annotations

import sqlite3

import pytest

from personagate import PersonagateError
from personagate.experiments.design.names import Group, Role
from personagate.experiments.storage import facts
from personagate.experiments.storage.records import EMPTY_PROGRAM, Row, StoredCondition
from personagate.experiments.storage.store import RunStore

from laid_out import record


def test_rows_round_trip_and_a_batch_is_all_or_nothing(tmp_path):
    with RunStore(tmp_path / "run") as store:
        first = StoredCondition("baseline", Group.BASELINE, Role.BASELINE, "generate", "no intervention", EMPTY_PROGRAM)
        store.add_condition(first)
        store.add_condition(record("baseline", Role.PERSONA, "first_token", position=5, axis=1.0, seed=2))
        store.write_rows(
            [
                Row("baseline", "harmful", 0, text="No.", refusal=1, label="refuse"),
                Row("baseline", "neutral", 0, loglik=-2.5),
            ]
        )
        with pytest.raises(sqlite3.IntegrityError):  # a row already there: the whole batch is rejected
            store.write_rows([Row("baseline", "harmful", 1, text="Sure", refusal=0), Row("baseline", "harmful", 0)])
        assert store.done_ids("baseline", "harmful") == {0}
        rows = store.rows("baseline")
        assert (
            [r.prompt_set for r in rows] == ["harmful", "neutral"] and rows[1].loglik == -2.5 and rows[1].score is None
        )
        assert rows[0].label == "refuse"
        assert store.conditions() == [first]  # typed, and the first record under a name wins
        assert store.conditions()[0].role is Role.BASELINE and store.conditions()[0].program == {"ops": []}


def test_resume_checks_identity(tmp_path):
    with RunStore(tmp_path) as store:
        assert store.start({"spec": {"a": 1}, "model": "m"}, ("spec",)) is False
    with RunStore(tmp_path) as store:
        assert store.start({"spec": {"a": 1}, "model": "other"}, ("spec",)) is True
        with pytest.raises(PersonagateError, match=r"spec\.a was 1, now 2"):
            store.start({"spec": {"a": 2}}, ("spec",))


def test_facts_and_readout(tmp_path):
    with RunStore(tmp_path) as store:
        store.set_fact(facts.PERSONA_COEFF, 4.0)
        store.set_fact(facts.PERSONA_COEFF, 2.0)
        assert store.fact(facts.PERSONA_COEFF) == 2.0 and store.fact(facts.PERSONA_COEFF_RULE, "d") == "d"
        store.write_readout("baseline", [[0.5, 1.5], [0.7, 1.1]])  # two prompts, two layers
        assert store.readout() == {"baseline": [[0.5, 0.7], [1.5, 1.1]]}  # per layer, per prompt


def test_a_killed_run_whose_rows_are_still_in_the_write_ahead_log_can_be_reported(tmp_path):
    import shutil

    store = RunStore(tmp_path / "run")
    store.start({"spec": {}}, ("spec",))
    store.add_condition(record("baseline", Role.BASELINE))
    store.write_rows([Row("baseline", "harmful", 0, text="No.", refusal=1)])
    copy = tmp_path / "copy"  # what a SIGKILL leaves: the database, its -wal and -shm, never checkpointed
    shutil.copytree(tmp_path / "run", copy)
    store.close()
    assert (copy / "run.sqlite-wal").stat().st_size > 0
    with RunStore(copy, create=False) as reopened:
        assert reopened.done_ids("baseline", "harmful") == {0}


def test_a_fact_of_the_wrong_type_fails_where_it_is_written(tmp_path):
    with RunStore(tmp_path / "r") as store:
        with pytest.raises(TypeError, match="resample_seeds"):
            store.set_fact(facts.RESAMPLE_SEEDS, {"not": "a list"})
        with pytest.raises(TypeError, match="persona_coeff"):
            store.set_fact(facts.PERSONA_COEFF, "4")
        store.set_fact(facts.PROJECTION.of("arm"), {"layer": 1, "values": [0.5]})
        assert store.facts_under(facts.PROJECTION) == {"arm": {"layer": 1, "values": [0.5]}}
        assert all(facts.is_declared(key) for (key,) in store.db.execute("SELECT key FROM facts"))
        assert not facts.is_declared("multiturn_projection") and not facts.is_declared("made_up")
