"""The CLI end to end on a tiny local model folder, and its one-line errors (exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from personagate import Direction
from personagate.cli import main

from tiny import tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    chat = tiny_model("qwen2")
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    chat.model.save_pretrained(folder)
    chat.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vectors")
    g = torch.Generator().manual_seed(0)
    Direction(torch.randn(4, 64, generator=g), name="persona").save(folder / "persona.safetensors")
    Direction(torch.randn(32, generator=g), name="small").save(folder / "small.safetensors")
    save_file({"vectors": torch.tensor([[float("nan")] * 64] * 4)}, str(folder / "nan.safetensors"))
    return folder


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_writes_jsonl_with_an_ordered_program(model_dir, vectors, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hi\nName a bird\n")
    out = tmp_path / "out.jsonl"
    code, _, err = run(
        [
            "generate",
            "--model",
            model_dir,
            "--prompts",
            prompts,
            "--max-new-tokens",
            4,
            "--add",
            f"{vectors}/persona.safetensors,0.5,all",
            "--ablate",
            f"{vectors}/persona.safetensors,2:4",
            "--out",
            out,
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["Hi", "Name a bird"]
    assert all(r["finish"] in ("eos", "stop", "length") for r in rows)
    assert err.index("1. add 0.5 x persona") < err.index("2. project persona out")


def test_program_file_equals_flags(model_dir, vectors, tmp_path, capsys):
    program = tmp_path / "program.toml"
    program.write_text(
        f'[[ops]]\nop = "add"\ndirection = "{vectors}/persona.safetensors"\ncoeff = 2.0\nlayers = "1:3"\n'
    )
    base = ["generate", "--model", model_dir, "--prompt", "Hello", "--max-new-tokens", 6, "--quiet"]
    code1, from_file, _ = run([*base, "--program", program], capsys)
    code2, from_flags, _ = run([*base, "--add", f"{vectors}/persona.safetensors,2.0,1:3"], capsys)
    assert code1 == code2 == 0 and from_file == from_flags


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompts", "missing.txt"], "no such prompt file"),
        (["--prompt", "x", "--add", "VEC/persona.safetensors,1,7"], "out of range"),
        (["--prompt", "x", "--ablate", "VEC/persona.safetensors,3:3"], "start < stop"),
        (["--prompt", "x", "--add", "VEC/small.safetensors,1"], "hidden size 32"),
        (["--prompt", "x", "--add", "VEC/nan.safetensors,1"], "NaN"),
        (["--prompt", "x", "--add", "VEC/none.safetensors,1"], "no such direction file"),
        (["--prompt", "x", "--add", "VEC/persona.safetensors,abc"], "not a number"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(model_dir, vectors, capsys, extra, message):
    extra = [str(e).replace("VEC", str(vectors)) for e in extra]
    code, _, err = run(["generate", "--model", model_dir, "--quiet", *extra], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("personagate: error:")]
    assert len(lines) == 1 and message in lines[0], err


def test_unknown_model_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(["generate", "--model", "no-such-org/no-such-model", "--prompt", "x"], capsys)
    assert code == 2 and "no-such-org/no-such-model" in err


def test_missing_gguf_file(capsys, tmp_path):
    code, _, err = run(["generate", "--model", tmp_path / "absent.gguf", "--prompt", "x"], capsys)
    assert code == 2 and "no such GGUF file" in err


def test_unknown_architecture_names_the_fix(tmp_path, capsys):
    chat = tiny_model("qwen2")
    chat.model.save_pretrained(tmp_path)
    chat.tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["MysteryForCausalLM"]  # loads as Qwen2 by model_type, unknown to our table
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, _, err = run(["generate", "--model", tmp_path, "--prompt", "x", "--quiet"], capsys)
    assert code == 2 and "MysteryForCausalLM" in err and "--adapter" in err
    code, _, err = run(
        [
            "generate",
            "--model",
            tmp_path,
            "--prompt",
            "x",
            "--quiet",
            "--max-new-tokens",
            2,
            "--adapter",
            "model.layers,self_attn,mlp",
        ],
        capsys,
    )
    assert code == 0, err


def test_cli_process_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "personagate.cli", "generate", "--model", str(tmp_path / "x.gguf"), "--prompt", "hi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_clamp_flag_runs_and_describes_itself(model_dir, vectors, capsys):
    code, _, err = run(
        [
            "generate",
            "--model",
            model_dir,
            "--prompt",
            "Hello",
            "--max-new-tokens",
            3,
            "--quiet",
            "--clamp",
            f"{vectors}/persona.safetensors,2.5,1:3",
        ],
        capsys,
    )
    assert code == 0, err
    assert "1. hold the projection onto persona at 2.5 in the residual stream of blocks 1..2" in err


def test_directions_import_and_export_round_trip(vectors, tmp_path, capsys):
    persona = Direction.load(vectors / "persona.safetensors")
    code, out, err = run(
        ["directions", "export", vectors / "persona.safetensors", "--out", tmp_path / "control.gguf"], capsys
    )
    assert code == 0, err
    assert "wrote" in out
    code, out, err = run(
        [
            "directions",
            "import",
            tmp_path / "control.gguf",
            "--format",
            "llamacpp",
            "--n-layers",
            4,
            "--name",
            "persona",
            "--out",
            tmp_path / "back.safetensors",
        ],
        capsys,
    )
    assert code == 0, err
    back = Direction.load(tmp_path / "back.safetensors")
    assert back.name == "persona"
    # llama.cpp cannot carry resid_pre[0], [1] (nor the last block's output); the rest survives exactly
    assert torch.equal(back.vectors[2:3], persona.vectors[2:3])
    pt = tmp_path / "rd"
    pt.mkdir()
    torch.save(torch.randn(64), pt / "direction.pt")
    (pt / "direction_metadata.json").write_text(json.dumps({"pos": -1, "layer": 2}))
    code, out, err = run(
        ["directions", "import", pt, "--format", "refusal_direction", "--out", tmp_path / "r.safetensors"], capsys
    )
    assert code == 0, err and Direction.load(tmp_path / "r.safetensors").meta["layer"] == 2
    code, _, err = run(
        ["directions", "import", pt, "--format", "llamacpp", "--out", tmp_path / "x.safetensors"], capsys
    )
    assert code == 2 and "--n-layers" in err


def _conversation_file(tmp_path, rows):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    return path


HISTORY = [
    {"role": "user", "content": "Be a pirate."},
    {"role": "assistant", "content": "Arr."},
]


def test_generate_conversations_with_a_probe_scoped_op_and_a_turn_readout(model_dir, vectors, tmp_path, capsys):
    path = _conversation_file(
        tmp_path,
        [[*HISTORY, {"role": "user", "content": "Hi"}], [*HISTORY, {"role": "user", "content": "Name a bird"}]],
    )
    out = tmp_path / "out.jsonl"
    base = ["generate", "--model", model_dir, "--conversation", path, "--max-new-tokens", 4, "--quiet"]
    code, _, err = run(
        [
            *base,
            "--add",
            f"{vectors}/persona.safetensors,2.0,1,probe",
            "--readout",
            f"{vectors}/persona.safetensors",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["Hi", "Name a bird"] and all(r["turns"] == 3 for r in rows)
    assert all(len(r["readout"]["persona"]) == 3 for r in rows)
    assert rows[0]["readout"]["persona"][:2] == rows[1]["readout"]["persona"][:2]  # the same history, the same drift
    assert "probe turn" in err


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[{"role": "assistant", "content": "x"}]], "expected the user"),
        ([[{"role": "user", "content": ""}]], "empty"),
        ([[{"role": "user", "content": "x", "weight": 1}]], "unknown field"),
        ([HISTORY], "ends with the user"),
        ([[{"role": "user", "content": "word " * 400}]], "exceeds the model's context of 1,024"),
    ],
)
def test_bad_conversations_exit_2_before_the_model_loads(model_dir, tmp_path, capsys, monkeypatch, rows, message):
    import personagate.models

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(personagate.models, "load_model", no_loading)
    path = _conversation_file(tmp_path, rows)
    code, _, err = run(["generate", "--model", model_dir, "--conversation", path, "--quiet"], capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("personagate: error:")]
    assert len(lines) == 1 and message in lines[0], err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt", "Hi", "--add", "VEC/persona.safetensors,1,1,probe"], "pass --conversation"),
        (["--prompt", "Hi", "--readout-layer", "1"], "--readout-layer needs --readout"),
    ],
)
def test_conversation_flags_without_a_conversation_fail_before_loading(
    model_dir, vectors, capsys, monkeypatch, extra, message
):
    import personagate.models

    monkeypatch.setattr(
        personagate.models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded"))
    )
    extra = [str(e).replace("VEC", str(vectors)) for e in extra]
    code, _, err = run(["generate", "--model", model_dir, "--quiet", *extra], capsys)
    assert code == 2 and message in err, err
