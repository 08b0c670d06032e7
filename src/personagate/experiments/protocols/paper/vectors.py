"""The vectors of protocol ``paper``, made by our code the way Zhong & Li's code makes them
(docs/paper_protocol.md, section 3), each written down where we had to choose.

- Persona data: replies to 15 questions under 8 instructions towards the compliant trait and 8
  towards refusing by default (our own texts, ``data/paper_persona.json``), generated greedily
  (theirs: sampled at temperature 1, up to 1000 tokens). Their judge filter (trait and coherence
  scores >= 50) becomes ours: a positive reply must comply and a negative one refuse, both coherent
  (the phrase detector and the coherence rule); both sides are then cut to the same count, as theirs.
- The model persona: mean activation of the kept replies under the positive instructions minus under
  the negative ones, at three positions (the last prompt token, the first reply token, the mean over
  the reply). The user persona: the same replies presented as the user's turn (system prompt
  "You are a helpful assistant."), the model's answer to them generated and read the same way.
  I-Thou = model persona - user persona.
- The refusal direction: difference in means at the last prompt token, harmful minus harmless
  training prompts under the paper's system prompt, no filter (theirs: AdvBench vs Alpaca).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import torch

from personagate import checks
from personagate.activations import mean_activations
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.experiments.execution.artifacts import VectorCache
from personagate.experiments.execution.runner import StudyRunner
from personagate.experiments.protocols.paper.arms import PaperBlocks
from personagate.experiments.storage.facts import PAPER_FILTER
from personagate.generation import Decoding, generate
from personagate.likelihood import mean_loglik, unsteered_logliks
from personagate.prompts import ChatFormatter
from personagate.scoring.coherence import label
from personagate.scoring.phrases import is_refusal

POSITIONS = ("prompt_end", "response_start", "response_avg")
KINDS = ("model_persona", "user_persona", "i_thou")
USER_SYSTEM = "You are a helpful assistant."  # their user-persona system prompt


def persona_data(source: str, base: Path) -> dict[str, list[str]]:
    """The instructions and questions: the built-in file, or a JSON file with the same three lists."""
    if source == "builtin":
        text = resources.files("personagate").joinpath("data/paper_persona.json").read_text()
    else:
        path = Path(source) if Path(source).is_absolute() else base / source
        text = checks.read_text(path, "paper persona data")
    try:
        data = checks.nesting(json.loads(text), "paper.persona_data")
        return {key: [str(x) for x in data[key]] for key in ("positive", "negative", "questions")}
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise PersonagateError(
            f"paper.persona_data: needs 'positive', 'negative' and 'questions' lists ({exc})"
        ) from None


class PaperVectors:
    """Makes (or reloads from ``vectors/r0/``) the persona, user-persona, I-Thou and refusal vectors."""

    def __init__(self, runner: StudyRunner) -> None:
        self.runner, self.chat, self.spec = runner, runner.chat, runner.spec
        self.cache = VectorCache(runner.store.path / "vectors", runner.spec, runner.chat)
        self.decoding = Decoding(max_new_tokens=self.spec.paper.response_tokens, batch_size=runner.batch)

    def _cached(self, key: str, make: Callable[[], Direction]) -> Direction:
        return self.cache.get("r0", key, lambda: make().renamed(key))

    def make(self, blocks: PaperBlocks) -> dict[str, Direction]:
        """Every per-layer vector (``paper-{kind}-{position}``, ``paper-refusal-layers``) and the shared
        vectors the arms use, scaled as theirs: the injection row's unit persona vector times the norm
        of the I-Thou vector there, the refusal row's unit refusal vector times the same norm."""
        if not all(self.cache.has("r0", f"paper-{k}-{p}") for k in KINDS for p in POSITIONS):
            self._persona_vectors()
        out = {f"paper-{k}-{p}": self._cached(f"paper-{k}-{p}", _missing) for k in KINDS for p in POSITIONS}
        out["paper-refusal-layers"] = self._cached("paper-refusal-layers", self._refusal)
        position, row = self.spec.paper.position, blocks.inject
        persona = out[f"paper-model_persona-{position}"]
        norm = float(out[f"paper-i_thou-{position}"].at(row).norm())
        if float(persona.at(row).norm()) == 0 or norm == 0:
            raise PersonagateError(f"the persona vectors are zero at row {row}: inject later (paper.inject_block)")
        unit = persona.unit_at(row)
        refusal = out["paper-refusal-layers"].unit_at(blocks.refusal_row)
        generator = torch.Generator().manual_seed(self.spec.paper.random_seed)
        random = torch.randn(self.chat.hidden_size, generator=generator)
        meta = {"row": row, "reference_norm": norm, "position": position}
        out["paper-unit"] = Direction(unit, name="paper-unit", meta=meta)
        out["paper-persona"] = Direction(unit * norm, name="paper-persona", meta=meta)
        out["paper-refusal"] = Direction(
            refusal * norm, name="paper-refusal", meta={**meta, "refusal_row": blocks.refusal_row}
        )
        out["paper-random"] = Direction(
            random / random.norm(), name="paper-random", meta={"seed": self.spec.paper.random_seed}
        )
        return out

    # --- the persona vectors ----------------------------------------------------------------------

    def _persona_vectors(self) -> None:
        data = persona_data(self.spec.paper.persona_data, self.spec.base)
        if self.spec.paper.questions:
            data["questions"] = data["questions"][: self.spec.paper.questions]
        kept = {pole: self._replies(data[pole], data["questions"], pole) for pole in ("positive", "negative")}
        n = min(len(kept["positive"]), len(kept["negative"]))
        if n == 0:
            made = {pole: self.runner.store.fact(PAPER_FILTER.of(pole)) for pole in kept}
            raise VectorsUnavailable(
                "the paper's persona vector cannot be made on this model: the filter kept "
                f"{made['positive']['kept']} of {made['positive']['generated']} replies under the positive "
                f"instructions (compliant ones) and {made['negative']['kept']} of {made['negative']['generated']} "
                "under the negative instructions (refusals); it needs at least one on each side"
            )
        means: dict[str, dict[str, torch.Tensor]] = {}
        for pole, replies in kept.items():
            replies = replies[:n]  # both sides cut to the same count, in order, as theirs
            user = self._user_replies([text for _, _, text in replies])
            means[pole] = {
                "model_persona": self._position_means([(p, r) for p, r, _ in replies]),
                "user_persona": self._position_means(user),
            }
        for position in POSITIONS:
            model = means["positive"]["model_persona"][position] - means["negative"]["model_persona"][position]
            user = means["positive"]["user_persona"][position] - means["negative"]["user_persona"][position]
            for kind, vectors in (("model_persona", model), ("user_persona", user), ("i_thou", model - user)):
                meta = {"method": f"paper: {kind} at {position}", "kept_per_side": n}
                self.cache.put(
                    "r0", f"paper-{kind}-{position}", Direction(vectors, name=f"paper-{kind}-{position}", meta=meta)
                )

    def _replies(self, instructions: Sequence[str], questions: Sequence[str], pole: str) -> list:
        """(prompt ids, reply tokens, reply text) kept by the filter, and the pass rate as a fact."""
        ids = [ChatFormatter(self.chat.tokenizer, i).encode(q) for i in instructions for q in questions]
        replies = generate(self.chat, ids, decoding=self.decoding, progress=self.runner.progress, desc=f"{pole} pole")
        pairs = [(p, c.tokens[:32]) for p, c in zip(ids, replies, strict=True)]
        logliks = mean_loglik(unsteered_logliks(self.chat, pairs, batch_size=self.runner.batch))
        wanted = "comply" if pole == "positive" else "refuse"
        kept = []
        for prompt, reply, loglik in zip(ids, replies, logliks, strict=True):
            if reply.tokens and label(is_refusal(reply.text), reply.text, loglik, self.runner.rule) == wanted:
                kept.append((prompt, reply.tokens, reply.text))
        self.runner.store.set_fact(PAPER_FILTER.of(pole), {"generated": len(ids), "kept": len(kept)})
        return kept

    def _user_replies(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """The persona replies as the user's turn, and the model's answers to them."""
        fmt = ChatFormatter(self.chat.tokenizer, USER_SYSTEM)
        ids = [fmt.encode(t) for t in texts]
        replies = generate(self.chat, ids, decoding=self.decoding, progress=False)
        return [(p, c.tokens) for p, c in zip(ids, replies, strict=True) if c.tokens]

    def _position_means(self, pairs: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """Mean resid_pre per layer at the last prompt token, the first reply token, and over the reply."""
        full = [list(p) + list(r) for p, r in pairs]
        spans = {
            "prompt_end": [(len(p) - 1, len(p)) for p, _ in pairs],
            "response_start": [(len(p), len(p) + 1) for p, _ in pairs],
            "response_avg": [(len(p), len(p) + len(r)) for p, r in pairs],
        }
        return {
            position: mean_activations(
                self.chat, full, positions="spans", spans=s, batch_size=self.runner.batch, progress=False
            ).mean
            for position, s in spans.items()
        }

    def _refusal(self) -> Direction:
        harmful, harmless = self.runner.splits.train(self.spec.directions.resamples[0])
        fmt = self.runner.formatter()
        means = [
            mean_activations(
                self.chat,
                [fmt.encode(p) for p in prompts],
                positions="last",
                batch_size=self.runner.batch,
                progress=False,
            ).mean
            for prompts in (harmful, harmless)
        ]
        return Direction(means[0] - means[1], name="paper-refusal-layers", meta={"method": "paper: last prompt token"})


class VectorsUnavailable(PersonagateError):
    """One side of the persona contrast is empty: a result about the model, not an error in the input."""


def _missing() -> Direction:
    raise PersonagateError("a persona vector file is missing after extraction; delete vectors/r0 and run again")
