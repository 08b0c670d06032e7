"""A catalogue of bad inputs and faults, as a hostile user would try them: each one gives exit code 2,
exactly one line on stderr, no traceback, and writes or overwrites nothing."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from personagate import Direction
from personagate.cli import main
from personagate.experiments.storage.store import RunStore

from tiny import tiny_model

SPEC = """
[model]
id = "{model}"
[prompts]
n_train = 2
n_val = 2
n_test = 4
n_safe = 2
n_neutral = 2
[directions]
refusal = "{root}/refusal.safetensors"
persona = "{root}/persona.safetensors"
refusal_tokens = ["I", "S"]
resamples = [0]
[persona]
layer = 1
coeffs = [1.0]
styles = false
random_adds = []
[reintroduce]
coeffs = [1.0]
layer_stride = 2
[verdicts]
max_incoherent = 1.0  # a random-weight model's replies are all incoherent
[scoring]
max_nll_delta = 10.0
[multiturn]
exchanges = [0, 1, 2]
null_seeds = 2
[windows]
width = 2
stride = 2
random_seeds = 2
natural = false
[generation]
main = "first_token"
sweep = "first_token"
batch_size = 4
[[findings]]
id = "persona_suppresses"
claim = "Steering a compliant persona suppresses refusal"
rule = "decrease"
treated = "persona"
reference = "baseline"
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace holding every file the cases point at, and one finished run."""
    root = tmp_path_factory.mktemp("bad-inputs")
    chat = tiny_model("qwen2")
    chat.model.save_pretrained(root / "model")
    chat.tokenizer.save_pretrained(root / "model")
    g = torch.Generator().manual_seed(0)
    Direction(torch.randn(4, 64, generator=g) * 3, name="refusal").save(root / "refusal.safetensors")
    Direction(torch.randn(4, 64, generator=g), name="persona").save(root / "persona.safetensors")
    Direction(torch.randn(6, 64, generator=g), name="six").save(root / "six.safetensors")
    Direction(torch.randn(32, generator=g), name="small").save(root / "small.safetensors")
    Direction(torch.randn(64, generator=g), name="one").save(root / "one.safetensors")
    from safetensors.torch import save_file

    save_file({"vectors": torch.full((4, 64), float("nan"))}, str(root / "nan.safetensors"))
    (root / "spec.toml").write_text(SPEC.format(model=root / "model", root=root))
    (root / "prompts.txt").write_text("Hello\nName a bird\n")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (root / "binary.txt").write_bytes(b"\x00\x01\x02\x03garbage")
    (root / "huge.txt").write_text("x" * 5_000_000 + "\n")
    (root / "plain.csv").write_text("completion,refusal\nSure,0\n")
    (root / "latin1.csv").write_bytes("completion\ncaf\xe9\n".encode("latin-1"))
    (root / "a-file").write_text("not a folder\n")
    (root / "empty-model").mkdir()
    (root / "not.gguf").write_text("this is text, not GGUF\n")
    (root / "truncated.gguf").write_bytes(b"GGUF" + struct.pack("<I", 3) + b"\x01\x02")
    for name, body in {
        "coeff-abc.toml": '[[ops]]\nop = "add"\ndirection = "persona.safetensors"\ncoeff = "abc"\n',
        "coeff-true.toml": '[[ops]]\nop = "add"\ndirection = "persona.safetensors"\ncoeff = true\n',
        "unit-no.toml": '[[ops]]\nop = "add"\ndirection = "persona.safetensors"\ncoeff = 1\nunit = "no"\n',
        "ops-string.toml": 'ops = "add"\n',
        "window-zero.toml": '[[ops]]\nop = "ablate"\ndirection = "persona.safetensors"\nwindow = "1/0:1"\n',
    }.items():
        (root / name).write_text(body)
    (root / "latin1.toml").write_bytes("[model]\nid = 'caf\xe9'\n".encode("latin-1"))
    (root / "binary.toml").write_bytes(b"\x00\x00\x00binary")
    # reliability by construction (issue 20): what the catalogue's new cases point at
    os.mkfifo(root / "a-fifo")
    os.mkfifo(root / "fifo.txt")
    os.mkfifo(root / "fifo.gguf")
    (root / "a-link").symlink_to(root / "plain.csv")
    (root / "user-folder").mkdir()
    (root / "user-folder" / "summary.csv").write_text("my own results\n")
    with open(root / "sparse.txt", "wb") as f:  # 600 MB on paper, nothing on disk: refused before reading
        f.truncate(600 * 2**20)
    (root / "long-row.csv").write_text("completion\nSure,extra,fields\n")
    (root / "deep.toml").write_text("x = " + "[" * 40 + "]" * 40 + "\n")
    save_file({"vectors": torch.ones(4, 64)}, str(root / "odd-meta.safetensors"), metadata={"personagate": "[1, 2]"})
    (root / "fifo-run").mkdir()
    os.mkfifo(root / "fifo-run" / "run.sqlite")
    assert main(["run", str(root / "spec.toml"), "--out", str(root / "good-run"), "--quiet"]) == 0
    return root


def spec_with(ws: Path, name: str, extra: str) -> Path:
    """The workspace spec with TOML appended (later keys of a table must be merged by hand: re-state it)."""
    text = (ws / "spec.toml").read_text()
    section, _, body = extra.partition("\n")
    for line in body.splitlines():  # a key the spec already sets is replaced, not repeated
        key = line.split("=")[0].strip()
        text = "\n".join(t for t in text.splitlines() if t.split("=")[0].strip() != key) + "\n"
    if section in text:
        text = text.replace(section, f"{section}\n{body}".rstrip("\n"), 1)
    else:
        text += extra
    path = ws / f"spec-{name}.toml"
    path.write_text(text)
    return path


def damaged_run(ws: Path, name: str, how: str) -> Path:
    """A copy of the good run whose run.sqlite is empty, garbage, truncated or another app's database."""
    run = ws / f"run-{name}"
    if not run.exists():
        shutil.copytree(ws / "good-run", run)
        db = run / "run.sqlite"
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if how == "empty":
            db.write_bytes(b"")
        elif how == "garbage":
            db.write_bytes(b"this is not a database" * 100)
        elif how == "truncated":
            data = db.read_bytes()
            db.write_bytes(data[: len(data) // 3])
        elif how == "foreign":
            db.unlink()
            with sqlite3.connect(db) as other:
                other.execute("CREATE TABLE songs (title TEXT)")
    return run


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    message: str
    env: dict[str, str] = field(default_factory=dict)
    setup: str = ""  # a damaged run to prepare: "empty", "garbage", "truncated", "foreign"


GEN = ["generate", "--model", "{ws}/model", "--quiet"]
PROMPT = [*GEN, "--prompt", "Hello"]
CASES = [
    # generate: flags and values
    Case("max-new-tokens 0", [*PROMPT, "--max-new-tokens", "0"], "must be at least 1"),
    Case("batch-size negative", [*PROMPT, "--batch-size", "-1"], "must be at least 1"),
    Case("device banana", [*PROMPT, "--device", "banana"], "unknown device 'banana'"),
    Case("dtype int8", [*PROMPT, "--dtype", "int8"], "invalid choice"),
    Case("bad adapter", [*PROMPT, "--adapter", "model.layers,mlp"], "expected BLOCKS,ATTN,MLP"),
    Case("no such prompt file", [*GEN, "--prompts", "{ws}/missing.txt"], "no such prompt file"),
    Case("non-UTF-8 prompts", [*GEN, "--prompts", "{ws}/latin1.txt"], "not UTF-8"),
    Case("binary prompts", [*GEN, "--prompts", "{ws}/binary.txt"], "binary file"),
    Case("5 MB prompt line", [*GEN, "--prompts", "{ws}/huge.txt"], "over the limit"),
    Case("coefficient abc", [*PROMPT, "--add", "{ws}/persona.safetensors,abc"], "not a number"),
    Case("layer out of range", [*PROMPT, "--add", "{ws}/persona.safetensors,1,7"], "out of range"),
    Case("window 1/0:1", [*PROMPT, "--ablate", "{ws}/persona.safetensors,1/0:1"], "START:STOP"),
    Case("window 1e999:1", [*PROMPT, "--ablate", "{ws}/persona.safetensors,1e999:1"], "finite"),
    Case("clamp without value", [*PROMPT, "--clamp", "{ws}/persona.safetensors"], "expected FILE,VALUE"),
    Case("direction of another size", [*PROMPT, "--add", "{ws}/small.safetensors,1"], "hidden size 32"),
    Case("NaN direction", [*PROMPT, "--add", "{ws}/nan.safetensors,1"], "NaN"),
    Case("no such direction", [*PROMPT, "--add", "{ws}/none.safetensors,1"], "no such direction file"),
    Case("program coeff abc", [*PROMPT, "--program", "{ws}/coeff-abc.toml"], "coeff must be a number"),
    Case("program coeff true", [*PROMPT, "--program", "{ws}/coeff-true.toml"], "coeff must be a number"),
    Case("program unit no", [*PROMPT, "--program", "{ws}/unit-no.toml"], "unit must be true or false"),
    Case("program ops string", [*PROMPT, "--program", "{ws}/ops-string.toml"], "ops must be a list"),
    Case("program window 1/0", [*PROMPT, "--program", "{ws}/window-zero.toml"], "START:STOP"),
    Case("program non-UTF-8", [*PROMPT, "--program", "{ws}/latin1.toml"], "not UTF-8"),
    Case("out under a file", [*PROMPT, "--out", "{ws}/a-file/out.jsonl"], "is a file"),
    Case("out is a folder", [*PROMPT, "--out", "{ws}/empty-model"], "is a folder"),
    # models
    Case("not a GGUF file", ["generate", "--model", "{ws}/not.gguf", "--prompt", "x"], "not a GGUF file"),
    Case("truncated GGUF", ["generate", "--model", "{ws}/truncated.gguf", "--prompt", "x"], "could not load"),
    Case("empty model folder", ["generate", "--model", "{ws}/empty-model", "--prompt", "x"], "without config.json"),
    Case("missing GGUF", ["generate", "--model", "{ws}/absent.gguf", "--prompt", "x"], "no such GGUF file"),
    Case(
        "cache dir is a file",
        ["generate", "--model", "default", "--prompt", "x", "--quiet"],
        "is a file, not a folder",
        env={"PERSONAGATE_CACHE_DIR": "{ws}/a-file"},
    ),
    # directions
    Case("seeds a,b", ["directions", "random", "--like", "{ws}/persona.safetensors", "--seeds", "a,b", "--out", "{ws}/r"], "comma-separated integers"),
    Case("orthogonal to 6 layers", ["directions", "random", "--like", "{ws}/persona.safetensors", "--orthogonal-to", "{ws}/six.safetensors", "--out", "{ws}/r"], "6 layers"),
    Case("orthogonal to another width", ["directions", "random", "--like", "{ws}/persona.safetensors", "--orthogonal-to", "{ws}/small.safetensors", "--out", "{ws}/r"], "hidden size 32"),
    Case("n-train -1", ["directions", "refusal", "--harmful-train", "{ws}/prompts.txt", "--harmless-train", "{ws}/prompts.txt", "--harmful-val", "{ws}/prompts.txt", "--harmless-val", "{ws}/prompts.txt", "--n-train", "-1", "--out", "{ws}/d"], "must be at least 1"),
    Case("prune-last 1.5", ["directions", "refusal", "--harmful-train", "{ws}/prompts.txt", "--harmless-train", "{ws}/prompts.txt", "--harmful-val", "{ws}/prompts.txt", "--harmless-val", "{ws}/prompts.txt", "--prune-last", "1.5", "--out", "{ws}/d"], "[0, 1)"),
    Case("persona out under a file", ["directions", "persona", "--model", "{ws}/model", "--out", "{ws}/a-file/p.safetensors"], "is a file"),
    Case("import llamacpp without layers", ["directions", "import", "{ws}/not.gguf", "--format", "llamacpp", "--out", "{ws}/i.safetensors"], "--n-layers"),
    Case("export one vector", ["directions", "export", "{ws}/one.safetensors", "--out", "{ws}/c.gguf"], "one vector for all layers"),
    # study specs
    Case("spec NaN guard", ["run", "{spec:nan-kl:[scoring]\nmax_nll_delta = nan\n}", "--out", "{ws}/r1"], "finite"),
    Case("spec negative max_new_tokens", ["run", "{spec:neg-tokens:[generation]\nmax_new_tokens = -1\n}", "--out", "{ws}/r2"], "at least 1"),
    Case("spec late window 20:10", ["run", "{spec:late:[windows]\nlate = '20:10'\n}", "--out", "{ws}/r3"], "windows.late"),
    Case("spec batch_size 0", ["run", "{spec:batch:[generation]\nbatch_size = 0\n}", "--out", "{ws}/r4"], "at least 1"),
    Case("spec dtype int8", ["run", "{spec:dtype:[model]\ndtype = 'int8'\n}", "--out", "{ws}/r5"], "model.dtype"),
    Case("spec stride 0", ["run", "{spec:stride:[reintroduce]\nlayer_stride = 0\n}", "--out", "{ws}/r6"], "at least 1"),
    Case("spec string seeds", ["run", "{spec:seeds:[directions]\nresamples = ['a']\n}", "--out", "{ws}/r7"], "must be an integer"),
    Case("spec duplicate coefficients", ["run", "{spec:dup:[persona]\ncoeffs = [1, 1.0]\n}", "--out", "{ws}/r8"], "twice"),
    Case("spec device banana", ["run", "{spec:device:[model]\ndevice = 'banana'\n}", "--out", "{ws}/r9"], "unknown device"),
    Case("spec unknown key", ["run", "{spec:typo:[windows]\nwidht = 2\n}", "--out", "{ws}/r10"], "unknown key"),
    Case("spec late window over the injection", ["run", "{spec:over:[windows]\nlate = '0:4'\n}", "--out", "{ws}/r13"], "contains the injection layer"),
    Case("spec non-UTF-8", ["run", "{ws}/latin1.toml", "--out", "{ws}/r11"], "not UTF-8"),
    Case("spec binary", ["run", "{ws}/binary.toml", "--out", "{ws}/r12"], "binary file"),
    Case("run out is a file", ["run", "{ws}/spec.toml", "--out", "{ws}/a-file"], "is a file"),
    # damaged run stores
    Case("report empty store", ["report", "{ws}/run-empty"], "is empty", setup="empty"),
    Case("report garbage store", ["report", "{ws}/run-garbage"], "not an SQLite database", setup="garbage"),
    Case("report truncated store", ["report", "{ws}/run-truncated"], "damaged", setup="truncated"),
    Case("report foreign store", ["report", "{ws}/run-foreign"], "something else", setup="foreign"),
    Case("report a plain folder", ["report", "{ws}/empty-model"], "not a personagate run directory"),
    Case("run into garbage store", ["run", "{ws}/spec.toml", "--out", "{ws}/run-garbage"], "not an SQLite database", setup="garbage"),
    Case("run into empty store", ["run", "{ws}/spec.toml", "--out", "{ws}/run-empty"], "is empty", setup="empty"),
    # reliability by construction (issue 20)
    Case("out is a FIFO", [*PROMPT, "--out", "{ws}/a-fifo"], "is a FIFO"),
    Case("out is a symlink", [*PROMPT, "--out", "{ws}/a-link"], "is a symlink"),
    Case("out is empty", [*PROMPT, "--out", ""], "is empty"),
    Case("run into a user's folder", ["run", "{ws}/spec.toml", "--out", "{ws}/user-folder"], "holds no personagate run"),
    Case("run --out empty", ["run", "{ws}/spec.toml", "--out", ""], "is empty"),
    Case("prompt file is a FIFO", [*GEN, "--prompts", "{ws}/fifo.txt"], "is a FIFO"),
    Case("600 MB prompt file", [*GEN, "--prompts", "{ws}/sparse.txt"], "600 MB"),
    Case("import a FIFO as GGUF", ["directions", "import", "{ws}/fifo.gguf", "--format", "llamacpp", "--n-layers", "4", "--out", "{ws}/x.safetensors"], "is a FIFO"),
    Case("report a FIFO store", ["report", "{ws}/fifo-run"], "not a personagate run directory"),
    Case("coefficient 1e39 overflows", [*PROMPT, "--add", "{ws}/persona.safetensors,1e39"], "not finite"),
    Case("odd safetensors metadata", [*PROMPT, "--add", "{ws}/odd-meta.safetensors,1"], "not a table"),
    Case("device meta", [*PROMPT, "--device", "meta"], "cannot run a model"),
    Case("spec margin 10", ["run", "{spec:margin:[verdicts]\nmargin = 10\n}", "--out", "{ws}/r1"], "must be below 1"),
    Case("spec seed 2^64", ["run", "{spec:seed:[directions]\nresamples = [18446744073709551616]\n}", "--out", "{ws}/r1"], "at most"),
    Case("spec empty refusal token", ["run", "{spec:token:[directions]\nrefusal_tokens = [\"\"]\n}", "--out", "{ws}/r1"], "must not be empty"),
    Case("spec nested too deep", ["run", "{ws}/deep.toml", "--out", "{ws}/r1"], "deep"),
    Case("judge over plain http", ["run", "{spec:http:[scoring]\njudge = \"openai\"\njudge_url = \"http://example.com/v1\"\njudge_model = \"m\"\n}", "--out", "{ws}/r1"], "plain http"),
    Case("finding names an arm switched off", ["run", "{spec:nostyle:[[findings]]\ntreated = \"style\"\n}", "--out", "{ws}/r1"], "never lays out"),
    Case("CSV row longer than its header", ["score", "{ws}/long-row.csv", "--text-column", "completion", "--out", "{ws}/s.csv"], "more fields than the header"),
    # score
    Case("score overwrites a column", ["score", "{ws}/plain.csv", "--text-column", "completion", "--out", "{ws}/s.csv"], "already has a column"),
    Case("score non-UTF-8 CSV", ["score", "{ws}/latin1.csv", "--text-column", "completion", "--out", "{ws}/s.csv"], "not UTF-8"),
    Case("score unknown column", ["score", "{ws}/plain.csv", "--text-column", "reply", "--out", "{ws}/s.csv"], "no column 'reply'"),
]  # fmt: skip


def expand(text: str, ws: Path) -> str:
    if text.startswith("{spec:"):
        name, _, extra = text[len("{spec:") : -1].partition(":")
        return str(spec_with(ws, name, extra))
    return text.replace("{ws}", str(ws))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(ws, case, capsys, monkeypatch):
    if case.setup:
        damaged_run(ws, case.setup, case.setup)
    argv = [expand(a, ws) for a in case.argv]
    for key, value in case.env.items():
        monkeypatch.setenv(key, expand(value, ws))
    before = snapshot(ws)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("personagate: error:"), err
    assert case.message in lines[0], lines[0]
    assert "Traceback" not in err
    after = snapshot(ws)
    assert after == before, f"written or changed: {sorted(set(after.items()) ^ set(before.items()))[:4]}"


def test_the_catalogue_is_at_least_forty_cases():
    assert len(CASES) >= 40


def test_a_different_model_of_the_same_shape_is_not_resumed(ws, tmp_path, capsys):
    other = tmp_path / "other-model"
    chat = tiny_model("qwen2", seed=1)  # the same config, other weights: a fine-tune of the first
    chat.model.save_pretrained(other)
    chat.tokenizer.save_pretrained(other)
    run = tmp_path / "run"
    shutil.copytree(ws / "good-run", run)
    before = snapshot(run)
    assert main(["run", str(ws / "spec.toml"), "--model", str(other), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "model_weights was" in err and err.count("\n") == 1
    assert snapshot(run) == before


def test_an_edited_prompt_file_is_not_resumed(ws, tmp_path, capsys):
    prompts = tmp_path / "harmful.txt"
    prompts.write_text("\n".join(f"harmful request number {i}" for i in range(10)))
    spec = tmp_path / "spec.toml"
    spec.write_text((ws / "spec.toml").read_text().replace("[prompts]", f'[prompts]\nharmful = "{prompts}"'))
    run = tmp_path / "run"
    assert main(["run", str(spec), "--out", str(run), "--quiet"]) == 0
    prompts.write_text("\n".join(f"harmful request number {i}!" for i in range(10)))
    assert main(["run", str(spec), "--out", str(run), "--quiet"]) == 2
    assert "prompts_sha256 was" in capsys.readouterr().err


def test_a_second_run_on_the_same_out_is_refused_while_the_first_holds_it(ws, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(ws / "good-run", run)
    with RunStore(run) as holder:
        holder.lock()
        assert main(["run", str(ws / "spec.toml"), "--out", str(run), "--quiet"]) == 2
        assert "another personagate run is writing" in capsys.readouterr().err
    assert main(["run", str(ws / "spec.toml"), "--out", str(run), "--quiet"]) == 0  # free again: resumes
