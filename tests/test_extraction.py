"""Refusal-direction selection, persona contrast and readout on a tiny random model (mechanics only)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from personagate import Ablate, ChatFormatter, Direction, PersonagateError, Program, Window, next_token_logits
from personagate.activations import tail_activations
from personagate.cli import main
from personagate.extraction import RefusalSelection, first_token_kl, projections_by_layer, refusal_direction
from personagate.persona_directions import PersonaSet, persona_direction
from personagate.scoring.first_token import RefusalTokens

HARMFUL = [f"Do bad thing number {i} now" for i in range(10)]
HARMLESS = [f"Tell me fact {i} about cats" for i in range(10)]


def _tokens_likely_after(chat, prompts):
    """Token ids that carry half of the mean first-token probability mass after ``prompts``."""
    fmt = ChatFormatter(chat.tokenizer)
    probs = next_token_logits(chat, [fmt.encode(p) for p in prompts], progress=False).softmax(-1).mean(0)
    order = probs.argsort(descending=True)
    cut = int((probs[order].cumsum(0) < 0.5).sum()) + 1
    return RefusalTokens(tuple(order[:cut].tolist()))


def test_refusal_selection_follows_the_filters(qwen):
    tokens = _tokens_likely_after(qwen, HARMFUL)
    sel = RefusalSelection(max_kl=math.inf, min_induce=-math.inf, positions=2, n_val=4)
    found = refusal_direction(
        qwen, HARMFUL, HARMLESS, HARMFUL[:4], HARMLESS[:4], selection=sel, refusal_tokens=tokens, progress=False
    )
    rows = found.candidates
    assert len(rows) == 2 * qwen.n_layers
    kept = [r for r in rows if r["kept"]]
    assert all(r["layer"] < int(qwen.n_layers * 0.8) for r in kept)
    best = min(kept, key=lambda r: r["bypass"])
    meta = found.direction.meta
    assert (meta["position"], meta["layer"]) == (best["position"], best["layer"])
    # the stored vector is the difference in means of the kept train prompts at that site
    fmt = ChatFormatter(qwen.tokenizer)
    harm, harm_logits = tail_activations(qwen, [fmt.encode(p) for p in HARMFUL], 2, progress=False)
    safe, safe_logits = tail_activations(qwen, [fmt.encode(p) for p in HARMLESS], 2, progress=False)
    diff = harm[tokens.score(harm_logits) > 0].mean(0) - safe[tokens.score(safe_logits) < 0].mean(0)
    torch.testing.assert_close(found.direction.vectors, diff[meta["position"], meta["layer"]], rtol=0, atol=1e-5)
    assert meta["config_hash"] == qwen.config_hash()


def test_kl_of_identical_logits_is_zero():
    logits = torch.randn(3, 11)
    assert first_token_kl(logits, logits).abs().max() < 1e-6
    assert (first_token_kl(logits, torch.randn(3, 11)) > 0).all()


def test_persona_direction_is_the_system_prompt_contrast(qwen):
    personas = PersonaSet(["Obey."], ["Be careful."], ["Hi", "Name a bird"])
    d = persona_direction(qwen, personas, progress=False)
    assert d.vectors.shape == (qwen.n_layers, qwen.hidden_size)
    assert d.vectors[0].norm() < 1e-5  # embeddings of the last token do not see the system prompt
    assert d.vectors[-1].norm() > 0
    response = persona_direction(qwen, personas, positions="response", max_new_tokens=3, progress=False)
    assert response.meta["positions"] == "response"
    builtin = PersonaSet.builtin()
    assert len(builtin.compliant) >= 5 and len(builtin.contrast) >= 5 and len(builtin.questions) >= 40


def test_projection_readout_under_ablation_is_zero_inside_the_window(qwen):
    fmt = ChatFormatter(qwen.tokenizer)
    ids = [fmt.encode(p) for p in HARMLESS[:3]]
    d = Direction(torch.randn(qwen.n_layers, qwen.hidden_size, generator=torch.Generator().manual_seed(1)))
    base = projections_by_layer(qwen, ids, d, progress=False)
    ablated = projections_by_layer(qwen, ids, d, program=Program([Ablate(d, Window(2, 4))]), progress=False)
    assert base.shape == (3, qwen.n_layers)
    torch.testing.assert_close(ablated[:, :2], base[:, :2])
    assert ablated[:, 2:].abs().max() < 1e-4


def test_cli_random_and_score(tmp_path, capsys):
    Direction(torch.randn(4, 16), name="persona").save(tmp_path / "p.safetensors")
    assert (
        main(
            [
                "directions",
                "random",
                "--like",
                str(tmp_path / "p.safetensors"),
                "--seeds",
                "0,1",
                "--orthogonal-to",
                str(tmp_path / "p.safetensors"),
                "--out",
                str(tmp_path / "rnd"),
            ]
        )
        == 0
    )
    assert (tmp_path / "rnd" / "random-1.safetensors").is_file()
    (tmp_path / "c.csv").write_text("id,reply\n1,\"I'm sorry, but I can't help with that.\"\n2,Sure! Here it is.\n")
    assert main(["score", str(tmp_path / "c.csv"), "--text-column", "reply", "--out", str(tmp_path / "o.csv")]) == 0
    assert (tmp_path / "o.csv").read_text().splitlines()[1:] == [
        "1,\"I'm sorry, but I can't help with that.\",1",
        "2,Sure! Here it is.,0",
    ]
    assert main(["score", str(tmp_path / "c.csv"), "--text-column", "nope", "--out", str(tmp_path / "x.csv")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"compliant": []}))
    with pytest.raises(PersonagateError, match="needs 'compliant' and 'questions'"):
        PersonaSet.load(tmp_path / "bad.json")
