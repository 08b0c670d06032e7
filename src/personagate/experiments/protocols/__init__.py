"""The registry of study protocols, as ``RULES`` is of verdict rules: one package each, found here by
its folder (``v3``, ``paper``, ...), each defining ``PROTOCOL`` (a ``base.Protocol``).

Adding a protocol is one package here, its spec file under ``data/protocols`` and its tests. This
module also hands the design stage what it may not import: the protocols' spec layers and the rules'
needs (``registries``), for loading a spec (``load_spec``) or reading one back from a run
(``recorded_spec``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personagate.errors import PersonagateError
from personagate.experiments.design.registries import Registries
from personagate.experiments.design.spec import StudySpec

if TYPE_CHECKING:
    from personagate.experiments.protocols.base import Protocol

DEFAULT = "v3"


def names() -> tuple[str, ...]:
    """The protocols there are, the default first (no module of theirs is imported to list them)."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)
    return (DEFAULT, *(n for n in found if n != DEFAULT))


def profile_name(name: str, quick: bool) -> str:
    """The default run folder's suffix: ``quick`` or ``full``, then the protocol unless it is the default."""
    return ("quick" if quick else "full") + ("" if name == DEFAULT else f"-{name}")


def get(name: str) -> Protocol:
    """The protocol named ``name``, or the package's one-line error listing the known ones."""
    if name not in names():
        raise PersonagateError(f"unknown protocol {name!r}; use one of {', '.join(names())}")
    protocol: Protocol = importlib.import_module(f"{__name__}.{name}").PROTOCOL
    if protocol.name != name:
        raise RuntimeError(f"protocol package {name!r} defines protocol {protocol.name!r}")  # a programming error
    return protocol


def registries() -> Registries:
    """Every protocol's spec layers and every rule's needs, for the design stage."""
    from personagate.experiments.analysis.rules import RULES

    return Registries(
        protocols={name: get(name).spec for name in names()},
        rule_needs={name: rule.needs for name, rule in RULES.items()},
    )


def load_spec(
    path: str | Path | None = None,
    *,
    quick: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
    protocol: str = DEFAULT,
) -> StudySpec:
    """``StudySpec.load`` with the registries handed in: the spec every command and test runs."""
    return StudySpec.load(path, quick=quick, overrides=overrides, protocol=protocol, registries=registries())


def recorded_spec(manifest: Mapping[str, Any]) -> StudySpec:
    """The spec a run recorded in its manifest, read back for its analysis."""
    return StudySpec.from_manifest(manifest.get("spec", {}), registries(), str(manifest.get("spec_source", "")))
