"""``SteeredModelAPI``: Inspect's model interface over personagate's steered greedy generation.

Model arguments (``-M key=value``): ``program`` (a program file, TOML: the steering every reply is
generated under; none: the model's own forward pass), ``device``, ``dtype``. Every output carries the
program's description and identity in its metadata, so the eval log says what was steered and how.
Replies are generated one at a time (the hooks are the model's state), greedily, up to the task's
``max_tokens`` (256 when it sets none).
"""

from __future__ import annotations

import asyncio
from typing import Any

from inspect_ai.model import ChatMessage, GenerateConfig, ModelAPI, ModelOutput
from inspect_ai.tool import ToolChoice, ToolInfo

from personagate.generation import Decoding, generate
from personagate.interventions import Program
from personagate.models.loading import load_model
from personagate.program_files import load_program

DEFAULT_MAX_TOKENS = 256


class SteeredModelAPI(ModelAPI):
    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_vars: list[str] | None = None,
        config: GenerateConfig | None = None,
        program: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, api_key_vars or [], config or GenerateConfig())
        self.chat = load_model(model_name, device=device, dtype=dtype)
        self.program = load_program(program) if program else Program()
        self.description = self.program.describe(self.chat.n_layers)
        self.program_file = program or ""
        self._lock = asyncio.Lock()

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        messages = [{"role": m.role, "content": m.text} for m in input if m.role in ("system", "user", "assistant")]
        ids = self.chat.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        decoding = Decoding(max_new_tokens=config.max_tokens or DEFAULT_MAX_TOKENS, batch_size=1)
        async with self._lock:  # one reply at a time: the steering hooks are the model's state
            replies = await asyncio.to_thread(
                generate, self.chat, [ids], program=self.program, decoding=decoding, progress=False
            )
        reply = replies[0]
        output = ModelOutput.from_content(
            model=self.model_name,
            content=reply.text,
            stop_reason="max_tokens" if reply.finish == "length" else "stop",
        )
        output.metadata = {
            "personagate_program": self.description,
            "personagate_program_identity": self.program.identity(),
            "personagate_program_file": self.program_file,
        }
        return output

    def max_tokens(self) -> int | None:
        return DEFAULT_MAX_TOKENS
