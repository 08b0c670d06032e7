"""The layers of a study spec: the default spec (``study.toml``, protocol v3), the override files a
protocol applies over it (its ``SpecLayers``, handed in: the protocols live above design), and the
overrides ``--quick`` makes for every protocol. Data, read by ``StudySpec.load``."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

from personagate import checks
from personagate.errors import PersonagateError
from personagate.experiments.design.registries import SpecLayers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# Overrides applied by --quick: every arm of the protocol, with fewer prompts, seeds, layers and
# resamples (its verdicts say when they are underpowered).
QUICK: dict[str, dict[str, Any]] = {
    "prompts": {"n_val": 8, "n_test": 12, "n_train": 24, "n_safe": 4, "n_neutral": 4},
    "directions": {"refusal_positions": 1, "refusal_layer_stride": 4, "persona_questions": 8, "resamples": [0]},
    "persona": {"random_adds": [0, 1]},
    "reintroduce": {"layer_stride": 8},
    "windows": {"width": 0.34, "stride": 0.34, "random_seeds": 2, "side_seeds": 1},
    "multiturn": {"null_seeds": 2, "probes": 4},
    "generation": {
        "max_new_tokens": 32,
        "refusal_token_prompts": 12,
        "generate_roles": ["baseline", "persona", "persona_late_window", "projection_only_late"],
    },
}


def default_spec_text() -> str:
    return resources.files("personagate").joinpath("data/study.toml").read_text()


def protocol_text(protocol: str) -> str:
    """The changes a named protocol makes to the default spec."""
    return resources.files("personagate").joinpath(f"data/protocols/{protocol}.toml").read_text()


def spec_file_text(layers: SpecLayers) -> str:
    """A spec file for a protocol, to copy and edit: the default spec itself (v3), or the protocol's
    changes to it headed by its name (``personagate run`` applies them over the default)."""
    if not layers.overlays:
        return default_spec_text()
    head = (
        f'protocol = "{layers.name}"   # applied over the built-in spec (`personagate spec` prints it); '
        "keys set here win\n\n"
    )
    return head + protocol_text(layers.overlays[-1])


def protocol_data(layers: SpecLayers) -> dict[str, Any]:
    """The default spec with a protocol's override files applied in order."""
    data = tomllib.loads(default_spec_text())
    for name in layers.overlays:
        merge(data, tomllib.loads(protocol_text(name)), f"protocol {name}")
    return data


def merge(into: dict[str, dict[str, Any]], new: dict[str, Any], where: str) -> None:
    """Overlay ``new`` on the defaults; unknown sections and keys are errors that list the known ones."""
    for section, values in new.items():
        if section == "findings":  # a list of rules: a spec that states it replaces the whole list
            into["findings"] = checks.listing(values, f"{where}: findings")
            continue
        if section not in into:
            raise PersonagateError(f"{where}: unknown section [{section}]; known: {', '.join(sorted(into))}")
        if not isinstance(values, dict):
            raise PersonagateError(f"{where}: [{section}] must be a table")
        for key, value in values.items():
            if key not in into[section]:
                known = ", ".join(sorted(into[section]))
                raise PersonagateError(f"{where}: unknown key {section}.{key}; known keys in [{section}]: {known}")
            into[section][key] = value
