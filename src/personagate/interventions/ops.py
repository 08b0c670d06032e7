"""The op vocabulary: each op kind knows its edits, its table form, its flag form and its one ``describe()``.

An op names its direction either by a ``Direction`` (Python use) or by a reference string (a vector
file in a program file or flag, a key such as ``persona`` in a study condition) that ``bind`` turns
into a ``Direction`` later. ``to_table`` writes the reference, so a program round-trips through TOML.

Adding an op kind means one class here (``kind``, fields, ``edits``, ``from_table``, ``describe``)
and its tests: program files, study conditions and the CLI flags (``--KIND``) pick it up from
``OPS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from personagate import checks
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.interventions import fields
from personagate.interventions.edits import Scope, Site, SiteEdit
from personagate.interventions.windows import LayerSpec, Window, resolve_layers

Resolver = Callable[[str], Direction]
OPS: dict[str, type[Op]] = {}


class Op:
    """Base of every op kind; subclasses are frozen dataclasses registered in ``OPS`` by ``kind``."""

    kind: ClassVar[str]
    flag_fields: ClassVar[tuple[str, ...]]  # positional fields of the ``--KIND A,B,C`` flag
    flag_help: ClassVar[str]
    direction: Direction | str
    scope: Scope
    source: str | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        OPS[cls.kind] = cls

    # --- direction binding ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The direction's name (a reference string until bound)."""
        return self.direction.name if isinstance(self.direction, Direction) else self.direction

    def bind(self, resolve: Resolver) -> Op:
        """A copy whose direction reference is replaced by ``resolve(reference)``."""
        if isinstance(self.direction, Direction):
            return self
        return dataclasses.replace(self, direction=resolve(self.direction), source=self.direction)  # type: ignore[type-var]

    def bound(self) -> Direction:
        if not isinstance(self.direction, Direction):
            raise PersonagateError(f"op {self.kind!r} refers to direction {self.direction!r}, which was never loaded")
        return self.direction

    # --- forms ------------------------------------------------------------------------------------

    def edits(self, n_layers: int) -> Iterator[tuple[Site, SiteEdit]]:
        raise NotImplementedError

    def describe(self, n_layers: int | None = None) -> str:
        raise NotImplementedError

    def to_table(self) -> dict[str, Any]:
        """The TOML table of this op: ``{"op": kind, "direction": reference, ...}``."""
        out: dict[str, Any] = {"op": self.kind, "direction": self.source or self.name}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name in ("direction", "source"):
                continue
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if value != default:
                out[f.name] = _table_value(value)
        return out

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str, *, text: bool = False) -> Op:
        raise NotImplementedError

    @classmethod
    def flag_metavar(cls) -> str:
        required = [f.upper() for f in cls.flag_fields if is_required(cls, f)]
        optional = [f.upper() for f in cls.flag_fields if not is_required(cls, f)]
        head = ",".join(["FILE" if f == "DIRECTION" else f for f in required])
        return head + "".join(f"[,{f}" for f in optional) + "]" * len(optional)


def is_required(cls: type[Op], name: str) -> bool:
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]  # type: ignore[arg-type]
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def _table_value(value: Any) -> Any:
    if isinstance(value, Window):
        return value.text
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True)
class Add(Op):
    """Add ``coeff * v_l`` to ``resid_pre[l]`` for each layer (``unit=True``: the unit vector)."""

    kind: ClassVar[str] = "add"
    flag_fields: ClassVar[tuple[str, ...]] = ("direction", "coeff", "layers", "scope")
    flag_help: ClassVar[str] = "add COEFF x the direction at LAYERS (all, 12, 16:24, 2/3:1)"

    direction: Direction | str
    coeff: float
    layers: LayerSpec = "all"
    scope: Scope = "all"
    unit: bool = False
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", fields.as_direction(self.direction))
        fields.check_scope(self.scope)
        object.__setattr__(self, "coeff", checks.number(self.coeff, "coefficient"))
        object.__setattr__(self, "layers", fields.as_layer_spec(self.layers, "layers"))
        checks.boolean(self.unit, "unit")

    def edits(self, n_layers: int) -> Iterator[tuple[Site, SiteEdit]]:
        direction = self.bound()
        for layer in resolve_layers(self.layers, n_layers):
            v = direction.unit_at(layer) if self.unit else direction.at(layer)
            yield ("resid_pre", layer), SiteEdit("add", self.coeff * v, self.scope)

    def describe(self, n_layers: int | None = None) -> str:
        what = "unit " if self.unit else ""
        return (
            f"add {self.coeff:g} x {what}{self.name} to the residual stream entering "
            f"{fields.layers_text(self.layers, n_layers)}{fields.scope_text(self.scope)}"
        )

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str, *, text: bool = False) -> Add:
        checks.known_keys(table, ("op", "direction", "coeff", "layers", "scope", "unit"), where)
        if "coeff" not in table:
            raise PersonagateError(f"{where}: 'coeff' is required for op \"add\"")
        layers = table.get("layers", "all")
        if text and isinstance(layers, str) and layers.strip().isdigit():
            layers = int(layers)
        return cls(
            fields.direction_ref(table, where),
            checks.number(table["coeff"], f"{where}: coeff", text=text),
            fields.as_layer_spec(layers, f"{where}: layers"),
            fields.scope_of(table, where),
            checks.boolean(table.get("unit", False), f"{where}: unit", text=text),
        )


@dataclass(frozen=True)
class Clamp(Op):
    """Inside ``window``, hold the residual stream's projection onto the direction's unit vector at
    ``value`` (a number, or one per layer): at every block input the component is set to the value,
    and the attention and MLP outputs of those blocks write none of it, so it stays there throughout.
    ``Ablate`` is the clamp to 0."""

    kind: ClassVar[str] = "clamp"
    flag_fields: ClassVar[tuple[str, ...]] = ("direction", "value", "window", "scope")
    flag_help: ClassVar[str] = "hold the projection onto the unit direction at VALUE inside WINDOW"

    direction: Direction | str
    value: float | tuple[float, ...]
    window: Window = field(default_factory=lambda: Window(0.0, 1.0))
    scope: Scope = "all"
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", fields.as_direction(self.direction))
        fields.check_scope(self.scope)
        object.__setattr__(self, "window", fields.as_window(self.window, "window"))
        value = self.value
        if isinstance(value, (list, tuple, torch.Tensor)):
            values = [float(v) for v in value] if isinstance(value, torch.Tensor) else list(value)
            value = tuple(checks.number(v, f"clamp value [{i}]") for i, v in enumerate(values))
        else:
            value = checks.number(value, "clamp value")
        object.__setattr__(self, "value", value)

    def value_at(self, layer: int, n_layers: int) -> float:
        if isinstance(self.value, tuple):
            if len(self.value) != n_layers:
                raise PersonagateError(
                    f"clamp of {self.name} gives {len(self.value)} per-layer values but the model has {n_layers} layers"
                )
            return self.value[layer]
        return self.value

    def edits(self, n_layers: int) -> Iterator[tuple[Site, SiteEdit]]:
        direction = self.bound()
        for layer in self.window.resolve(n_layers):
            value = self.value_at(layer, n_layers)
            if direction.at(layer).norm() == 0:
                if value != 0:
                    raise PersonagateError(
                        f"{self.name} is zero at layer {layer}: its projection cannot be clamped to {value:g}"
                    )
                continue  # nothing lies along a zero vector: projecting it out is the identity
            u = direction.unit_at(layer)
            yield ("resid_pre", layer), SiteEdit("clamp", u, self.scope, value)
            yield ("attn_out", layer), SiteEdit("clamp", u, self.scope, 0.0)
            yield ("mlp_out", layer), SiteEdit("clamp", u, self.scope, 0.0)

    def describe(self, n_layers: int | None = None) -> str:
        if isinstance(self.value, tuple):
            mean = sum(self.value) / len(self.value)
            to = f"per-layer values (mean {mean:.3g})"
        else:
            to = f"{self.value:g}"
        return (
            f"hold the projection onto {self.name} at {to} in the residual stream of "
            f"{fields.window_text(self.window, n_layers)} (their attention and MLP outputs add none of it)"
            f"{fields.scope_text(self.scope)}"
        )

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str, *, text: bool = False) -> Clamp:
        checks.known_keys(table, ("op", "direction", "value", "window", "scope"), where)
        if "value" not in table:
            raise PersonagateError(f"{where}: 'value' (a number or a list of per-layer numbers) is required for clamp")
        raw = table["value"]
        if isinstance(raw, list):
            value: float | tuple[float, ...] = tuple(
                checks.number(v, f"{where}: value[{i}]", text=text) for i, v in enumerate(raw)
            )
        else:
            value = checks.number(raw, f"{where}: value", text=text)
        return cls(
            fields.direction_ref(table, where),
            value,
            fields.as_window(table.get("window", "all"), f"{where}: window"),
            fields.scope_of(table, where),
        )


@dataclass(frozen=True)
class Ablate(Op):
    """Project the direction out inside ``window``: at every block input, attention output and MLP
    output of the window's blocks (the clamp to 0)."""

    kind: ClassVar[str] = "ablate"
    flag_fields: ClassVar[tuple[str, ...]] = ("direction", "window", "scope")
    flag_help: ClassVar[str] = "project the direction out of WINDOW (all, 16:24, 2/3:1)"

    direction: Direction | str
    window: Window = field(default_factory=lambda: Window(0.0, 1.0))
    scope: Scope = "all"
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", fields.as_direction(self.direction))
        fields.check_scope(self.scope)
        object.__setattr__(self, "window", fields.as_window(self.window, "window"))

    def edits(self, n_layers: int) -> Iterator[tuple[Site, SiteEdit]]:
        clamp = Clamp(self.bound(), 0.0, self.window, self.scope)
        yield from clamp.edits(n_layers)

    def describe(self, n_layers: int | None = None) -> str:
        return (
            f"project {self.name} out of the residual stream, attention and MLP outputs of "
            f"{fields.window_text(self.window, n_layers)}{fields.scope_text(self.scope)}"
        )

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str, *, text: bool = False) -> Ablate:
        checks.known_keys(table, ("op", "direction", "window", "scope"), where)
        return cls(
            fields.direction_ref(table, where),
            fields.as_window(table.get("window", "all"), f"{where}: window"),
            fields.scope_of(table, where),
        )
