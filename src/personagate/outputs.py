"""Where results go: output paths checked before any work starts, and one writer for every file the
package writes, so no output can destroy what it should not.

``write_file`` writes a regular file whole or not at all (a temporary sibling renamed into place,
keeping the old file's permissions). It never renames over anything else: an existing directory,
FIFO, socket or symbolic link is refused in one line; a character or block device (``/dev/null``) is
written into directly and stays a device (documented: ``--out /dev/null`` discards the output).

A run directory is ours only when it is empty or already holds a personagate run (its
``manifest.json`` or ``run.sqlite``): anything else is refused before any work, so a run never
replaces a user's files.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from personagate.errors import PersonagateError

Writer = Callable[[io.TextIOBase], None] | Callable[[io.BufferedIOBase], None]


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path.cwd()


def _kind(path: Path) -> str:
    """What exists at ``path`` without following a final symlink: "" (nothing), or its kind."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there (or a file where a folder should be)
        return ""
    except OSError as exc:
        raise PersonagateError(f"cannot inspect {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    return "socket"


def check_output_dir(path: Path, flag: str = "--out") -> None:
    """A folder (or nothing yet) that can be made and written into."""
    if str(path) == "":
        raise PersonagateError(f"{flag} is empty; give a folder")
    kind = _kind(path)
    if kind == "symlink" and path.is_dir():
        kind = "directory"  # a link to a folder is a folder to write into
    if kind not in ("", "directory"):
        raise PersonagateError(f"{flag} {path} is a {kind}; give a folder")
    probe = path if kind else _existing_ancestor(path)
    if not probe.is_dir():
        raise PersonagateError(f"{flag} {path}: {probe} is a file, so the folder cannot be made")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PersonagateError(f"{flag} {path}: no permission to write in {probe}")


def check_run_dir(path: Path, flag: str = "--out") -> None:
    """A run directory: empty, missing, or one that holds a personagate run; never a user's folder."""
    if str(path) == "":
        raise PersonagateError(f"{flag} is empty; give a run directory")
    check_output_dir(path, flag)
    if not path.is_dir():
        return
    entries = [e for e in path.iterdir() if e.name not in (".lock",)]
    if not entries or (path / "run.sqlite").exists():
        return
    manifest = path / "manifest.json"
    if manifest.is_file() and _kind(manifest) == "file":
        try:
            recorded = json.loads(manifest.read_text(encoding="utf-8"))
        except (ValueError, OSError, UnicodeDecodeError):
            recorded = None
        if isinstance(recorded, dict) and "package_version" in recorded:
            return
    raise PersonagateError(
        f"{flag} {path} is a folder that holds no personagate run ({len(entries)} entries); a run only writes "
        "into an empty folder or its own run directory: choose another --out"
    )


def check_output_file(path: Path, flag: str = "--out") -> None:
    """A file path whose folder exists or can be made, that is a regular file or nothing yet (or a
    device, written into), and can be written."""
    if str(path) == "":
        raise PersonagateError(f"{flag} is empty; give a file name")
    kind = _kind(path)
    if kind == "directory":
        raise PersonagateError(f"{flag} {path} is a folder; give a file name")
    if kind in ("symlink", "FIFO", "socket"):
        raise PersonagateError(f"{flag} {path} is a {kind}; give a regular file to write")
    if kind and not os.access(path, os.W_OK):
        raise PersonagateError(f"{flag} {path}: no permission to overwrite it")
    check_output_dir(path.parent, flag)


def write_file(path: Path, write: Writer, *, binary: bool = False) -> None:
    """Write ``path`` through ``write(f)``: a regular file through a temporary sibling renamed into
    place only once complete (a crash or a kill never leaves a half-written file where the last good
    one was), with the replaced file's permissions; a device written into directly."""
    kind = _kind(path)
    if kind in ("directory", "symlink", "FIFO", "socket"):
        raise PersonagateError(f"{path} is a {kind}; personagate writes only regular files there")
    if kind == "device":
        with open(path, "wb" if binary else "w", **({} if binary else {"newline": "", "encoding": "utf-8"})) as f:
            write(f)  # type: ignore[arg-type]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(os.stat(path).st_mode) if kind == "file" else _default_mode()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if binary:
            with os.fdopen(handle, "wb") as f:
                write(f)  # type: ignore[arg-type]
        else:
            with os.fdopen(handle, "w", newline="", encoding="utf-8") as f:
                write(f)  # type: ignore[arg-type]
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, write: Callable[[io.TextIOBase], None]) -> None:
    """A text file, written by ``write_file``."""
    write_file(path, write)


def write_bytes(path: Path, data: bytes) -> None:
    """A binary file, written by ``write_file``."""
    write_file(path, lambda f: f.write(data), binary=True)  # type: ignore[arg-type, return-value]


def _default_mode() -> int:
    """0666 less the process umask: what ``open`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
