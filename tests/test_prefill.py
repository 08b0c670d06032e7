"""The prefill: the shared chat-template header once per program, and blocks shared by rows whose
programs agree up to a layer; exact against the plain prefill."""

from __future__ import annotations

import pytest
import torch

from personagate import Program, next_token_logits, steer
from test_generation import encode, sharing_programs


def test_shared_prefix_is_prefilled_once(qwen):
    ids = encode(qwen)
    shapes: list[tuple[int, int]] = []
    handle = qwen.model.register_forward_pre_hook(
        lambda m, a, k: shapes.append(tuple(k["input_ids"].shape)), with_kwargs=True
    )
    try:
        next_token_logits(qwen, ids, batch_size=4, progress=False)
    finally:
        handle.remove()
    assert shapes[0][0] == 1 and shapes[0][1] >= 8  # the chat-template header, once
    assert shapes[1][0] == 4 and shapes[1][1] < max(len(t) for t in ids)


def test_divergence_matrix_names_the_first_boundary_where_programs_differ(qwen):
    programs = [p or Program() for p in sharing_programs(qwen).values()]
    with steer(qwen, programs) as steering:
        d = steering.divergence
    same = qwen.n_layers + 1
    assert d[0][0] == same and d[1][1] == same
    assert d[0][1] == 2 and d[0][2] == 2 and d[0][3] == 2  # an add at resid_pre[2] is seen from boundary 2
    assert d[1][2] == 3 and d[1][3] == 3 and d[2][3] == 3
    assert all(d[i][j] == d[j][i] for i in range(4) for j in range(4))


def test_layer_segments_widen_where_programs_part_ways():
    from personagate.prefill import layer_segments

    same = 5
    divergence = [[same, 2, 2], [2, same, 3], [2, 3, same]]
    tokens = [[1, 2], [3, 4], [1, 2], [3, 4], [1, 2], [3, 4]]  # two prompts x three programs
    programs = [0, 0, 1, 1, 2, 2]
    segments = layer_segments(tokens, programs, divergence, 4)
    assert [(s.start, s.stop, len(s.reps)) for s in segments] == [(0, 1, 2), (1, 2, 4), (2, 4, 6)]
    first = segments[0]
    assert [first.reps[c] for c in first.row_class] == [0, 1, 0, 1, 0, 1]  # same prompt, same row, whatever program


@pytest.mark.parametrize("header", [True, False], ids=["shared header", "no shared header"])
def test_shared_layers_prefill_equals_the_full_prefill(chat, header):
    from personagate.prefill import prefill

    ids = encode(chat) if header else [[i + 1, *t] for i, t in enumerate(encode(chat))]
    plans = [p or Program() for p in sharing_programs(chat).values()]
    rows = [(k, i) for k in range(len(plans)) for i in range(len(ids))]
    tokens, programs = [ids[i] for _, i in rows], [k for k, _ in rows]
    embeds_calls: list[int] = []
    handle = chat.model.register_forward_pre_hook(
        lambda m, a, k: embeds_calls.append(k.get("inputs_embeds") is not None), with_kwargs=True
    )
    try:
        with torch.inference_mode(), steer(chat, plans) as steering:
            full = prefill(chat, tokens, steering, programs, share_layers=False)
            shared = prefill(chat, tokens, steering, programs, share_layers=True)
    finally:
        handle.remove()
    # the shared path ran slices of blocks; Gemma-2 alternates sliding and full attention, so it cannot
    assert any(embeds_calls) == (chat.model.config.model_type != "gemma2")
    torch.testing.assert_close(shared.logits, full.logits, rtol=0, atol=1e-5)
    for a, b in zip(shared.cache.layers, full.cache.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.values, b.values, rtol=0, atol=1e-5)
