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
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from personagate import checks
from personagate.errors import PersonagateError
from personagate.experiments.groups import HEADLINE_ROLES, Mode
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
    "persona": {"coeffs": [4.0, 8.0], "random_adds": [0]},
    "reintroduce": {"coeffs": [0.5, 2.0], "layer_stride": 6},
    "windows": {"width": 0.34, "stride": 0.34, "random_seeds": 3},
    "generation": {
        "max_new_tokens": 32,
        "refusal_token_prompts": 12,
        "generate_roles": ["baseline", "persona", "natural", "persona_late_window"],
    },
}

# Named protocols: the default (v2) and the first protocol's design (v1), as overrides of the default.
PROTOCOLS = ("v2", "v1")

POSITIVE = {"minimum": 1}  # field metadata: an integer of at least 1
NON_NEGATIVE = {"minimum": 0}
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
FRACTION = {"positive": True}


@dataclass(frozen=True)
class ModelSection:
    id: str = field(metadata={"nonempty": True})
    dtype: str = field(metadata={"choices": DTYPES})
    device: str


@dataclass(frozen=True)
class PromptsSection:
    harmful: str = field(metadata={"nonempty": True})
    harmless: str = field(metadata={"nonempty": True})
    safe: str = field(metadata={"nonempty": True})
    neutral: str = field(metadata={"nonempty": True})
    field: str
    max_chars: int = field(metadata=POSITIVE)
    n_val: int = field(metadata=POSITIVE)
    n_test: int = field(metadata=POSITIVE)
    n_train: int = field(metadata=POSITIVE)
    n_safe: int = field(metadata=POSITIVE)
    n_neutral: int = field(metadata=POSITIVE)


@dataclass(frozen=True)
class DirectionsSection:
    refusal: str
    persona: str
    refusal_positions: int = field(metadata=POSITIVE)
    refusal_layer_stride: int = field(metadata=POSITIVE)
    refusal_val_prompts: int = field(metadata=POSITIVE)
    refusal_max_kl: float = field(metadata={"positive": True})
    persona_questions: int = field(metadata=POSITIVE)
    persona_against: Literal["default", "contrast"]
    refusal_tokens: list[str]
    resamples: list[int] = field(metadata={"nonempty": True, "unique": True, "minimum": 0})


@dataclass(frozen=True)
class PersonaSection:
    layer: int | float
    coeffs: list[float] = field(metadata={"nonempty": True, "unique": True, "positive": True})
    styles: bool
    random_adds: list[int] = field(metadata={"unique": True, "minimum": 0})


@dataclass(frozen=True)
class ReintroduceSection:
    dose: Literal["mean_diff", "residual_norm", "selected_raw"]
    coeffs: list[float] = field(metadata={"nonempty": True, "unique": True, "positive": True})
    layer_stride: int = field(metadata=POSITIVE)
    early: str
    late: str


@dataclass(frozen=True)
class WindowsSection:
    placement: Literal["downstream", "absolute"]
    width: int | float = field(metadata=FRACTION)
    stride: int | float = field(metadata=FRACTION)
    late: str
    contain_injection: bool
    random: Literal["matched", "orthogonal"]
    random_seeds: int = field(metadata=NON_NEGATIVE)
    natural: bool
    mediation: bool
    positive_control: bool


@dataclass(frozen=True)
class GenerationSection:
    main: Mode
    sweep: Mode
    generate_roles: list[str] = field(metadata={"unique": True})
    max_new_tokens: int = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    refusal_token_prompts: int = field(metadata=POSITIVE)
    seed: int = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class ScoringSection:
    judge: Literal["", "openai", "classifier"]
    judge_url: str
    judge_model: str
    judge_key_env: str
    min_loglik: float
    max_repetition: float = field(metadata={"positive": True})
    max_nonlanguage: float = field(metadata={"positive": True})
    max_nll_delta: float = field(metadata={"positive": True})


@dataclass(frozen=True)
class VerdictsSection:
    alpha: float = field(metadata={"positive": True})
    margin: float = field(metadata={"positive": True})
    min_n: int = field(metadata=POSITIVE)
    max_incoherent: float = field(metadata={"positive": True})
    bootstrap: int = field(metadata=POSITIVE)
    seed: int = field(metadata=NON_NEGATIVE)


RULES = ("decrease", "equivalent", "late_not_early", "exceeds_null")
_RULE_KEYS = {
    "decrease": ("treated", "reference"),
    "equivalent": ("treated", "reference"),
    "late_not_early": ("family", "reference"),
    "exceeds_null": ("treated", "null", "baseline"),
}


@dataclass(frozen=True)
class Finding:
    """One claim of the paper as a rule the run computes: which roles, which statistic (see ``verdicts``)."""

    id: str
    claim: str
    rule: Literal["decrease", "equivalent", "late_not_early", "exceeds_null"]
    treated: str = ""
    reference: str = ""
    family: str = ""
    null: str = ""
    baseline: str = ""
    requires: str = ""


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "prompts": PromptsSection,
    "directions": DirectionsSection,
    "persona": PersonaSection,
    "reintroduce": ReintroduceSection,
    "windows": WindowsSection,
    "generation": GenerationSection,
    "scoring": ScoringSection,
    "verdicts": VerdictsSection,
}


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
        protocol: str = "v2",
    ) -> StudySpec:
        """The default spec (with the named ``protocol``'s changes), updated by the file at ``path``,
        then by --quick, then by ``overrides``."""
        if protocol not in PROTOCOLS:
            raise PersonagateError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
        data = tomllib.loads(default_spec_text())
        base, source = Path.cwd(), f"built-in study.toml (protocol {protocol})"
        if protocol != "v2":
            _merge(data, tomllib.loads(protocol_text(protocol)), f"protocol {protocol}")
        if path is not None:
            from personagate.program_files import read_toml

            path = Path(path)
            _merge(data, read_toml(path, "spec"), str(path))
            base, source = path.resolve().parent, str(path)
        if quick:
            _merge(data, copy.deepcopy(QUICK), "--quick")
        if overrides:
            _merge(data, overrides, "command line")
        sections = {name: _build(section, data[name], name) for name, section in SECTIONS.items()}
        findings = _findings(data.get("findings", []))
        spec = cls(**sections, findings=findings, protocol=protocol, base=base, source=source)
        spec.check_static()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The sections as plain tables (what the manifest records and a resume compares)."""
        out: dict[str, Any] = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        out["findings"] = [dataclasses.asdict(f) for f in self.findings]
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


def _findings(tables: list[Any]) -> tuple[Finding, ...]:
    """The declared rules, each checked for the keys its rule needs; ids unique, ``requires`` known."""
    out: list[Finding] = []
    keys = [f.name for f in dataclasses.fields(Finding)]
    for index, table in enumerate(tables):
        where = f"findings[{index}]"
        table = checks.table(table, where)
        checks.known_keys(table, keys, where)
        values = {k: checks.string(v, f"{where}.{k}") for k, v in table.items()}
        for key in ("id", "claim", "rule"):
            if not values.get(key):
                raise PersonagateError(f"{where}: '{key}' is required")
        if values["rule"] not in RULES:
            raise PersonagateError(f"{where}.rule = {values['rule']!r}; use one of {', '.join(RULES)}")
        for key in _RULE_KEYS[values["rule"]]:
            if not values.get(key):
                raise PersonagateError(f"{where}: rule {values['rule']!r} needs '{key}'")
        out.append(Finding(**values))  # type: ignore[arg-type]
    ids = [f.id for f in out]
    for finding in out:
        if ids.count(finding.id) > 1:
            raise PersonagateError(f"findings: id {finding.id!r} is used twice")
        if finding.requires and finding.requires not in ids:
            raise PersonagateError(f"findings: {finding.id!r} requires {finding.requires!r}, which is not declared")
    return tuple(out)


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    """A section dataclass from its table, each value checked against the field's type and metadata."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        kwargs[f.name] = _coerce(values[f.name], hints[f.name], f"{section}.{f.name}", dict(f.metadata))
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str, meta: dict[str, Any]) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        if value not in args:
            raise PersonagateError(f"{where} = {value!r}; use one of {', '.join(repr(a) for a in args)}")
        return value
    if origin is list:
        items = checks.listing(value, where, nonempty=meta.get("nonempty", False))
        inner = {k: v for k, v in meta.items() if k not in ("nonempty", "unique")}
        out = [_coerce(v, args[0], f"{where}[{i}]", inner) for i, v in enumerate(items)]
        if meta.get("unique") and len(set(out)) != len(out):
            repeated = next(v for v in out if out.count(v) > 1)
            raise PersonagateError(
                f"{where} lists {repeated!r} twice; every value names a condition, so each must differ"
            )
        return out
    if hint is str:
        return checks.string(value, where, choices=meta.get("choices"), nonempty=meta.get("nonempty", False))
    if hint is bool:
        return checks.boolean(value, where)
    if hint is int:
        return checks.integer(value, where, minimum=meta.get("minimum"))
    if hint is float:
        return checks.number(value, where, positive=meta.get("positive", False), minimum=meta.get("minimum"))
    if set(args) == {int, float}:  # a block count or a depth fraction: the type itself carries meaning
        number = checks.number(value, where, positive=meta.get("positive", False))
        return value if isinstance(value, int) else number
    raise TypeError(f"no check for {hint!r} at {where}")  # a programming error, not a user's
