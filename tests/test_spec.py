"""The typed study spec: defaults, strict value checks, and errors that name the key."""

from __future__ import annotations

import pytest

from personagate import PersonagateError
from personagate.experiments.spec import QUICK, StudySpec


def load(tmp_path, body: str) -> StudySpec:
    path = tmp_path / "spec.toml"
    path.write_text(body)
    return StudySpec.load(path)


def test_defaults_are_typed_sections():
    spec = StudySpec.load()
    assert spec.model.id == "default" and spec.generation.max_new_tokens > 0
    assert all(isinstance(c, float) for c in spec.steering.persona_coeffs)
    assert spec.scoring.judge == ""
    assert set(spec.to_dict()) == {"model", "prompts", "directions", "steering", "generation", "scoring"}


def test_quick_overrides_and_file_overrides(tmp_path):
    quick = StudySpec.load(quick=True)
    assert quick.prompts.n_test == QUICK["prompts"]["n_test"]
    spec = load(tmp_path, "[steering]\npersona_coeffs = [1, 2.5]\nwindow_width = 3\n")
    assert spec.steering.persona_coeffs == [1.0, 2.5] and spec.steering.window_width == 3
    assert isinstance(spec.steering.window_width, int)  # a block count, not a depth fraction
    assert spec.base == tmp_path.resolve()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[steering]\npersona_coeffs = [1.0, 1.0]\n", "lists 1.0 twice"),
        ("[steering]\npersona_coeffs = [1, 1.0]\n", "lists 1.0 twice"),
        ("[steering]\npersona_coeffs = [nan]\n", "finite"),
        ("[steering]\npersona_coeffs = []\n", "at least one"),
        ("[steering]\nincoherent_kl = nan\n", "finite"),
        ("[steering]\ncoherence_max_kl = nan\n", "finite"),
        ("[steering]\ncoherence_max_kl = -1.0\n", "positive"),
        ("[steering]\nreintroduce_layer_stride = 0\n", "at least 1"),
        ("[steering]\nlate_window = '20:10'\n", "start < stop|START:STOP|resolves"),
        ("[steering]\nreintroduce_windows = ['1/0:1']\n", "START:STOP"),
        ("[steering]\npersona_layer = true\n", "must be a number"),
        ("[steering]\npersona_layer = 1.5\n", "depth fraction"),
        ("[generation]\nmax_new_tokens = -5\n", "at least 1"),
        ("[generation]\nbatch_size = 0\n", "at least 1"),
        ("[generation]\nmain = 'sample'\n", "generation.main"),
        ("[model]\ndtype = 'int8'\n", "model.dtype"),
        ("[model]\ndevice = 'banana'\n", "unknown device 'banana'"),
        ("[directions]\nrandom_seeds = ['a']\n", "must be an integer"),
        ("[directions]\nrandom_seeds = [1, 1]\n", "twice"),
        ("[prompts]\nn_test = 2.5\n", "must be an integer"),
        ("[prompts]\nn_train = true\n", "must be an integer"),
        ("[scoring]\njudge = 'openai'\n", "judge_url"),
        ("[scoring]\njudge = 'gpt'\n", "scoring.judge"),
        ("[steering]\nwindow_widht = 2\n", "unknown key steering.window_widht"),
        ("[sterring]\nx = 1\n", "unknown section"),
        ("steering = 3\n", "must be a table"),
    ],
)
def test_bad_values_name_the_key(tmp_path, body, message):
    with pytest.raises(PersonagateError, match=message):
        spec = load(tmp_path, body)
        spec.check_layers(24)


def test_layer_checks_need_the_block_count(tmp_path):
    spec = load(tmp_path, "[steering]\npersona_layer = 30\n")
    with pytest.raises(PersonagateError, match="persona_layer = 30 is out of range"):
        spec.check_layers(24)
    assert spec.persona_layer(32) == 30
    assert StudySpec.load().persona_layer(24) == 12


def test_non_utf8_spec_is_named(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_bytes(b"[model]\nid = '\xff'\n")
    with pytest.raises(PersonagateError, match="not UTF-8"):
        StudySpec.load(path)
