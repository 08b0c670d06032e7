"""Random control directions and per-layer geometry."""

from __future__ import annotations

import torch

from personagate.directions import Direction, cosine_by_layer, random_direction


def test_random_controls_are_seeded_norm_matched_and_orthogonal():
    g = torch.Generator().manual_seed(0)
    persona = Direction(torch.randn(6, 32, generator=g) * 5, name="persona")
    refusal = Direction(torch.randn(32, generator=g), name="refusal")
    a = random_direction(persona, seed=1, orthogonal_to=(persona, refusal))
    b = random_direction(persona, seed=1, orthogonal_to=(persona, refusal))
    c = random_direction(persona, seed=2)
    assert torch.equal(a.vectors, b.vectors) and not torch.equal(a.vectors, c.vectors)
    torch.testing.assert_close(a.vectors.norm(dim=-1), persona.vectors.norm(dim=-1))
    assert cosine_by_layer(a, persona, 6).abs().max() < 1e-5
    assert cosine_by_layer(a, refusal, 6).abs().max() < 1e-5
    assert a.meta["seed"] == 1 and a.meta["controls_for"] == "persona"


def test_random_directions_are_spread_over_the_sphere():
    like = Direction(torch.ones(16))
    draws = torch.stack([random_direction(like, seed=s).vectors for s in range(400)])
    draws = draws / draws.norm(dim=-1, keepdim=True)
    assert draws.mean(0).norm() < 0.15  # no preferred direction
    torch.testing.assert_close(cosine_by_layer(like, like, 3), torch.ones(3))
