"""``Project``: project a direction out of the residual stream at chosen layers only, the knockout of
Zhong & Li's code (``h <- h - (h . u) u`` on one block's output). Unlike ``Ablate`` it leaves the
attention and MLP outputs of the blocks alone: what a block writes after the site is kept.

Their "knockout at block k" edits block k's output, which is ``resid_pre[k + 1]`` here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from personagate import checks
from personagate.directions import Direction
from personagate.interventions import fields
from personagate.interventions.edits import Scope, Site, SiteEdit
from personagate.interventions.ops import Op
from personagate.interventions.windows import LayerSpec, resolve_layers


@dataclass(frozen=True)
class Project(Op):
    """Remove the component along the direction's unit vector from ``resid_pre[l]`` for each layer."""

    kind: ClassVar[str] = "project"
    flag_fields: ClassVar[tuple[str, ...]] = ("direction", "layers", "scope")
    flag_help: ClassVar[str] = "project the direction out of the residual stream at LAYERS only (12, 16:24)"

    direction: Direction | str
    layers: LayerSpec = "all"
    scope: Scope = "all"
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", fields.as_direction(self.direction))
        fields.check_scope(self.scope)
        object.__setattr__(self, "layers", fields.as_layer_spec(self.layers, "layers"))

    def edits(self, n_layers: int) -> Iterator[tuple[Site, SiteEdit]]:
        direction = self.bound()
        for layer in resolve_layers(self.layers, n_layers):
            if direction.at(layer).norm() == 0:
                continue  # nothing lies along a zero vector
            yield ("resid_pre", layer), SiteEdit("clamp", direction.unit_at(layer), self.scope, 0.0)

    def describe(self, n_layers: int | None = None) -> str:
        return (
            f"project {self.name} out of the residual stream entering {fields.layers_text(self.layers, n_layers)} "
            f"only{fields.scope_text(self.scope)}"
        )

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str, *, text: bool = False) -> Project:
        checks.known_keys(table, ("op", "direction", "layers", "scope"), where)
        layers = table.get("layers", "all")
        if text and isinstance(layers, str) and layers.strip().isdigit():
            layers = int(layers)
        return cls(
            fields.direction_ref(table, where),
            fields.as_layer_spec(layers, f"{where}: layers"),
            fields.scope_of(table, where),
        )
