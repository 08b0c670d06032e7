"""The time profile: every second of a stage lands in one (stage, kind) row, the rows add up to the
stage's wall time, and a resumed run adds to what the store holds."""

from __future__ import annotations

import time

import pytest

from personagate.experiments.storage.profile import TimeProfile, UnitCost, read_profile
from personagate.experiments.storage.store import RunStore
from personagate.report.profile import profile_rows, profile_text


def test_stages_add_up_to_their_wall_time_and_resume_adds(tmp_path):
    with RunStore(tmp_path / "run") as store:
        profile = TimeProfile(store)
        started = time.perf_counter()
        with profile.stage("validation"):
            time.sleep(0.02)  # a unit computed, then reported with its seconds
            profile.add("generate", UnitCost(0.02, prompt_tokens=30, decoded_tokens=12, rows=3), units=1)
            with profile.timed("readout"):
                time.sleep(0.03)
            time.sleep(0.01)
        wall = time.perf_counter() - started
        entries = {(e.stage, e.kind): e for e in read_profile(store)}  # saved when the stage ended
        assert set(entries) == {("validation", "generate"), ("validation", "readout"), ("validation", "other")}
        assert entries["validation", "generate"].decoded_tokens == 12
        assert entries["validation", "readout"].seconds >= 0.03
        # "other" is the rest of the stage's wall time: the rows add up to it
        assert entries["validation", "other"].seconds >= 0.01
        assert sum(e.seconds for e in entries.values()) == pytest.approx(wall, abs=0.005)

        again = TimeProfile(store)  # a resumed session
        with again.stage("validation"):
            again.add("generate", UnitCost(1.0, decoded_tokens=8, rows=2), units=1)
        resumed = {(e.stage, e.kind): e for e in read_profile(store)}
        assert resumed["validation", "generate"].decoded_tokens == 20
        assert resumed["validation", "generate"].units == 2
        assert resumed["validation", "generate"].seconds == pytest.approx(1.02)


def test_named_work_outside_a_stage_goes_to_the_stage_named():
    class Store:
        value = None

        def fact(self, key, default=None):
            return self.value

        def set_fact(self, key, value):
            self.value = value

    profile = TimeProfile(Store())  # type: ignore[arg-type]
    profile.add("model", UnitCost(2.5), stage="load")
    with profile.stage("test"):
        profile.add("generate", UnitCost(1.0, decoded_tokens=10), units=1)
    rows = profile_rows(list(profile.entries.values()))
    assert rows[0][:3] == ("load", "model", "2.5") and rows[1][:2] == ("test", "generate")
    assert rows[-1][0] == "total" and float(rows[-1][2]) >= 3.5
    text = profile_text(list(profile.entries.values()))
    assert text.splitlines()[0].startswith("stage") and "10.0" in text  # 10 tokens in 1 s
