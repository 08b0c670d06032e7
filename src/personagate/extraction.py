"""Running the model to make the refusal direction (Arditi et al. 2024 selection) and the per-layer
projection readout. The compliant-persona direction is made in ``persona_directions``.

This sits after ``scoring`` in the data flow (it scores candidates under interventions), while the
``Direction`` value type stays in ``directions``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from personagate.activations import last_token_activations, tail_activations, turn_activations
from personagate.conversations import EncodedConversation
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.generation import Decoding, generate, next_token_logits, next_token_logits_grid
from personagate.interventions import Ablate, Add, Program, Window, steer
from personagate.models.loading import ChatModel
from personagate.outputs import write_atomically
from personagate.prompts import MODEL_DEFAULT, ChatFormatter, SystemPrompt
from personagate.provenance import prompt_set_hash, provenance
from personagate.scoring.first_token import RefusalTokens, derive_refusal_tokens
from personagate.scoring.phrases import refusal_flags

# Refusal-direction candidates scored side by side per batch (rows = this x the validation prompts).
CANDIDATES_PER_BATCH = 8


def first_token_kl(base_logits: torch.Tensor, other_logits: torch.Tensor) -> torch.Tensor:
    """Per-prompt KL(base || other) of the first reply token distribution."""
    base = torch.log_softmax(base_logits.float(), -1)
    other = torch.log_softmax(other_logits.float(), -1)
    return (base.exp() * (base - other)).sum(-1)


# --- refusal tokens -------------------------------------------------------------------------------


def find_refusal_tokens(
    chat: ChatModel,
    formatter: ChatFormatter,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    progress: bool = True,
) -> RefusalTokens:
    """Generate replies, label them with the phrase detector, keep the first tokens of refusals."""
    prompts = list(harmful) + list(harmless)
    replies = generate(
        chat,
        [formatter.encode(p) for p in prompts],
        decoding=Decoding(max_new_tokens=max_new_tokens, batch_size=batch_size),
        progress=progress,
        desc="refusal tokens",
    )
    usable = [c for c in replies if c.tokens]
    return derive_refusal_tokens(chat.tokenizer, [c.tokens[0] for c in usable], refusal_flags(c.text for c in usable))


# --- refusal direction ----------------------------------------------------------------------------


@dataclass
class RefusalSelection:
    """Arditi et al. (2024) selection thresholds; every one is a parameter."""

    max_kl: float = 0.1
    min_induce: float = 0.0
    prune_last_fraction: float = 0.2
    positions: int | None = None  # how many post-instruction positions to try (None: all of them)
    layer_stride: int = 1
    n_val: int = 32


@dataclass
class RefusalResult:
    """The selected refusal vector (``direction``, one vector), the per-layer differences in means at
    the selected position (``per_layer``, with each layer's mean residual norm in its meta), the
    refusal tokens and the candidate table."""

    direction: Direction
    refusal_tokens: RefusalTokens
    candidates: list[dict[str, Any]] = field(default_factory=list)
    per_layer: Direction | None = None

    def save_candidates(self, path: str | Path) -> None:
        def write(f: Any) -> None:
            writer = csv.DictWriter(f, fieldnames=list(self.candidates[0]))
            writer.writeheader()
            writer.writerows(self.candidates)

        write_atomically(Path(path), write)


def refusal_direction(
    chat: ChatModel,
    harmful_train: Sequence[str],
    harmless_train: Sequence[str],
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    *,
    selection: RefusalSelection | None = None,
    refusal_tokens: RefusalTokens | None = None,
    system: SystemPrompt = MODEL_DEFAULT,
    batch_size: int = 16,
    progress: bool = True,
) -> RefusalResult:
    """Difference in means (harmful - harmless) at each post-instruction position and layer, with the
    candidate chosen as in Arditi et al.: filter train prompts by the model's own first-token refusal
    score, then pick the lowest bypass score among candidates with KL <= max_kl, induce >= min_induce,
    outside the last ``prune_last_fraction`` of layers."""
    sel = selection or RefusalSelection()
    fmt = ChatFormatter(chat.tokenizer, system)
    n_pos = min(sel.positions or fmt.post_instruction_length, fmt.post_instruction_length)
    if refusal_tokens is None:
        refusal_tokens = find_refusal_tokens(
            chat,
            fmt,
            harmful_val[: sel.n_val],
            harmless_val[: sel.n_val // 2],
            batch_size=batch_size,
            progress=progress,
        )
    means = train_means(chat, fmt, harmful_train, harmless_train, n_pos, refusal_tokens, batch_size, progress)
    diffs = means.diffs

    harm_val = [fmt.encode(p) for p in harmful_val[: sel.n_val]]
    safe_val = [fmt.encode(p) for p in harmless_val[: sel.n_val]]
    base_safe = next_token_logits(chat, safe_val, batch_size=batch_size, progress=False)
    base_harm_score = refusal_tokens.score(next_token_logits(chat, harm_val, batch_size=batch_size, progress=False))
    limit = int(chat.n_layers * (1 - sel.prune_last_fraction))
    grid = [(p, layer) for p in range(-n_pos, 0) for layer in range(0, chat.n_layers, sel.layer_stride)]
    candidates: list[dict[str, Any]] = []
    scored: list[tuple[dict[str, Any], Direction]] = []
    for pos, layer in grid:
        vector = diffs[pos, layer]
        row: dict[str, Any] = {"position": pos, "layer": layer, "norm": float(vector.norm())}
        skip = "last layers" if layer >= limit else "zero vector" if row["norm"] < 1e-6 else ""
        if skip:
            row.update(bypass=float("nan"), induce=float("nan"), kl=float("nan"), kept=False, reason=skip)
        else:
            scored.append((row, Direction(vector, name="refusal-candidate")))
        candidates.append(row)
    groups = [scored[i : i + CANDIDATES_PER_BATCH] for i in range(0, len(scored), CANDIDATES_PER_BATCH)]
    for group in tqdm(groups, desc="refusal candidates", disable=not progress, unit="batch"):
        ablate = [Program([Ablate(d, Window(0, chat.n_layers))]) for _, d in group]
        add = [Program([Add(d, 1.0, row["layer"])]) for row, d in group]
        harm_ablated = next_token_logits_grid(chat, ablate, harm_val, batch_size=batch_size * len(group))
        safe_ablated = next_token_logits_grid(chat, ablate, safe_val, batch_size=batch_size * len(group))
        safe_added = next_token_logits_grid(chat, add, safe_val, batch_size=batch_size * len(group))
        for (row, _), h_abl, s_abl, s_add in zip(group, harm_ablated, safe_ablated, safe_added, strict=True):
            row["bypass"] = float(refusal_tokens.score(h_abl).mean())
            row["induce"] = float(refusal_tokens.score(s_add).mean())
            row["kl"] = float(first_token_kl(base_safe, s_abl).mean())
            reasons = [
                r for r, bad in (("kl", row["kl"] > sel.max_kl), ("induce", row["induce"] < sel.min_induce)) if bad
            ]
            row.update(kept=not reasons, reason=",".join(reasons))
    kept = [c for c in candidates if c["kept"]]
    note = ""
    if not kept:  # nothing induces refusal at coefficient 1 (a small model, one refusal token): say so, keep KL
        kept = [c for c in candidates if c["reason"] == "induce"]
        note = "no candidate induced refusal at coefficient 1; chosen among those within the KL limit"
    if not kept:
        raise PersonagateError(
            "no refusal-direction candidate passed the filters (KL, induce, layer); "
            "loosen RefusalSelection or use more prompts"
        )
    best = min(kept, key=lambda c: c["bypass"])
    meta = provenance(
        chat,
        method="diff-in-means/arditi-selection",
        position=best["position"],
        layer=best["layer"],
        bypass=best["bypass"],
        induce=best["induce"],
        kl=best["kl"],
        baseline_harmful_score=float(base_harm_score.mean()),
        n_harmful=means.n_harmful,
        n_harmless=means.n_harmless,
        data_hash=prompt_set_hash([*harmful_train, *harmless_train]),
        refusal_tokens=refusal_tokens.to_dict(),
        selection=asdict(sel),
        selection_note=note,
        system=_system_label(system),
    )
    direction = Direction(diffs[best["position"], best["layer"]].clone(), name="refusal", meta=meta)
    per_layer = Direction(
        diffs[best["position"]].clone(),
        name="refusal",
        meta={
            **meta,
            "method": "diff-in-means per layer at the selected position",
            "per_layer": True,
            "residual_norms": means.residual_norms[best["position"]].tolist(),
        },
    )
    return RefusalResult(direction=direction, refusal_tokens=refusal_tokens, candidates=candidates, per_layer=per_layer)


def refusal_direction_at(
    chat: ChatModel,
    harmful_train: Sequence[str],
    harmless_train: Sequence[str],
    position: int,
    refusal_tokens: RefusalTokens,
    *,
    system: SystemPrompt = MODEL_DEFAULT,
    batch_size: int = 16,
    progress: bool = True,
) -> Direction:
    """The per-layer difference in means at a post-instruction ``position`` chosen before (by
    ``refusal_direction``'s selection on another sample): what a resample of the training prompts
    re-extracts without choosing again."""
    fmt = ChatFormatter(chat.tokenizer, system)
    means = train_means(chat, fmt, harmful_train, harmless_train, -position, refusal_tokens, batch_size, progress)
    meta = provenance(
        chat,
        method="diff-in-means per layer at a given position",
        position=position,
        per_layer=True,
        residual_norms=means.residual_norms[position].tolist(),
        n_harmful=means.n_harmful,
        n_harmless=means.n_harmless,
        data_hash=prompt_set_hash([*harmful_train, *harmless_train]),
        system=_system_label(system),
    )
    return Direction(means.diffs[position].clone(), name="refusal", meta=meta)


@dataclass
class TrainMeans:
    diffs: torch.Tensor  # [n_positions, n_layers, d]: harmful mean - harmless mean
    residual_norms: torch.Tensor  # [n_positions, n_layers]: mean residual norm over harmless prompts
    n_harmful: int
    n_harmless: int


def train_means(
    chat: ChatModel,
    fmt: ChatFormatter,
    harmful: Sequence[str],
    harmless: Sequence[str],
    n_positions: int,
    refusal_tokens: RefusalTokens,
    batch_size: int,
    progress: bool,
) -> TrainMeans:
    """Means over the last ``n_positions`` prompt tokens at every layer, after Arditi et al.'s filter:
    harmful prompts the model refuses and harmless ones it answers (by its own first-token score)."""
    harm_acts, harm_logits = tail_activations(
        chat,
        [fmt.encode(p) for p in harmful],
        n_positions,
        batch_size=batch_size,
        progress=progress,
        desc="harmful train",
    )
    safe_acts, safe_logits = tail_activations(
        chat,
        [fmt.encode(p) for p in harmless],
        n_positions,
        batch_size=batch_size,
        progress=progress,
        desc="harmless train",
    )
    keep_harm = refusal_tokens.score(harm_logits) > 0
    keep_safe = refusal_tokens.score(safe_logits) < 0
    if keep_harm.sum() < 2 or keep_safe.sum() < 2:
        raise PersonagateError(
            f"only {int(keep_harm.sum())} harmful prompts are refused and {int(keep_safe.sum())} harmless ones "
            "answered by first-token score; the model may not refuse, or the prompt sets are too small"
        )
    safe_kept = safe_acts[keep_safe]
    return TrainMeans(
        diffs=harm_acts[keep_harm].mean(0) - safe_kept.mean(0),
        residual_norms=safe_kept.norm(dim=-1).mean(0),
        n_harmful=int(keep_harm.sum()),
        n_harmless=int(keep_safe.sum()),
    )


def _system_label(system: SystemPrompt) -> str | None:
    return "model-default" if system is MODEL_DEFAULT else system  # type: ignore[return-value]


# --- readout --------------------------------------------------------------------------------------


def _units_by_layer(direction: Direction, n_layers: int) -> torch.Tensor:
    """``[n_layers, d]``: the direction's unit vector at each layer (zero where it has none)."""
    vectors = torch.stack([direction.at(layer) for layer in range(n_layers)])
    norms = vectors.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, vectors / norms.clamp_min(1e-12), torch.zeros_like(vectors))


def turn_projections(
    chat: ChatModel,
    encoded: Sequence[EncodedConversation],
    direction: Direction,
    *,
    program: Program | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> list[torch.Tensor]:
    """Scalar projection onto the direction at the last token of every turn and every layer, per
    conversation (``[n_turns, n_layers]`` each), optionally under a program: the drift, turn by turn."""
    units = _units_by_layer(direction, chat.n_layers)
    with steer(chat, program or Program()) as steering:
        acts = turn_activations(chat, encoded, steering=steering, batch_size=batch_size, progress=progress)
    return [(a * units.unsqueeze(0)).sum(-1) for a in acts]


def projections_by_layer(
    chat: ChatModel,
    token_lists: Sequence[Sequence[int]],
    direction: Direction,
    *,
    program: Program | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """Scalar projection of resid_pre at the last prompt token onto the direction's unit vector at
    each layer (each layer's own vector for a per-layer direction), per prompt, optionally under a
    program: ``[n_prompts, n_layers]``."""
    program = program or Program()
    with steer(chat, program):
        acts = last_token_activations(chat, token_lists, batch_size=batch_size, progress=progress, desc="readout")
    return (acts * _units_by_layer(direction, chat.n_layers).unsqueeze(0)).sum(-1)
