"""The typed study spec: defaults, strict value checks, and errors that name the key."""

from __future__ import annotations

import pytest

from personagate import PersonagateError
from personagate.experiments import protocols
from personagate.experiments.design.profiles import QUICK
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.protocols import load_spec


def load(tmp_path, body: str) -> StudySpec:
    path = tmp_path / "spec.toml"
    path.write_text(body)
    return load_spec(path)


def test_defaults_are_typed_sections():
    spec = load_spec()
    assert spec.model.id == "default" and spec.generation.max_new_tokens >= 64
    assert all(isinstance(c, float) for c in spec.persona.coeffs)
    assert spec.scoring.judge == "" and spec.protocol == "v3"
    assert {"model", "prompts", "persona", "reintroduce", "windows", "verdicts", "findings"} <= set(spec.to_dict())
    ids = ["persona_suppresses", "persona_specific", "reintroduce_late", "window_restores", "random_does_not"]
    ids += [f"{k}_{form}" for k in ("conversation_erodes", "projection_tracks", "knockout_restores") for form in FORMS]
    assert [f.id for f in spec.findings] == ids
    assert [f.frame for f in spec.findings if f.frame] == [*FORMS, *FORMS, *FORMS]
    assert {f.kind for f in spec.findings} == {"as claimed", "specific"}
    assert spec.prompts.n_test >= 100 and spec.windows.random_seeds >= 20


FORMS = ("roleplay", "history")


def test_v1_is_a_named_protocol():
    v1 = load_spec(protocol="v1")
    assert v1.reintroduce.dose == "selected_raw" and v1.windows.random == "orthogonal"
    assert v1.windows.placement == "absolute" and v1.prompts.harmful == "builtin:harmful"
    with pytest.raises(PersonagateError, match="unknown protocol"):
        load_spec(protocol="v9")
    assert load_spec(protocol="v2").generation.sweep == "first_token"


def test_quick_overrides_and_file_overrides(tmp_path):
    quick = load_spec(quick=True)
    assert quick.prompts.n_test == QUICK["prompts"]["n_test"]
    spec = load(tmp_path, "[persona]\ncoeffs = [1, 2.5]\n[windows]\nwidth = 3\n")
    assert spec.persona.coeffs == [1.0, 2.5] and spec.windows.width == 3
    assert isinstance(spec.windows.width, int)  # a block count, not a depth fraction
    assert spec.base == tmp_path.resolve()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[persona]\ncoeffs = [1.0, 1.0]\n", "lists 1.0 twice"),
        ("[persona]\ncoeffs = [1, 1.0]\n", "lists 1.0 twice"),
        ("[persona]\ncoeffs = [nan]\n", "finite"),
        ("[persona]\ncoeffs = []\n", "at least one"),
        ("[persona]\ncoeffs = [-1.0]\n", "positive"),
        ("[scoring]\nmax_nll_delta = nan\n", "finite"),
        ("[scoring]\nmax_nll_delta = -1.0\n", "positive"),
        ("[scoring]\nmax_repetition = 2.0\n", "at most 1"),
        ("[reintroduce]\nlayer_stride = 0\n", "at least 1"),
        ("[reintroduce]\ndose = 'huge'\n", "reintroduce.dose"),
        ("[windows]\nlate = '20:10'\n", "start < stop|START:STOP|resolves"),
        ("[windows]\nlate = '1/0:1'\n", "START:STOP"),
        ("[windows]\nrandom_seeds = -1\n", "at least 0"),
        ("[persona]\nlayer = true\n", "must be a number"),
        ("[persona]\nlayer = 1.5\n", "depth fraction"),
        ("[generation]\nmax_new_tokens = -5\n", "at least 1"),
        ("[generation]\nbatch_size = 0\n", "at least 1"),
        ("[generation]\nmain = 'sample'\n", "generation.main"),
        ("[model]\ndtype = 'int8'\n", "model.dtype"),
        ("[model]\ndevice = 'banana'\n", "unknown device 'banana'"),
        ("[directions]\nresamples = ['a']\n", "must be an integer"),
        ("[directions]\nresamples = [1, 1]\n", "twice"),
        ("[directions]\nresamples = []\n", "at least one"),
        ("[prompts]\nn_test = 2.5\n", "must be an integer"),
        ("[prompts]\nn_train = true\n", "must be an integer"),
        ("[verdicts]\nalpha = 0.7\n", "below 0.5"),
        ("[scoring]\njudge = 'openai'\n", "judge_url"),
        ("[scoring]\njudge = 'gpt'\n", "scoring.judge"),
        ("[persona]\nlayr = 2\n", "unknown key persona.layr"),
        ("[sterring]\nx = 1\n", "unknown section"),
        ("persona = 3\n", "must be a table"),
        ("[[findings]]\nid = 'x'\nclaim = 'c'\nrule = 'vibes'\n", "findings\\[0\\].rule"),
        ("[[findings]]\nid = 'x'\nclaim = 'c'\nrule = 'decrease'\n", "needs 'treated'"),
        (
            "[[findings]]\nid = 'x'\nclaim = 'c'\nrule = 'equivalent'\ntreated = 'persona'\n"
            "reference = 'baseline'\nrequires = 'y'\n",
            "requires 'y', which is not declared",
        ),
        (
            "[[findings]]\nid = 'x'\nclaim = 'c'\nrule = 'equivalent'\ntreated = 'persna'\nreference = 'baseline'\n",
            "findings\\[0\\].treated: unknown role 'persna'",
        ),
        (
            "[[findings]]\nid = 'x'\nclaim = 'c'\nrule = 'equivalent'\ntreated = 'persona'\n"
            "reference = 'baseline'\nrequires = 'x'\n",
            "'x' requires itself",
        ),
        (
            "[[findings]]\nid = 'x'\nclaim = 'c'\nrule = 'decrease'\ntreated = 'persona'\nreference = 'baseline'\n"
            "requires = 'y'\n[[findings]]\nid = 'y'\nclaim = 'c'\nrule = 'decrease'\ntreated = 'persona'\n"
            "reference = 'baseline'\nrequires = 'x'\n",
            "requires 'y', after it",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path, body, message):
    with pytest.raises(PersonagateError, match=message):
        spec = load(tmp_path, body)
        spec.check_layers(24)


def test_layer_checks_need_the_block_count(tmp_path):
    spec = load(tmp_path, "[persona]\nlayer = 30\n")
    with pytest.raises(PersonagateError, match=r"persona\.layer = 30 is out of range"):
        spec.check_layers(24)
    assert spec.persona_layer(32) == 30
    assert load_spec().persona_layer(24) == 6


def test_non_utf8_spec_is_named(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_bytes(b"[model]\nid = '\xff'\n")
    with pytest.raises(PersonagateError, match="not UTF-8"):
        load_spec(path)


def test_every_protocol_loads_quick_and_full_and_the_cli_offers_each():
    from personagate.cli import build_parser

    offered = next(
        a for a in build_parser()._subparsers._group_actions[0].choices["reproduce"]._actions if a.dest == "protocol"
    ).choices
    assert list(offered) == list(protocols.names()) == ["v3", "paper", "v1", "v2"]
    for protocol in protocols.names():
        assert load_spec(protocol=protocol).protocol == protocol
        assert load_spec(protocol=protocol, quick=True).prompts.n_test == QUICK["prompts"]["n_test"]


def test_a_spec_file_can_name_its_protocol(tmp_path):
    from personagate.experiments.design.profiles import spec_file_text

    path = tmp_path / "paper.toml"
    path.write_text(spec_file_text(protocols.get("paper").spec))
    spec = load_spec(path)
    assert spec.protocol == "paper" and spec.prompts.test == "builtin:strongreject"
    assert spec.to_dict() == {**load_spec(protocol="paper").to_dict()}
    assert spec_file_text(protocols.get("v3").spec).startswith("# personagate study spec, protocol v3")
