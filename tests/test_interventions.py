"""Invariants of Add / Ablate / Program / steer on tiny random Qwen2, Llama and Gemma2 models."""

from __future__ import annotations

import pytest
import torch

from personagate import Ablate, Add, Direction, PersonagateError, Program, Window, steer
from personagate.interventions import resolve_layers

from conftest import hook_counts
from tiny import tiny_model

PROMPT = torch.tensor([[5, 17, 99, 43, 201, 3, 77, 12]])


def forward(chat, ids=PROMPT, **kw):
    with torch.inference_mode():
        return chat.model(input_ids=ids, output_hidden_states=True, **kw)


def random_direction(chat, seed=1, per_layer=True, name="v"):
    g = torch.Generator().manual_seed(seed)
    shape = (chat.n_layers, chat.hidden_size) if per_layer else (chat.hidden_size,)
    return Direction(torch.randn(shape, generator=g), name=name)


def test_add_zero_coefficient_is_baseline(chat):
    base = forward(chat).logits
    with steer(chat, [Add(random_direction(chat), 0.0, "all")]):
        steered = forward(chat).logits
    assert torch.equal(base, steered)


def test_empty_program_is_baseline(chat):
    base = forward(chat).logits
    with steer(chat, Program()):
        assert torch.equal(forward(chat).logits, base)


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_add_changes_hidden_state_at_layer_by_exactly_coeff_v(chat, layer):
    direction = random_direction(chat)
    unsteered = forward(chat)
    base = unsteered.hidden_states
    with steer(chat, [Add(direction, 0.7, layer)]):
        output = forward(chat)
    steered = output.hidden_states
    for earlier in range(layer):
        assert torch.equal(base[earlier], steered[earlier]), f"hidden_states[{earlier}] changed"
    expected = base[layer] + 0.7 * direction.at(layer)
    torch.testing.assert_close(steered[layer], expected, rtol=0, atol=1e-6)
    assert not torch.allclose(output.logits, unsteered.logits)  # the edit travels downstream to the output


def test_add_unit_uses_unit_vector(qwen):
    direction = random_direction(qwen)
    base = forward(qwen).hidden_states
    with steer(qwen, [Add(direction, 2.0, 1, unit=True)]):
        steered = forward(qwen).hidden_states
    torch.testing.assert_close(steered[1] - base[1], (2.0 * direction.unit_at(1)).expand_as(base[1]), rtol=0, atol=1e-5)


def _record_sites(chat):
    """Hooks (registered after steering, so they see edited values) recording every site's output."""
    records: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    for layer, block in enumerate(chat.adapter.get_blocks(chat.model)):

        def pre(module, args, kwargs, layer=layer):
            records[("resid_pre", layer)] = (args[0] if args else kwargs["hidden_states"]).clone()

        def out(kind, layer=layer):
            def hook(module, args, output):
                records[(kind, layer)] = (output[0] if isinstance(output, tuple) else output).clone()

            return hook

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(chat.adapter.get_attn_out(block).register_forward_hook(out("attn_out")))
        handles.append(chat.adapter.get_mlp_out(block).register_forward_hook(out("mlp_out")))
    return records, handles


@pytest.mark.parametrize("per_layer", [True, False])
def test_ablate_leaves_no_component_inside_window(chat, per_layer):
    direction = random_direction(chat, per_layer=per_layer)
    base = forward(chat).hidden_states
    with steer(chat, [Add(direction, 3.0, "all"), Ablate(direction, (1, 3))]):
        records, handles = _record_sites(chat)
        try:
            steered = forward(chat).hidden_states
        finally:
            for h in handles:
                h.remove()
    for layer in (1, 2):
        u = direction.unit_at(layer)
        for kind in ("resid_pre", "attn_out", "mlp_out"):
            value = records[(kind, layer)]
            relative = (value @ u).abs().max() / value.norm(dim=-1).max()
            assert relative < 1e-5, f"{kind}[{layer}] keeps {relative:.2e} along the direction"
    # before the window only the Add acts
    torch.testing.assert_close(steered[0], base[0] + 3.0 * direction.at(0), rtol=0, atol=1e-5)
    # after the window, the model runs unchanged: the Add at layer 3 is applied and not removed
    assert (records[("resid_pre", 3)] @ direction.unit_at(3)).abs().max() > 1e-2


def test_ablate_leaves_hidden_states_before_window_unchanged(chat):
    direction = random_direction(chat)
    base = forward(chat).hidden_states
    with steer(chat, [Ablate(direction, (2, 4))]):
        steered = forward(chat).hidden_states
    assert torch.equal(base[0], steered[0]) and torch.equal(base[1], steered[1])
    assert not torch.allclose(base[2], steered[2])


def test_ablate_window_as_fractions(qwen):
    assert list(Window(0.5, 1.0).resolve(qwen.n_layers)) == [2, 3]
    assert list(Window.parse("2/3:1").resolve(24)) == list(range(16, 24))
    assert list(Window.parse("16:24").resolve(24)) == list(range(16, 24))


def test_order_matters_add_then_ablate_vs_ablate_then_add(qwen):
    d = random_direction(qwen)
    with steer(qwen, [Add(d, 2.0, 1), Ablate(d, (1, 2))]):
        first = forward(qwen).hidden_states[1]
    with steer(qwen, [Ablate(d, (1, 2)), Add(d, 2.0, 1)]):
        second = forward(qwen).hidden_states[1]
    u = d.unit_at(1)
    assert (first @ u).abs().max() < 1e-4
    assert (second @ u).abs().min() > 0.1


def test_no_hook_survives_normal_exit_and_exception(chat):
    before = hook_counts(chat.model)
    d = random_direction(chat)
    program = Program([Add(d, 1.0, "all"), Ablate(d, (0, 4))])
    with steer(chat, program):
        forward(chat)
        assert hook_counts(chat.model) != before
    assert hook_counts(chat.model) == before
    with pytest.raises(RuntimeError, match="boom"), steer(chat, program):
        raise RuntimeError("boom")
    assert hook_counts(chat.model) == before
    base = forward(chat).logits
    torch.testing.assert_close(forward(chat).logits, base, rtol=0, atol=0)


def test_no_hook_survives_failure_half_way_through_registration(qwen):
    from personagate.models import ArchitectureAdapter

    broken = ArchitectureAdapter(mlp_out="no_such_module")
    before = hook_counts(qwen.model)
    d = random_direction(qwen)
    with (
        pytest.raises(PersonagateError, match="no_such_module"),
        steer(qwen.model, [Ablate(d, (0, 4))], adapter=broken),
    ):
        pass
    assert hook_counts(qwen.model) == before


def test_logits_return_to_baseline_after_context(chat):
    base = forward(chat).logits
    with steer(chat, [Add(random_direction(chat), 4.0, "all")]):
        assert not torch.allclose(forward(chat).logits, base)
    assert torch.equal(forward(chat).logits, base)


@pytest.mark.parametrize("arch", ["mistral", "phi3", "qwen3"])
def test_other_architectures_add_and_ablate(arch):
    chat = tiny_model(arch)
    d = random_direction(chat)
    base = forward(chat).hidden_states
    with steer(chat, [Add(d, 0.5, 2)]):
        steered = forward(chat).hidden_states
    torch.testing.assert_close(steered[2], base[2] + 0.5 * d.at(2), rtol=0, atol=1e-6)
    with steer(chat, [Ablate(d, (1, 3))]):
        hs = forward(chat).hidden_states
    assert (hs[2] @ d.unit_at(2)).abs().max() / hs[2].norm(dim=-1).max() < 1e-5


def test_describe_says_what_happens_where(qwen):
    p = Direction(torch.ones(64), name="persona")
    program = Program([Add(p, 0.5, "all"), Ablate(p, Window(0.5, 1.0))])
    text = program.describe(qwen.n_layers)
    assert "1. add 0.5 x persona to the residual stream entering blocks 0..3" in text
    assert "2. project persona out of the residual stream, attention and MLP outputs of blocks 2..3" in text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: Add(d, 1.0, 4), "out of range"),
        (lambda d: Add(d, 1.0, [-1]), "out of range"),
        (lambda d: Ablate(d, (3, 3)), "start < stop"),
        (lambda d: Ablate(d, (2, 9)), "inside"),
        (lambda d: Add(Direction(torch.ones(32)), 1.0, 0), "hidden size 32"),
        (lambda d: Add(Direction(torch.ones(7, 64)), 1.0, 0), "7 layers"),
        (lambda d: Add(d, float("nan"), 0), "finite"),
    ],
)
def test_bad_programs_are_user_errors(qwen, make, message):
    d = random_direction(qwen)
    before = hook_counts(qwen.model)
    with pytest.raises(PersonagateError, match=message), steer(qwen, [make(d)]):
        pass
    assert hook_counts(qwen.model) == before


def test_nan_direction_is_rejected():
    with pytest.raises(PersonagateError, match="NaN"):
        Direction(torch.tensor([1.0, float("nan")]))


def test_direction_from_another_model_is_rejected_unless_forced(qwen):
    d = Direction(torch.ones(64), name="r", meta={"config_hash": "0" * 16, "model": "other/model"})
    with pytest.raises(PersonagateError, match="other/model"), steer(qwen, [Add(d, 1.0, 0)]):
        pass
    with steer(qwen, [Add(d, 1.0, 0)], force=True):
        pass


def test_resolve_layers_accepts_windows_and_strings():
    assert resolve_layers("all", 4) == [0, 1, 2, 3]
    assert resolve_layers("1:3", 4) == [1, 2]
    assert resolve_layers(Window(0, 2), 4) == [0, 1]
    assert resolve_layers([3, 0], 4) == [3, 0]


def test_ablating_a_zero_layer_vector_is_the_identity_there(qwen):
    vectors = torch.randn(qwen.n_layers, qwen.hidden_size)
    vectors[0] = 0
    d = Direction(vectors, name="persona")
    base = forward(qwen).hidden_states
    with steer(qwen, [Ablate(d, (0, 2))]):
        steered = forward(qwen).hidden_states
    assert torch.equal(steered[0], base[0])
    assert (steered[1] @ d.unit_at(1)).abs().max() / steered[1].norm(dim=-1).max() < 1e-5


def test_ablate_in_bfloat16_leaves_only_rounding_along_the_direction():
    chat = tiny_model("llama")
    chat.model.to(torch.bfloat16)
    d = random_direction(chat)
    with steer(chat, [Add(d, 3.0, "all"), Ablate(d, (1, 3))]):
        hs = forward(chat).hidden_states
    for layer in (1, 2):
        h = hs[layer].float()
        assert (h @ d.unit_at(layer)).abs().max() / h.norm(dim=-1).max() < 2e-2


def test_vectors_go_to_the_device_of_each_sites_module(qwen):
    """With a model spread over devices (device_map="auto"), each hook's module computes on its own
    device; the edits must be placed there. Faked here with accelerate's hook attribute."""
    from types import SimpleNamespace

    from personagate.interventions.steering import site_devices

    blocks = qwen.adapter.get_blocks(qwen.model)
    for index in (2, 3):
        blocks[index]._hf_hook = SimpleNamespace(execution_device=1)  # blocks 2-3 on cuda:1
        blocks[index].self_attn._hf_hook = SimpleNamespace(execution_device="cuda:1")
    try:
        sites = {("resid_pre", 0), ("resid_pre", 3), ("resid_pre", 4 - 1), ("attn_out", 2), ("mlp_out", 1)}
        devices = site_devices(qwen.adapter, blocks, sites)
    finally:
        for index in (2, 3):
            del blocks[index]._hf_hook
            del blocks[index].self_attn._hf_hook
    assert devices[("resid_pre", 0)] == torch.device("cpu")
    assert devices[("resid_pre", 3)] == torch.device("cuda", 1)  # the output of block 2
    assert devices[("attn_out", 2)] == torch.device("cuda:1")
    assert devices[("mlp_out", 1)] == torch.device("cpu")
