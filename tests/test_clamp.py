"""Invariants of Clamp: the projection holds at the value inside the window, nothing changes before it,
asking for what the stream already has changes nothing, and order with Add follows the program."""

from __future__ import annotations

import pytest
import torch

from personagate import Ablate, Add, Clamp, Direction, PersonagateError, Program, Window, steer
from personagate.interventions import op_from_flag, op_from_table

PROMPT = torch.tensor([[5, 17, 99, 43, 201, 3, 77, 12]])


def forward(chat, ids=PROMPT):
    with torch.inference_mode():
        return chat.model(input_ids=ids, output_hidden_states=True)


def direction(chat, seed=1, name="v"):
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(chat.n_layers, chat.hidden_size, generator=g), name=name)


def record_writes(chat):
    """Hooks after steering's, recording what each block writes from attention and the MLP."""
    records, handles = {}, []
    for layer, block in enumerate(chat.adapter.get_blocks(chat.model)):
        for kind, module in (
            ("attn_out", chat.adapter.get_attn_out(block)),
            ("mlp_out", chat.adapter.get_mlp_out(block)),
        ):

            def hook(m, a, out, key=(kind, layer)):
                records[key] = (out[0] if isinstance(out, tuple) else out).clone()

            handles.append(module.register_forward_hook(hook))
    return records, handles


@pytest.mark.parametrize("per_layer", [False, True], ids=["one value", "per-layer values"])
def test_projection_equals_the_value_throughout_the_window(chat, per_layer):
    d = direction(chat)
    values = tuple(float(v) for v in torch.linspace(-3.0, 5.0, chat.n_layers)) if per_layer else 2.5
    clamp = Clamp(d, values, Window(1, 3))
    records, handles = record_writes(chat)
    try:
        with steer(chat, [clamp]):
            hs = forward(chat).hidden_states
    finally:
        for h in handles:
            h.remove()
    for layer in (1, 2):
        u = d.unit_at(layer)
        want = clamp.value_at(layer, chat.n_layers)
        torch.testing.assert_close(hs[layer] @ u, torch.full_like(hs[layer] @ u, want), rtol=0, atol=1e-4)
        for kind in ("attn_out", "mlp_out"):
            assert (records[(kind, layer)] @ u).abs().max() < 1e-4, f"{kind}[{layer}] writes along the direction"
    # the last block of the window writes none of it either: the stream leaves the window at the value
    want = clamp.value_at(2, chat.n_layers)
    torch.testing.assert_close(hs[3] @ d.unit_at(2), torch.full_like(hs[3] @ d.unit_at(2), want), rtol=0, atol=1e-4)


def test_before_the_window_the_model_is_unchanged(chat):
    d = direction(chat)
    base = forward(chat).hidden_states
    with steer(chat, [Clamp(d, 7.0, (2, 4))]):
        steered = forward(chat).hidden_states
    assert torch.equal(base[0], steered[0]) and torch.equal(base[1], steered[1])
    assert not torch.allclose(base[2], steered[2])


def test_clamp_to_what_the_stream_already_holds_is_the_identity(qwen):
    """One token, a direction that the window's blocks never write along, values = the unsteered
    projections: every edit asks for what is already there, so the logits do not move."""
    ids = torch.tensor([[42]])
    records, handles = record_writes(qwen)
    try:
        base = forward(qwen, ids)
    finally:
        for h in handles:
            h.remove()
    g = torch.Generator().manual_seed(3)
    vectors = torch.randn(qwen.n_layers, qwen.hidden_size, generator=g)
    for layer in range(qwen.n_layers):  # orthogonal to both writes of every block
        basis = []
        for kind in ("attn_out", "mlp_out"):
            w = records[(kind, layer)][0, 0]
            for b in basis:
                w = w - (w @ b) * b
            basis.append(w / w.norm())
        for b in basis:
            vectors[layer] = vectors[layer] - (vectors[layer] @ b) * b
    d = Direction(vectors, name="quiet")
    values = tuple(float(base.hidden_states[layer][0, 0] @ d.unit_at(layer)) for layer in range(qwen.n_layers))
    with steer(qwen, [Clamp(d, values, Window(0, qwen.n_layers))]):
        steered = forward(qwen, ids)
    torch.testing.assert_close(steered.logits, base.logits, rtol=0, atol=1e-4)
    # and a clamp to anything else does move them
    with steer(qwen, [Clamp(d, tuple(v + 5 for v in values), Window(0, qwen.n_layers))]):
        assert not torch.allclose(forward(qwen, ids).logits, base.logits, atol=1e-2)


def test_ablate_is_the_clamp_to_zero(chat):
    d = direction(chat)
    with steer(chat, [Ablate(d, (1, 4))]):
        ablated = forward(chat).logits
    with steer(chat, [Clamp(d, 0.0, (1, 4))]):
        clamped = forward(chat).logits
    assert torch.equal(ablated, clamped)


def test_order_with_add_at_a_shared_site_follows_the_program(qwen):
    d = direction(qwen)
    u, norm = d.unit_at(1), float(d.at(1).norm())
    with steer(qwen, [Add(d, 2.0, 1), Clamp(d, 1.5, (1, 2))]):
        first = forward(qwen).hidden_states[1] @ u
    with steer(qwen, [Clamp(d, 1.5, (1, 2)), Add(d, 2.0, 1)]):
        second = forward(qwen).hidden_states[1] @ u
    torch.testing.assert_close(first, torch.full_like(first, 1.5), rtol=0, atol=1e-4)
    torch.testing.assert_close(second, torch.full_like(second, 1.5 + 2.0 * norm), rtol=0, atol=1e-3)


def test_clamp_in_rows_touches_only_its_rows(qwen):
    """Several programs side by side: a row running the clamp equals a solo run; the other rows are untouched."""
    d = direction(qwen)
    ids = PROMPT.repeat(2, 1)
    with steer(qwen, [Program(), Program([Clamp(d, 3.0, (0, 4))])]) as steering:
        steering.set_rows([0, 1], ids.device)
        both = forward(qwen, ids).logits
    with steer(qwen, [Clamp(d, 3.0, (0, 4))]):
        solo = forward(qwen).logits
    torch.testing.assert_close(both[1:], solo, rtol=0, atol=1e-5)
    assert torch.equal(both[:1], forward(qwen).logits)


def test_bad_clamps_are_user_errors(qwen):
    d = direction(qwen)
    with pytest.raises(PersonagateError, match="3 per-layer values"), steer(qwen, [Clamp(d, (1.0, 2.0, 3.0), (0, 2))]):
        pass
    zero = Direction(torch.zeros(qwen.n_layers, qwen.hidden_size), name="zero")
    with pytest.raises(PersonagateError, match="zero at layer 0"), steer(qwen, [Clamp(zero, 1.0, (0, 1))]):
        pass
    with pytest.raises(PersonagateError, match="finite"):
        Clamp(d, float("nan"), (0, 2))
    with pytest.raises(PersonagateError, match="number"):
        Clamp(d, True, (0, 2))


def test_clamp_table_and_flag_forms():
    op = op_from_table({"op": "clamp", "direction": "refusal", "value": [1, 2.5], "window": "1:3"}, "t")
    assert isinstance(op, Clamp) and op.value == (1.0, 2.5) and op.window == Window(1, 3)
    assert op_from_table(op.to_table(), "again") == op
    flag = op_from_flag("clamp", "r.safetensors,4,16:24")
    assert flag == Clamp("r.safetensors", 4.0, Window(16, 24))
    assert flag.describe(24).startswith(
        "hold the projection onto r.safetensors at 4 in the residual stream of blocks 16..23"
    )
    with pytest.raises(PersonagateError, match="'value'"):
        op_from_table({"op": "clamp", "direction": "r"}, "t")
    with pytest.raises(PersonagateError, match="expected FILE,VALUE"):
        op_from_flag("clamp", "r.safetensors")
