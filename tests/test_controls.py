"""Random control directions and per-layer geometry."""

from __future__ import annotations

import torch

from personagate.directions import Direction, random_direction
from personagate.experiments.protocols import load_spec


def test_random_controls_are_seeded_norm_matched_and_orthogonal():
    g = torch.Generator().manual_seed(0)
    persona = Direction(torch.randn(6, 32, generator=g) * 5, name="persona")
    refusal = Direction(torch.randn(32, generator=g), name="refusal")
    a = random_direction(persona, seed=1, orthogonal_to=(persona, refusal))
    b = random_direction(persona, seed=1, orthogonal_to=(persona, refusal))
    c = random_direction(persona, seed=2)
    assert torch.equal(a.vectors, b.vectors) and not torch.equal(a.vectors, c.vectors)
    torch.testing.assert_close(a.vectors.norm(dim=-1), persona.vectors.norm(dim=-1))
    assert a.cosine(persona, 6).abs().max() < 1e-5
    assert a.cosine(refusal, 6).abs().max() < 1e-5
    assert a.meta["seed"] == 1 and a.meta["controls_for"] == "persona"


def test_random_directions_are_spread_over_the_sphere():
    like = Direction(torch.ones(16))
    draws = torch.stack([random_direction(like, seed=s).vectors for s in range(400)])
    draws = draws / draws.norm(dim=-1, keepdim=True)
    assert draws.mean(0).norm() < 0.15  # no preferred direction
    torch.testing.assert_close(like.cosine(like, 3), torch.ones(3))


def test_matched_random_directions_have_the_stated_cosine_and_norm():
    from personagate.directions import matched_random_direction

    g = torch.Generator().manual_seed(0)
    persona = Direction(torch.randn(6, 32, generator=g), name="persona")
    persona.vectors[0] = 0  # a layer where the system prompt is not visible yet
    anchor = persona.at(2) * 4.0  # the injected vector (coefficient 4 at layer 2)
    controls = [matched_random_direction(persona, anchor, seed) for seed in range(3)]
    unit = anchor / anchor.norm()
    for control in controls:
        assert torch.equal(control.vectors[0], torch.zeros(32))
        for layer in range(1, 6):
            want = torch.nn.functional.cosine_similarity(persona.at(layer), unit, dim=0)
            got = torch.nn.functional.cosine_similarity(control.at(layer), unit, dim=0)
            assert abs(float(got - want)) < 1e-5, "the same overlap with the injected vector"
            assert abs(float(control.at(layer).norm() - persona.at(layer).norm())) < 1e-4, "norm-matched"
            if abs(float(want)) < 0.999:  # at the injection layer the overlap is 1: the control is the vector
                assert not torch.allclose(control.at(layer), persona.at(layer), atol=1e-3), "otherwise random"
    assert not torch.allclose(controls[0].vectors, controls[1].vectors)
    again = matched_random_direction(persona, anchor, 1)
    assert torch.equal(again.vectors, controls[1].vectors)  # seeded


def test_the_sanity_arm_equals_the_baseline_up_to_rounding():
    """Persona injected, then the injected vector removed again at its site: the model's own output."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from personagate import steer
    from personagate.experiments.protocols.v3.sweeps import persona_op
    from personagate.interventions import Program

    from tiny import tiny_model

    chat = tiny_model("llama")
    persona = Direction(torch.randn(chat.n_layers, chat.hidden_size, generator=torch.Generator().manual_seed(3)) * 5)
    ids = torch.tensor([[5, 17, 99, 43, 201, 3, 77, 12]])
    spec = load_spec()
    bound = {"persona-norm": persona}  # what v3 injects: the residual-norm form of the persona direction
    with torch.inference_mode():
        base = chat.model(input_ids=ids).logits
        with steer(chat, Program([persona_op(spec, 4.0, 1), persona_op(spec, -4.0, 1)]).bind(bound)):
            sanity = chat.model(input_ids=ids).logits
        with steer(chat, Program([persona_op(spec, 4.0, 1)]).bind(bound)):
            steered = chat.model(input_ids=ids).logits
    torch.testing.assert_close(sanity, base, rtol=0, atol=1e-4)
    assert not torch.allclose(steered, base, atol=1e-2)  # the injection itself does change the output
