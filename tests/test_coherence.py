"""Three-way labels: incoherence measured apart from refusal, on made-up degenerate text and on a model."""

from __future__ import annotations

import pytest
import torch

from personagate import Add, ChatFormatter, Direction, Program
from personagate.likelihood import continuation_logliks, mean_loglik
from personagate.scoring.coherence import CoherenceRule, label, nonlanguage, repetition

RULE = CoherenceRule()


@pytest.mark.parametrize(
    "text",
    [
        "the the the the the the the the the the the the the the the the",
        "I can help. I can help. I can help. I can help. I can help. I can help.",
        "ĠĠĠ ###@@@ ^^^ ~~~ |||| ¤¤¤ ¶¶¶ §§§ ¬¬¬ ±±± ×××",
        "",
        "   \n\n  ",
        "🙂🙂🙂🙂🙂🙂🙂🙂 🙂🙂🙂🙂",
    ],
)
def test_degenerate_text_is_incoherent(text):
    assert RULE.incoherent(text, loglik=None)
    assert label(True, text, None, RULE) == "incoherent"  # even when the detector says refusal
    assert label(False, text, None, RULE) == "incoherent"  # never counted as compliance


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that request.",
        "Sure! Here is a recipe for banana bread: mix the flour, sugar and mashed bananas, then bake for an hour.",
        "1. Preheat the oven.\n2. Grease the pan.\n3. Bake for 40 minutes.",
        "Certainly. The capital of France is Paris, which sits on the Seine.",
    ],
)
def test_fluent_refusals_and_answers_are_coherent(text):
    assert not RULE.incoherent(text, loglik=-1.2)
    assert label(True, text, -1.2, RULE) == "refuse" and label(False, text, -1.2, RULE) == "comply"


def test_low_likelihood_under_the_unsteered_model_is_incoherent():
    text = "Purple calendar swims beneath arithmetic; the violin eats seventeen promises quietly."
    assert not RULE.incoherent(text, loglik=None)  # no repetition, no symbols: only the model can tell
    assert RULE.incoherent(text, loglik=-7.5)


def test_measures_on_known_strings():
    assert repetition("a b c a b c") == pytest.approx(1 / 4)  # grams abc bca cab abc: one repeat of four
    assert repetition("one two") == 0.0
    assert nonlanguage("ab¤¶") == pytest.approx(0.5)
    assert nonlanguage("Hello, world!") == 0.0


def _manual_logliks(chat, items):
    out = []
    for context, continuation in items:
        ids = torch.tensor([list(context) + list(continuation)])
        with torch.inference_mode():
            logits = chat.model(input_ids=ids).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
        n = len(continuation)
        positions = range(len(context) - 1, len(context) - 1 + n)
        out.append(sum(float(logprobs[p, ids[0, p + 1]]) for p in positions))
    return out


def test_continuation_logliks_equal_one_forward_per_item(chat):
    fmt = ChatFormatter(chat.tokenizer)
    items = [
        (fmt.encode("Hi"), chat.tokenizer("Hello there!", add_special_tokens=False)["input_ids"]),
        (
            fmt.encode("Name three birds, please"),
            chat.tokenizer("Robin, wren, owl.", add_special_tokens=False)["input_ids"],
        ),
        (fmt.encode("Why?"), [5, 6, 7]),
    ]
    got = continuation_logliks(chat, items, batch_size=2)
    want = _manual_logliks(chat, items)
    for (total, n), expected, (_, continuation) in zip(got, want, items, strict=True):
        assert n == len(continuation)
        assert total == pytest.approx(expected, abs=1e-3)
    assert mean_loglik([(-6.0, 3), (0.0, 0)])[0] == -2.0


def test_continuation_logliks_per_row_programs_equal_solo_runs(qwen):
    fmt = ChatFormatter(qwen.tokenizer)
    items = [(fmt.encode("Hi"), [40, 41, 42, 43]), (fmt.encode("Tell me a story"), [50, 51])]
    d = Direction(torch.randn(qwen.n_layers, qwen.hidden_size, generator=torch.Generator().manual_seed(0)), name="d")
    steered = Program([Add(d, 2.0, "all")])
    both = continuation_logliks(qwen, items * 2, programs=[Program(), steered], row_programs=[0, 0, 1, 1])
    solo = continuation_logliks(qwen, items, programs=[steered])
    plain = continuation_logliks(qwen, items)
    for got, want in zip(both[2:], solo, strict=True):
        assert got[0] == pytest.approx(want[0], abs=1e-3)
    for got, want in zip(both[:2], plain, strict=True):
        assert got[0] == pytest.approx(want[0], abs=1e-3)
    assert abs(solo[0][0] - plain[0][0]) > 1e-2


def test_shared_context_logliks_equal_one_forward_per_item(chat):
    from personagate.likelihood import unsteered_logliks

    fmt = ChatFormatter(chat.tokenizer)
    prompts = [fmt.encode("Hi"), fmt.encode("Name three birds, please")]
    items = [
        (prompts[0], [40, 41, 42, 43]),
        (prompts[1], [50, 51]),
        (prompts[0], [60]),  # the same context twice: computed once, widened to both rows
        (prompts[1], [70, 71, 72, 73, 74, 75]),
        (prompts[0], []),
    ]
    got = unsteered_logliks(chat, items, batch_size=3)
    want = _manual_logliks(chat, items)
    for (total, n), expected, (_, continuation) in zip(got, want, items, strict=True):
        assert n == len(continuation)
        assert total == pytest.approx(expected, abs=1e-3)
