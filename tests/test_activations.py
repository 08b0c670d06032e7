"""Activation capture: resid_pre equals HF hidden_states, batch size is invisible, programs are seen."""

from __future__ import annotations

import torch

from personagate import Add, ChatFormatter, Direction, steer
from personagate.activations import last_token_activations, mean_activations

from conftest import hook_counts

QUESTIONS = ["Hi", "What is the capital of France?", "Name three birds.", "Tell me a story", "Why is the sky blue?"]


def encode(chat):
    formatter = ChatFormatter(chat.tokenizer)
    return [formatter.encode(q) for q in QUESTIONS], formatter.post_instruction_length


def test_last_token_matches_hidden_states(chat):
    ids, _ = encode(chat)
    acts = last_token_activations(chat, ids, batch_size=2, progress=False)
    for i, tokens in enumerate(ids):
        with torch.inference_mode():
            hs = chat.model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states
        for layer in range(chat.n_layers):
            torch.testing.assert_close(acts[i, layer], hs[layer][0, -1], rtol=0, atol=1e-5)


def test_means_do_not_depend_on_batch_size(chat):
    ids, post = encode(chat)
    for positions in ("last", "post_instruction"):
        one = mean_activations(chat, ids, positions=positions, post_instruction=post, batch_size=1, progress=False)
        many = mean_activations(chat, ids, positions=positions, post_instruction=post, batch_size=5, progress=False)
        assert one.count == many.count == (len(ids) if positions == "last" else len(ids) * post)
        torch.testing.assert_close(one.mean, many.mean, rtol=0, atol=1e-5)


def test_spans_average_the_given_tokens(qwen):
    ids, _ = encode(qwen)
    spans = [(1, 3)] * len(ids)
    means = mean_activations(qwen, ids, positions="spans", spans=spans, batch_size=2, progress=False)
    expected = torch.zeros(qwen.n_layers, qwen.hidden_size)
    for tokens in ids:
        with torch.inference_mode():
            hs = qwen.model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states
        expected += torch.stack([hs[layer][0, 1:3].sum(0) for layer in range(qwen.n_layers)])
    torch.testing.assert_close(means.mean, expected / (2 * len(ids)), rtol=0, atol=1e-5)


def test_capture_under_a_program_sees_the_edit(qwen):
    ids, _ = encode(qwen)
    d = Direction(torch.randn(qwen.n_layers, qwen.hidden_size, generator=torch.Generator().manual_seed(0)))
    before = hook_counts(qwen.model)
    base = mean_activations(qwen, ids, progress=False).mean
    with steer(qwen, [Add(d, 2.0, 1)]):
        steered = mean_activations(qwen, ids, progress=False).mean
    assert hook_counts(qwen.model) == before
    torch.testing.assert_close(steered[0], base[0], rtol=0, atol=0)
    torch.testing.assert_close(steered[1], base[1] + 2.0 * d.at(1), rtol=0, atol=1e-5)
