"""The sections of a study spec as frozen dataclasses, and the strict checks that build them from TOML.

A value is checked against its field's type (a bool is not a number, numbers are finite, a block
count is an int and a depth fraction a float) and its metadata (at least 1, positive, unique...).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from personagate import checks
from personagate.errors import PersonagateError
from personagate.experiments.design.names import Mode

POSITIVE = {"minimum": 1, "maximum": 10**6}  # field metadata: a count of at least 1 (bounded: typos are not runs)
NON_NEGATIVE = {"minimum": 0, "maximum": 10**6}
SEED = {"minimum": 0, "maximum": 2**32 - 1}  # what numpy and torch generators take
SHARE = {"positive": True, "maximum": 1.0}  # a share in (0, 1]
PROBABILITY = {"positive": True, "below": 1.0}  # in (0, 1)
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
    test: str  # a separate test set (e.g. builtin:strongreject); empty: the test split of `harmful`
    system: str  # the system prompt framing every prompt: "default" (the model's own) or a text
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
    natural_holdout: int = field(
        metadata=NON_NEGATIVE
    )  # compliant personas kept out of the direction, for the natural arm
    refusal_tokens: list[str] = field(metadata={"item_nonempty": True})
    resamples: list[int] = field(metadata={"nonempty": True, "unique": True, **SEED})


@dataclass(frozen=True)
class PersonaSection:
    layer: int | float
    dose: Literal["mean_diff", "residual_norm"]
    coeffs: list[float] = field(metadata={"nonempty": True, "unique": True, "positive": True})
    styles: bool
    random_adds: list[int] = field(metadata={"unique": True, **SEED})


@dataclass(frozen=True)
class ReintroduceSection:
    dose: Literal["calibrated", "mean_diff", "residual_norm", "selected_raw"]
    coeffs: list[float] = field(metadata={"nonempty": True, "unique": True, "positive": True})
    resample_coeffs: list[float] = field(metadata={"nonempty": True, "unique": True, "positive": True})
    grid: list[float] = field(metadata={"nonempty": True, "unique": True, "positive": True})
    first_layer: int = field(metadata=NON_NEGATIVE)
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
    random: Literal["energy", "matched", "orthogonal"]
    random_seeds: int = field(metadata={"minimum": 0, "maximum": 1000})
    side_seeds: int = field(metadata={"minimum": 0, "maximum": 1000})
    natural: bool
    style_nulls: bool
    mediation: bool
    positive_control: bool


@dataclass(frozen=True)
class GenerationSection:
    main: Mode
    sweep: Mode
    generate_roles: list[str] = field(metadata={"unique": True})
    max_new_tokens: int = field(metadata=POSITIVE)
    screen_tokens: int = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    refusal_token_prompts: int = field(metadata=POSITIVE)


@dataclass(frozen=True)
class ScoringSection:
    judge: str  # "", "openai", "classifier", or "hf:ID_OR_PATH" (a local judge of judge_kind)
    judge_kind: Literal["rubric", "strongreject", "guard"]
    judge_device: str
    judge_url: str
    judge_model: str
    judge_key_env: str
    min_loglik: float
    max_repetition: float = field(metadata=SHARE)
    max_nonlanguage: float = field(metadata=SHARE)
    max_nll_delta: float = field(metadata={"positive": True, "maximum": 100.0})


@dataclass(frozen=True)
class VerdictsSection:
    alpha: float = field(metadata={"positive": True, "below": 0.5})
    margin: float = field(metadata=PROBABILITY)
    min_n: int = field(metadata=POSITIVE)
    max_incoherent: float = field(metadata=SHARE)
    expected_discordance: float = field(metadata=SHARE)
    min_seeds: int = field(metadata={"minimum": 1, "maximum": 1000})
    bootstrap: int = field(metadata={"minimum": 100, "maximum": 10**6})
    seed: int = field(metadata=SEED)


@dataclass(frozen=True)
class PaperSection:
    """Protocol 'paper': Zhong & Li's design, in their block numbers (a block's output), mapped to a model."""

    reference_blocks: int = field(metadata=POSITIVE)
    exact_models: list[str]
    inject_block: int = field(metadata=NON_NEGATIVE)
    refusal_block: int = field(metadata=NON_NEGATIVE)
    late_refusal: list[int] = field(metadata={"nonempty": True, "unique": True, "minimum": 0})
    knockout_blocks: list[int] = field(metadata={"nonempty": True, "unique": True, "minimum": 0})
    late_knockout: int = field(metadata=NON_NEGATIVE)
    persona_alpha: float = field(metadata={"positive": True})
    refusal_alpha: float = field(metadata={"positive": True})
    random_seed: int = field(metadata=SEED)
    position: Literal["prompt_end", "response_start", "response_avg"]
    response_tokens: int = field(metadata=POSITIVE)
    questions: int = field(metadata=NON_NEGATIVE)  # questions of the persona data used (0: all)
    benign: int = field(metadata=POSITIVE)
    persona_data: str = field(metadata={"nonempty": True})


@dataclass(frozen=True)
class MultiturnSection:
    enabled: bool
    only: bool  # measure the multi-turn family alone (after the vectors and the coefficient choice)
    forms: list[str] = field(metadata={"nonempty": True, "unique": True, "item_nonempty": True})
    exchanges: list[int] = field(metadata={"nonempty": True, "unique": True, "minimum": 0, "maximum": 64})
    data: str = field(metadata={"nonempty": True})  # "builtin" (data/multiturn.json) or a JSON file like it
    probes: int = field(metadata=NON_NEGATIVE)  # test prompts used as probes (0: all)
    mode: Mode
    null_seeds: int = field(metadata=POSITIVE)


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
    "paper": PaperSection,
    "multiturn": MultiturnSection,
}


def build_section(cls: type, values: dict[str, Any], section: str) -> Any:
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
        nonempty = meta.get("nonempty", False) or meta.get("item_nonempty", False)
        return checks.string(value, where, choices=meta.get("choices"), nonempty=nonempty)
    if hint is bool:
        return checks.boolean(value, where)
    if hint is int:
        return checks.integer(value, where, minimum=meta.get("minimum"), maximum=meta.get("maximum"))
    if hint is float:
        return checks.number(
            value,
            where,
            positive=meta.get("positive", False),
            minimum=meta.get("minimum"),
            maximum=meta.get("maximum"),
            below=meta.get("below"),
        )
    if set(args) == {int, float}:  # a block count or a depth fraction: the type itself carries meaning
        number = checks.number(value, where, positive=meta.get("positive", False))
        return value if isinstance(value, int) else number
    raise TypeError(f"no check for {hint!r} at {where}")  # a programming error, not a user's
