"""The study's prompt splits, disjoint by position: validation (every choice), test (every measured
condition), and a training pool that each resample of the directions draws from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from personagate.errors import PersonagateError
from personagate.experiments.design.spec import StudySpec


@dataclass
class PromptSplits:
    harmful_val: list[str]
    harmful_test: list[str]
    harmful_pool: list[str]
    harmless_val: list[str]
    harmless_pool: list[str]
    safe: list[str]
    neutral: list[str]
    n_train: int

    def train(self, resample: int) -> tuple[list[str], list[str]]:
        """The harmful and harmless training prompts of a resample: ``n_train`` of each pool, drawn
        without replacement by a generator seeded with the resample's seed."""
        return _draw(self.harmful_pool, self.n_train, resample), _draw(self.harmless_pool, self.n_train, resample)


def _draw(pool: Sequence[str], n: int, seed: int) -> list[str]:
    order = np.random.default_rng(seed).permutation(len(pool))[:n]
    return [pool[i] for i in sorted(order)]


def split_prompts(spec: StudySpec) -> PromptSplits:
    p = spec.prompts
    harmful, harmless = spec.prompt_set("harmful"), spec.prompt_set("harmless")
    safe, neutral = spec.prompt_set("safe"), spec.prompt_set("neutral")
    need_harmful = p.n_val + p.n_test + p.n_train
    need_harmless = p.n_val + p.n_train
    for key, have, need, formula in (
        ("harmful", len(harmful), need_harmful, "n_val + n_test + n_train"),
        ("harmless", len(harmless), need_harmless, "n_val + n_train"),
        ("safe", len(safe), p.n_safe, "n_safe"),
        ("neutral", len(neutral), p.n_neutral, "n_neutral"),
    ):
        if have < need:
            raise PersonagateError(
                f"prompts.{key} has {have} prompts but {formula} = {need}; lower them or give a larger set"
            )
    val_end, test_end = p.n_val, p.n_val + p.n_test
    return PromptSplits(
        harmful_val=harmful[:val_end],
        harmful_test=harmful[val_end:test_end],
        harmful_pool=harmful[test_end:],
        harmless_val=harmless[: p.n_val],
        harmless_pool=harmless[p.n_val :],
        safe=safe[: p.n_safe],
        neutral=neutral[: p.n_neutral],
        n_train=p.n_train,
    )


def persona_split(compliant: Sequence[str], holdout: int, resample: int) -> tuple[list[str], list[str]]:
    """The compliant system prompts that build a resample's persona direction, and those held out of it
    (the natural-persona arm is framed by these: an arm never reuses the prompts its direction saw).
    Drawn by a generator seeded with the resample; ``holdout = 0`` uses every prompt for both."""
    if holdout <= 0:
        return list(compliant), list(compliant)
    if holdout >= len(compliant):
        raise PersonagateError(
            f"directions.natural_holdout = {holdout} leaves no compliant persona for the direction "
            f"(there are {len(compliant)}); hold out fewer"
        )
    order = np.random.default_rng(resample).permutation(len(compliant))
    held = sorted(order[:holdout])
    return [p for i, p in enumerate(compliant) if i not in held], [compliant[i] for i in held]
