"""The HTML report shows model output as text: checked in a real headless Chromium when one is installed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from personagate.experiments.analysis.results import Results
from personagate.experiments.design.names import Role
from personagate.experiments.protocols import recorded_spec
from personagate.experiments.storage import facts
from personagate.experiments.storage.records import Row
from personagate.experiments.storage.store import RunStore
from personagate.report import write_report

from laid_out import LAYOUT, record

PAYLOAD = "<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script><b>bold?</b>"


def make_results(path) -> Results:
    store = RunStore(path)
    store.start({"model": "tiny <b>model</b>", "spec": {"scoring": {"max_nll_delta": 0.5}}}, ("model",))
    store.add_condition(record("baseline", Role.BASELINE))
    store.add_condition(record("persona x2", Role.PERSONA, axis=2.0, position=1))
    store.write_rows(
        [
            Row("baseline", "harmful", 0, PAYLOAD, 0, label="comply"),
            Row("baseline", "harmful", 1, "I can't.", 1, label="refuse"),
            Row("persona x2", "harmful", 0, "Sure", 0, label="comply"),
            Row("baseline", "neutral", 0, loglik=-2.0),
        ]
    )
    store.write_readout("baseline", [[0.1, 0.5, 0.9], [0.2, 0.4, 1.1]])
    store.set_fact(facts.PERSONA_COEFF, 2.0)
    store.set_fact(facts.LAYOUT, LAYOUT)
    with store:
        return Results.of(store, recorded_spec(store.manifest()))


def test_report_escapes_model_output(tmp_path):
    text = write_report(make_results(tmp_path)).read_text()
    assert PAYLOAD not in text
    assert "&lt;script&gt;document.title=" in text and "tiny &lt;b&gt;model&lt;/b&gt;" in text
    assert text.count("<script") == 0


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium: apt-get install chromium (.ci/run does) to run this")
def test_report_in_headless_chromium_shows_script_as_text(tmp_path):
    page = write_report(make_results(tmp_path))
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


def test_the_exports_as_parquet_load_with_polars_and_datasets(tmp_path, capsys):
    """`personagate export RUN_DIR --format parquet`: a fixed schema, read back by polars and `datasets`."""
    from personagate.cli import main
    from personagate.experiments.analysis.parquet import SCHEMAS

    from laid_out import LaidOut, pattern

    with (
        LaidOut().add("baseline", Role.BASELINE, pattern(60)).add("persona", Role.PERSONA, pattern(20)).store(tmp_path)
    ):
        pass
    run = tmp_path / "run"
    assert main(["export", str(run), "--format", "parquet"]) == 0
    assert "summary.parquet" in capsys.readouterr().out
    polars = pytest.importorskip("polars")
    summary = polars.read_parquet(run / "summary.parquet")
    assert summary.columns == SCHEMAS["summary"].names and summary.height == 2
    assert summary.filter(polars.col("condition") == "persona")["refusal_rate"][0] == pytest.approx(0.2)
    verdicts = polars.read_parquet(run / "verdicts.parquet")
    assert "persona_suppresses" in verdicts["finding"].to_list()
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("parquet", data_files=str(run / "completions.parquet"), split="train")
    assert len(loaded) == 200 and {"text", "label", "paper_regex"} <= set(loaded.column_names)
    assert main(["export", str(run), "--format", "csv"]) == 0 and (run / "summary.csv").is_file()
