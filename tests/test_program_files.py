"""Program files and op flags: the one table form of every op kind, read strictly, round-tripped."""

from __future__ import annotations

import pytest
import torch

from personagate import Ablate, Add, Clamp, Direction, PersonagateError, Program, Window
from personagate.interventions import OPS, Project, op_from_flag, op_from_table
from personagate.program_files import load_program, program_from_args


@pytest.fixture
def vector_dir(tmp_path):
    Direction(torch.randn(4, 64), name="persona").save(tmp_path / "persona.safetensors")
    return tmp_path


def test_every_op_kind_round_trips_through_its_table():
    ops = [
        Add("persona", 0.5, "all"),
        Add("persona", -2.0, 12, scope="prompt", unit=True),
        Add("refusal", 1.0, (3, 4)),
        Add("refusal", 1.0, Window(2 / 3, 1.0)),
        Ablate("persona", Window(16, 24)),
        Ablate("persona", Window(0.5, 1.0), scope="generated"),
        Clamp("refusal", 3.0, Window(1, 3)),
        Clamp("refusal", (0.0, 1.0, 2.0), Window(0, 3)),
        Project("persona", 21),
        Project("persona", (3, 5), scope="prompt"),
    ]
    assert {type(op) for op in ops} == set(OPS.values())
    program = Program(ops)
    again = Program.from_table(program.to_table(), "roundtrip")
    assert again == program
    assert [op.describe() for op in again.ops] == [op.describe() for op in ops]


def test_program_file_binds_directions_relative_to_the_file(vector_dir):
    (vector_dir / "p.toml").write_text(
        '[[ops]]\nop = "add"\ndirection = "persona.safetensors"\ncoeff = 2\nlayers = "1:3"\n'
        '[[ops]]\nop = "clamp"\ndirection = "persona.safetensors"\nvalue = 1.5\nwindow = [2, 4]\n'
    )
    program = load_program(vector_dir / "p.toml")
    assert [op.kind for op in program.ops] == ["add", "clamp"]
    assert all(isinstance(op.direction, Direction) for op in program.ops)
    assert program.ops[0].to_table()["direction"] == "persona.safetensors"  # the reference, not the name
    assert "1. add 2 x persona to the residual stream entering blocks 1..2" in program.describe(4)


def test_flags_follow_the_program_file_in_order(vector_dir, monkeypatch):
    monkeypatch.chdir(vector_dir)
    (vector_dir / "p.toml").write_text('[[ops]]\nop = "ablate"\ndirection = "persona.safetensors"\n')
    program = program_from_args(
        vector_dir / "p.toml", [("add", "persona.safetensors,0.5,12"), ("clamp", "persona.safetensors,2,1:3")]
    )
    assert [op.kind for op in program.ops] == ["ablate", "add", "clamp"]
    assert program.ops[1].layers == 12


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"op": "add", "direction": "p", "coeff": "abc"}, "coeff must be a number"),
        ({"op": "add", "direction": "p", "coeff": True}, "coeff must be a number"),
        ({"op": "add", "direction": "p", "coeff": float("nan")}, "finite"),
        ({"op": "add", "direction": "p", "coeff": 1, "unit": "no"}, "unit must be true or false"),
        ({"op": "add", "direction": "p"}, "'coeff' is required"),
        ({"op": "add", "coeff": 1}, "'direction' is required"),
        ({"op": "add", "direction": "p", "coeff": 1, "layers": [1.5]}, "layers must be"),
        ({"op": "add", "direction": "p", "coeff": 1, "scope": "some"}, "scope"),
        ({"op": "add", "direction": "p", "coeff": 1, "window": "1:2"}, "unknown key 'window'"),
        ({"op": "ablate", "direction": "p", "window": "1/0:1"}, "START:STOP"),
        ({"op": "ablate", "direction": "p", "window": "1e999:1"}, "finite"),
        ({"op": "ablate", "direction": "p", "window": "0.5:2"}, "depth fractions"),
        ({"op": "ablate", "direction": "p", "window": [1]}, "window must be"),
        ({"op": "steer", "direction": "p"}, "'op' must be"),
        ("add", "must be a table"),
    ],
)
def test_bad_op_tables_are_one_line_errors(table, message):
    with pytest.raises(PersonagateError, match=message):
        op_from_table(table, "ops[0]")


def test_bad_program_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('ops = "add"\n')
    with pytest.raises(PersonagateError, match="ops must be a list"):
        load_program(bad)
    bad.write_bytes(b"\xff\xfe[[ops]]\n")
    with pytest.raises(PersonagateError, match="not UTF-8"):
        load_program(bad)
    bad.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(PersonagateError, match="binary"):
        load_program(bad)
    bad.write_text("[[ops]\n")
    with pytest.raises(PersonagateError, match="not valid TOML"):
        load_program(bad)
    bad.write_text("[other]\n")
    with pytest.raises(PersonagateError, match="unknown key 'other'"):
        load_program(bad)


def test_flag_forms():
    assert op_from_flag("add", "p.safetensors,0.5") == Add("p.safetensors", 0.5, "all")
    assert op_from_flag("add", "p.safetensors,1,2/3:1,prompt") == Add(
        "p.safetensors", 1.0, Window(2 / 3, 1.0), "prompt"
    )
    assert op_from_flag("ablate", "p.safetensors") == Ablate("p.safetensors")
    with pytest.raises(PersonagateError, match="not a number"):
        op_from_flag("add", "p.safetensors,abc")
    with pytest.raises(PersonagateError, match=r"expected FILE,COEFF\[,LAYERS\[,SCOPE\]\]"):
        op_from_flag("add", "p.safetensors,1,2,all,extra")
