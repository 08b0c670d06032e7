"""The run's tables, written whole or not at all: ``summary.csv`` (every condition), ``verdicts.csv``
(every finding in every scope) and ``completions.jsonl`` (every reply and score), from ``Results``."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import TextIO

from personagate.experiments.analysis.results import Results
from personagate.experiments.analysis.summary import SUMMARY_COLUMNS
from personagate.experiments.analysis.verdict import VERDICT_COLUMNS
from personagate.experiments.design.names import NEUTRAL
from personagate.outputs import write_atomically


def write_exports(results: Results) -> None:
    summary = [s.as_row() for s in results.summary]
    verdicts = [v.as_row() for v in results.verdicts]
    write_atomically(results.path / "summary.csv", lambda f: _write_table(f, SUMMARY_COLUMNS, summary))
    write_atomically(results.path / "verdicts.csv", lambda f: _write_table(f, VERDICT_COLUMNS, verdicts))
    write_atomically(results.path / "completions.jsonl", lambda f: _write_completions(f, results))


def _write_table(f: TextIO, columns: Sequence[str], rows: Sequence[dict[str, object]]) -> None:
    writer = csv.DictWriter(f, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)


def _write_completions(f: TextIO, results: Results) -> None:
    for row in results.measurements.all_rows():
        if row.prompt_set != NEUTRAL:
            record = {k: v for k, v in row.__dict__.items() if v is not None or k in ("text", "refusal")}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
