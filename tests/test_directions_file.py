"""Direction files round-trip exactly and refuse what they cannot be."""

from __future__ import annotations

import pytest
import torch

from personagate import Direction, PersonagateError


@pytest.mark.parametrize("shape", [(4, 64), (64,)])
def test_round_trip(tmp_path, shape):
    d = Direction(torch.randn(shape), name="refusal", meta={"model": "m", "config_hash": "abc", "layer": 2})
    loaded = Direction.load(d.save(tmp_path / "r.safetensors"))
    assert torch.equal(loaded.vectors, d.vectors)
    assert loaded.name == "refusal" and loaded.meta["model"] == "m" and loaded.meta["layer"] == 2
    assert loaded.meta["site"] == "resid_pre" and loaded.meta["schema_version"] == 1


def test_corrupt_and_foreign_files(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file at all")
    with pytest.raises(PersonagateError, match="not a readable direction file"):
        Direction.load(tmp_path / "junk.safetensors")
    with pytest.raises(PersonagateError, match="no such direction file"):
        Direction.load(tmp_path / "absent.safetensors")


def test_shape_checks():
    d = Direction(torch.ones(3, 8), name="x")
    d.check_fits(3, 8)
    with pytest.raises(PersonagateError, match="3 layers"):
        d.check_fits(4, 8)
    with pytest.raises(PersonagateError, match="hidden size 8"):
        d.check_fits(3, 16)
    with pytest.raises(PersonagateError, match="zero"):
        Direction(torch.zeros(8)).unit_at(0)
