"""Strict checks of values a user wrote (TOML, flags, JSON): one place, one wording.

TOML and JSON give Python values whose types are easy to misread: ``true`` is an ``int`` to
Python, ``"no"`` is truthy, ``nan`` is a float. Every user-facing reader goes through these
functions, so a bool is never a number, a string never a bool, and a number is finite unless
said otherwise. ``where`` names the key (``steering.persona_coeffs[1]``, ``--add``) in the message.
Text from a command-line flag may be given as ``text=True``: numbers are then parsed from it.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from personagate.errors import PersonagateError

T = TypeVar("T")


def number(
    value: Any,
    where: str,
    *,
    text: bool = False,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
) -> float:
    """A finite int or float (never a bool); ``text=True`` also parses a string."""
    if text and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PersonagateError(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PersonagateError(f"{where} must be a number, got {_show(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise PersonagateError(f"{where} must be a finite number, got {value}")
    if positive and value <= 0:
        raise PersonagateError(f"{where} must be positive, got {value:g}")
    if minimum is not None and value < minimum:
        raise PersonagateError(f"{where} must be at least {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise PersonagateError(f"{where} must be at most {maximum:g}, got {value:g}")
    if below is not None and value >= below:
        raise PersonagateError(f"{where} must be below {below:g}, got {value:g}")
    return value


def integer(
    value: Any, where: str, *, text: bool = False, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An int (never a bool, never a float with a fraction); ``text=True`` also parses a string."""
    if text and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise PersonagateError(f"{where}: {value!r} is not an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PersonagateError(f"{where} must be an integer, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise PersonagateError(f"{where} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise PersonagateError(f"{where} must be at most {maximum}, got {value}")
    return value


def boolean(value: Any, where: str, *, text: bool = False) -> bool:
    """``true``/``false`` only; from a flag also ``yes``/``no``, ``1``/``0``."""
    if text and isinstance(value, str):
        table = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if value.strip().lower() in table:
            return table[value.strip().lower()]
    if not isinstance(value, bool):
        raise PersonagateError(f"{where} must be true or false, got {_show(value)}")
    return value


def string(value: Any, where: str, *, choices: Sequence[str] | None = None, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise PersonagateError(f"{where} must be a string, got {_show(value)}")
    if choices is not None and value not in choices:
        raise PersonagateError(f"{where} = {value!r}; use one of {', '.join(choices)}")
    if nonempty and not value.strip():
        raise PersonagateError(f"{where} must not be empty")
    return value


def listing(value: Any, where: str, *, nonempty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise PersonagateError(f"{where} must be a list, got {_show(value)}")
    if nonempty and not value:
        raise PersonagateError(f"{where} must list at least one value")
    return value


def table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PersonagateError(f"{where} must be a table, got {_show(value)}")
    return value


def known_keys(values: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in values:
        if key not in allowed:
            raise PersonagateError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")


MAX_TEXT_BYTES = 64 * 2**20  # a prompt, program, spec or CSV file larger than this is refused before reading
MAX_NESTING = 32  # tables and lists nested deeper than this in a TOML or JSON input are refused


def input_file(path: Path, what: str, limit: int | None = None) -> Path:
    """``path`` if it is a regular file (following links) no larger than ``limit`` bytes: a FIFO, a
    device or a folder is refused before anything opens it (reading one could block for ever)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise PersonagateError(f"no such {what} file: {path}") from None
    except OSError as exc:
        raise PersonagateError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "folder" if stat.S_ISDIR(info.st_mode) else "FIFO" if stat.S_ISFIFO(info.st_mode) else "device or socket"
        raise PersonagateError(f"{path} is a {kind}, not a {what} file")
    if limit is not None and info.st_size > limit:
        raise PersonagateError(
            f"{path} is {info.st_size / 2**20:.0f} MB; a {what} file may be {limit / 2**20:.0f} MB at most"
        )
    return path


def read_bytes(path: Path, what: str, limit: int) -> bytes:
    """A regular file's bytes, read only after its size is checked (and never past ``limit``)."""
    input_file(path, what, limit)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise PersonagateError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise PersonagateError(f"{path} grew past {limit / 2**20:.0f} MB while being read; a {what} file may not")
    return data


def nesting(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` when its tables and lists nest at most ``MAX_NESTING`` deep (else a one-line error)."""
    if depth > MAX_NESTING:
        raise PersonagateError(f"{where} nests tables or lists more than {MAX_NESTING} deep")
    if isinstance(value, dict):
        for item in value.values():
            nesting(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            nesting(item, where, depth + 1)
    return value


def read_text(path: Path, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """A text file's contents; missing, unreadable, oversized, non-regular or non-UTF-8 files are
    one-line errors naming it."""
    data = read_bytes(path, what, limit)
    if b"\x00" in data[:4096]:
        raise PersonagateError(f"{path} is a binary file, not a {what} file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PersonagateError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"
