"""The report of a run: a self-contained HTML page (``html``), its plots (``plots``, ``figures``), and
Markdown for a README (``markdown``), all from one ``Results`` built once per run."""

from __future__ import annotations

from pathlib import Path

from personagate.experiments.analysis.exports import write_exports
from personagate.experiments.analysis.results import Results
from personagate.experiments.storage.store import RunStore
from personagate.outputs import write_bytes
from personagate.report.figures import named_figures
from personagate.report.html import render, write_report
from personagate.report.markdown import markdown

__all__ = ["load_results", "markdown", "rebuild", "render", "save_plots", "write_report"]


def load_results(run_dir: str | Path) -> Results:
    """The results of an existing run directory (a damaged or empty store is an error)."""
    with RunStore(run_dir, create=False) as store:
        return Results.of(store)


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
