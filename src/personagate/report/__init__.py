"""The report of a run: a self-contained HTML page (``html``), its plots (``plots``, ``figures``), and
Markdown for a README (``markdown``), all from one ``Results`` built once per run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from personagate.errors import PersonagateError
from personagate.experiments.analysis.exports import write_exports
from personagate.experiments.analysis.results import Results
from personagate.experiments.protocols import recorded_spec
from personagate.experiments.storage.store import RunStore
from personagate.outputs import write_bytes
from personagate.report.figures import named_figures
from personagate.report.html import render, write_report
from personagate.report.markdown import markdown

__all__ = ["load_results", "markdown", "rebuild", "render", "save_plots", "write_report"]


def load_results(run_dir: str | Path) -> Results:
    """The results of an existing run directory (a damaged, empty, edited or foreign store is an error)."""
    with RunStore(run_dir, create=False) as store:
        try:
            return Results.of(store, recorded_spec(store.manifest()))
        except PersonagateError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, sqlite3.Error) as exc:
            raise PersonagateError(
                f"{run_dir} holds values personagate did not write ({type(exc).__name__}: {str(exc)[:120]}); the "
                "store was edited or written by another version: rebuild it by running the study again"
            ) from None


def rebuild(results: Results) -> Path:
    """The exports and the report of one run, from its results (``personagate report RUN_DIR``)."""
    write_exports(results)
    return write_report(results)


def save_plots(results: Results, out: str | Path) -> list[Path]:
    """Write the report's plots as PNG files into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, (_, data) in named_figures(results):
        path = out / f"{stem}.png"
        write_bytes(path, data)
        paths.append(path)
    return paths
