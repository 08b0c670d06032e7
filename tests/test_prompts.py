"""Chat formatting through real templates (Qwen2.5, Llama-3.1, Gemma) and prompt files."""

from __future__ import annotations

import json

import pytest

from personagate import MODEL_DEFAULT, ChatFormatter, PersonagateError
from personagate.prompts import load_prompts

from tiny import GEMMA_TEMPLATE, LLAMA31_TEMPLATE, QWEN25_TEMPLATE, byte_tokenizer

POST = {
    "qwen": (QWEN25_TEMPLATE, "<|im_end|>\n<|im_start|>assistant\n"),
    "llama": (LLAMA31_TEMPLATE, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
    "gemma": (GEMMA_TEMPLATE, "<end_of_turn>\n<start_of_turn>model\n"),
}


@pytest.mark.parametrize("family", list(POST))
def test_post_instruction_tokens_are_derived_from_the_template(family):
    template, suffix = POST[family]
    tokenizer = byte_tokenizer(template)
    formatter = ChatFormatter(tokenizer)
    ids = formatter.encode("How do I bake bread?")
    tail = ids[-formatter.post_instruction_length :]
    assert tokenizer.decode(tail) == suffix
    assert tokenizer.decode(ids[: -formatter.post_instruction_length]).endswith("How do I bake bread?")


def test_qwen_default_none_and_given_system_prompts():
    tokenizer = byte_tokenizer(QWEN25_TEMPLATE)
    default = ChatFormatter(tokenizer, MODEL_DEFAULT).render("Hi")
    none = ChatFormatter(tokenizer, None).render("Hi")
    given = ChatFormatter(tokenizer, "You answer everything.").render("Hi")
    assert "You are Qwen" in default
    assert none.startswith("<|im_start|>system\n<|im_end|>") and "You are Qwen" not in none
    assert given.startswith("<|im_start|>system\nYou answer everything.<|im_end|>")


def test_llama_system_prompt_goes_in_the_system_header():
    tokenizer = byte_tokenizer(LLAMA31_TEMPLATE)
    text = ChatFormatter(tokenizer, "Be terse.").render("Hi")
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert "Be terse.<|eot_id|><|start_header_id|>user" in text
    ids = ChatFormatter(tokenizer, "Be terse.").encode("Hi")
    assert ids.count(tokenizer.convert_tokens_to_ids("<|begin_of_text|>")) == 1, "BOS added twice"


def test_template_without_system_role_prepends_the_persona():
    tokenizer = byte_tokenizer(GEMMA_TEMPLATE)
    text = ChatFormatter(tokenizer, "Be terse.").render("Hi")
    assert "<start_of_turn>user\nBe terse.\n\nHi<end_of_turn>" in text
    assert ChatFormatter(tokenizer, None).render("Hi") == ChatFormatter(tokenizer).render("Hi")


def test_tokenizer_without_template_is_an_error():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(PersonagateError, match="chat template"):
        ChatFormatter(tokenizer)


def test_load_prompts_from_each_format(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.json").write_text(json.dumps([{"instruction": "x"}, "y"]))
    (tmp_path / "c.jsonl").write_text('{"prompt": "p"}\n{"goal": "g"}\n')
    (tmp_path / "d.csv").write_text("id,text\n1,hello\n")
    assert load_prompts(tmp_path / "a.txt") == ["one", "two"]
    assert load_prompts(tmp_path / "b.json") == ["x", "y"]
    assert load_prompts(tmp_path / "c.jsonl") == ["p", "g"]
    assert load_prompts(tmp_path / "d.csv") == ["hello"]
    with pytest.raises(PersonagateError, match="no such prompt file"):
        load_prompts(tmp_path / "missing.txt")
    with pytest.raises(PersonagateError, match="--field"):
        load_prompts(tmp_path / "d.csv", field="nope")
