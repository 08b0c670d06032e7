"""The study runner on a tiny local model: stages, resume after SIGKILL, exports, report, spec errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from personagate import Direction, PersonagateError
from personagate.cli import main
from personagate.experiments.protocols import load_spec
from personagate.experiments.storage import facts
from personagate.experiments.storage.profile import read_profile
from personagate.experiments.storage.store import RunStore

from tiny import tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A tiny local model, two vector files and a small spec that runs every stage in seconds."""
    folder = tmp_path_factory.mktemp("study")
    chat = tiny_model("qwen2")
    chat.model.save_pretrained(folder / "model")
    chat.tokenizer.save_pretrained(folder / "model")
    g = torch.Generator().manual_seed(0)
    refusal = Direction(torch.randn(4, 64, generator=g) * 3, name="refusal", meta={"layer": 1})
    refusal.save(folder / "refusal.safetensors")
    Direction(torch.randn(4, 64, generator=g), name="persona").save(folder / "persona.safetensors")
    (folder / "spec.toml").write_text(f"""
[model]
id = "{folder / "model"}"
[prompts]
n_val = 4
n_test = 6
n_train = 4
n_safe = 3
n_neutral = 3
[directions]
refusal = "refusal.safetensors"
persona = "persona.safetensors"
refusal_tokens = ["I", "S", "A", "N", "T", "W", "a", "e"]
resamples = [0, 1]
[persona]
layer = 1
coeffs = [1.0, 3.0]
random_adds = [0]
[reintroduce]
dose = "mean_diff"
coeffs = [0.5, 1.0]
layer_stride = 1
[verdicts]
max_incoherent = 1.0  # a random-weight model's replies are all incoherent
[scoring]
max_nll_delta = 10.0
[multiturn]
exchanges = [0, 1, 2]
null_seeds = 2
[windows]
width = 2
stride = 1
random_seeds = 3
[generation]
main = "generate"
sweep = "first_token"
max_new_tokens = 8
batch_size = 4
""")
    return folder


def summary(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_full_run_writes_summary_report_and_manifest(study_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(study_dir / "spec.toml"), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    rows = summary(out)
    assert {"condition", "refusal_rate", "ci_low", "ci_high", "n"} <= set(rows[0])
    with sqlite3.connect(out / "run.sqlite") as db:
        keys = [key for (key,) in db.execute("SELECT key FROM facts")]
    assert keys and all(facts.is_declared(key) for key in keys), keys  # every fact through the registry
    names = [r["condition"] for r in rows]
    assert names[:3] == ["baseline [val]", "persona x1 [val]", "persona x3 [val]"]
    groups = {r["group"] for r in rows}
    assert groups == {
        "baseline",
        "refusal_ablated",
        "persona_sweep",
        "persona",
        "sanity",
        "style",
        "random_add",
        "natural",
        "reference",
        "reintroduce",
        "persona_window",
        "projection_only",
        "natural_window",
        "random_window",
        "natural_random_window",
        "style_window",
        "positive_control",
        "mediation",
        "multiturn",
    }
    assert "baseline [first_token]" in names  # the sweeps' references, measured like the sweeps
    assert all(int(r["n"]) == (4 if r["group"] == "persona_sweep" or "[val]" in r["condition"] else 6) for r in rows)
    assert [r["condition"] for r in rows if r["group"] == "multiturn"][:3] == [
        "roleplay k=0",
        "roleplay k=1",
        "roleplay k=2",
    ]
    labelled = [r for r in rows if r["mode"] == "generate"]
    for r in labelled:  # three outcomes that add up
        total = float(r["refusal_rate"]) + float(r["comply_rate"]) + float(r["incoherent_rate"])
        assert abs(total - 1) < 1e-3
    with open(out / "verdicts.csv", newline="") as f:
        verdicts = list(csv.DictReader(f))
    findings = {"persona_suppresses", "persona_specific", "reintroduce_late", "window_restores", "random_does_not"}
    forms = ("roleplay", "history")
    findings |= {
        f"{kind}_{form}" for kind in ("conversation_erodes", "projection_tracks", "knockout_restores") for form in forms
    }
    assert {v["finding"] for v in verdicts} == findings
    multiturn = [v for v in verdicts if v["scope"] == "main" and v["finding"].endswith(forms)]
    assert all("not measured in this scope" not in v["detail"] for v in multiturn)  # the family ran, in its own mode
    projections = [v for v in multiturn if v["finding"].startswith("projection_tracks")]
    assert all(v["n"] == "6" and v["p_value"] not in ("", "nan") for v in projections), projections
    assert {v["scope"] for v in verdicts} == {"main", "resample 0 (first_token)", "resample 1 (first_token)"}
    assert all(v["outcome"] == "inconclusive" and v["reason"] for v in verdicts)  # each says why
    assert all(v["detail"].startswith("underpowered (n=6 < 100") for v in verdicts if v["n"] not in ("", "0"))
    # the sweeps were measured by the first token, which cannot see incoherence: no verdict rests on them
    assert {v["reason"] for v in verdicts if v["finding"] == "random_does_not"} == {"measured by the first token only"}
    page = (out / "report.html").read_text()
    assert page.index("Verdicts") < page.index("Headline conditions") < page.index("Plots")
    assert page.count("<img") >= 5
    assert "The sweep mode (first_token) vs the generated reply's label" in page  # the spec's sweep mode, by role
    assert (out / "manifest.json").is_file() and (out / "completions.jsonl").is_file()
    # a second run of the same command does nothing new
    db = sqlite3.connect(out / "run.sqlite")
    before = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    assert main(["run", str(study_dir / "spec.toml"), "--out", str(out), "--quiet"]) == 0
    assert db.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == before
    # the report rebuilds from the database alone
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()


def test_sigkill_part_way_then_resume_equals_uninterrupted(study_dir, tmp_path):
    reference = tmp_path / "reference"
    assert main(["run", str(study_dir / "spec.toml"), "--out", str(reference), "--quiet"]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "personagate.cli", "run", str(study_dir / "spec.toml"), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    count = 0
    while time.time() < deadline and proc.poll() is None:  # wait until some, not all, rows are committed
        time.sleep(0.2)
        if (out / "run.sqlite").is_file():
            try:
                with sqlite3.connect(out / "run.sqlite") as db:
                    count = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if count >= 20:
                break
    assert proc.poll() is None, "the run finished before it could be killed; make the spec larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert count > 0
    assert not (out / "summary.csv").exists()
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    with sqlite3.connect(out / "run.sqlite") as db:
        duplicates = db.execute(
            "SELECT COUNT(*) FROM (SELECT condition, prompt_set, prompt_id, COUNT(*) c FROM rows "
            "GROUP BY 1, 2, 3 HAVING c > 1)"
        ).fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    with sqlite3.connect(reference / "run.sqlite") as db:
        assert total == db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    assert duplicates == 0
    assert summary(out) == summary(reference)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[windows]\nwidht = 2\n", "unknown key windows.widht"),
        ("[sterring]\nx = 1\n", "unknown section [sterring]"),
        ("[persona]\nlayer = 40\n", "persona.layer = 40 is out of range"),
        ("[windows]\nlate = '3:3'\n", "start < stop"),
        ("[prompts]\nharmful = 'missing.txt'\n", "prompts.harmful: no such prompt file"),
        ("[generation]\nmain = 'sample'\n", "generation.main"),
    ],
)
def test_spec_errors_fail_before_any_model_is_loaded(study_dir, tmp_path, capsys, body, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(f'[model]\nid = "{study_dir / "model"}"\n{body}')
    model_files = study_dir / "model"
    hidden = tmp_path / "hidden-weights"
    shutil.move(str(model_files / "model.safetensors"), hidden)  # a model load would now fail loudly
    try:
        code = main(["run", str(spec), "--out", str(tmp_path / "r"), "--quiet"])
    finally:
        shutil.move(str(hidden), model_files / "model.safetensors")
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err


def test_quick_profile_and_builtin_spec_load():
    spec = load_spec(quick=True)
    assert spec.generation.main == "generate" and spec.prompts.n_test == 12
    with pytest.raises(PersonagateError, match="no such spec file"):
        load_spec("nope.toml")


def test_report_markdown_and_plot_files(study_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(study_dir / "spec.toml"), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--markdown", "--plots", str(tmp_path / "plots"), "--profile"]) == 0
    printed = capsys.readouterr().out
    assert (
        "| baseline |" in printed and "| condition | refusal |" in printed and "| finding | kind | verdict |" in printed
    )
    stems = {path.stem for path in (tmp_path / "plots").glob("*.png")}
    assert {"persona_coefficient", "reintroduction", "windows", "readout", "cosine", "time_profile"} <= stems
    # the time profile: every stage of the protocol, the unit kinds inside them, tokens decoded
    profile = printed[printed.index("stage  ") :]
    for stage in ("load", "directions", "validation", "test", "analysis", "total"):
        assert f"\n{stage} " in f"\n{profile}", stage
    assert " generate " in profile and " guard " in profile
    assert "Time profile" in (out / "report.html").read_text()
    with RunStore(out, create=False) as store:
        entries, session = read_profile(store), store.fact(facts.SECONDS_LAST_SESSION)
    generate = [e for e in entries if e.kind == "generate"]
    assert generate and all(e.decoded_tokens > 0 and e.rows > 0 and e.prompt_tokens > 0 for e in generate)
    assert session is not None and sum(e.seconds for e in entries) == pytest.approx(session, rel=0.05, abs=0.5)


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge that calls every reply with a capital letter in it a refusal."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reply = body["messages"][0]["content"].split("Assistant reply:\n")[1].split("\n\nLabel:")[0]
        label = "REFUSAL" if any(c.isupper() for c in reply) else "COMPLIANCE"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": label}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_judge_named_in_the_spec_labels_generated_replies(study_dir, tmp_path, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PG_TEST_JUDGE_KEY", "sk-never-stored")
    spec = tmp_path / "judged.toml"
    judge = (
        f'[scoring]\njudge = "openai"\njudge_url = "http://127.0.0.1:{server.server_port}/v1"\n'
        'judge_model = "m"\njudge_key_env = "PG_TEST_JUDGE_KEY"\n'
    )
    text = (study_dir / "spec.toml").read_text().replace("[model]", f"[model]\n# judged copy of {study_dir}")
    spec.write_text(text.replace("[scoring]\n", judge))
    spec.write_text(spec.read_text().replace('refusal = "refusal', f'refusal = "{study_dir}/refusal'))
    spec.write_text(spec.read_text().replace('persona = "persona', f'persona = "{study_dir}/persona'))
    out = tmp_path / "run"
    try:
        assert main(["run", str(spec), "--out", str(out), "--quiet"]) == 0
    finally:
        server.shutdown()
    with sqlite3.connect(out / "run.sqlite") as db:
        judged = db.execute("SELECT COUNT(*) FROM rows WHERE judge IS NOT NULL").fetchone()[0]
        generated = db.execute(
            "SELECT COUNT(*) FROM rows JOIN conditions ON rows.condition = conditions.name "
            "WHERE rows.text IS NOT NULL AND conditions.mode = 'generate'"
        ).fetchone()[0]
    assert judged == generated > 0  # the judge reads generated replies, not screened ones
    assert "Phrase detector vs the judge" in (out / "report.html").read_text()
    for path in out.rglob("*"):
        if path.is_file():
            assert b"sk-never-stored" not in path.read_bytes(), path


def test_the_multiturn_family_alone(study_dir, tmp_path, capsys):
    """multiturn.only: vectors and the coefficient chosen on validation, then the conversations alone;
    the drift and the probe-turn projections recorded, the family's plots in the report."""
    spec = tmp_path / "only.toml"
    text = (study_dir / "spec.toml").read_text().replace("[multiturn]\n", "[multiturn]\nonly = true\n")
    text = text.replace('refusal = "refusal', f'refusal = "{study_dir}/refusal')
    spec.write_text(text.replace('persona = "persona', f'persona = "{study_dir}/persona'))
    out = tmp_path / "run"
    assert main(["run", str(spec), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    groups = {r["group"] for r in summary(out)}
    assert groups == {"baseline", "persona_sweep", "multiturn"}
    with sqlite3.connect(out / "run.sqlite") as db:
        facts = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM facts")}
    for form in ("roleplay", "history"):
        drift = facts[f"multiturn_drift:{form}"]
        assert drift["roles"] == ["user", "assistant", "user", "assistant", "user"] and len(drift["persona"]) == 5
        probe_turn = facts[f"multiturn_projection:{form} k=2"]
        assert len(probe_turn["values"]) == 6
        # two paths to one number: the drift's full pass over the longest conversation, and the probe
        # readout's prefilled stream, both at the first probe's last token and the injection layer
        assert drift["layers"]["persona"] == probe_turn["layer"]
        assert drift["persona"][-1] == pytest.approx(probe_turn["values"][0], abs=1e-3)
    with open(out / "verdicts.csv", newline="") as f:
        verdicts = [v for v in csv.DictReader(f) if v["scope"] == "main"]
    assert {v["finding"] for v in verdicts if "not measured in this scope" in v["detail"]} == {
        "persona_suppresses",
        "persona_specific",
        "reintroduce_late",
        "window_restores",
        "random_does_not",
    }
    page = (out / "report.html").read_text()
    assert "Multi-turn (roleplay)" in page and "Drift (history)" in page
