"""Tiny random-initialised models and a real byte-level tokenizer, built in the test, no download."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from personagate.models import ChatModel

# The non-tool path of the Qwen2.5 instruct template (it inserts a default system persona).
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# The non-tool path of the Llama-3.1 instruct template (system header always present, content trimmed).
LLAMA31_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# Gemma-2 style: no system role; the template raises on one.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{%- endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
]
VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)


def byte_tokenizer(template: str = QWEN25_TEMPLATE) -> PreTrainedTokenizerFast:
    """A real fast tokenizer: byte-level, no merges, one id per byte, plus chat special tokens."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    bos = {"QWEN": None, "LLAMA": "<|begin_of_text|>", "GEMMA": "<bos>"}
    family = "LLAMA" if "start_header_id" in template else "GEMMA" if "start_of_turn" in template else "QWEN"
    eos = {"QWEN": "<|im_end|>", "LLAMA": "<|eot_id|>", "GEMMA": "<end_of_turn>"}[family]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=eos,
        pad_token="<|endoftext|>",
        bos_token=bos[family],
        additional_special_tokens=SPECIAL_TOKENS,
    )
    tokenizer.chat_template = template
    return tokenizer


_COMMON = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)

CONFIGS = {
    "qwen2": lambda **k: Qwen2Config(**{**_COMMON, **k}, tie_word_embeddings=False),
    "llama": lambda **k: LlamaConfig(**{**_COMMON, **k}),
    "gemma2": lambda **k: Gemma2Config(**{**_COMMON, **k}, head_dim=16, sliding_window=64),
    "mistral": lambda **k: MistralConfig(**{**_COMMON, **k}, sliding_window=None),
    "phi3": lambda **k: Phi3Config(**{**_COMMON, **k}, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "qwen3": lambda **k: Qwen3Config(**{**_COMMON, **k}, head_dim=16),
}
TEMPLATES = {
    "qwen2": QWEN25_TEMPLATE,
    "llama": LLAMA31_TEMPLATE,
    "gemma2": GEMMA_TEMPLATE,
    "mistral": LLAMA31_TEMPLATE,
    "phi3": QWEN25_TEMPLATE,
    "qwen3": QWEN25_TEMPLATE,
}


def tiny_model(arch: str = "qwen2", seed: int = 0, layers: int | None = None) -> ChatModel:
    """A random-initialised model of ``arch``'s shape with 4 blocks (or ``layers``) of width 64, fp32, eval."""
    config = CONFIGS[arch](**({"num_hidden_layers": layers} if layers is not None else {}))
    config.architectures = [type(config).__name__.replace("Config", "ForCausalLM")]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _scale_up_weights(model)
    model.eval()
    with torch.inference_mode():  # let transformers install its lazy hidden-state recorders now
        model(input_ids=torch.tensor([[1, 2]]), output_hidden_states=True)
    return ChatModel.wrap(model, byte_tokenizer(TEMPLATES[arch]))


def _scale_up_weights(model: torch.nn.Module) -> None:
    """HF initialises with std 0.02, which makes a 4-block model nearly the identity; widen it so
    interventions visibly change what comes out."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.15)
            elif "norm" in name and param.dim() == 1:
                param.uniform_(0.5, 1.5) if "gemma" not in type(model).__name__.lower() else param.uniform_(-0.3, 0.3)
