"""Protocol v1: the first personagate protocol (``data/protocols/v1.toml``, applied over v2's
changes), kept to compare designs; it runs with v2's measurement."""

from __future__ import annotations

from typing import ClassVar

from personagate.experiments.design.registries import SpecLayers
from personagate.experiments.protocols.v2 import QUICK_DOSES
from personagate.experiments.protocols.v3.protocol import ROLES, V3


class V1(V3):
    name: ClassVar[str] = "v1"
    help: ClassVar[str] = "our first design, to compare"
    spec: ClassVar[SpecLayers] = SpecLayers("v1", ("v2", "v1"), QUICK_DOSES, ROLES)


PROTOCOL = V1()
