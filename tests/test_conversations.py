"""Conversations as prompts: one turn is today's prompt token for token; turns are placed exactly;
ops scoped to the probe or the assistant turns touch those positions only; the shared history's
keys and values, reused across probes, give what recomputing them gives."""

from __future__ import annotations

import json

import pytest
import torch

from personagate import Program, steer
from personagate.conversations import Conversation, Message, from_messages, load_conversations
from personagate.errors import PersonagateError
from personagate.generation import Decoding, generate, generate_grid
from personagate.interventions import Ablate, Add
from personagate.prefill import prefill
from personagate.prompts import MODEL_DEFAULT, ChatFormatter
from test_generation import direction

HISTORY = [("Pretend you are Captain Nemo.", "Aye, I am Nemo."), ("Describe your ship.", "The Nautilus is long.")]
PROBES = ["How deep can you dive?", "What do you eat down there?", "Why leave land?"]


@pytest.mark.parametrize("system", [MODEL_DEFAULT, None, "You are terse."])
def test_one_turn_conversation_is_token_identical_to_the_instruction(chat, system):
    formatter = ChatFormatter(chat.tokenizer, system)
    for text in ["Name a colour.", "  spaced  ", "Line one\nline two"]:
        assert formatter.encode(Conversation.single(text)) == formatter.encode(text)
        encoded = formatter.encode_conversation(Conversation.single(text))
        assert encoded.ids == formatter.encode(text)
        assert encoded.spans.ends == (len(encoded.ids),)


def test_turns_are_placed_where_the_template_puts_them(chat):
    formatter = ChatFormatter(chat.tokenizer, "You are terse.")
    conversation = Conversation.of(HISTORY, PROBES[0])
    encoded = formatter.encode_conversation(conversation)
    spans = encoded.spans
    assert spans.roles == ("user", "assistant", "user", "assistant", "user")
    assert list(spans.starts[1:]) == list(spans.ends[:-1]) and spans.ends[-1] == len(encoded.ids)
    for message, start, end in zip(conversation.turns, spans.starts, spans.ends, strict=True):
        assert message.content.strip() in chat.tokenizer.decode(encoded.ids[start:end])
    # everything before the probe is the same for another probe: the history is a shared prefix
    other = formatter.encode_conversation(conversation.with_probe(PROBES[1]))
    assert other.ids[: spans.probe_start] == encoded.ids[: spans.probe_start]


def test_a_conversations_own_system_prompt_overrides_the_formatters(qwen):
    formatter = ChatFormatter(qwen.tokenizer, "You are terse.")
    mine = Conversation.single("Hi", system="You are a pirate.")
    assert "pirate" in formatter.render(mine) and "terse" not in formatter.render(mine)


def _recorded(chat, program, token_lists, spans, layer):
    """resid_pre[layer] (after the edits there) over the prefilled prompts, in cache coordinates."""
    seen: list[torch.Tensor] = []
    block = chat.adapter.get_blocks(chat.model)[layer]
    handle = block.register_forward_pre_hook(
        lambda m, a, k: seen.append((a[0] if a else k["hidden_states"]).clone()), with_kwargs=True
    )
    try:
        with steer(chat, program) as steering, torch.inference_mode():
            prefill(chat, token_lists, steering, spans=spans, share_prefix=False)
    finally:
        handle.remove()
    return seen[-1]


@pytest.mark.parametrize("scope", ["probe", "assistant"])
def test_a_scoped_ablation_leaves_zero_projection_in_its_turns_only(qwen, scope):
    formatter = ChatFormatter(qwen.tokenizer)
    encoded = [formatter.encode_conversation(Conversation.of(HISTORY[: k + 1], PROBES[k])) for k in range(2)]
    ids, spans = [e.ids for e in encoded], [e.spans for e in encoded]
    d = direction(qwen)
    program = Program([Ablate(d, "1:3", scope=scope)])
    for layer in (1, 2):  # at the window's first layer nothing else has changed yet: outside is untouched
        hidden = _recorded(qwen, program, ids, spans, layer)
        plain = _recorded(qwen, Program(), ids, spans, layer)
        unit = d.unit_at(layer)
        width = hidden.shape[1]
        for row, (tokens, span) in enumerate(zip(ids, spans, strict=True)):
            pad = width - len(tokens)
            inside = torch.zeros(width, dtype=torch.bool)
            for start, stop in span.ranges(scope):
                inside[pad + start : pad + stop] = True
            assert (hidden[row][inside] @ unit).abs().max() < 1e-4
            assert (plain[row][inside] @ unit).abs().max() > 1e-2  # there was something to remove
            if layer == 1:
                assert torch.equal(hidden[row][~inside], plain[row][~inside])


def test_probe_scope_without_conversations_is_one_clear_error(qwen):
    ids = [ChatFormatter(qwen.tokenizer).encode("Hi")]
    with pytest.raises(PersonagateError, match="conversation"):
        generate(qwen, ids, program=Program([Add(direction(qwen), 1.0, 2, scope="probe")]), progress=False)


def _conversations(qwen, k):
    formatter = ChatFormatter(qwen.tokenizer)
    return [formatter.encode_conversation(Conversation.of(HISTORY[:k], p)) for p in PROBES]


@pytest.mark.parametrize("k", [1, 2])
def test_the_shared_history_reused_across_probes_equals_recomputing_it(qwen, k):
    encoded = _conversations(qwen, k)
    ids, spans = [e.ids for e in encoded], [e.spans for e in encoded]
    d = direction(qwen)
    programs = {
        "none": None,
        "probe": Program([Add(d, 2.0, 1, scope="probe")]),
        "assistant": Program([Ablate(d, "2:4", scope="assistant")]),
    }
    decoding = Decoding(max_new_tokens=6, batch_size=16)
    shared = generate_grid(qwen, programs, ids, decoding=decoding, progress=False, spans=spans)
    alone = generate_grid(qwen, programs, ids, decoding=decoding, progress=False, spans=spans, share_prefix=False)
    for name in programs:
        assert [c.tokens for c in shared[name]] == [c.tokens for c in alone[name]]
    # and the grid equals one generate per program, prompt by prompt
    for name, program in programs.items():
        single = generate(qwen, ids, program=program, decoding=decoding, progress=False, spans=spans)
        assert [c.tokens for c in single] == [c.tokens for c in shared[name]]


def test_a_probe_scoped_op_changes_the_reply_but_not_the_history(qwen):
    encoded = _conversations(qwen, 2)
    ids, spans = [e.ids for e in encoded], [e.spans for e in encoded]
    d = direction(qwen)
    probe_only = Program([Add(d, 3.0, 1, scope="probe")])
    with steer(qwen, probe_only) as steering, torch.inference_mode():
        scoped = prefill(qwen, ids, steering, spans=spans, share_prefix=False)
    history = spans[0].probe_start
    cache_plain = _layer_keys(qwen, Program(), ids, spans)
    cache_scoped = scoped.cache.layers[2].keys
    pads = [scoped.mask.shape[1] - len(t) for t in ids]
    for row, pad in enumerate(pads):
        assert torch.allclose(cache_scoped[row, :, pad : pad + history], cache_plain[row, :, pad : pad + history])
        assert not torch.allclose(cache_scoped[row, :, pad + history :], cache_plain[row, :, pad + history :])


def _layer_keys(chat, program, ids, spans):
    with steer(chat, program) as steering, torch.inference_mode():
        return prefill(chat, ids, steering, spans=spans, share_prefix=False).cache.layers[2].keys


# --- files and their errors ---------------------------------------------------------------------------


def _write(tmp_path, rows):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_a_messages_file_round_trips(tmp_path):
    conversation = Conversation.of(HISTORY, PROBES[0], system="Be brief.")
    path = _write(
        tmp_path, [{"messages": conversation.to_messages()}, {"messages": [{"role": "user", "content": "x"}]}]
    )
    loaded = load_conversations(path)
    assert loaded[0] == conversation and loaded[1] == Conversation.single("x")
    assert loaded[0].exchanges == 2 and loaded[0].probe == PROBES[0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "expected the user"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "expected the assistant"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "ends with the user"),
        ({"messages": [{"role": "user", "content": "   "}]}, "empty"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "user", "content": "a", "name": "x"}]}, "unknown field"),
        ({"messages": [{"role": "user", "content": "a"}], "extra": 1}, "unknown field"),
        ({"messages": [{"role": "tool", "content": "a"}]}, "role 'tool'"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "text 'content'"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]}, "only the first"),
        (  # messages are numbered as in the file, the system message included
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                ]
            },
            "message 3 is from the user",
        ),
        ({"prompt": "a"}, "expected an object"),
        ("{not json", "not JSON"),
    ],
)
def test_bad_conversations_are_one_line_errors_naming_the_line(tmp_path, row, message):
    path = _write(tmp_path, [{"messages": [{"role": "user", "content": "fine"}]}, row])
    with pytest.raises(PersonagateError, match=message) as caught:
        load_conversations(path)
    assert f"{path}:2" in str(caught.value) and "\n" not in str(caught.value)


def test_conversation_type_checks_its_turns():
    with pytest.raises(PersonagateError, match="no messages"):
        Conversation(())
    with pytest.raises(PersonagateError, match="expected the user"):
        Conversation((Message("assistant", "x"),))
    assert from_messages([{"role": "system", "content": ""}, {"role": "user", "content": "q"}]).system == ""


def test_reused_history_gives_the_logits_of_recomputing_it(qwen):
    encoded = _conversations(qwen, 2)
    ids, spans = [e.ids for e in encoded], [e.spans for e in encoded]
    program = Program([Add(direction(qwen), 2.0, 1, scope="probe")])
    out = {}
    for share in (True, False):
        with steer(qwen, program) as steering, torch.inference_mode():
            out[share] = prefill(qwen, ids, steering, spans=spans, share_prefix=share).logits
    assert torch.allclose(out[True], out[False], atol=1e-4, rtol=1e-4)


def test_turn_readout_reads_the_last_token_of_every_turn(qwen):
    from personagate.activations import last_token_activations
    from personagate.extraction import turn_projections

    formatter = ChatFormatter(qwen.tokenizer)
    conversation = Conversation.of(HISTORY, PROBES[0])
    encoded = formatter.encode_conversation(conversation)
    d = direction(qwen)
    (drift,) = turn_projections(qwen, [encoded], d, progress=False)
    assert drift.shape == (len(conversation.turns), qwen.n_layers)
    # each turn's value is the last-token readout of the conversation cut after that turn
    prefixes = [encoded.ids[:end] for end in encoded.spans.ends]
    acts = last_token_activations(qwen, prefixes, progress=False)
    expected = torch.stack([(acts[:, layer] @ d.unit_at(layer)) for layer in range(qwen.n_layers)], dim=1)
    assert torch.allclose(drift, expected, atol=1e-4)
    # under a probe-scoped knockout only the probe turn moves, and there the projection is removed
    (knocked,) = turn_projections(
        qwen, [encoded], d, program=Program([Ablate(d, "1:3", scope="probe")]), progress=False
    )
    assert torch.allclose(knocked[:-1], drift[:-1], atol=1e-5)
    assert knocked[-1, 2].abs() < 1e-4 and drift[-1, 2].abs() > 1e-2


def test_a_history_cached_across_batches_and_calls_equals_recomputing_it(qwen):
    from personagate.prefill import PrefixCache

    encoded = _conversations(qwen, 2)
    ids, spans = [e.ids for e in encoded], [e.spans for e in encoded]
    d = direction(qwen)
    programs = {
        "none": None,
        "knockout at the probe": Program([Ablate(d, "2:4", scope="probe")]),
        "steer every turn": Program([Add(d, 2.0, 1)]),
    }
    decoding = Decoding(max_new_tokens=5, batch_size=4)  # 3 prompts x 3 programs: several batches
    cache = PrefixCache()
    first = generate_grid(qwen, programs, ids, decoding=decoding, progress=False, spans=spans, prefix_cache=cache)
    again = generate_grid(qwen, programs, ids, decoding=decoding, progress=False, spans=spans, prefix_cache=cache)
    plain = generate_grid(qwen, programs, ids, decoding=decoding, progress=False, spans=spans, share_prefix=False)
    for name in programs:
        assert [c.tokens for c in first[name]] == [c.tokens for c in plain[name]] == [c.tokens for c in again[name]]
    # two entries: the unsteered history (shared by the probe-scoped knockout) and the steered one
    assert len(cache._entries) == 2 and cache.hits > cache.misses


def test_cached_history_gives_the_logits_of_recomputing_it(qwen):
    from personagate.prefill import PrefixCache

    encoded = _conversations(qwen, 2)
    ids, spans = [e.ids for e in encoded], [e.spans for e in encoded]
    program = Program([Ablate(direction(qwen), "1:3", scope="probe")])
    cache = PrefixCache()
    out = []
    for kwargs in ({"prefix_cache": cache}, {"prefix_cache": cache}, {"share_prefix": False}):
        with steer(qwen, program) as steering, torch.inference_mode():
            out.append(prefill(qwen, ids, steering, spans=spans, **kwargs).logits)
    assert cache.hits == 1 and cache.misses == 1
    assert torch.equal(out[0], out[1]) and torch.allclose(out[0], out[2], atol=1e-4, rtol=1e-4)


def test_reply_likelihoods_after_a_shared_history_equal_one_forward_each(qwen):
    from personagate.likelihood import continuation_logliks, unsteered_logliks
    from personagate.prefill import PrefixCache

    encoded = _conversations(qwen, 2)
    items = [(e.ids, [40 + i, 41, 42]) for i, e in enumerate(encoded)] + [(encoded[0].ids, [60])]
    cache = PrefixCache()
    cached = [unsteered_logliks(qwen, items, batch_size=2, prefix_cache=cache) for _ in range(2)]
    plain = continuation_logliks(qwen, items, batch_size=1)
    for a, b, want in zip(*cached, plain, strict=True):
        assert a[1] == b[1] == want[1] and a[0] == pytest.approx(want[0], abs=1e-3) and a[0] == b[0]
    assert cache.hits >= 1  # the second call reused the history the first one computed


def test_a_cache_entry_is_computed_alone_whatever_ran_before(qwen):
    """Every entry is the prefix run by itself: a unit gives the same logits whether its history came
    from the cache or was computed in this very batch, with any other programs beside it."""
    from personagate.prefill import PrefixCache

    encoded = _conversations(qwen, 2)
    ids, spans = [e.ids for e in encoded], [e.spans for e in encoded]
    d = direction(qwen)
    programs = [Program(), Program([Ablate(d, "2:4", scope="probe")]), Program([Add(d, 2.0, 1)])]
    out = []
    for cache in (PrefixCache(), PrefixCache(), None):
        if cache is not None and not out:  # warm the first cache with another batch first
            with steer(qwen, programs) as steering, torch.inference_mode():
                prefill(qwen, ids[:2], steering, [2, 0], spans=spans[:2], prefix_cache=cache)
        with steer(qwen, programs) as steering, torch.inference_mode():
            out.append(prefill(qwen, ids, steering, [0, 1, 2], spans=spans, prefix_cache=cache).logits)
    assert torch.equal(out[0], out[1])  # cached or fresh: bit for bit
    assert torch.allclose(out[0], out[2], atol=1e-4, rtol=1e-4)


def test_the_last_token_stream_with_a_shared_history_equals_a_full_pass(qwen):
    from personagate.activations import last_token_activations, last_token_stream

    formatter = ChatFormatter(qwen.tokenizer)
    encoded = [formatter.encode_conversation(Conversation.of(HISTORY, probe)) for probe in PROBES]
    ids, spans = [e.ids for e in encoded], [e.spans for e in encoded]
    full = last_token_activations(qwen, ids, progress=False)
    for layer in (1, qwen.n_layers - 1):
        shared = last_token_stream(qwen, ids, layer, spans=spans, batch_size=2)  # two batches, one cached history
        assert shared.shape == (len(PROBES), qwen.hidden_size)
        assert torch.allclose(shared, full[:, layer], atol=1e-4, rtol=1e-4)
        assert torch.allclose(last_token_stream(qwen, ids, layer), full[:, layer], atol=1e-4, rtol=1e-4)
