"""Round trips through other tools' vector files, with their layer conventions."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from personagate import PersonagateError
from personagate.directions import Direction
from personagate.interop import (
    export_llamacpp_control_vector,
    import_persona_vectors,
    import_refusal_direction,
    read_llamacpp_control_vector,
)


def test_refusal_direction_folder(tmp_path):
    v = torch.randn(64)
    torch.save(v, tmp_path / "direction.pt")
    (tmp_path / "direction_metadata.json").write_text(json.dumps({"pos": -2, "layer": 11}))
    d = import_refusal_direction(tmp_path)
    assert torch.equal(d.vectors, v) and d.meta["layer"] == 11 and d.meta["position"] == -2


def test_persona_vectors_drop_the_final_row(tmp_path):
    rows = torch.randn(5, 16)  # L = 4 blocks: hidden_states rows 0..4
    torch.save(rows, tmp_path / "evil_response_avg_diff.pt")
    d = import_persona_vectors(tmp_path / "evil_response_avg_diff.pt")
    assert d.vectors.shape == (4, 16) and torch.equal(d.vectors, rows[:4])


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "direction.pt", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(PersonagateError, match="not a plain tensor file"):
        import_refusal_direction(tmp_path)


def test_llamacpp_control_vector_round_trip(tmp_path):
    vectors = torch.randn(6, 32)
    vectors[:2] = 0
    d = Direction(vectors, name="persona")
    path = export_llamacpp_control_vector(d, 6, tmp_path / "persona.gguf", coeff=2.0)
    back = read_llamacpp_control_vector(path, 6)
    torch.testing.assert_close(back.vectors[2:], 2.0 * vectors[2:])
    assert back.vectors[:2].abs().sum() == 0
