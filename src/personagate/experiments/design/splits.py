"""The study's prompt splits, disjoint by position: validation (every choice), test (every measured
condition), and a training pool that each resample of the directions draws from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
    benign: list[str] = field(default_factory=list)  # protocol paper: its coherence arm's prompts

    def train(self, resample: int) -> tuple[list[str], list[str]]:
        """The harmful and harmless training prompts of a resample: ``n_train`` of each pool, drawn
        without replacement by a generator seeded with the resample's seed."""
        return _draw(self.harmful_pool, self.n_train, resample), _draw(self.harmless_pool, self.n_train, resample)


def _draw(pool: Sequence[str], n: int, seed: int) -> list[str]:
    order = np.random.default_rng(seed).permutation(len(pool))[:n]
    return [pool[i] for i in sorted(order)]


def split_prompts(spec: StudySpec, benign: int = 0) -> PromptSplits:
    """Validation, test and training pools, disjoint. With a separate test set (``prompts.test``), the
    test split is its first ``n_test`` prompts and every harmful prompt it contains leaves the pools;
    ``benign`` harmless prompts (the last ones) are kept apart for a protocol's coherence arm (its
    ``Protocol.benign_prompts``)."""
    p = spec.prompts
    harmful, harmless = spec.prompt_set("harmful"), spec.prompt_set("harmless")
    safe, neutral = spec.prompt_set("safe"), spec.prompt_set("neutral")
    separate = spec.prompt_set("test") if p.test else None
    need_harmful = p.n_val + p.n_train + (0 if separate is not None else p.n_test)
    need_harmless = p.n_val + p.n_train + benign
    checks = [
        ("harmful", len(harmful), need_harmful, "n_val + n_train" + ("" if separate is not None else " + n_test")),
        (
            "harmless",
            len(harmless),
            need_harmless,
            "n_val + n_train" + (" + benign" if benign else ""),
        ),
        ("safe", len(safe), p.n_safe, "n_safe"),
        ("neutral", len(neutral), p.n_neutral, "n_neutral"),
    ]
    if separate is not None:
        checks.append(("test", len(separate), p.n_test, "n_test"))
    for key, have, need, formula in checks:
        if have < need:
            raise PersonagateError(
                f"prompts.{key} has {have} prompts but {formula} = {need}; lower them or give a larger set"
            )
    if separate is not None:
        test = separate[: p.n_test]
        held = set(test)
        val = [x for x in harmful if x not in held][: p.n_val]
        pool = [x for x in harmful if x not in held][p.n_val :]
        if len(pool) < p.n_train:
            raise PersonagateError(
                f"prompts.harmful keeps {len(pool)} training prompts once the test set's are removed; "
                f"n_train = {p.n_train}: lower it or give a larger set"
            )
    else:
        val, test, pool = harmful[: p.n_val], harmful[p.n_val : p.n_val + p.n_test], harmful[p.n_val + p.n_test :]
    kept = harmless[: len(harmless) - benign] if benign else harmless
    return PromptSplits(
        harmful_val=val,
        harmful_test=test,
        harmful_pool=pool,
        harmless_val=kept[: p.n_val],
        harmless_pool=kept[p.n_val :],
        safe=safe[: p.n_safe],
        neutral=neutral[: p.n_neutral],
        n_train=p.n_train,
        benign=harmless[len(harmless) - benign :] if benign else [],
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
