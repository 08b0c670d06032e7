"""Intervention programs from a TOML file or from compact CLI flags, checked before any model loads.

TOML::

    [[ops]]
    op = "add"                       # add | ablate
    direction = "persona.safetensors" # relative to this file
    coeff = 0.5
    layers = "all"                   # "all", 12, [3, 4], "16:24", "2/3:1"
    scope = "all"                    # all | prompt | generated
    unit = false

    [[ops]]
    op = "ablate"
    direction = "persona.safetensors"
    window = "2/3:1"                 # or [16, 24]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.interventions import Ablate, Add, Op, Program, Window

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_ADD_KEYS = {"op", "direction", "coeff", "layers", "scope", "unit"}
_ABLATE_KEYS = {"op", "direction", "window", "scope"}


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's tables; a missing or malformed file is a user error naming it."""
    if not path.is_file():
        raise PersonagateError(f"no such {what} file: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PersonagateError(f"{path} is not valid TOML: {exc}") from None


def load_program(path: str | Path) -> Program:
    path = Path(path)
    data = read_toml(path, "program")
    unknown = set(data) - {"ops"}
    if unknown:
        raise PersonagateError(f"{path}: unknown key {sorted(unknown)[0]!r}; a program file holds [[ops]] tables only")
    return Program([_op_from_table(t, i, path.parent, str(path)) for i, t in enumerate(data.get("ops", []))])


def _op_from_table(table: dict[str, Any], index: int, base: Path, where: str) -> Op:
    label = f"{where}: ops[{index}]"
    kind = table.get("op")
    if kind not in ("add", "ablate"):
        raise PersonagateError(f'{label}: \'op\' must be "add" or "ablate", got {kind!r}')
    allowed = _ADD_KEYS if kind == "add" else _ABLATE_KEYS
    for key in table:
        if key not in allowed:
            raise PersonagateError(
                f"{label}: unknown key {key!r} for op {kind!r}; allowed: {', '.join(sorted(allowed))}"
            )
    if "direction" not in table:
        raise PersonagateError(f"{label}: 'direction' (a vector file) is required")
    direction = Direction.load(base / table["direction"])
    scope = table.get("scope", "all")
    if kind == "add":
        if "coeff" not in table:
            raise PersonagateError(f"{label}: 'coeff' is required for op \"add\"")
        return Add(
            direction,
            float(table["coeff"]),
            _layers(table.get("layers", "all"), label),
            scope,
            bool(table.get("unit", False)),
        )
    return Ablate(direction, _window(table.get("window", "all"), label), scope)


def _layers(value: Any, label: str) -> Any:
    if isinstance(value, str):
        return value if value == "all" else Window.parse(value)
    if isinstance(value, int) or (isinstance(value, list) and all(isinstance(v, int) for v in value)):
        return value
    raise PersonagateError(f'{label}: \'layers\' must be "all", an int, a list of ints or "start:stop"')


def _window(value: Any, label: str) -> Window:
    if isinstance(value, str):
        return Window.parse(value)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return Window(value[0], value[1])
    raise PersonagateError(f"{label}: 'window' must be \"start:stop\" or [start, stop]")


def parse_add_flag(text: str) -> Add:
    """``FILE,COEFF[,LAYERS[,SCOPE]]``, e.g. ``persona.safetensors,0.5,all`` or ``r.safetensors,1,12``."""
    parts = text.split(",")
    if not 2 <= len(parts) <= 4:
        raise PersonagateError(f"--add {text!r}: expected FILE,COEFF[,LAYERS[,SCOPE]]")
    try:
        coeff = float(parts[1])
    except ValueError:
        raise PersonagateError(f"--add {text!r}: coefficient {parts[1]!r} is not a number") from None
    layers: Any = "all"
    if len(parts) > 2:
        layers = int(parts[2]) if parts[2].lstrip("-").isdigit() else _layers(parts[2], f"--add {text!r}")
    scope = parts[3] if len(parts) > 3 else "all"
    return Add(Direction.load(parts[0]), coeff, layers, scope)  # type: ignore[arg-type]


def parse_ablate_flag(text: str) -> Ablate:
    """``FILE[,WINDOW[,SCOPE]]``, e.g. ``persona.safetensors,16:24``."""
    parts = text.split(",")
    if not 1 <= len(parts) <= 3:
        raise PersonagateError(f"--ablate {text!r}: expected FILE[,WINDOW[,SCOPE]]")
    window = Window.parse(parts[1]) if len(parts) > 1 else Window.parse("all")
    scope = parts[2] if len(parts) > 2 else "all"
    return Ablate(Direction.load(parts[0]), window, scope)  # type: ignore[arg-type]


def program_from_args(program_file: Path | None, flags: list[tuple[str, str]]) -> Program:
    """The TOML program (if any) followed by the --add/--ablate flags in the order given."""
    program = load_program(program_file) if program_file else Program()
    ops = [parse_add_flag(v) if kind == "add" else parse_ablate_flag(v) for kind, v in flags]
    return program.then(*ops)


def load_prompts_or_flags(prompts: list[str] | None, path: Path | None, field: str | None) -> list[str]:
    from personagate.prompts import load_prompts

    texts = list(prompts) if prompts else load_prompts(path, field) if path else []
    if not texts:
        raise PersonagateError("no prompts given; pass --prompt TEXT or --prompts FILE")
    return texts
