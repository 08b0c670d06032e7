"""Where an op acts: half-open block windows and layer lists, in blocks or depth fractions.

``Window(16, 24)`` is blocks 16..23; ``Window(2/3, 1.0)`` is the last third of any model. Ints are
block indices, floats depth fractions, resolved against the model's block count ``L``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Union

from personagate.errors import PersonagateError

_FORM = "must look like START:STOP, e.g. 16:24 (blocks) or 2/3:1 (depth fractions)"


@dataclass(frozen=True)
class Window:
    """Half-open block range ``[start, stop)``; ints are block indices, floats depth fractions."""

    start: int | float
    stop: int | float

    def __post_init__(self) -> None:
        for value in (self.start, self.stop):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PersonagateError(f"window bounds must be numbers, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise PersonagateError(f"window [{self.start}, {self.stop}) needs finite, non-negative bounds")
        if self.fractional and not (float(self.start) <= 1 and float(self.stop) <= 1):
            raise PersonagateError(
                f"window [{self.start}, {self.stop}): depth fractions lie in [0, 1]; write blocks as integers"
            )

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"16:24"`` (blocks), ``"2/3:1"`` or ``"0.5:1.0"`` (depth fractions), ``"all"``."""
        if not isinstance(text, str):
            raise PersonagateError(f"window {text!r} {_FORM}")
        if text.strip() == "all":
            return cls(0.0, 1.0)
        parts = text.split(":")
        if len(parts) != 2:
            raise PersonagateError(f"window {text!r} {_FORM}")
        values = [_number(p.strip(), text) for p in parts]
        if any(isinstance(v, float) for v in values):  # "2/3:1" is a pair of fractions
            values = [float(v) for v in values]
        return cls(values[0], values[1])

    @property
    def fractional(self) -> bool:
        return not (isinstance(self.start, int) and isinstance(self.stop, int))

    def resolve(self, n_layers: int) -> range:
        """The block indices of the window for a model with ``n_layers`` blocks."""
        if self.fractional:
            start, stop = round(float(self.start) * n_layers), round(float(self.stop) * n_layers)
        else:
            start, stop = int(self.start), int(self.stop)
        if not 0 <= start < stop <= n_layers:
            raise PersonagateError(
                f"window [{self.start}, {self.stop}) resolves to [{start}, {stop}), which is not a non-empty "
                f"range inside [0, {n_layers}); windows are half-open, start < stop"
            )
        return range(start, stop)

    @property
    def text(self) -> str:
        """The form ``parse`` reads back to an equal window."""
        return f"{_number_text(self.start)}:{_number_text(self.stop)}"

    def __str__(self) -> str:
        return f"[{self.start}, {self.stop})"


def _number(text: str, whole: str) -> int | float:
    try:
        if "/" in text:
            value: int | float = float(Fraction(text))
        elif "." in text or "e" in text.lower() or "n" in text.lower():
            value = float(text)
        else:
            value = int(text)
    except (ValueError, ZeroDivisionError):
        raise PersonagateError(f"window {whole!r} {_FORM}") from None
    if not math.isfinite(value):
        raise PersonagateError(f"window {whole!r} has a bound that is not a finite number")
    return value


def _number_text(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


LayerSpec = Union[int, Sequence[int], Window, Literal["all"]]


def resolve_layers(layers: LayerSpec, n_layers: int) -> list[int]:
    """Layer indices from an int, a list, a ``Window`` or ``"all"``; out of range is an error."""
    if isinstance(layers, str):
        if layers != "all":
            return list(Window.parse(layers).resolve(n_layers))
        return list(range(n_layers))
    if isinstance(layers, Window):
        return list(layers.resolve(n_layers))
    values = [layers] if isinstance(layers, int) else list(layers)
    for layer in values:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
            raise PersonagateError(f"layer {layer} is out of range; this model has layers 0..{n_layers - 1}")
    return values


def range_text(layers: Sequence[int] | range) -> str:
    """``0..3`` for a run of consecutive layers, else a comma list."""
    values = list(layers)
    if len(values) > 1 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))
