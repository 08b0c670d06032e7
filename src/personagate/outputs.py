"""Where results go: output paths checked before any work starts, files written whole or not at all."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from personagate.errors import PersonagateError


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path.cwd()


def check_output_dir(path: Path, flag: str = "--out") -> None:
    """A folder (or nothing yet) that can be made and written into."""
    if path.exists() and not path.is_dir():
        raise PersonagateError(f"{flag} {path} is a file; give a folder")
    probe = path if path.exists() else _existing_ancestor(path)
    if not probe.is_dir():
        raise PersonagateError(f"{flag} {path}: {probe} is a file, so the folder cannot be made")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PersonagateError(f"{flag} {path}: no permission to write in {probe}")


def check_output_file(path: Path, flag: str = "--out") -> None:
    """A file path whose folder exists or can be made, that is not a folder, and can be written."""
    if path.is_dir():
        raise PersonagateError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise PersonagateError(f"{flag} {path}: no permission to overwrite it")
    check_output_dir(path.parent, flag)


def write_atomically(path: Path, write: Callable[[io.TextIOBase], None]) -> None:
    """Write a text file through a temporary sibling renamed into place only once complete, so a crash
    or a kill never leaves a half-written file where the last good one was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as f:
            write(f)  # type: ignore[arg-type]
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
