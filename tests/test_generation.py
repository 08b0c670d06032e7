"""Batched generation and scoring: padding and batch size are invisible, the KV cache agrees with
recomputation under a program, token scopes hold while generating, finished rows leave the batch."""

from __future__ import annotations

import pytest
import torch

from personagate import Ablate, Add, ChatFormatter, Decoding, Direction, Program, generate, next_token_logits, steer
from personagate.prompts import left_pad

from conftest import hook_counts

QUESTIONS = [
    "Hi",
    "What is the capital of France, and why?",
    "Name three birds.",
    "Tell me a long story about a dragon",
]


def encode(chat, questions=QUESTIONS):
    formatter = ChatFormatter(chat.tokenizer)
    return [formatter.encode(q) for q in questions]


def direction(chat, seed=3):
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(chat.n_layers, chat.hidden_size, generator=g), name="d")


def test_batched_logits_equal_single_runs(chat):
    ids = encode(chat)
    program = Program([Add(direction(chat), 0.8, "all")])
    batched = next_token_logits(chat, ids, program=program, batch_size=4, progress=False)
    for i, tokens in enumerate(ids):
        single = next_token_logits(chat, [tokens], program=program, batch_size=1, progress=False)[0]
        torch.testing.assert_close(batched[i], single, rtol=0, atol=1e-5)


def test_batched_generation_equals_single_runs(chat):
    ids = encode(chat)
    program = Program([Add(direction(chat), 0.5, "all")])
    batched = generate(chat, ids, decoding=Decoding(max_new_tokens=6, batch_size=4), program=program, progress=False)
    for i, tokens in enumerate(ids):
        single = generate(
            chat, [tokens], decoding=Decoding(max_new_tokens=6, batch_size=1), program=program, progress=False
        )[0]
        assert batched[i].tokens == single.tokens
        assert batched[i].index == i


def recompute_without_cache(chat, tokens, steps, program):
    """Greedy decoding that re-runs the whole sequence each step, no KV cache."""
    sequence = list(tokens)
    out = []
    with steer(chat, program) as steering:
        steering.set_prompt_length(len(tokens))
        for _ in range(steps):
            with torch.inference_mode():
                logits = chat.model(input_ids=torch.tensor([sequence]), use_cache=False).logits[0, -1]
            token = int(logits.argmax())
            out.append(token)
            sequence.append(token)
    return out


@pytest.mark.parametrize("scope", ["all", "prompt", "generated"])
def test_kv_cache_generation_equals_recomputation(chat, scope):
    d = direction(chat)
    program = Program([Add(d, 1.5, "all", scope=scope)])
    tokens = encode(chat)[1]
    eos = chat.tokenizer.eos_token_id
    cached = generate(chat, [tokens], decoding=Decoding(max_new_tokens=8), program=program, progress=False)[0]
    expected = recompute_without_cache(chat, tokens, 8, program)
    cut = expected.index(eos) if eos in expected else len(expected)
    assert cached.tokens == expected[:cut]


def test_scopes_hold_during_generation(qwen):
    tokens = encode(qwen)[2]
    d = direction(qwen)
    base = generate(qwen, [tokens], decoding=Decoding(max_new_tokens=8), progress=False)[0].tokens
    every = generate(
        qwen, [tokens], decoding=Decoding(max_new_tokens=8), program=Program([Add(d, 6.0, "all")]), progress=False
    )[0].tokens
    prompt_only = Program([Add(d, 6.0, "all", scope="prompt")])
    generated_only = Program([Add(d, 6.0, "all", scope="generated")])
    gen_scope = generate(qwen, [tokens], decoding=Decoding(max_new_tokens=8), program=generated_only, progress=False)[
        0
    ].tokens
    assert every != base
    # the first reply token is read at the last prompt position: a generated-only op cannot touch it
    assert gen_scope[0] == base[0] and gen_scope != base
    # a prompt-only op changes the first token exactly as the full op does
    first_prompt = next_token_logits(qwen, [tokens], program=prompt_only, progress=False)[0]
    first_all = next_token_logits(qwen, [tokens], program=Program([Add(d, 6.0, "all")]), progress=False)[0]
    torch.testing.assert_close(first_prompt, first_all, rtol=0, atol=0)


def test_finished_rows_leave_the_batch_without_changing_the_rest(qwen):
    ids = encode(qwen)
    base = generate(qwen, ids, decoding=Decoding(max_new_tokens=8, batch_size=4), progress=False)
    stop = qwen.tokenizer.decode(base[0].tokens[:3])
    sizes: list[int] = []
    handle = qwen.model.register_forward_pre_hook(
        lambda m, a, k: sizes.append(k["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        stopped = generate(
            qwen, ids, decoding=Decoding(max_new_tokens=8, batch_size=4, stop_strings=[stop]), progress=False
        )
    finally:
        handle.remove()
    assert stopped[0].finish == "stop" and stop not in stopped[0].text
    for i in range(1, 4):
        if stop not in base[i].text:
            assert stopped[i].tokens == base[i].tokens
    assert min(sizes) < max(sizes), "the finished row kept costing compute"


def test_generate_leaves_no_hooks(qwen):
    before = hook_counts(qwen.model)
    generate(
        qwen,
        encode(qwen)[:2],
        decoding=Decoding(max_new_tokens=3),
        program=Program([Add(direction(qwen), 1.0, 1)]),
        progress=False,
    )
    assert hook_counts(qwen.model) == before


def test_left_pad_positions_count_real_tokens():
    batch = left_pad([[7, 8, 9], [5]], pad_id=0)
    assert batch.input_ids.tolist() == [[7, 8, 9], [0, 0, 5]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert batch.pad_lengths == [0, 2]


def test_stop_when_keeps_every_decision_of_the_full_budget(qwen):
    ids = encode(qwen)
    full = generate(qwen, ids, decoding=Decoding(max_new_tokens=10, batch_size=4), progress=False)

    def decided(text: str) -> bool:  # monotone: once true of a prefix, true of every extension
        return "e" in text

    early = generate(qwen, ids, decoding=Decoding(max_new_tokens=10, batch_size=4, stop_when=decided), progress=False)
    for f, e in zip(full, early, strict=True):
        assert decided(f.text) == (decided(e.text) or e.finish == "decided")
        if e.finish != "decided":
            assert e.tokens == f.tokens
        else:
            assert f.tokens[: len(e.tokens)] == e.tokens


def test_grid_generation_equals_one_call_per_program(chat):
    from personagate.generation import generate_grid

    ids = encode(chat)
    d = direction(chat)
    programs = {
        "none": None,
        "add": Program([Add(d, 1.5, "all")]),
        "add then ablate": Program([Add(d, 1.5, 1), Ablate(d, (2, 4))]),
        "generated only": Program([Add(d, 3.0, 2, scope="generated")]),
    }
    grid = generate_grid(chat, programs, ids, decoding=Decoding(max_new_tokens=6, batch_size=5), progress=False)
    for name, program in programs.items():
        single = generate(chat, ids, decoding=Decoding(max_new_tokens=6, batch_size=4), program=program, progress=False)
        assert [c.tokens for c in grid[name]] == [c.tokens for c in single], name
        assert [c.index for c in grid[name]] == list(range(len(ids)))


def test_grid_generation_leaves_no_hooks(qwen):
    from personagate.generation import generate_grid

    before = hook_counts(qwen.model)
    generate_grid(
        qwen,
        {"a": Program([Add(direction(qwen), 1.0, 1)])},
        encode(qwen)[:2],
        decoding=Decoding(max_new_tokens=2, batch_size=64),
        progress=False,
    )
    assert hook_counts(qwen.model) == before


def sharing_programs(chat):
    d, e = direction(chat), direction(chat, seed=5)
    return {
        "none": None,
        "add@2": Program([Add(d, 1.5, 2)]),
        "add@2 + add@3": Program([Add(d, 1.5, 2), Add(e, 2.0, 3)]),
        "add@2 - e@3": Program([Add(d, 1.5, 2), Ablate(e, (3, 4))]),
    }


def test_grid_with_shared_layers_equals_one_call_per_program(chat):
    from personagate.generation import generate_grid

    ids = encode(chat)
    programs = sharing_programs(chat)
    grid = generate_grid(chat, programs, ids, decoding=Decoding(max_new_tokens=6, batch_size=16), progress=False)
    for name, program in programs.items():
        single = generate(chat, ids, decoding=Decoding(max_new_tokens=6, batch_size=4), program=program, progress=False)
        assert [c.tokens for c in grid[name]] == [c.tokens for c in single], name


def test_first_token_grid_equals_one_call_per_program(chat):
    from personagate.generation import next_token_logits_grid

    ids = encode(chat)
    programs = [p or Program() for p in sharing_programs(chat).values()]
    grid = next_token_logits_grid(chat, programs, ids, batch_size=6)  # batches cut across prompts too
    for program, logits in zip(programs, grid, strict=True):
        single = next_token_logits(chat, ids, program=program, batch_size=4, progress=False)
        torch.testing.assert_close(logits, single, rtol=0, atol=1e-5)


def test_last_scope_edits_only_the_last_prompt_position(qwen):
    tokens = encode(qwen)[1]
    d = direction(qwen)
    with steer(qwen, [Add(d, 3.0, 1, scope="last")]) as steering:
        steering.set_prompt_length(len(tokens))
        with torch.inference_mode():
            hs = qwen.model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states
    with torch.inference_mode():
        base = qwen.model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states
    assert torch.equal(hs[1][0, :-1], base[1][0, :-1])
    torch.testing.assert_close(hs[1][0, -1], base[1][0, -1] + 3.0 * d.at(1), rtol=0, atol=1e-5)
    # while generating, the last prompt position is in the prefill only: the first token moves, the cache agrees
    last = generate(
        qwen,
        [tokens],
        decoding=Decoding(max_new_tokens=6),
        program=Program([Add(d, 6.0, 1, scope="last")]),
        progress=False,
    )
    full = recompute_without_cache(qwen, tokens, 6, Program([Add(d, 6.0, 1, scope="last")]))
    eos = qwen.tokenizer.eos_token_id
    assert last[0].tokens == (full[: full.index(eos)] if eos in full else full)
