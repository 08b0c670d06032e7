"""The study's prompt splits: disjoint train, validation and test sets, checked for size before any work."""

from __future__ import annotations

from dataclasses import dataclass

from personagate.errors import PersonagateError
from personagate.experiments.spec import StudySpec


@dataclass
class PromptSplits:
    harmful_train: list[str]
    harmful_val: list[str]
    harmful_test: list[str]
    harmless_train: list[str]
    harmless_val: list[str]
    harmless_kl: list[str]
    safe: list[str]


def split_prompts(spec: StudySpec) -> PromptSplits:
    p = spec.prompts
    harmful, harmless, safe = spec.prompt_set("harmful"), spec.prompt_set("harmless"), spec.prompt_set("safe")
    need_harmful = p.n_train + p.n_val + p.n_test
    need_harmless = p.n_train + p.n_val + p.n_kl
    if len(harmful) < need_harmful:
        raise PersonagateError(
            f"prompts.harmful has {len(harmful)} prompts but n_train + n_val + n_test = "
            f"{need_harmful}; lower them or give a larger set"
        )
    if len(harmless) < need_harmless:
        raise PersonagateError(
            f"prompts.harmless has {len(harmless)} prompts but n_train + n_val + n_kl = "
            f"{need_harmless}; lower them or give a larger set"
        )
    a, b = p.n_train, p.n_train + p.n_val
    return PromptSplits(
        harmful[:a],
        harmful[a:b],
        harmful[b:need_harmful],
        harmless[:a],
        harmless[a:b],
        harmless[b:need_harmless],
        safe[: p.n_safe],
    )
