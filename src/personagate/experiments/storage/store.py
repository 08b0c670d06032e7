"""The run store: one directory per run with a SQLite database, a manifest and exports.

Rows are written one batch per transaction with (condition, prompt_set, prompt_id) as the primary
key, so a run killed at any moment loses at most the batch in flight and never records one twice;
re-running the same command skips what is already there. A store is never trusted blindly: an empty,
truncated, garbage or foreign ``run.sqlite`` is reported in one line and left as it is (never rebuilt
over, never exported over), and a lock file refuses a second run writing into the same directory.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from personagate import checks
from personagate.errors import PersonagateError
from personagate.experiments.storage.facts import Fact, FactFamily, T
from personagate.experiments.storage.records import Row, StoredCondition
from personagate.outputs import check_run_dir, write_atomically

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conditions (
    name TEXT PRIMARY KEY, position INTEGER NOT NULL, grp TEXT NOT NULL, x REAL, seed INTEGER,
    description TEXT NOT NULL, mode TEXT NOT NULL, meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (
    condition TEXT NOT NULL, prompt_set TEXT NOT NULL, prompt_id INTEGER NOT NULL,
    text TEXT, refusal INTEGER, label TEXT, score REAL, loglik REAL, judge INTEGER,
    PRIMARY KEY (condition, prompt_set, prompt_id)
);
CREATE TABLE IF NOT EXISTS readout (condition TEXT NOT NULL, layer INTEGER NOT NULL, prompt_id INTEGER NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (condition, layer, prompt_id));
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS judgements (judge TEXT NOT NULL, reply TEXT NOT NULL, refusal INTEGER,
    PRIMARY KEY (judge, reply));
"""

TABLES = {"manifest", "conditions", "rows", "readout", "facts"}
EXPORTS = ("summary.csv", "verdicts.csv", "completions.jsonl", "report.html")
_SQLITE_HEADER = b"SQLite format 3\x00"

ROW_COLUMNS = [f.name for f in dataclasses.fields(Row)]


class RunStore:
    """A run directory; ``RunStore(path)`` opens or creates one, ``RunStore(path, create=False)`` only
    opens an existing run (``report``); ``close()`` when done (or use ``with``)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        database = self.path / "run.sqlite"
        if create:
            check_run_dir(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
        elif not database.is_file():
            raise PersonagateError(f"{self.path} is not a personagate run directory (no run.sqlite)")
        _check_database_file(database, self.path, create)
        tables = _inspect(database) if database.exists() and database.stat().st_size else set()
        self._lock: Any = None
        if not create and not tables:
            raise PersonagateError(f"{database} holds no run yet; nothing to report")
        try:
            self.db = sqlite3.connect(database, timeout=30)
            if create:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
                self.db.commit()
            elif not self.manifest():
                raise PersonagateError(f"{database} holds no run yet (no manifest); nothing to report")
        except sqlite3.DatabaseError as exc:
            raise PersonagateError(
                f"{database} is damaged ({exc}); it is left as it is: start a fresh run in another --out"
            ) from None

    def lock(self) -> None:
        """Hold the run directory for this process; a second run on it is refused in one line."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover (no advisory locks on Windows)
            return
        handle = open(self.path / ".lock", "a+")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise PersonagateError(
                f"another personagate run is writing into {self.path}; wait for it to finish or choose another --out"
            ) from None
        self._lock = handle

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- manifest ---------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM manifest")}

    def start(self, manifest: dict[str, Any], identity_keys: Sequence[str]) -> bool:
        """Record ``manifest`` for a new run, or check that a resumed run is the same study.

        Returns True when resuming. ``identity_keys`` must match for a resume (spec, model hash, ...).
        """
        if self.check_identity(manifest, identity_keys):
            return True
        with self.db:
            self.db.executemany("INSERT INTO manifest VALUES (?, ?)", [(k, json.dumps(v)) for k, v in manifest.items()])
        text = json.dumps(manifest, indent=1)
        write_atomically(self.path / "manifest.json", lambda f: f.write(text))
        return False

    def check_identity(self, manifest: dict[str, Any], identity_keys: Sequence[str]) -> bool:
        """True when this store already holds a run, after checking it is the same study on ``identity_keys``."""
        existing = self.manifest()
        if existing:
            for key in identity_keys:
                if existing.get(key) != manifest.get(key):
                    raise PersonagateError(
                        f"{self.path} holds a different run: {_difference(key, existing.get(key), manifest.get(key))}; "
                        "resuming would mix the two, so start a fresh run in another --out"
                    )
            return True
        return False

    def set_fact(self, fact: Fact[T], value: T) -> None:
        fact.check(value)
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (fact.key, json.dumps(value)))

    def fact(self, fact: Fact[T], default: T | None = None) -> T | None:
        row = self.db.execute("SELECT value FROM facts WHERE key = ?", (fact.key,)).fetchone()
        return json.loads(row[0]) if row else default

    def facts_under(self, family: FactFamily[T]) -> dict[str, T]:
        """Every fact of ``family``, by the rest of its key."""
        n = len(family.prefix) + 1
        rows = self.db.execute("SELECT key, value FROM facts WHERE substr(key, 1, ?) = ?", (n, family.prefix + ":"))
        return {key[n:]: json.loads(value) for key, value in rows}

    # --- conditions and rows ----------------------------------------------------------------------

    def add_condition(self, condition: StoredCondition) -> None:
        """Record a condition; one already recorded under its name keeps its first record."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO conditions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", condition.columns())

    def conditions(self) -> list[StoredCondition]:
        """Every condition in the order it was added."""
        cur = self.db.execute(
            "SELECT name, position, grp, x, seed, description, mode, meta FROM conditions ORDER BY position"
        )
        return [StoredCondition.from_columns(*row) for row in cur]

    def done_ids(self, condition: str, prompt_set: str) -> set[int]:
        cur = self.db.execute(
            "SELECT prompt_id FROM rows WHERE condition = ? AND prompt_set = ?", (condition, prompt_set)
        )
        return {r[0] for r in cur}

    def write_rows(self, rows: Iterable[Row]) -> None:
        """One transaction: all of these rows, or none of them."""
        with self.db:
            self.db.executemany(
                f"INSERT INTO rows VALUES ({', '.join('?' * len(ROW_COLUMNS))})",
                [dataclasses.astuple(r) for r in rows],
            )

    def rows(self, condition: str | None = None, prompt_set: str | None = None) -> list[Row]:
        query, args = f"SELECT {', '.join(ROW_COLUMNS)} FROM rows WHERE 1=1", []
        if condition is not None:
            query, args = query + " AND condition = ?", [*args, condition]
        if prompt_set is not None:
            query, args = query + " AND prompt_set = ?", [*args, prompt_set]
        return [Row(*r) for r in self.db.execute(query + " ORDER BY condition, prompt_set, prompt_id", args)]

    def judgements(self, judge: str, replies: Sequence[str]) -> dict[str, int | None]:
        """What ``judge`` already said of these replies (keyed by the reply's hash): a resumed or
        re-reported run never asks a judge twice."""
        if not replies:
            return {}
        out: dict[str, int | None] = {}
        for start in range(0, len(replies), 500):
            chunk = list(replies[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT reply, refusal FROM judgements WHERE judge = ? AND reply IN ({marks})"
            out.update(dict(self.db.execute(query, [judge, *chunk])))
        return out

    def remember(self, judge: str, verdicts: dict[str, int | None]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO judgements VALUES (?, ?, ?)", [(judge, k, v) for k, v in verdicts.items()]
            )

    def write_readout(self, condition: str, values: Sequence[Sequence[float]]) -> None:
        """Per prompt, the projection at every layer (``values[prompt][layer]``), in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO readout VALUES (?, ?, ?, ?)",
                [
                    (condition, layer, prompt, float(value))
                    for prompt, per_layer in enumerate(values)
                    for layer, value in enumerate(per_layer)
                ],
            )

    def readout(self) -> dict[str, list[list[float]]]:
        """Per condition: ``[layer][prompt]`` projections."""
        out: dict[str, list[list[float]]] = {}
        for condition, layer, _, value in self.db.execute(
            "SELECT condition, layer, prompt_id, value FROM readout ORDER BY condition, layer, prompt_id"
        ):
            layers = out.setdefault(condition, [])
            while len(layers) <= layer:
                layers.append([])
            layers[layer].append(value)
        return out


def _check_database_file(database: Path, folder: Path, create: bool) -> None:
    """Refuse a run.sqlite that cannot be ours before SQLite touches it (SQLite would happily start
    a new database over a zero-byte file, and an export would then overwrite good results)."""
    if not database.exists() and not database.is_symlink():
        return
    checks.input_file(database, "run store")  # a FIFO or a device in its place would block or mislead SQLite
    with open(database, "rb") as f:
        head = f.read(len(_SQLITE_HEADER))
    if not head:
        results = [name for name in EXPORTS if (folder / name).exists()]
        if not create or results or (folder / "manifest.json").exists():
            raise PersonagateError(
                f"{database} is empty although the run directory holds results; it was damaged and is left "
                "as it is: start a fresh run in another --out"
            )
        return
    if head != _SQLITE_HEADER:
        raise PersonagateError(f"{database} is not an SQLite database; it is left as it is: choose another --out")


def _inspect(database: Path) -> set[str]:
    """The tables of an existing store, checked without writing a byte: SQLite is opened immutable, so
    no journal or shared-memory files appear next to a damaged database. A store with a write-ahead
    log (a run killed or still running) keeps part of its data there, which only a normal read sees."""
    wal = Path(f"{database}-wal")
    mode = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
    try:
        probe = sqlite3.connect(f"{database.resolve().as_uri()}?{mode}", uri=True)
    except sqlite3.DatabaseError as exc:
        raise PersonagateError(f"{database} cannot be opened ({exc}); it is left as it is") from None
    try:
        tables = {row[0] for row in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not tables >= TABLES:
            raise PersonagateError(
                f"{database} is an SQLite database of something else (tables {', '.join(sorted(tables))}); "
                "it is left as it is: choose another --out"
            )
        columns = [row[1] for row in probe.execute("PRAGMA table_info(rows)")]
        if columns and columns != ROW_COLUMNS:
            raise PersonagateError(
                f"{database} was written by another version of personagate (its rows have columns "
                f"{', '.join(columns)}); start a fresh run in another --out"
            )
        if probe.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("its integrity check failed")
    except sqlite3.DatabaseError as exc:
        raise PersonagateError(
            f"{database} is damaged ({exc}); it is left as it is: start a fresh run in another --out"
        ) from None
    finally:
        probe.close()
    return tables


def _difference(key: str, old: Any, new: Any) -> str:
    """Which part of a manifest entry differs, in words."""
    if isinstance(old, dict) and isinstance(new, dict):
        for sub in sorted(old.keys() | new.keys()):
            if old.get(sub) != new.get(sub):
                return _difference(f"{key}.{sub}", old.get(sub), new.get(sub))
    return f"{key} was {_short(old)}, now {_short(new)}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
