"""Property-based tests of every parser and check layer: whatever a user's file or flag holds, it is
accepted or refused with ``PersonagateError`` (one line at the CLI); nothing else escapes.

Hypothesis runs with a fixed seed and a bounded number of examples per test (``FUZZ``), so CI is
deterministic and takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personagate import Direction, PersonagateError
from personagate.experiments.protocols import load_spec
from personagate.interventions import OPS, Program, op_from_flag
from personagate.persona_directions import PersonaSet
from personagate.program_files import read_toml
from personagate.prompts import load_prompts
from personagate.scoring.judge import parse_judge_reply

SECTIONS = ("model", "prompts", "directions", "persona", "reintroduce", "windows", "generation", "scoring",
            "verdicts", "paper", "findings", "bogus")  # fmt: skip
KEYS = ("id", "coeffs", "layer", "n_test", "margin", "alpha", "seed", "resamples", "random_seeds", "refusal_tokens",
        "width", "late", "dose", "rule", "treated", "requires", "dtype", "device", "system", "x")  # fmt: skip
EXAMPLES = int(os.environ.get("PERSONAGATE_FUZZ_EXAMPLES", "60"))  # CI: 60 per test; raise it to hunt
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # a fixed seed: the same examples in every run, CI included
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(toml_value(v) for v in value) + "]"  # type: ignore[union-attr]


def accepted_or_ours(action) -> None:
    try:
        action()
    except PersonagateError as exc:
        assert "\n" not in str(exc).strip()  # one line
    # anything else propagates and fails the test


@FUZZ
@given(
    st.dictionaries(st.sampled_from(SECTIONS), st.dictionaries(st.sampled_from(KEYS), values, max_size=4), max_size=4)
)
def test_any_spec_is_accepted_or_refused_in_one_line(tmp_path_factory, tables):
    lines = []
    for section, table in tables.items():
        lines.append(f"[[{section}]]" if section == "findings" else f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path = tmp_path_factory.mktemp("spec") / "spec.toml"
    path.write_text("\n".join(lines) + "\n")
    accepted_or_ours(lambda: load_spec(path).check_layers(24))


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_as_a_spec_or_program_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("raw") / "file.toml"
    path.write_bytes(data)
    accepted_or_ours(lambda: load_spec(path))
    accepted_or_ours(lambda: Program.from_table(read_toml(path, "program"), "program"))


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(("op", "direction", "coeff", "layers", "window", "scope", "unit",
                                                 "value", "x")), values, max_size=6), max_size=3))  # fmt: skip
def test_any_program_table(ops):
    for table in ops:
        table.setdefault("op", "add")  # mostly a known kind, so the fields behind it get exercised
    accepted_or_ours(lambda: Program.from_table({"ops": ops}, "program"))


@FUZZ
@given(st.sampled_from(sorted(OPS)), st.text(max_size=40))
def test_any_op_flag(kind, text):
    accepted_or_ours(lambda: op_from_flag(kind, text))


@FUZZ
@given(st.sampled_from([".txt", ".json", ".jsonl", ".csv"]), st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_any_prompt_file(tmp_path_factory, suffix, content):
    path = tmp_path_factory.mktemp("prompts") / f"p{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    accepted_or_ours(lambda: load_prompts(path))


@FUZZ
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=10))  # fmt: skip
def test_any_json_prompt_or_persona_file(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("json")
    (folder / "p.json").write_text(json.dumps(data))
    accepted_or_ours(lambda: load_prompts(folder / "p.json"))
    (folder / "persona.json").write_text(json.dumps(data))
    accepted_or_ours(lambda: PersonaSet.load(folder / "persona.json"))


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(PersonagateError, match="deep"):
        load_prompts(tmp_path / "deep.json")
    (tmp_path / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PersonagateError, match=r"deep|TOML"):
        read_toml(tmp_path / "deep.toml", "spec")


metadata_values = st.one_of(st.text(max_size=30), st.just('{"name": 3}'), st.just("[1, 2]"), st.just("null"),
                            st.just('{"schema_version": "x"}'), st.just('{"schema_version": 99}'))  # fmt: skip


@FUZZ
@given(
    st.sampled_from([(4, 8), (8,), (0, 8), (2, 3, 4), ()]),
    st.sampled_from([torch.float32, torch.int64, torch.float16, torch.bool]),
    st.dictionaries(st.sampled_from(["personagate", "other"]), metadata_values, max_size=2),
    st.sampled_from(["vectors", "weights"]),
)
def test_any_safetensors_file_as_a_direction(tmp_path_factory, shape, dtype, metadata, key):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("vec") / "v.safetensors"
    save_file({key: torch.zeros(shape, dtype=dtype) + (1 if dtype != torch.bool else 0)}, str(path), metadata=metadata)
    accepted_or_ours(lambda: Direction.load(path))


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_as_a_direction_or_a_gguf_control_vector(tmp_path_factory, data):
    from personagate.interop import read_llamacpp_control_vector

    folder = tmp_path_factory.mktemp("bytes")
    (folder / "v.safetensors").write_bytes(data)
    accepted_or_ours(lambda: Direction.load(folder / "v.safetensors"))
    (folder / "c.gguf").write_bytes(b"GGUF" + struct.pack("<I", 3) + data)
    accepted_or_ours(lambda: read_llamacpp_control_vector(folder / "c.gguf", 6))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.builds(json.dumps, values), st.builds(json.dumps, st.fixed_dictionaries(
    {"choices": st.lists(st.fixed_dictionaries({"message": st.fixed_dictionaries(
        {"content": st.one_of(st.text(max_size=20), st.integers(), st.none())})}), max_size=2)}))))  # fmt: skip
def test_any_judge_reply(body):
    accepted_or_ours(lambda: parse_judge_reply(body, "http://127.0.0.1"))


FACT_KEYS = ["layout", "persona_coeff", "resample_seeds", "calibration", "geometry", "cos_persona_refusal"]
FACT_KEYS = ["layout", "persona_coeff", "resample_seeds", "calibration", "geometry", "cos_persona_refusal"]
FACT_VALUES = st.one_of(st.text(max_size=10), st.builds(json.dumps, values), st.just('{"n_layers": "x"}'))


@FUZZ
@given(
    st.dictionaries(st.sampled_from(FACT_KEYS), FACT_VALUES, max_size=3),
    st.sampled_from(["{}", '{"role": "nope"}', "not json", '{"window": [1]}', '{"role": "baseline", "dose": "x"}']),
    st.sampled_from(["generate", "screen", "weird"]),
    st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=5)),
)
def test_any_edited_store_given_to_report(tmp_path_factory, facts, meta, mode, label):
    """A store personagate wrote, then edited by hand: `report` says so in one line, or reports it."""
    from personagate.experiments.design.names import Role
    from personagate.report import load_results

    from laid_out import LaidOut, pattern

    folder = tmp_path_factory.mktemp("store")
    LaidOut().add("baseline", Role.BASELINE, pattern(10, n=10)).store(folder).close()
    database = folder / "run" / "run.sqlite"
    with sqlite3.connect(database) as db:
        for key, value in facts.items():
            db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (key, value))
        db.execute("UPDATE conditions SET meta = ?, mode = ?", (meta, mode))
        db.execute("UPDATE rows SET label = ? WHERE prompt_id = 0", (label,))
    accepted_or_ours(lambda: load_results(folder / "run"))


def test_the_fuzzers_run_at_a_fixed_seed():
    assert FUZZ.derandomize and FUZZ.database is None and FUZZ.max_examples == EXAMPLES
