"""The multi-turn family: its arms as laid out, its histories checked, the trend test against an
enumeration, and its three rules on run stores laid out by hand."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from personagate.errors import PersonagateError
from personagate.experiments.analysis.results import Results
from personagate.experiments.design.framing import Framing
from personagate.experiments.design.histories import Histories
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import Group, Role
from personagate.experiments.design.plan import ModelShape, check_findings_laid_out
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.protocols import get, load_spec, recorded_spec, registries
from personagate.experiments.protocols.v3.multiturn_arms import multiturn_conditions
from personagate.experiments.storage import facts
from personagate.stats import paired_trend

from laid_out import LaidOut, pattern

FORMS = ("roleplay", "history")


def spec(tmp_path, text: str = "") -> StudySpec:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return load_spec(path)


# --- design -------------------------------------------------------------------------------------------


def test_the_family_lays_out_every_length_and_the_interventions_at_the_longest(tmp_path):
    s = spec(tmp_path, "[multiturn]\nnull_seeds = 3\n")
    layout = Layout.of(s, 24)
    conditions = multiturn_conditions(s, layout, 0.5)
    assert len(conditions) == len(FORMS) * (5 + 1 + 3 + 2)
    for form in FORMS:
        mine = [c for c in conditions if c.framing.form == form]
        lengths = [c.axis for c in mine if c.role == Role.MULTITURN]
        assert lengths == [0, 1, 2, 4, 8]
        at_max = [c for c in mine if c.role != Role.MULTITURN]
        assert all(c.framing == Framing.multiturn(form, 8) for c in at_max)
        scopes = {c.role: {op.scope for op in c.ops.ops} for c in at_max}
        assert scopes[Role.MULTITURN_KNOCKOUT] == scopes[Role.MULTITURN_NULL] == {"probe"}
        assert scopes[Role.MULTITURN_STEER_PROBE] == {"probe"} and scopes[Role.MULTITURN_STEER_ALL] == {"all"}
        assert not any(c.guard for c in at_max if c.role != Role.MULTITURN_STEER_ALL)  # no conversation in the guard
        knockout = next(c for c in at_max if c.role == Role.MULTITURN_KNOCKOUT)
        assert knockout.window == layout.late and knockout.mode == s.multiturn.mode


def test_histories_are_checked_before_any_model_loads(tmp_path):
    data = tmp_path / "h.json"
    data.write_text(json.dumps({"forms": {"roleplay": [["u", "a"]] * 2, "odd": [["u"]] * 8}}))
    with pytest.raises(PersonagateError, match="goes up to 8, but form 'roleplay'"):
        Histories.of(spec(tmp_path, f'[multiturn]\ndata = "{data}"\nforms = ["roleplay"]\n'))
    with pytest.raises(PersonagateError, match="does not have"):
        Histories.of(spec(tmp_path, f'[multiturn]\ndata = "{data}"\nforms = ["missing"]\n'))
    with pytest.raises(PersonagateError, match=r"odd\[0\] must be \[user text, assistant text\]"):
        Histories.of(spec(tmp_path, f'[multiturn]\ndata = "{data}"\nforms = ["odd"]\n'))
    short = Histories.of(spec(tmp_path, f'[multiturn]\ndata = "{data}"\nforms = ["roleplay"]\nexchanges = [0, 2]\n'))
    conversation = short.conversation("roleplay", 2, "probe?")
    assert conversation.exchanges == 2 and conversation.probe == "probe?"


def laid_roles(s: StudySpec) -> set[Role]:
    return get(s.protocol).plan(s, ModelShape(24, "m")).roles()


def test_a_finding_on_a_form_the_spec_does_not_lay_out_is_refused(tmp_path):
    s = spec(tmp_path, '[multiturn]\nforms = ["history"]\n')
    with pytest.raises(PersonagateError, match=r"'roleplay', which multiturn\.forms"):
        check_findings_laid_out(s, laid_roles(s), registries().rule_needs)
    off = spec(tmp_path, "[multiturn]\nenabled = false\n")
    check_findings_laid_out(off, laid_roles(off), registries().rule_needs)  # switched off: reported as not measured


def test_the_builtin_histories_are_long_enough_and_harmless():
    from personagate.scoring.phrases import is_refusal

    s = load_spec()
    histories = Histories.of(s)
    assert set(histories.forms) == set(FORMS)
    for exchanges in histories.forms.values():
        assert len(exchanges) == 8
        assert not any(is_refusal(reply) for _, reply in exchanges)  # the assistant goes along every time


# --- the trend test -----------------------------------------------------------------------------------


def _enumerated(columns: list[list[float]], decreasing: bool) -> float:
    """The exact permutation p-value by brute force: every unit's values permuted across conditions."""
    weights = np.arange(len(columns))
    rows = list(zip(*columns, strict=True))

    def statistic(table):
        return float(sum(w * np.mean(col) for w, col in zip(weights, zip(*table, strict=True), strict=True)))

    observed = statistic(rows)
    hits = total = 0
    for choice in itertools.product(*(list(itertools.permutations(r)) for r in rows)):
        value = statistic(choice)
        total += 1
        hits += value <= observed + 1e-12 if decreasing else value >= observed - 1e-12
    return hits / total  # every permutation equally likely under exchangeability, equal values included


@pytest.mark.parametrize(
    "columns", [[[1, 0], [1, 1], [0, 0]], [[1, 1, 0], [1, 0, 0], [0, 0, 1]], [[0.3, 1.2], [0.1, 0.4], [-0.5, 0.2]]]
)
def test_paired_trend_equals_the_exact_permutation_test(columns):
    for decreasing in (True, False):
        p = paired_trend(columns, decreasing=decreasing, n_resamples=99999, seed=0)
        assert p == pytest.approx(_enumerated(columns, decreasing))


def test_paired_trend_sees_a_falling_trend_and_not_a_flat_one():
    rng = np.random.default_rng(0)
    falling = [(rng.random(100) < rate).astype(float).tolist() for rate in (0.9, 0.8, 0.6, 0.4, 0.2)]
    flat = [(rng.random(100) < 0.5).astype(float).tolist() for _ in range(5)]
    assert paired_trend(falling, decreasing=True) < 0.001
    assert paired_trend(falling, decreasing=False) > 0.99
    assert paired_trend(flat, decreasing=True) > 0.05
    with pytest.raises(PersonagateError, match="same, non-empty set"):
        paired_trend([[1, 0], [1]], decreasing=True)


# --- the rules ------------------------------------------------------------------------------------------


def _family(laid: LaidOut, form: str, rates: dict[int, int]) -> None:
    for k, refusing in rates.items():
        framing = Framing.multiturn(form, k)
        laid.add(
            f"{form} k={k}", Role.MULTITURN, pattern(refusing), "screen", group=Group.MULTITURN, framing=framing, axis=k
        )


def _at_max(laid: LaidOut, form: str, knockout: int, nulls: list[int]) -> None:
    common = {"group": Group.MULTITURN, "framing": Framing.multiturn(form, 8), "axis": 8}
    laid.add(f"{form} knockout", Role.MULTITURN_KNOCKOUT, pattern(knockout), "screen", **common)
    for seed, refusing in enumerate(nulls):
        name = f"{form} random {seed}"
        laid.add(name, Role.MULTITURN_NULL, pattern(refusing), "screen", seed=seed, **common)


def _verdicts(tmp_path, laid: LaidOut, projections: dict[str, list[float]] | None = None) -> dict[str, object]:
    store = laid.store(tmp_path)
    for name, values in (projections or {}).items():
        store.set_fact(facts.PROJECTION.of(name), {"layer": 6, "values": values})
    results = Results.of(store, recorded_spec(store.manifest()))
    store.close()
    return {v.finding: v for v in results.main_verdicts()}


def test_erosion_knockout_and_projection_reproduce_where_the_data_say_so(tmp_path):
    laid = LaidOut()
    _family(laid, "roleplay", {0: 90, 1: 80, 2: 60, 4: 40, 8: 20})
    _at_max(laid, "roleplay", 70, [20, 22, 18, 21, 25, 19, 20, 23, 20, 24, 21, 20, 22, 19, 18, 20, 21, 23, 20, 22])
    _family(laid, "history", {0: 50, 1: 50, 2: 50, 4: 50, 8: 50})
    _at_max(laid, "history", 51, [50] * 20)
    rng = np.random.default_rng(1)
    projections = {f"roleplay k={k}": (rng.normal(0, 0.3, 100) + k / 4).tolist() for k in (0, 1, 2, 4, 8)}
    base = rng.normal(0, 1, 100)
    projections |= {f"history k={k}": (base - k / 8).tolist() for k in (0, 1, 2, 4, 8)}
    verdicts = _verdicts(tmp_path, laid, projections)
    outcome = {k: v.outcome for k, v in verdicts.items()}
    assert outcome["conversation_erodes_roleplay"] == "reproduced"
    assert outcome["conversation_erodes_history"] == "not reproduced"
    assert outcome["knockout_restores_roleplay"] == "reproduced"
    assert outcome["knockout_restores_history"] == "not reproduced"  # +1% at k = 8, as much as random directions
    assert outcome["projection_tracks_roleplay"] == "reproduced"
    assert outcome["projection_tracks_history"] == "not reproduced"
    erosion = verdicts["conversation_erodes_roleplay"]
    assert erosion.effect == pytest.approx(-0.7) and erosion.n == 100 and erosion.p_value < 0.001
    assert "k=0: 90%" in erosion.detail and "k=8: 20%" in erosion.detail


def test_a_knockout_no_better_than_random_directions_does_not_reproduce(tmp_path):
    laid = LaidOut()
    _family(laid, "roleplay", {0: 90, 1: 80, 2: 60, 4: 40, 8: 20})
    _at_max(laid, "roleplay", 60, [55, 60, 58, 62, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 61])
    verdicts = _verdicts(tmp_path, laid)
    knockout = verdicts["knockout_restores_roleplay"]
    assert knockout.outcome == "not reproduced" and "95th percentile" in knockout.detail


def test_the_family_carries_no_resample_verdicts(tmp_path):
    laid = LaidOut()
    _family(laid, "roleplay", {0: 90, 1: 80, 2: 60, 4: 40, 8: 20})
    with laid.store(tmp_path) as store:
        results = Results.of(store, recorded_spec(store.manifest()))
    framed = [v for v in results.verdicts if v.finding.endswith(FORMS)]
    assert framed and all(v.scope.is_main for v in framed)
    assert any(not v.scope.is_main for v in results.verdicts)  # the other findings still have theirs


def test_too_few_random_directions_cannot_decide(tmp_path):
    laid = LaidOut()
    _family(laid, "roleplay", {0: 90, 1: 80, 2: 60, 4: 40, 8: 20})
    _at_max(laid, "roleplay", 70, [20, 21])
    knockout = _verdicts(tmp_path, laid)["knockout_restores_roleplay"]
    assert knockout.outcome == "inconclusive" and knockout.reason == "too few seeds"


def test_a_framing_is_stored_as_its_own_value_and_old_stores_still_read(tmp_path):
    from personagate.experiments.storage.records import StoredCondition

    framing = Framing.multiturn("roleplay", 4)
    framed = StoredCondition("f", Group.MULTITURN, Role.MULTITURN, "screen", "f", "id", framing=framing)
    meta = json.loads(framed.meta())
    assert meta["framing"] == {"kind": "multiturn", "form": "roleplay", "exchanges": 4} and "system" not in meta
    back = StoredCondition.from_columns("f", 0, "multiturn", 4.0, None, "", "screen", framed.meta())
    assert back.framing == Framing.multiturn("roleplay", 4)
    legacy = {k: v for k, v in meta.items() if k != "framing"} | {"system": "multiturn:history:2"}
    old = StoredCondition.from_columns("f", 0, "multiturn", 2.0, None, "", "screen", json.dumps(legacy))
    assert old.framing == Framing.multiturn("history", 2)
    for bad in (
        {"kind": "multiturn", "form": None, "exchanges": 2},
        {"kind": "multiturn", "form": "history", "exchanges": "2"},
        {"kind": "multiturn", "form": "history", "exchanges": -1},
        {"kind": "default", "form": "history", "exchanges": None},
        {"kind": "elsewhere", "form": None, "exchanges": None},
    ):
        with pytest.raises(PersonagateError, match="framing personagate never writes"):
            StoredCondition.from_columns(
                "f", 0, "multiturn", 2.0, None, "", "screen", json.dumps(meta | {"framing": bad})
            )
