"""The run store: one directory per run with a SQLite database, a manifest and exports.

Rows are written one batch per transaction with (condition, prompt_set, prompt_id) as the primary
key, so a run killed at any moment loses at most the batch in flight and never records one twice;
re-running the same command skips what is already there.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personagate.errors import PersonagateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conditions (
    name TEXT PRIMARY KEY, position INTEGER NOT NULL, grp TEXT NOT NULL, x REAL, seed INTEGER,
    description TEXT NOT NULL, mode TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (
    condition TEXT NOT NULL, prompt_set TEXT NOT NULL, prompt_id INTEGER NOT NULL,
    text TEXT, refusal INTEGER, score REAL,
    PRIMARY KEY (condition, prompt_set, prompt_id)
);
CREATE TABLE IF NOT EXISTS readout (condition TEXT NOT NULL, layer INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (condition, layer));
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    condition: str
    prompt_set: str
    prompt_id: int
    text: str | None
    refusal: int | None
    score: float | None


class RunStore:
    """A run directory; open with ``RunStore(path)``; ``close()`` when done (or use ``with``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path / "run.sqlite", timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.commit()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # --- manifest ---------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM manifest")}

    def start(self, manifest: dict[str, Any], identity_keys: Sequence[str]) -> bool:
        """Record ``manifest`` for a new run, or check that a resumed run is the same study.

        Returns True when resuming. ``identity_keys`` must match for a resume (spec, model hash, ...).
        """
        existing = self.manifest()
        if existing:
            for key in identity_keys:
                if existing.get(key) != manifest.get(key):
                    raise PersonagateError(
                        f"{self.path} holds a different run ({key} differs); choose another --out directory"
                    )
            return True
        with self.db:
            self.db.executemany("INSERT INTO manifest VALUES (?, ?)", [(k, json.dumps(v)) for k, v in manifest.items()])
        (self.path / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return False

    def set_fact(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (key, json.dumps(value)))

    def fact(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- conditions and rows ----------------------------------------------------------------------

    def add_condition(
        self, name: str, position: int, group: str, x: float | None, seed: int | None, description: str, mode: str
    ) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO conditions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, position, group, x, seed, description, mode),
            )

    def conditions(self) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT name, position, grp, x, seed, description, mode FROM conditions ORDER BY position"
        )
        keys = ("name", "position", "group", "x", "seed", "description", "mode")
        return [dict(zip(keys, row, strict=True)) for row in cur]

    def done_ids(self, condition: str, prompt_set: str) -> set[int]:
        cur = self.db.execute(
            "SELECT prompt_id FROM rows WHERE condition = ? AND prompt_set = ?", (condition, prompt_set)
        )
        return {r[0] for r in cur}

    def write_rows(self, rows: Iterable[Row]) -> None:
        """One transaction: all of these rows, or none of them."""
        with self.db:
            self.db.executemany(
                "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?)",
                [(r.condition, r.prompt_set, r.prompt_id, r.text, r.refusal, r.score) for r in rows],
            )

    def rows(self, condition: str | None = None, prompt_set: str | None = None) -> list[Row]:
        query, args = "SELECT condition, prompt_set, prompt_id, text, refusal, score FROM rows WHERE 1=1", []
        if condition is not None:
            query, args = query + " AND condition = ?", [*args, condition]
        if prompt_set is not None:
            query, args = query + " AND prompt_set = ?", [*args, prompt_set]
        return [Row(*r) for r in self.db.execute(query + " ORDER BY condition, prompt_set, prompt_id", args)]

    def write_readout(self, condition: str, values: Sequence[float]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO readout VALUES (?, ?, ?)",
                [(condition, i, float(v)) for i, v in enumerate(values)],
            )

    def readout(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for condition, _, value in self.db.execute(
            "SELECT condition, layer, value FROM readout ORDER BY condition, layer"
        ):
            out.setdefault(condition, []).append(value)
        return out
