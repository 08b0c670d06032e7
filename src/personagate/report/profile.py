"""The run's time profile in the report: a table per stage and kind of work (seconds, share, tokens,
rows, decoding throughput), the same table as text for ``personagate report RUN_DIR --profile``, and a
bar plot of the stages with each bar split by kind."""

from __future__ import annotations

import html
from collections.abc import Sequence

from personagate.experiments.storage.profile import ProfileEntry
from personagate.report.plots import Figure, _figure, _png

COLUMNS = ("stage", "kind", "seconds", "share", "units", "rows", "prompt tokens", "decoded tokens", "decoded/s")


def profile_rows(entries: Sequence[ProfileEntry]) -> list[tuple[str, ...]]:
    """One row per (stage, kind) in run order, then per stage a total, then the run's total."""
    total = sum(e.seconds for e in entries)
    rows = []
    for e in entries:
        share = f"{e.seconds / total:.1%}" if total else ""
        rate = f"{e.decoded_per_second:.1f}" if e.decoded_tokens else ""
        rows.append(
            (
                e.stage,
                e.kind,
                f"{e.seconds:.1f}",
                share,
                str(e.units or ""),
                str(e.rows or ""),
                str(e.prompt_tokens or ""),
                str(e.decoded_tokens or ""),
                rate,
            )
        )
    rows.append(("total", "", f"{total:.1f}", "100.0%" if total else "", "", "", "", "", ""))
    return rows


def stage_seconds(entries: Sequence[ProfileEntry]) -> dict[str, float]:
    out: dict[str, float] = {}
    for e in entries:
        out[e.stage] = out.get(e.stage, 0.0) + e.seconds
    return out


def profile_text(entries: Sequence[ProfileEntry]) -> str:
    if not entries:
        return "no time profile in this run (it was made before personagate recorded one)"
    rows = [COLUMNS, *profile_rows(entries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    right = {i for i in range(2, len(COLUMNS))}
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    )


def profile_html(entries: Sequence[ProfileEntry]) -> str:
    if not entries:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in profile_rows(entries)
    )
    return (
        "<h2>Time profile</h2><p class='muted'>Wall seconds per stage and kind of work, summed over every "
        "session on this run directory (a resumed run adds to the first); prompt tokens count every row's "
        f"prompt; decoded/s is the decoding throughput of the unit kind.</p><table><tr>{head}</tr>{body}</table>"
    )


def profile_figure(entries: Sequence[ProfileEntry]) -> Figure | None:
    """Horizontal bars, one per stage in run order, split by kind of work."""
    if not entries:
        return None
    fig, ax = _figure("Where the run's time went", "seconds", "")
    stages = list(stage_seconds(entries))
    kinds = list(dict.fromkeys(e.kind for e in entries))
    left = [0.0] * len(stages)
    for kind in kinds:
        widths = [sum(e.seconds for e in entries if e.stage == s and e.kind == kind) for s in stages]
        ax.barh(range(len(stages)), widths, left=left, label=kind)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(stages)), stages)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="best")
    total = sum(left)
    return f"Time profile: {total:.0f} s in all, per stage, split by kind of work.", _png(fig)
