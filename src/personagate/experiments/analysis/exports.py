"""The run's tables, written whole or not at all: ``summary`` (every condition), ``verdicts`` (every
finding in every scope) and the completions (every reply, its labels and scores), from ``Results``, as
CSV / JSONL and as Parquet (a fixed schema: ``analysis.parquet``)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from personagate.experiments.analysis.parquet import table_bytes
from personagate.experiments.analysis.results import Results
from personagate.experiments.analysis.summary import SUMMARY_COLUMNS
from personagate.experiments.analysis.verdict import VERDICT_COLUMNS
from personagate.experiments.design.names import NEUTRAL
from personagate.outputs import write_atomically, write_bytes
from personagate.scoring.paper_regex import paper_refusal

FORMATS = ("csv", "parquet")


def write_exports(results: Results, formats: Sequence[str] = FORMATS) -> list[Path]:
    """The exports in each of ``formats``; the paths written."""
    summary = [s.as_row() for s in results.summary]
    verdicts = [v.as_row() for v in results.verdicts]
    completions = _completion_rows(results)
    out = results.path
    written = []
    if "csv" in formats:
        write_atomically(out / "summary.csv", lambda f: _write_table(f, SUMMARY_COLUMNS, summary))
        write_atomically(out / "verdicts.csv", lambda f: _write_table(f, VERDICT_COLUMNS, verdicts))
        write_atomically(out / "completions.jsonl", lambda f: _write_completions(f, completions))
        written += [out / "summary.csv", out / "verdicts.csv", out / "completions.jsonl"]
    if "parquet" in formats:
        for kind, rows in (("summary", summary), ("verdicts", verdicts), ("completions", completions)):
            write_bytes(out / f"{kind}.parquet", table_bytes(kind, rows))
            written.append(out / f"{kind}.parquet")
    return written


def _write_table(f: TextIO, columns: Sequence[str], rows: Sequence[dict[str, object]]) -> None:
    writer = csv.DictWriter(f, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)


def _completion_rows(results: Results) -> list[dict[str, object]]:
    """Every reply and first-token score (the coherence guard's rows aside), with the paper's regex label."""
    out = []
    for row in results.measurements.all_rows():
        if row.prompt_set != NEUTRAL:
            record: dict[str, object] = dict(row.__dict__)
            record["paper_regex"] = paper_refusal(row.text) if row.text is not None else None
            out.append(record)
    return out


def _write_completions(f: TextIO, rows: Sequence[dict[str, object]]) -> None:
    for record in rows:
        kept = {k: v for k, v in record.items() if v is not None or k in ("text", "refusal")}
        f.write(json.dumps(kept, ensure_ascii=False) + "\n")
