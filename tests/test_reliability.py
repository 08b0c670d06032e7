"""Reliability by construction: outputs that cannot destroy, reused artifacts checked against what the spec
asks, secrets masked at one choke point, numerics checked before a forward pass, crashes that leave a log."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from personagate import Add, Decoding, Direction, PersonagateError, Program, generate
from personagate.cli import main
from personagate.experiments.protocols import recorded_spec
from personagate.outputs import check_run_dir, write_atomically, write_bytes
from personagate.scoring.judge import OpenAICompatibleJudge, check_endpoint_url

from tiny import tiny_model


def test_dev_null_is_written_into_and_stays_a_device(tmp_path, capsys):
    chat = tiny_model("qwen2")
    chat.model.save_pretrained(tmp_path / "model")
    chat.tokenizer.save_pretrained(tmp_path / "model")
    args = ["generate", "--model", str(tmp_path / "model"), "--prompt", "Hi", "--max-new-tokens", "2", "--quiet"]
    assert main([*args, "--out", "/dev/null"]) == 0, capsys.readouterr().err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_one_writer_keeps_the_mode_and_never_renames_over_what_is_not_a_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    target.chmod(0o600)
    write_atomically(target, lambda f: f.write("new\n"))
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(target)
    for path in (fifo, link, tmp_path):
        with pytest.raises(PersonagateError, match="personagate writes only regular files"):
            write_bytes(path, b"x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink() and target.read_text() == "new\n"


def test_a_run_directory_is_ours_only_when_empty_or_a_run(tmp_path):
    check_run_dir(tmp_path / "new")  # nothing yet
    (tmp_path / "empty").mkdir()
    check_run_dir(tmp_path / "empty")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "manifest.json").write_text(json.dumps({"package_version": "0.1.0"}))
    check_run_dir(tmp_path / "mine")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "manifest.json").write_text(json.dumps({"name": "another tool"}))
    with pytest.raises(PersonagateError, match="holds no personagate run"):
        check_run_dir(tmp_path / "theirs")


def test_vectors_left_from_another_study_are_refused(tmp_path, capsys):
    """A spec naming one persona file never runs with a vector left over from a run that named another."""
    chat = tiny_model("qwen2")
    chat.model.save_pretrained(tmp_path / "model")
    chat.tokenizer.save_pretrained(tmp_path / "model")
    g = torch.Generator().manual_seed(0)
    Direction(torch.randn(4, 64, generator=g) * 3, name="refusal", meta={"layer": 1}).save(tmp_path / "r.safetensors")
    Direction(torch.randn(4, 64, generator=g), name="persona").save(tmp_path / "a.safetensors")
    Direction(torch.randn(4, 64, generator=g), name="persona").save(tmp_path / "b.safetensors")
    body = f"""[model]
id = "{tmp_path / "model"}"
[prompts]
n_val = 2
n_test = 3
n_train = 2
n_safe = 2
n_neutral = 2
[directions]
refusal = "r.safetensors"
persona = "PERSONA"
refusal_tokens = ["I"]
resamples = [0]
[persona]
layer = 1
coeffs = [1.0]
styles = false
random_adds = []
[reintroduce]
dose = "mean_diff"
coeffs = [1.0]
layer_stride = 2
[verdicts]
max_incoherent = 1.0
[scoring]
max_nll_delta = 10.0
[multiturn]
exchanges = [0, 1, 2]
null_seeds = 2
[windows]
width = 2
stride = 2
random_seeds = 1
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
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text(body.replace("PERSONA", f"{name}.safetensors"))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "a.toml"), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    for leftover in ("run.sqlite", "run.sqlite-wal", "run.sqlite-shm"):
        (out / leftover).unlink(missing_ok=True)  # the store gone, the vectors left behind
    capsys.readouterr()
    assert main(["run", str(tmp_path / "b.toml"), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "was made for another study" in err and err.count("\n") == 1


class _Echo(BaseHTTPRequestHandler):
    """A judge that echoes its Authorization header in its error, upper-cased, after padding."""

    mode = "echo"

    def do_POST(self):
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.mode == "drip":
            self.send_response(200)
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
            return
        if self.mode == "echo":  # the key upper-cased inside the label: the judge upper-cases and cuts to 40
            body = json.dumps({"choices": [{"message": {"content": "  " + key.upper() + " tail"}}]}).encode()
        else:  # not JSON, the key straddling the 200-character cut of the error message
            body = ("y" * 190 + key + " tail").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(mode: str) -> HTTPServer:
    handler = type("Handler", (_Echo,), {"mode": mode})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("mode", ["echo", "straddle"])
def test_the_key_is_masked_in_any_case_and_across_any_cut(monkeypatch, mode):
    key = "sk-Secret-Key-1234567890"
    monkeypatch.setenv("PG_KEY", key)
    server = _serve(mode)
    try:
        judge = OpenAICompatibleJudge(f"http://127.0.0.1:{server.server_port}/v1", model="m", api_key_env="PG_KEY")
        with pytest.raises(PersonagateError) as caught:
            judge.judge(["a"], ["b"])
    finally:
        server.shutdown()
    message = str(caught.value)
    assert "***" in message  # masked before anything upper-cased or cut it
    for n in (6, 8, 12):  # no fragment of the key survives, in any case
        assert key[:n].upper() not in message.upper()


def test_a_slow_drip_server_meets_one_deadline_for_the_whole_request():
    server = _serve("drip")
    try:
        judge = OpenAICompatibleJudge(f"http://127.0.0.1:{server.server_port}/v1", model="m", timeout=1.0)
        started = time.monotonic()
        with pytest.raises(PersonagateError, match="did not answer"):
            judge.judge(["a"], ["b"])
        assert time.monotonic() - started < 3.0  # not 40 x 0.1 s of drip
    finally:
        server.shutdown()


def test_plain_http_only_to_this_machine():
    check_endpoint_url("http://127.0.0.1:8000/v1")
    check_endpoint_url("http://localhost:8000/v1")
    check_endpoint_url("http://[::1]:8000/v1")
    check_endpoint_url("https://api.example.com/v1")
    with pytest.raises(PersonagateError, match="plain http"):
        check_endpoint_url("http://api.example.com/v1")


def test_values_that_overflow_are_errors_before_any_forward_pass():
    chat = tiny_model("qwen2")
    v = Direction(torch.ones(chat.n_layers, chat.hidden_size), name="v")
    ids = [[1, 2, 3]]
    with pytest.raises(PersonagateError, match="not finite"):
        generate(chat, ids, program=Program([Add(v, 1e39, 1)]), decoding=Decoding(max_new_tokens=2), progress=False)
    half = tiny_model("qwen2")
    half.model.to(torch.float16)
    with pytest.raises(PersonagateError, match="float16"):
        generate(half, ids, program=Program([Add(v, 70000.0, 1)]), decoding=Decoding(max_new_tokens=2), progress=False)


def test_non_finite_activations_mark_the_reply_and_the_condition(tmp_path):
    """A program whose values fit but whose activations overflow: no reply is scored as compliance."""
    from personagate.experiments.analysis.results import Results
    from personagate.experiments.analysis.verdict import INCOHERENT_ARM
    from personagate.experiments.design.names import INCOHERENT, Role
    from personagate.experiments.execution.units import Settings, Unit, compute
    from personagate.experiments.storage.records import NONFINITE_TEXT, Row
    from personagate.scoring.coherence import CoherenceRule

    from laid_out import LaidOut, pattern

    chat = tiny_model("qwen2")
    v = Direction(torch.ones(chat.n_layers, chat.hidden_size), name="v")
    out = generate(chat, [[1, 2, 3]], program=Program([Add(v, 1e37, 1)]), decoding=Decoding(max_new_tokens=3),
                   progress=False)  # fmt: skip
    assert out[0].finite is False
    table = Program([Add("v", 1e37, 1)]).to_table()
    unit = Unit("generate", "harmful", (("huge", 0, table),), ((0, (1, 2, 3), ()),))
    settings = Settings(3, 2, 4, (5,), CoherenceRule(-4.0, 0.5, 0.3))
    computed = compute(chat, {0: {"v": v}}, unit, settings)
    rows = computed.rows
    assert computed.cost.rows == 1 and computed.cost.prompt_tokens == 3 and computed.cost.seconds > 0
    assert rows[0].text == NONFINITE_TEXT and rows[0].label == INCOHERENT and rows[0].refusal == 0
    layout = LaidOut().add("baseline", Role.BASELINE, pattern(60)).add("persona", Role.PERSONA, pattern(20))
    with layout.store(tmp_path) as store:
        store.write_rows([Row("persona", "harmful", 100, text=NONFINITE_TEXT, refusal=0, label=INCOHERENT)])
        results = Results.of(store, recorded_spec(store.manifest()))
    verdict = next(v for v in results.main_verdicts() if v.finding == "persona_suppresses")
    assert verdict.reason == INCOHERENT_ARM and "non-finite" in verdict.detail
    assert "non-finite activations" in next(s for s in results.summary if s.name == "persona").flags


def test_an_unexpected_exception_is_one_line_and_a_crash_log(monkeypatch, capsys):
    from personagate.cli import study

    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(study, "print_spec", boom)
    assert main(["spec"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error (RuntimeError)" in err[0] and "Traceback" not in err[0]
    log = Path(err[0].split("the traceback is in ")[1].split(". Please")[0])
    assert "RuntimeError: a bug" in log.read_text()
    monkeypatch.setenv("PERSONAGATE_DEBUG", "1")
    assert main(["spec"]) == 1
    assert "Traceback" in capsys.readouterr().err
    log.unlink()
