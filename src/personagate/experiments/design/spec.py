"""The declarative study spec (TOML), typed and checked in full before any model is loaded.

Every key has a default (``data/study.toml``, the spec ``personagate reproduce`` runs); a spec file
states only what it changes. Each section is a frozen dataclass; values are checked strictly
against the field's type (a bool is not a number, numbers are finite, sizes positive), so a typo
or a wrong type is a one-line error naming the key, before any weights load.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from personagate import checks
from personagate.errors import PersonagateError
from personagate.experiments.design.findings import Finding, build_findings
from personagate.experiments.design.names import HEADLINE_ROLES
from personagate.experiments.design.profiles import QUICK, merge, protocol_data
from personagate.experiments.design.registries import Registries
from personagate.experiments.design.spec_sections import (
    SECTIONS,
    DirectionsSection,
    GenerationSection,
    ModelSection,
    MultiturnSection,
    PaperSection,
    PersonaSection,
    PromptsSection,
    ReintroduceSection,
    ScoringSection,
    VerdictsSection,
    WindowsSection,
    build_section,
)
from personagate.interventions.windows import Window


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
    paper: PaperSection
    multiturn: MultiturnSection
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
        registries: Registries,
    ) -> StudySpec:
        """The default spec (with the named ``protocol``'s changes), updated by the file at ``path``,
        then by --quick, then by ``overrides``. A file may name its protocol (a top-level
        ``protocol = "paper"``, as ``personagate spec --protocol paper`` writes); it then wins.
        ``registries``: the protocols' spec layers and the rules' needs (``protocols.load_spec``
        hands them in)."""
        given = None
        if path is not None:
            from personagate.program_files import read_toml

            path = Path(path)
            given = read_toml(path, "spec")
            if "protocol" in given:
                protocol = checks.string(given.pop("protocol"), f"{path}: protocol")
        layers = registries.layers(protocol)
        data = protocol_data(layers)
        base, source = Path.cwd(), f"built-in study.toml (protocol {protocol})"
        if path is not None and given is not None:
            merge(data, given, str(path))
            base, source = path.resolve().parent, str(path)
        if quick:
            merge(data, copy.deepcopy(QUICK), "--quick")
            merge(data, copy.deepcopy(dict(layers.quick)), "--quick")
        if overrides:
            merge(data, overrides, "command line")
        sections = {name: build_section(section, data[name], name) for name, section in SECTIONS.items()}
        findings = build_findings(data.get("findings", []), registries.rule_needs, layers.roles)
        spec = cls(**sections, findings=findings, protocol=protocol, base=base, source=source)
        spec.check_static()
        return spec

    @classmethod
    def from_manifest(cls, recorded: Mapping[str, Any], registries: Registries, source: str = "") -> StudySpec:
        """The spec a run recorded in its manifest (``to_dict``), read back for its analysis: keys an
        older run did not record take the defaults of ``study.toml`` (written there once, nowhere
        else), keys this version no longer has are dropped (nothing here reads them), and files and
        devices are not checked (the run may have been made on another machine)."""
        if not isinstance(recorded, Mapping):
            raise PersonagateError("the run's manifest records no spec; it was not written by personagate")
        protocol = str(recorded.get("protocol", "v2"))
        if protocol not in registries.protocols:
            raise PersonagateError(f"the run's manifest names an unknown protocol {protocol!r}")
        data = protocol_data(registries.layers(protocol))
        merge(data, _known(recorded, data), "the run's recorded spec")
        sections = {name: build_section(section, data[name], name) for name, section in SECTIONS.items()}
        findings = build_findings(data.get("findings", []), registries.rule_needs)
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
        judge = self.scoring.judge
        if judge not in ("", "openai", "classifier") and not (judge.startswith("hf:") and judge[3:].strip()):
            raise PersonagateError(f"scoring.judge = {judge!r}; use '', 'openai', 'classifier' or 'hf:ID_OR_PATH'")
        if judge.startswith("hf:"):
            from personagate.models.loading import check_model_source

            try:
                check_model_source(judge[3:])
                check_device(self.scoring.judge_device or "auto")
            except PersonagateError as exc:
                raise PersonagateError(f"scoring.judge: {exc}") from None
        if self.scoring.judge == "classifier" and not self.scoring.judge_model:
            raise PersonagateError("scoring.judge = 'classifier' needs scoring.judge_model (a local model folder)")
        for key in ("harmful", "harmless", "safe", "neutral"):
            self.prompt_set(key)  # raises on a missing file or unknown built-in set
        if self.prompts.test:
            self.prompt_set("test")
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

    def prompt_set(self, key: Literal["harmful", "harmless", "safe", "neutral", "test"]) -> list[str]:
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


def _known(recorded: Mapping[str, Any], defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recorded sections and keys that this version's spec has (``findings`` whole)."""
    out: dict[str, Any] = {}
    for section, values in recorded.items():
        if section == "findings":
            out[section] = values
        elif section in defaults and isinstance(values, Mapping):
            out[section] = {k: v for k, v in values.items() if k in defaults[section]}
    return out
