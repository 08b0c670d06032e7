"""What the design stage is handed by the stages above it, as data: each protocol's ``SpecLayers``
(the spec files it applies over the default, what ``--quick`` changes, the roles it declares) and
each verdict rule's needs. Design imports nothing above it; ``protocols.load_spec`` hands these in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from personagate.errors import PersonagateError
from personagate.experiments.design.names import Role


@dataclass(frozen=True)
class SpecLayers:
    """A protocol's part of its spec: ``overlays`` (files under ``data/protocols``, applied over
    ``study.toml`` in order), ``quick`` (what ``--quick`` changes for it beyond the shared quick
    profile), ``roles`` (every role its arms may take: a finding naming another is refused when the
    spec loads)."""

    name: str
    overlays: tuple[str, ...]
    quick: Mapping[str, Mapping[str, Any]]
    roles: frozenset[Role]


@dataclass(frozen=True)
class Registries:
    """What the spec reads from the stages above design, handed in by ``protocols.load_spec``."""

    protocols: Mapping[str, SpecLayers]
    rule_needs: Mapping[str, tuple[str, ...]]  # rule name -> the finding keys it reads

    def layers(self, protocol: str) -> SpecLayers:
        if protocol not in self.protocols:
            raise PersonagateError(f"unknown protocol {protocol!r}; use one of {', '.join(self.protocols)}")
        return self.protocols[protocol]
