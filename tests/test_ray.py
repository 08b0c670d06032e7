"""Studies on a real local Ray cluster (two CPU workers, tiny models): the same results as one process,
nothing lost or doubled when a worker or the driver is killed."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from personagate import Direction
from personagate.cli import main

from tiny import tiny_model

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'personagate[ray]'")

SPEC = """
[model]
id = "{model}"
[prompts]
n_val = 4
n_test = 8
n_train = 4
n_safe = 3
n_neutral = 3
[directions]
refusal = "{root}/refusal.safetensors"
persona = "{root}/persona.safetensors"
refusal_tokens = ["I", "S", "A", "N", "T", "W", "a", "e"]
resamples = [0, 1]
[persona]
layer = 1
coeffs = [1.0, 3.0]
random_adds = [0]
styles = false
[reintroduce]
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
[[findings]]
id = "persona_suppresses"
claim = "Steering a compliant persona suppresses refusal"
rule = "decrease"
treated = "persona"
reference = "baseline"
"""


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-study")
    chat = tiny_model("qwen2")
    chat.model.save_pretrained(root / "model")
    chat.tokenizer.save_pretrained(root / "model")
    g = torch.Generator().manual_seed(0)
    Direction(torch.randn(4, 64, generator=g) * 3, name="refusal", meta={"layer": 1}).save(root / "refusal.safetensors")
    Direction(torch.randn(4, 64, generator=g), name="persona").save(root / "persona.safetensors")
    (root / "spec.toml").write_text(SPEC.format(model=root / "model", root=root))
    reference = root / "reference"
    assert main(["run", str(root / "spec.toml"), "--out", str(reference), "--quiet"]) == 0
    return root


def rows_of(run: Path) -> list[dict[str, str]]:
    with open(run / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def no_duplicates_and_count(run: Path) -> int:
    with sqlite3.connect(run / "run.sqlite") as db:
        duplicates = db.execute(
            "SELECT COUNT(*) FROM (SELECT condition, prompt_set, prompt_id, COUNT(*) c FROM rows "
            "GROUP BY 1, 2, 3 HAVING c > 1)"
        ).fetchone()[0]
        assert duplicates == 0
        return db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]


def test_two_workers_give_the_single_process_summary_cell_for_cell(cluster, study, tmp_path):
    out = tmp_path / "ray-run"
    assert main(["run", str(study / "spec.toml"), "--out", str(out), "--quiet", "--workers", "2"]) == 0
    assert rows_of(out) == rows_of(study / "reference")
    assert (out / "verdicts.csv").read_text() == (study / "reference" / "verdicts.csv").read_text()
    assert no_duplicates_and_count(out) == no_duplicates_and_count(study / "reference")


def test_a_killed_worker_loses_and_doubles_nothing(cluster, study, tmp_path, monkeypatch):
    from personagate.experiments.execution import ray_pool

    pools: list[ray_pool.RayPool] = []
    original = ray_pool.RayPool.__init__

    def remember(self, config):
        original(self, config)
        pools.append(self)

    monkeypatch.setattr(ray_pool.RayPool, "__init__", remember)
    out = tmp_path / "killed-worker"
    result: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "code", main(["run", str(study / "spec.toml"), "--out", str(out), "--quiet", "--workers", "2"])
        )
    )
    thread.start()
    deadline = time.time() + 180
    killed = False
    while time.time() < deadline and thread.is_alive():
        time.sleep(0.2)
        if pools and (out / "run.sqlite").is_file():
            try:
                with sqlite3.connect(out / "run.sqlite") as db:
                    count = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if count >= 30:
                os.kill(pools[0].pids()[0], signal.SIGKILL)
                killed = True
                break
    thread.join(timeout=600)
    assert killed, "the run ended before a worker could be killed"
    assert result.get("code") == 0
    assert rows_of(out) == rows_of(study / "reference")
    assert no_duplicates_and_count(out) == no_duplicates_and_count(study / "reference")


def test_a_killed_driver_resumes_to_the_same_summary(cluster, study, tmp_path):
    out = tmp_path / "killed-driver"
    command = [
        sys.executable,
        "-m",
        "personagate.cli",
        "run",
        str(study / "spec.toml"),
        "--out",
        str(out),
        "--quiet",
        "--workers",
        "2",
        "--ray-address",
        cluster,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    count = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if (out / "run.sqlite").is_file():
            try:
                with sqlite3.connect(out / "run.sqlite") as db:
                    count = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if count >= 20:
                break
    assert proc.poll() is None, "the run finished before the driver could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert count > 0 and not (out / "summary.csv").exists()
    assert subprocess.run(command, capture_output=True, timeout=600).returncode == 0
    assert rows_of(out) == rows_of(study / "reference")
    assert no_duplicates_and_count(out) == no_duplicates_and_count(study / "reference")


def test_without_the_extra_the_error_is_one_line(study, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code = main(["run", str(study / "spec.toml"), "--out", str(tmp_path / "r"), "--quiet", "--workers", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'personagate[ray]'" in err[0]
    assert not (tmp_path / "r").exists()
