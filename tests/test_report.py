"""The HTML report shows model output as text: checked in a real headless Chromium when one is installed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from personagate.experiments.store import Row, RunStore
from personagate.report import write_report

PAYLOAD = "<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script><b>bold?</b>"


def make_store(path):
    store = RunStore(path)
    store.start({"model": "tiny <b>model</b>", "spec": {"scoring": {"max_nll_delta": 0.5}}}, ("model",))
    store.add_condition("baseline", 0, "baseline", None, None, "no intervention", "generate", {"role": "baseline"})
    meta = {"role": "persona"}
    store.add_condition("persona x2", 1, "persona", 2.0, None, "add 2 x persona at layer 1", "generate", meta)
    store.write_rows(
        [
            Row("baseline", "harmful", 0, PAYLOAD, 0, label="comply"),
            Row("baseline", "harmful", 1, "I can't.", 1, label="refuse"),
            Row("persona x2", "harmful", 0, "Sure", 0, label="comply"),
            Row("baseline", "neutral", 0, loglik=-2.0),
        ]
    )
    store.write_readout("baseline", [[0.1, 0.5, 0.9], [0.2, 0.4, 1.1]])
    store.set_fact("persona_coeff", 2.0)
    return store


def test_report_escapes_model_output(tmp_path):
    with make_store(tmp_path) as store:
        text = write_report(store).read_text()
    assert PAYLOAD not in text
    assert "&lt;script&gt;document.title=" in text and "tiny &lt;b&gt;model&lt;/b&gt;" in text
    assert text.count("<script") == 0


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium: apt-get install chromium (.ci/run does) to run this")
def test_report_in_headless_chromium_shows_script_as_text(tmp_path):
    with make_store(tmp_path) as store:
        page = write_report(store)
    profile = tmp_path / "profile"
    result = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = result.stdout
    assert "<title>personagate report</title>" in dom, result.stderr[-2000:]
    assert "PWNED" not in dom.split("</title>")[0]
    assert "data-pwned" not in dom.split("<body")[1].split(">")[0]
    assert "&lt;script&gt;document.title='PWNED'" in dom  # shown as text inside the page
