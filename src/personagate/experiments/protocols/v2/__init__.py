"""Protocol v2: protocol v3's code under v2's options (``data/protocols/v2.toml``: one raw refusal
vector per layer, windows at fixed depths, doses as raw coefficients), kept to compare designs."""

from __future__ import annotations

from typing import ClassVar

from personagate.experiments.design.registries import SpecLayers
from personagate.experiments.protocols.v3.protocol import ROLES, V3

QUICK_DOSES = {"persona": {"coeffs": [4.0, 8.0]}, "reintroduce": {"coeffs": [0.5, 2.0], "resample_coeffs": [2.0]}}


class V2(V3):
    name: ClassVar[str] = "v2"
    help: ClassVar[str] = "an earlier design of ours, to compare"
    spec: ClassVar[SpecLayers] = SpecLayers("v2", ("v2",), QUICK_DOSES, ROLES)


PROTOCOL = V2()
