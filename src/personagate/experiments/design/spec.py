"""The declarative study spec (TOML), typed and checked in full before any model is loaded.

Every key has a default (``data/study.toml``, the spec ``personagate reproduce`` runs); a spec file
states only what it changes. Each section is a frozen dataclass; values are checked strictly
against the field's type (a bool is not a number, numbers are finite, sizes positive), so a typo
or a wrong type is a one-line error naming the key, before any weights load.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from personagate import checks
from personagate.errors import PersonagateError
from personagate.experiments.design.findings import Finding, build_findings
from personagate.experiments.design.names import HEADLINE_ROLES
from personagate.experiments.design.spec_sections import (
    SECTIONS,
    DirectionsSection,
    GenerationSection,
    ModelSection,
    PersonaSection,
    PromptsSection,
    ReintroduceSection,
    ScoringSection,
    VerdictsSection,
    WindowsSection,
    build_section,
)
from personagate.interventions.windows import Window

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Overrides applied by --quick: every arm of the protocol, with fewer prompts, seeds, layers and
# resamples (its verdicts say when they are underpowered).
QUICK: dict[str, dict[str, Any]] = {
    "prompts": {"n_val": 8, "n_test": 12, "n_train": 24, "n_safe": 4, "n_neutral": 4},
    "directions": {"refusal_positions": 1, "refusal_layer_stride": 4, "persona_questions": 8, "resamples": [0, 1]},
    "persona": {"random_adds": [0, 1]},
    "reintroduce": {"layer_stride": 8},
    "windows": {"width": 0.34, "stride": 0.34, "random_seeds": 2, "side_seeds": 1},
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

# Named protocols: the default (v3) and earlier designs, each a chain of override files over the default.
PROTOCOLS: dict[str, tuple[str, ...]] = {"v3": (), "v2": ("v2",), "v1": ("v2", "v1")}


def default_spec_text() -> str:
    return resources.files("personagate").joinpath("data/study.toml").read_text()


def protocol_text(protocol: str) -> str:
    """The changes a named protocol makes to the default spec."""
    return resources.files("personagate").joinpath(f"data/protocols/{protocol}.toml").read_text()


@dataclass(frozen=True)
class StudySpec:
    """A validated spec; ``base`` resolves relative paths, ``source`` says where it came from."""

    model: ModelSection
    prompts: PromptsSection
    directions: DirectionsSection
    persona: PersonaSection
    reintroduce: ReintroduceSection
    windows: WindowsSection
    generation: GenerationSection
    scoring: ScoringSection
    verdicts: VerdictsSection
    findings: tuple[Finding, ...]
    protocol: str
    base: Path
    source: str

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        quick: bool = False,
        overrides: dict[str, dict[str, Any]] | None = None,
        protocol: str = "v3",
    ) -> StudySpec:
        """The default spec (with the named ``protocol``'s changes), updated by the file at ``path``,
        then by --quick, then by ``overrides``."""
        if protocol not in PROTOCOLS:
            raise PersonagateError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
        data = _protocol_data(protocol)
        base, source = Path.cwd(), f"built-in study.toml (protocol {protocol})"
        if path is not None:
            from personagate.program_files import read_toml

            path = Path(path)
            _merge(data, read_toml(path, "spec"), str(path))
            base, source = path.resolve().parent, str(path)
        if quick:
            _merge(data, copy.deepcopy(QUICK), "--quick")
            _merge(data, copy.deepcopy(QUICK_DOSES[protocol]), "--quick")
        if overrides:
            _merge(data, overrides, "command line")
        sections = {name: build_section(section, data[name], name) for name, section in SECTIONS.items()}
        findings = build_findings(data.get("findings", []))
        spec = cls(**sections, findings=findings, protocol=protocol, base=base, source=source)
        spec.check_static()
        return spec

    @classmethod
    def from_manifest(cls, recorded: Mapping[str, Any], source: str = "") -> StudySpec:
        """The spec a run recorded in its manifest (``to_dict``), read back for its analysis: keys an
        older run did not record take the defaults of ``study.toml`` (written there once, nowhere
        else), keys this version no longer has are dropped (nothing here reads them), and files and
        devices are not checked (the run may have been made on another machine)."""
        if not isinstance(recorded, Mapping):
            raise PersonagateError("the run's manifest records no spec; it was not written by personagate")
        protocol = str(recorded.get("protocol", "v2"))
        if protocol not in PROTOCOLS:
            raise PersonagateError(f"the run's manifest names an unknown protocol {protocol!r}")
        data = _protocol_data(protocol)
        _merge(data, _known(recorded, data), "the run's recorded spec")
        sections = {name: build_section(section, data[name], name) for name, section in SECTIONS.items()}
        findings = build_findings(data.get("findings", []))
        return cls(**sections, findings=findings, protocol=protocol, base=Path.cwd(), source=source)

    def to_dict(self) -> dict[str, Any]:
        """The sections as plain tables (what the manifest records and a resume compares)."""
        out: dict[str, Any] = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        out["findings"] = [f.to_table() for f in self.findings]
        out["protocol"] = self.protocol
        return out

    # --- checks -----------------------------------------------------------------------------------

    def check_static(self) -> None:
        """Everything that needs no model: windows, devices, prompt and vector files, the judge."""
        from personagate.models.loading import check_device

        check_device(self.model.device)
        for key, text in (
            ("reintroduce.early", self.reintroduce.early),
            ("reintroduce.late", self.reintroduce.late),
            ("windows.late", self.windows.late),
        ):
            _window(text, key)
        layer = self.persona.layer
        if isinstance(layer, float) and not 0 <= layer < 1:
            raise PersonagateError(f"persona.layer = {layer} must be a block index or a depth fraction in [0, 1)")
        if isinstance(layer, int) and layer < 0:
            raise PersonagateError(f"persona.layer = {layer} must not be negative")
        for key in ("max_repetition", "max_nonlanguage"):
            if getattr(self.scoring, key) > 1:
                raise PersonagateError(f"scoring.{key} is a share of the reply; give a value in (0, 1]")
        if not self.verdicts.alpha < 0.5 or self.verdicts.max_incoherent > 1:
            raise PersonagateError("verdicts.alpha must be below 0.5 and verdicts.max_incoherent at most 1")
        for role in self.generation.generate_roles:
            if role not in HEADLINE_ROLES:
                raise PersonagateError(
                    f"generation.generate_roles: unknown role {role!r}; use some of {', '.join(HEADLINE_ROLES)}"
                )
        if self.scoring.judge == "openai":
            from personagate.scoring.judge import check_endpoint_url

            if not (self.scoring.judge_url and self.scoring.judge_model):
                raise PersonagateError("scoring.judge = 'openai' needs scoring.judge_url and scoring.judge_model")
            try:
                check_endpoint_url(self.scoring.judge_url)
            except PersonagateError as exc:
                raise PersonagateError(f"scoring.judge_url: {exc}") from None
        if self.scoring.judge == "classifier" and not self.scoring.judge_model:
            raise PersonagateError("scoring.judge = 'classifier' needs scoring.judge_model (a local model folder)")
        for key in ("harmful", "harmless", "safe", "neutral"):
            self.prompt_set(key)  # raises on a missing file or unknown built-in set
        for key in ("refusal", "persona"):
            if (value := getattr(self.directions, key)) and not self.path(value).is_file():
                raise PersonagateError(f"directions.{key}: no such vector file {value!r}")

    def check_layers(self, n_layers: int) -> None:
        """The checks that need the model's block count (read from its config, before loading weights)."""
        self.persona_layer(n_layers)
        for key, text in (
            ("reintroduce.early", self.reintroduce.early),
            ("reintroduce.late", self.reintroduce.late),
            ("windows.late", self.windows.late),
        ):
            try:
                Window.parse(text).resolve(n_layers)
            except PersonagateError as exc:
                raise PersonagateError(f"{key}: {exc}") from None

    # --- accessors --------------------------------------------------------------------------------

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    def prompt_set(self, key: Literal["harmful", "harmless", "safe", "neutral"]) -> list[str]:
        from personagate.prompts import load_xstest_safe, resolve_prompt_source

        source = getattr(self.prompts, key)
        try:
            if source.startswith("xstest:"):
                return load_xstest_safe(self.path(source[len("xstest:") :]))
            return resolve_prompt_source(source, self.base, self.prompts.field or None, self.prompts.max_chars)
        except PersonagateError as exc:
            raise PersonagateError(f"prompts.{key}: {exc}") from None

    def persona_layer(self, n_layers: int) -> int:
        value = self.persona.layer
        layer = round(value * n_layers) if isinstance(value, float) else int(value)
        if not 0 <= layer < n_layers:
            raise PersonagateError(
                f"persona.layer = {value} is out of range; the model has layers "
                f"0..{n_layers - 1} (or give a depth fraction such as 0.5)"
            )
        return layer

    @staticmethod
    def blocks(value: int | float, n_layers: int) -> int:
        """A width or stride given as a depth fraction (float) or a block count (int), at least 1."""
        return max(1, round(value * n_layers)) if isinstance(value, float) else int(value)


def _window(text: str, where: str) -> Window:
    try:
        return Window.parse(text)
    except PersonagateError as exc:
        raise PersonagateError(f"{where}: {exc}") from None


def _protocol_data(protocol: str) -> dict[str, Any]:
    """The default spec with a named protocol's override files applied in order."""
    data = tomllib.loads(default_spec_text())
    for name in PROTOCOLS[protocol]:
        _merge(data, tomllib.loads(protocol_text(name)), f"protocol {name}")
    return data


def _known(recorded: Mapping[str, Any], defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recorded sections and keys that this version's spec has (``findings`` whole)."""
    out: dict[str, Any] = {}
    for section, values in recorded.items():
        if section == "findings":
            out[section] = values
        elif section in defaults and isinstance(values, Mapping):
            out[section] = {k: v for k, v in values.items() if k in defaults[section]}
    return out


def _merge(into: dict[str, dict[str, Any]], new: dict[str, Any], where: str) -> None:
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
