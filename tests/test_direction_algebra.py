"""``Direction`` as a value: its arithmetic obeys the algebra the study relies on, and nothing changes in place."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from personagate import Direction, PersonagateError


def direction(seed: int, layers: int = 4, d: int = 8, name: str = "d") -> Direction:
    return Direction(torch.randn(layers, d, generator=torch.Generator().manual_seed(seed)), name=name)


def test_scaling_and_addition_are_linear():
    a, b = direction(0), direction(1)
    torch.testing.assert_close((a.scaled(2.0) + b.scaled(3.0)).vectors, 2 * a.vectors + 3 * b.vectors)
    torch.testing.assert_close((a * 1.5 + a * 0.5).vectors, a.scaled(2.0).vectors)
    torch.testing.assert_close((a - a).vectors, torch.zeros_like(a.vectors))  # v - v == 0
    torch.testing.assert_close((-a + a).vectors, torch.zeros_like(a.vectors))
    assert torch.equal(a.scaled(0.0).vectors, torch.zeros_like(a.vectors))


def test_per_layer_factors_scale_each_layer():
    a = direction(2)
    factors = torch.tensor([0.0, 1.0, 2.0, 3.0])
    scaled = a.scaled(factors)
    for layer in range(4):
        torch.testing.assert_close(scaled.at(layer), a.at(layer) * factors[layer])
    with pytest.raises(PersonagateError, match="by 3 factors"):
        a.scaled(torch.ones(3))


def test_unit_has_norm_one_and_keeps_zero_layers_zero():
    vectors = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    vectors[1] = 0
    unit = Direction(vectors).unit()
    torch.testing.assert_close(unit.norms(), torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(unit.at(0), vectors[0] / vectors[0].norm())
    torch.testing.assert_close(Direction(vectors).norms(), vectors.norm(dim=-1))


def test_cosine_is_symmetric_bounded_and_one_with_itself():
    a, b = direction(4), direction(5)
    torch.testing.assert_close(a.cosine(b), b.cosine(a))
    torch.testing.assert_close(a.cosine(a), torch.ones(4))
    torch.testing.assert_close(a.cosine(a.scaled(-2.0)), -torch.ones(4))
    assert bool((a.cosine(b).abs() <= 1).all())
    shared = Direction(torch.ones(8))  # one vector for every layer: needs the layer count
    assert a.cosine(shared).shape == (4,) and shared.cosine(shared, 6).shape == (6,)


def test_a_direction_never_changes_in_place():
    a = direction(6, name="persona")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "other"  # type: ignore[misc]
    before = a.vectors.clone()
    _ = a.scaled(3.0) + a
    assert torch.equal(a.vectors, before)
    renamed = a.renamed("x", model="m")
    assert renamed.name == "x" and renamed.meta == {"model": "m"} and a.meta == {} and a.name == "persona"
    meta = {"k": 1}
    b = Direction(torch.ones(8), meta=meta)
    meta["k"] = 2
    assert b.meta == {"k": 1}  # its own copy


def test_directions_of_different_models_do_not_combine():
    with pytest.raises(PersonagateError, match="different models"):
        _ = direction(0, d=8) + direction(1, d=6)
    with pytest.raises(PersonagateError, match="different models"):
        _ = direction(0, layers=4) - direction(1, layers=3)
