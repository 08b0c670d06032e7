"""The exports as Parquet, with a schema fixed here (names, order, types, nullability) so that pandas,
polars and ``datasets.load_dataset("parquet", ...)`` read the same columns from every run."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from personagate.experiments.analysis.summary import SUMMARY_COLUMNS
from personagate.experiments.analysis.verdict import VERDICT_COLUMNS

_STRING = {
    "condition", "group", "role", "mode", "prompts", "window", "flags", "program", "description", "finding", "kind",
    "scope", "outcome", "reason", "claim", "statistic", "detail", "conditions", "prompt_set", "text", "label",
}  # fmt: skip
_INT = {"resample", "n", "over_refusal_n", "seed", "excluded", "prompt_id", "refusal", "judge"}
_BOOL = {"paper_regex"}


def _type(column: str) -> pa.DataType:
    if column in _STRING:
        return pa.string()
    if column in _INT:
        return pa.int64()
    if column in _BOOL:
        return pa.bool_()
    return pa.float64()


COMPLETION_COLUMNS = (
    "condition", "prompt_set", "prompt_id", "text", "refusal", "label", "score", "loglik", "judge", "paper_regex",
)  # fmt: skip
SCHEMAS = {
    name: pa.schema([pa.field(c, _type(c), nullable=True) for c in columns])
    for name, columns in (
        ("summary", SUMMARY_COLUMNS),
        ("verdicts", VERDICT_COLUMNS),
        ("completions", COMPLETION_COLUMNS),
    )
}


def table_bytes(kind: str, rows: Sequence[Mapping[str, object]]) -> bytes:
    """A Parquet file's bytes for ``rows`` under the fixed schema of ``kind`` (NaN becomes null)."""
    schema = SCHEMAS[kind]
    columns = {field.name: pa.array([_cell(row.get(field.name)) for row in rows], type=field.type) for field in schema}
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=schema), buffer)
    return buffer.getvalue()


def _cell(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value
