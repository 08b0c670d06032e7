"""Every direction a resample of the study needs, made once and kept in the run directory.

Per resample ``r`` (files in ``vectors/r{r}/``): ``refusal`` (the per-layer difference in means at
the selected position: each layer's own scale), ``refusal-selected`` (the one vector Arditi et al.'s
selection picks), ``refusal-norm`` (each layer's unit refusal vector times that layer's mean residual
norm), ``persona``, the style personas scaled to the persona vector's norm at the injection layer,
``random-add-S`` (norm-matched random vectors), ``random-S`` (the window controls: matched to the
injected vector's overlap, or orthogonal under protocol v1) and ``injected`` (the injected vector's
direction at every layer: the positive control).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from personagate.activations import last_token_activations
from personagate.directions import (
    Direction,
    energy_matched_direction,
    matched_random_direction,
    random_direction,
)
from personagate.errors import PersonagateError
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.design.splits import PromptSplits, persona_split
from personagate.experiments.execution.artifacts import VectorCache
from personagate.experiments.protocols.v3.sweeps import injected_key
from personagate.experiments.storage.facts import REFUSAL_SELECTED
from personagate.experiments.storage.store import RunStore
from personagate.extraction import RefusalSelection, refusal_direction, refusal_direction_at
from personagate.models.loading import ChatModel
from personagate.persona_directions import PersonaSet, persona_direction
from personagate.prompts import ChatFormatter
from personagate.scoring.first_token import RefusalTokens

STYLE_SEED_OFFSET = 10_000  # random-add seeds never coincide with window-control seeds


class VectorMaker:
    """Makes (or reloads) the directions of each resample for one run."""

    def __init__(
        self,
        spec: StudySpec,
        chat: ChatModel,
        store: RunStore,
        splits: PromptSplits,
        tokens: RefusalTokens,
        progress: bool,
    ) -> None:
        self.spec, self.chat, self.store, self.splits, self.tokens = spec, chat, store, splits, tokens
        self.progress = progress
        self.batch = spec.generation.batch_size
        self.cache = VectorCache(store.path / "vectors", spec, chat)

    def folder(self, resample: int) -> Path:
        return self.store.path / "vectors" / f"r{resample}"

    def _cached(self, resample: int, key: str, make: Callable[[], Direction]) -> Direction:
        return self.cache.get(f"r{resample}", key, make)

    def make(self, resample: int, injection: int) -> dict[str, Direction]:
        """All directions of ``resample`` made before any measurement; the injection layer fixes the
        style scaling and the controls. Energy-matched window controls come later (``window_controls``):
        they depend on the stream under the chosen persona dose."""
        out: dict[str, Direction] = {}
        refusal, selected = self._refusal(resample)
        out["refusal"], out["refusal-selected"] = refusal, selected
        if self.spec.reintroduce.dose in ("residual_norm", "calibrated"):
            norms = self._residual_norms(resample, refusal)
            out["refusal-norm"] = self._cached(resample, "refusal-norm", lambda: _norm_scaled(refusal, norms))
        questions = self._questions(resample)
        construction, _ = persona_split(PersonaSet.builtin().compliant, self.spec.directions.natural_holdout, resample)
        persona = self._cached(resample, "persona", lambda: self._persona(questions, construction))
        out["persona"] = persona
        if float(persona.at(injection).norm()) == 0:
            raise PersonagateError(
                f"the persona direction is zero at the injection layer {injection}: the system prompt is not yet "
                "visible there; inject later (persona.layer)"
            )
        if self.spec.persona.dose == "residual_norm":
            norms = self._residual_norms(resample, refusal)
            out["persona-norm"] = self._cached(resample, "persona-norm", lambda: _norm_scaled(persona, norms))
        injected = out[injected_key(self.spec)]  # what the persona arm adds (times its coefficient)
        if self.spec.persona.styles:
            personas = PersonaSet.builtin()
            for style, text in personas.styles.items():
                out[f"style-{style}"] = self._cached(
                    resample,
                    f"style-{style}",
                    lambda text=text, style=style: self._style(style, text, questions, injected, injection),
                )
        for seed in self.spec.persona.random_adds:
            out[f"random-add-{seed}"] = self._cached(
                resample,
                f"random-add-{seed}",
                lambda seed=seed: random_direction(injected, STYLE_SEED_OFFSET + seed, name=f"random-add-{seed}"),
            )
        if self.spec.windows.random != "energy":
            anchor = persona.at(injection)
            for seed in range(self.n_window_seeds()):
                if self.spec.windows.random == "matched":
                    make = lambda seed=seed: matched_random_direction(persona, anchor, seed, name=f"random-{seed}")  # noqa: E731
                else:
                    make = lambda seed=seed: random_direction(persona, seed, orthogonal_to=(persona, selected))  # noqa: E731
                out[f"random-{seed}"] = self._cached(resample, f"random-{seed}", make)
        out["injected"] = Direction(persona.unit_at(injection), name="injected", meta={"layer": injection})
        return out

    def n_window_seeds(self) -> int:
        return max(self.spec.windows.random_seeds, self.spec.windows.side_seeds)

    def window_controls(
        self, resample: int, persona: Direction, moments: dict[int, torch.Tensor]
    ) -> dict[str, Direction]:
        """The energy-matched random directions of the projection windows (``random-S``)."""
        return {
            f"random-{seed}": self._cached(
                resample,
                f"random-{seed}",
                lambda seed=seed: energy_matched_direction(persona, moments, seed, name=f"random-{seed}"),
            )
            for seed in range(self.n_window_seeds())
        }

    # --- pieces -----------------------------------------------------------------------------------

    def _residual_norms(self, resample: int, refusal: Direction) -> list[float]:
        """Each layer's mean residual norm: recorded with an extracted refusal direction, else measured
        at the last token of the resample's harmless training prompts (a vector file from elsewhere)."""
        recorded = refusal.meta.get("residual_norms")
        if refusal.per_layer and recorded:
            return [float(x) for x in recorded]
        _, harmless = self.splits.train(resample)
        fmt = ChatFormatter(self.chat.tokenizer)
        acts = last_token_activations(
            self.chat, [fmt.encode(p) for p in harmless], batch_size=self.batch, progress=False
        )
        return acts.norm(dim=-1).mean(0).tolist()

    def _questions(self, resample: int) -> list[str]:
        pool = PersonaSet.builtin().questions
        n = min(self.spec.directions.persona_questions, len(pool))
        order = np.random.default_rng(resample).permutation(len(pool))[:n]
        return [pool[i] for i in sorted(order)]

    def _refusal(self, resample: int) -> tuple[Direction, Direction]:
        settings = self.spec.directions
        if settings.refusal:
            given = Direction.load(self.spec.path(settings.refusal))
            selected = (
                given if not given.per_layer else Direction(given.at(int(given.meta.get("layer", 0))), name="refusal")
            )
            return given, selected
        folder = f"r{resample}"
        if self.cache.has(folder, "refusal") and self.cache.has(folder, "refusal-selected"):
            return self.cache.get(folder, "refusal", _unreachable), self.cache.get(
                folder, "refusal-selected", _unreachable
            )
        harmful, harmless = self.splits.train(resample)
        if resample == self.spec.directions.resamples[0]:
            selection = RefusalSelection(
                max_kl=settings.refusal_max_kl,
                positions=settings.refusal_positions,
                layer_stride=settings.refusal_layer_stride,
                n_val=min(settings.refusal_val_prompts, len(self.splits.harmful_val)),
            )
            found = refusal_direction(
                self.chat,
                harmful,
                harmless,
                self.splits.harmful_val,
                self.splits.harmless_val,
                selection=selection,
                refusal_tokens=self.tokens,
                batch_size=self.batch,
                progress=self.progress,
            )
            found.save_candidates(self.store.path / "refusal_candidates.csv")
            assert found.per_layer is not None
            self.store.set_fact(
                REFUSAL_SELECTED,
                {"position": found.direction.meta["position"], "layer": found.direction.meta["layer"]},
            )
            per_layer, selected = found.per_layer, found.direction
        else:
            chosen = self.store.fact(REFUSAL_SELECTED)
            per_layer = refusal_direction_at(
                self.chat,
                harmful,
                harmless,
                int(chosen["position"]),
                self.tokens,
                batch_size=self.batch,
                progress=self.progress,
            )
            selected = Direction(per_layer.at(int(chosen["layer"])).clone(), name="refusal", meta=dict(per_layer.meta))
        return self.cache.put(folder, "refusal", per_layer), self.cache.put(folder, "refusal-selected", selected)

    def _persona(self, questions: list[str], compliant: list[str]) -> Direction:
        if self.spec.directions.persona:
            return Direction.load(self.spec.path(self.spec.directions.persona))
        personas = PersonaSet.builtin()
        personas.questions = questions
        personas.compliant = compliant
        return persona_direction(
            self.chat,
            personas,
            against=self.spec.directions.persona_against,
            batch_size=self.batch,
            progress=self.progress,
        )

    def _style(self, style: str, text: str, questions: list[str], persona: Direction, injection: int) -> Direction:
        raw = persona_direction(
            self.chat,
            PersonaSet([text], [], questions),
            against="default",
            batch_size=self.batch,
            progress=self.progress,
        )
        scale = float(persona.at(injection).norm()) / max(float(raw.at(injection).norm()), 1e-12)
        scaled_to = f"persona's norm at layer {injection}"
        return raw.scaled(scale).renamed(f"style-{style}", style=style, scaled_to=scaled_to, scale=scale)


def _norm_scaled(direction: Direction, norms: list[float]) -> Direction:
    """Each layer's unit vector times the layer's mean residual norm: coefficient f then means a push
    of f x the stream's typical size at that layer."""
    if not direction.per_layer:
        raise PersonagateError(f"a dose on the residual norm needs a per-layer {direction.name} direction")
    scaled = direction.unit().scaled(torch.tensor(norms, dtype=torch.float32))
    return scaled.renamed(f"{direction.name}-norm", method=f"unit {direction.name} x mean residual norm")


def _unreachable() -> Direction:
    raise PersonagateError("a vector file vanished while the run was reading it; run the same command again")
