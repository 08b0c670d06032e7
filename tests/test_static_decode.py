"""The static-cache decoder (the path CUDA graphs capture) gives the eager path's tokens exactly, and a
new program of the same layout reuses the same buffers."""

from __future__ import annotations

import pytest
import torch

from personagate import Ablate, Add, ChatFormatter, Clamp, Decoding, Direction, PersonagateError, Program, generate
from personagate.static_decode import StaticDecoder

QUESTIONS = ["Hi", "Name three birds.", "Tell me a long story about a dragon"]


def direction(chat, seed):
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(chat.n_layers, chat.hidden_size, generator=g), name=f"d{seed}")


def programs(chat):
    d, e = direction(chat, 1), direction(chat, 2)
    return {
        "none": Program(),
        "add": Program([Add(d, 1.5, 2)]),
        "ablate everywhere": Program([Ablate(d, (0, chat.n_layers))]),
        "add then ablate": Program([Add(d, 2.0, "all"), Ablate(e, (2, 4))]),
        "clamp": Program([Clamp(e, 1.5, (1, 3))]),
    }


@pytest.mark.parametrize("name", ["none", "add", "ablate everywhere", "add then ablate", "clamp"])
def test_static_tokens_equal_the_eager_path(chat, name):
    fmt = ChatFormatter(chat.tokenizer)
    ids = [fmt.encode(q) for q in QUESTIONS]
    program = programs(chat)[name]
    eager = generate(chat, ids, decoding=Decoding(max_new_tokens=8, batch_size=2), program=program, progress=False)
    static = StaticDecoder(chat, max_batch=2, max_len=512).generate(ids, program, max_new_tokens=8)
    assert [c.tokens for c in static] == [c.tokens for c in eager]
    assert [c.index for c in static] == [0, 1, 2]


def test_a_new_program_of_the_same_layout_reuses_the_buffers(qwen):
    fmt = ChatFormatter(qwen.tokenizer)
    ids = [fmt.encode(q) for q in QUESTIONS]
    decoder = StaticDecoder(qwen, max_batch=4, max_len=512)
    first = Program([Add(direction(qwen, 1), 1.5, 2), Ablate(direction(qwen, 2), (2, 4))])
    second = Program([Add(direction(qwen, 3), -2.0, 2), Ablate(direction(qwen, 4), (2, 4))])
    decoder.generate(ids, first, max_new_tokens=4)
    steering = decoder.steering
    pointers = [t.data_ptr() for slot in steering.slots.values() for t in [*slot.units, *slot.values]]
    got = decoder.generate(ids, second, max_new_tokens=6)
    assert decoder.steering is steering  # no new capture
    assert pointers == [t.data_ptr() for slot in steering.slots.values() for t in [*slot.units, *slot.values]]
    eager = generate(qwen, ids, decoding=Decoding(max_new_tokens=6), program=second, progress=False)
    assert [c.tokens for c in got] == [c.tokens for c in eager]
    other = Program([Add(direction(qwen, 3), 1.0, 1)])  # another layout: a new capture
    decoder.generate(ids, other, max_new_tokens=2)
    assert decoder.steering is not steering


def test_programs_the_static_path_cannot_run_say_so(qwen):
    d = direction(qwen, 1)
    decoder = StaticDecoder(qwen, max_batch=1, max_len=256)
    ids = [ChatFormatter(qwen.tokenizer).encode("Hi")]
    with pytest.raises(PersonagateError, match="clamp comes before an add"):
        decoder.generate(ids, Program([Ablate(d, (1, 2)), Add(d, 1.0, 1)]), max_new_tokens=2)
    with pytest.raises(PersonagateError, match="every token"):
        decoder.generate(ids, Program([Add(d, 1.0, 1, scope="prompt")]), max_new_tokens=2)
    with pytest.raises(PersonagateError, match="static cache"):
        decoder.generate(ids, Program(), max_new_tokens=500)
