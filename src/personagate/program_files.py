"""Intervention programs from a TOML file or from compact CLI flags, checked before any model loads.

A program file is the table form of ``Program`` (``Program.to_table``); each op kind's keys are
those of its class in ``personagate.interventions.ops``::

    [[ops]]
    op = "add"                        # add | clamp | ablate
    direction = "persona.safetensors" # a vector file, relative to this file
    coeff = 0.5
    layers = "all"                    # "all", 12, [3, 4], "16:24", "2/3:1"
    scope = "all"                     # all | prompt | generated
    unit = false

    [[ops]]
    op = "clamp"
    direction = "refusal.safetensors"
    value = 4.0                       # or one number per layer
    window = "16:24"

    [[ops]]
    op = "ablate"
    direction = "persona.safetensors"
    window = "2/3:1"                  # or [16, 24]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from personagate import checks
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.interventions import Program, op_from_flag

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's tables; a missing, non-UTF-8 or malformed file is a user error naming it."""
    text = checks.read_text(path, what)
    try:
        return checks.nesting(tomllib.loads(text), str(path))
    except tomllib.TOMLDecodeError as exc:
        raise PersonagateError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise PersonagateError(f"{path} nests tables or lists too deeply to read") from None


def load_program(path: str | Path) -> Program:
    """A program file with every direction loaded (paths relative to the file)."""
    path = Path(path)
    program = Program.from_table(read_toml(path, "program"), str(path))
    return program.bind(lambda ref: Direction.load(path.parent / ref))


def program_from_args(program_file: Path | None, flags: list[tuple[str, str]]) -> Program:
    """The TOML program (if any) followed by the op flags (``--add``, ``--clamp``, ``--ablate``) in the order given."""
    program = load_program(program_file) if program_file else Program()
    ops = [op_from_flag(kind, text).bind(Direction.load) for kind, text in flags]
    return program.then(*ops)


def load_prompts_or_flags(
    prompts: list[str] | None, path: Path | None, field: str | None, max_chars: int | None = None
) -> list[str]:
    from personagate.prompts import MAX_PROMPT_CHARS, check_prompt_lengths, load_prompts

    limit = max_chars or MAX_PROMPT_CHARS
    if prompts:
        texts = check_prompt_lengths(list(prompts), "--prompt", limit)
    else:
        texts = load_prompts(path, field, max_chars=limit) if path else []
    if not texts:
        raise PersonagateError("no prompts given; pass --prompt TEXT or --prompts FILE")
    return texts
