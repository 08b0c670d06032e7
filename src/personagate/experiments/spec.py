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
from personagate.experiments.groups import Mode
from personagate.interventions.windows import Window

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Overrides applied by --quick: fewer prompts, first-token screening, a coarser grid.
QUICK: dict[str, dict[str, Any]] = {
    "prompts": {"n_train": 16, "n_val": 6, "n_test": 16, "n_kl": 6, "n_safe": 6},
    "directions": {"refusal_positions": 1, "refusal_layer_stride": 3, "random_seeds": [0, 1], "persona_questions": 8},
    "steering": {
        "persona_coeffs": [4.0, 8.0],
        "reintroduce_layer_stride": 6,
        "window_width": 0.25,
        "window_stride": 0.25,
    },
    "generation": {"main": "first_token", "sweep": "first_token", "refusal_token_prompts": 12},
}

POSITIVE = {"minimum": 1}  # field metadata: an integer of at least 1
NON_NEGATIVE = {"minimum": 0}
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


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
    field: str
    n_train: int = field(metadata=POSITIVE)
    n_val: int = field(metadata=POSITIVE)
    n_test: int = field(metadata=POSITIVE)
    n_kl: int = field(metadata=POSITIVE)
    n_safe: int = field(metadata=POSITIVE)
    max_chars: int = field(metadata=POSITIVE)


@dataclass(frozen=True)
class DirectionsSection:
    refusal: str
    persona: str
    refusal_positions: int = field(metadata=POSITIVE)
    refusal_layer_stride: int = field(metadata=POSITIVE)
    refusal_max_kl: float = field(metadata={"positive": True})
    persona_questions: int = field(metadata=POSITIVE)
    persona_against: Literal["default", "contrast"]
    random_seeds: list[int] = field(metadata={"minimum": 0, "unique": True})
    refusal_tokens: list[str]


@dataclass(frozen=True)
class SteeringSection:
    persona_layer: int | float
    persona_coeffs: list[float] = field(metadata={"nonempty": True, "unique": True})
    coherence_max_kl: float = field(metadata={"positive": True})
    reintroduce_coeff: float
    reintroduce_layer_stride: int = field(metadata=POSITIVE)
    reintroduce_windows: list[str] = field(metadata={"unique": True})
    window_width: int | float = field(metadata={"positive": True})
    window_stride: int | float = field(metadata={"positive": True})
    incoherent_kl: float = field(metadata={"positive": True})
    late_window: str


@dataclass(frozen=True)
class GenerationSection:
    main: Mode
    sweep: Mode
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


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "prompts": PromptsSection,
    "directions": DirectionsSection,
    "steering": SteeringSection,
    "generation": GenerationSection,
    "scoring": ScoringSection,
}


def default_spec_text() -> str:
    return resources.files("personagate").joinpath("data/study.toml").read_text()


@dataclass(frozen=True)
class StudySpec:
    """A validated spec; ``base`` resolves relative paths, ``source`` says where it came from."""

    model: ModelSection
    prompts: PromptsSection
    directions: DirectionsSection
    steering: SteeringSection
    generation: GenerationSection
    scoring: ScoringSection
    base: Path
    source: str

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, quick: bool = False, overrides: dict[str, dict[str, Any]] | None = None
    ) -> StudySpec:
        """The default spec, updated by the file at ``path``, then by --quick, then by ``overrides``."""
        data = tomllib.loads(default_spec_text())
        base, source = Path.cwd(), "built-in study.toml"
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
        spec = cls(**sections, base=base, source=source)
        spec.check_static()
        return spec

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The sections as plain tables (what the manifest records and a resume compares)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    # --- checks -----------------------------------------------------------------------------------

    def check_static(self) -> None:
        """Everything that needs no model: windows, devices, prompt and vector files."""
        from personagate.models.loading import check_device

        check_device(self.model.device)
        for text in self.steering.reintroduce_windows:
            _window(text, "steering.reintroduce_windows")
        _window(self.steering.late_window, "steering.late_window")
        layer = self.steering.persona_layer
        if isinstance(layer, float) and not 0 <= layer < 1:
            raise PersonagateError(
                f"steering.persona_layer = {layer} must be a block index or a depth fraction in [0, 1)"
            )
        if isinstance(layer, int) and layer < 0:
            raise PersonagateError(f"steering.persona_layer = {layer} must not be negative")
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
        for key in ("harmful", "harmless", "safe"):
            self.prompt_set(key)  # raises on a missing file or unknown built-in set
        for key in ("refusal", "persona"):
            if (value := getattr(self.directions, key)) and not self.path(value).is_file():
                raise PersonagateError(f"directions.{key}: no such vector file {value!r}")

    def check_layers(self, n_layers: int) -> None:
        """The checks that need the model's block count (read from its config, before loading weights)."""
        self.persona_layer(n_layers)
        for key, texts in (
            ("reintroduce_windows", self.steering.reintroduce_windows),
            ("late_window", [self.steering.late_window]),
        ):
            for text in texts:
                try:
                    Window.parse(text).resolve(n_layers)
                except PersonagateError as exc:
                    raise PersonagateError(f"steering.{key}: {exc}") from None
        resolved = [Window.parse(text).resolve(n_layers) for text in self.steering.reintroduce_windows]
        if len(set(resolved)) != len(resolved):
            raise PersonagateError(
                f"steering.reintroduce_windows {self.steering.reintroduce_windows} resolve to the same blocks twice "
                f"on a model of {n_layers} blocks; every window names a condition, so each must differ"
            )

    # --- accessors --------------------------------------------------------------------------------

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    def prompt_set(self, key: Literal["harmful", "harmless", "safe"]) -> list[str]:
        from personagate.prompts import load_xstest_safe, resolve_prompt_source

        source = getattr(self.prompts, key)
        try:
            if source.startswith("xstest:"):
                return load_xstest_safe(self.path(source[len("xstest:") :]))
            return resolve_prompt_source(source, self.base, self.prompts.field or None, self.prompts.max_chars)
        except PersonagateError as exc:
            raise PersonagateError(f"prompts.{key}: {exc}") from None

    def persona_layer(self, n_layers: int) -> int:
        value = self.steering.persona_layer
        layer = round(value * n_layers) if isinstance(value, float) else int(value)
        if not 0 <= layer < n_layers:
            raise PersonagateError(
                f"steering.persona_layer = {value} is out of range; the model has layers "
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
        if section not in into:
            raise PersonagateError(f"{where}: unknown section [{section}]; known: {', '.join(sorted(into))}")
        if not isinstance(values, dict):
            raise PersonagateError(f"{where}: [{section}] must be a table")
        for key, value in values.items():
            if key not in into[section]:
                known = ", ".join(sorted(into[section]))
                raise PersonagateError(f"{where}: unknown key {section}.{key}; known keys in [{section}]: {known}")
            into[section][key] = value


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
