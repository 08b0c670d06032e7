"""Checking and wording an op's fields: directions, scopes, layer lists and windows."""

from __future__ import annotations

from typing import Any

import torch

from personagate import checks
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.interventions.edits import SCOPES, Scope
from personagate.interventions.windows import LayerSpec, Window, range_text, resolve_layers


def as_direction(direction: Any) -> Direction | str:
    """A ``Direction``, a reference name, or a raw tensor (wrapped as an unnamed direction)."""
    if isinstance(direction, torch.Tensor):
        return Direction(direction)
    if not isinstance(direction, (Direction, str)) or (isinstance(direction, str) and not direction.strip()):
        raise PersonagateError(f"an op's direction must be a Direction or a reference name, got {direction!r}")
    return direction


def check_scope(scope: Any) -> None:
    if scope not in SCOPES:
        raise PersonagateError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")


def direction_ref(table: dict[str, Any], where: str) -> str:
    if "direction" not in table:
        raise PersonagateError(f"{where}: 'direction' is required")
    return checks.string(table["direction"], f"{where}: direction", nonempty=True)


def scope_of(table: dict[str, Any], where: str) -> Scope:
    return checks.string(table.get("scope", "all"), f"{where}: scope", choices=SCOPES)  # type: ignore[return-value]


def as_layer_spec(value: Any, where: str) -> LayerSpec:
    if isinstance(value, Window) or value == "all":
        return value
    if isinstance(value, str):
        return Window.parse(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple, range)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if not value:
            raise PersonagateError(f"{where}: the list of layers is empty")
        return tuple(value)
    raise PersonagateError(f'{where} must be "all", an int, a list of ints or "start:stop", got {value!r}')


def as_window(value: Any, where: str) -> Window:
    if isinstance(value, Window):
        return value
    if isinstance(value, str):
        return Window.parse(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return Window(value[0], value[1])
    raise PersonagateError(f'{where} must be "start:stop" or [start, stop], got {value!r}')


def layers_text(layers: LayerSpec, n_layers: int | None) -> str:
    if n_layers is not None:
        values = resolve_layers(layers, n_layers)
        return f"block{'s' if len(values) > 1 else ''} {range_text(values)}"
    if isinstance(layers, Window):
        return f"window {layers}"
    if isinstance(layers, tuple):
        return f"layers {range_text(layers)}"
    return f"layers {layers}" if layers == "all" else f"layer {layers}"


def window_text(window: Window, n_layers: int | None) -> str:
    if n_layers is None:
        return f"window {window}"
    blocks = window.resolve(n_layers)
    return f"block{'s' if len(blocks) > 1 else ''} {range_text(blocks)}"


def scope_text(scope: str) -> str:
    return {
        "all": "",
        "prompt": ", prompt tokens only",
        "generated": ", generated tokens only",
        "last": ", last prompt token only",
        "probe": ", the conversation's probe turn and the reply only",
        "assistant": ", the conversation's assistant turns and the reply only",
    }[scope]
