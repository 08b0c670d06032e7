"""The named protocols and profiles of a study spec: the default spec (protocol v3) and the changes each
other protocol makes to it, and the overrides of ``--quick``. Data, read by ``StudySpec.load``."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

from personagate import checks
from personagate.errors import PersonagateError

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
# ... and the doses --quick tries, on each protocol's own scale.
QUICK_DOSES: dict[str, dict[str, dict[str, Any]]] = {
    "v3": {
        "persona": {"coeffs": [0.25, 0.5, 1.0]},
        "reintroduce": {"coeffs": [0.3, 0.7], "resample_coeffs": [0.5], "grid": [0.06, 0.25, 1.0]},
    },
    "v2": {"persona": {"coeffs": [4.0, 8.0]}, "reintroduce": {"coeffs": [0.5, 2.0], "resample_coeffs": [2.0]}},
}
QUICK_DOSES["v1"] = QUICK_DOSES["v2"]
QUICK_DOSES["paper"] = {"paper": {"questions": 4, "response_tokens": 24, "benign": 8}}

# Named protocols: the default (v3) and earlier designs, each a chain of override files over the default.
PROTOCOLS: dict[str, tuple[str, ...]] = {"v3": (), "v2": ("v2",), "v1": ("v2", "v1"), "paper": ("paper",)}


def default_spec_text() -> str:
    return resources.files("personagate").joinpath("data/study.toml").read_text()


def protocol_text(protocol: str) -> str:
    """The changes a named protocol makes to the default spec."""
    return resources.files("personagate").joinpath(f"data/protocols/{protocol}.toml").read_text()


def spec_file_text(protocol: str) -> str:
    """A spec file for a named protocol, to copy and edit: the default spec itself (v3), or the
    protocol's changes to it headed by its name (``personagate run`` applies them over the default)."""
    if protocol not in PROTOCOLS:
        raise PersonagateError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if not PROTOCOLS[protocol]:
        return default_spec_text()
    head = (
        f'protocol = "{protocol}"   # applied over the built-in spec (`personagate spec` prints it); '
        "keys set here win\n\n"
    )
    return head + protocol_text(PROTOCOLS[protocol][-1])


def protocol_data(protocol: str) -> dict[str, Any]:
    """The default spec with a named protocol's override files applied in order."""
    data = tomllib.loads(default_spec_text())
    for name in PROTOCOLS[protocol]:
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
