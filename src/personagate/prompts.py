"""Chat formatting through the tokenizer's own template, with explicit control of the system prompt.

The system prompt is the persona channel: Qwen's template inserts "You are Qwen, ..." when no
system message is given, so "no system message" and "no persona" are different requests here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from personagate import checks
from personagate.conversations import Conversation, EncodedConversation, TurnSpans
from personagate.errors import PersonagateError


class _ModelDefault:
    """Sentinel: send no system message, so the template applies the model's own default persona."""

    def __repr__(self) -> str:
        return "MODEL_DEFAULT"


MODEL_DEFAULT: Final = _ModelDefault()
SystemPrompt = str | None | _ModelDefault
"""A system prompt: text, ``None`` for no persona at all, or ``MODEL_DEFAULT``."""

_PROBES = ("Name a colour.", "Count to three, please")  # two contents that end differently


@dataclass
class ChatFormatter:
    """Renders instructions into prompt token ids for one tokenizer and one system prompt.

    ``system=None`` sends an empty system message when the template supports one (removing a
    default persona such as Qwen's); templates that reject a system role get no system message,
    and a given system text is then prepended to the user message.
    """

    tokenizer: Any
    system: SystemPrompt = MODEL_DEFAULT

    def __post_init__(self) -> None:
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise PersonagateError(
                "this tokenizer has no chat template; personagate studies chat models, load an instruct model"
            )
        self._supports_system = self._template_accepts_system()
        self._preambles: dict[str | None, int] = {}
        self._post_instruction = self._derive_post_instruction_length()

    def messages(self, instruction: str) -> list[dict[str, str]]:
        if isinstance(self.system, _ModelDefault):
            return [{"role": "user", "content": instruction}]
        text = self.system or ""
        if self._supports_system:
            return [{"role": "system", "content": text}, {"role": "user", "content": instruction}]
        content = f"{text}\n\n{instruction}" if text else instruction
        return [{"role": "user", "content": content}]

    def conversation_messages(self, conversation: Conversation) -> list[dict[str, str]]:
        """The template's messages for a conversation: its own system prompt if it has one, else this
        formatter's; for a one-turn conversation, exactly ``messages(instruction)``."""
        system = conversation.system if conversation.system is not None else self.system
        turns = [{"role": m.role, "content": m.content} for m in conversation.turns]
        if isinstance(system, _ModelDefault):
            return turns
        text = system or ""
        if self._supports_system:
            return [{"role": "system", "content": text}, *turns]
        if text:
            turns[0] = {"role": "user", "content": f"{text}\n\n{turns[0]['content']}"}
        return turns

    def render(self, prompt: str | Conversation) -> str:
        """The prompt text, ending where the assistant's reply begins."""
        messages = self.conversation_messages(prompt) if isinstance(prompt, Conversation) else self.messages(prompt)
        return self._render(messages, True)

    def encode(self, prompt: str | Conversation) -> list[int]:
        """Token ids of the rendered prompt; the template itself carries BOS, so none is added."""
        return self._ids(self.render(prompt))

    def encode_conversation(self, conversation: Conversation) -> EncodedConversation:
        """Token ids and where each turn lies in them.

        Each turn's end is the length of the conversation rendered up to that turn, which must be a
        token prefix of the whole: a template that renders earlier turns differently once later
        turns follow (some strip reasoning from past replies) has no per-turn positions, and says so.
        """
        messages = self.conversation_messages(conversation)
        ids = self.encode(conversation)
        offset = len(messages) - len(conversation.turns)  # a system message ahead of the turns
        ends = []
        for turn in range(len(conversation.turns) - 1):
            head = self._ids(self._render(messages[: offset + turn + 1], False))
            if ids[: len(head)] != head:
                raise PersonagateError(
                    "this chat template renders a conversation's earlier turns differently once later turns "
                    "follow; per-turn positions are undefined for it"
                )
            ends.append(len(head))
        ends.append(len(ids))
        starts = [min(self._preamble_length(conversation), ends[0] - 1), *ends[:-1]]
        roles = tuple(m.role for m in conversation.turns)
        return EncodedConversation(ids, TurnSpans(roles, tuple(starts), tuple(ends)))

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _preamble_length(self, conversation: Conversation) -> int:
        """Tokens before the first user message's text: those two first messages that differ share."""
        if conversation.system in self._preambles:
            return self._preambles[conversation.system]
        a, b = (
            self.encode(Conversation.single(first, conversation.system)) for first in (_PROBES[0], "Z" + _PROBES[0])
        )
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        self._preambles[conversation.system] = n
        return n

    @property
    def post_instruction_length(self) -> int:
        """How many tokens follow the user's instruction (end-of-turn and assistant header)."""
        return self._post_instruction

    def _template_accepts_system(self) -> bool:
        try:
            self.tokenizer.apply_chat_template(
                [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                tokenize=False,
                add_generation_prompt=True,
            )
        except Exception:  # jinja templates raise their own error types for an unsupported role
            return False
        return True

    def _derive_post_instruction_length(self) -> int:
        """The common token suffix of two prompts whose instructions differ in their last character."""
        a, b = (self.encode(p) for p in _PROBES)
        n = 0
        while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
            n += 1
        if n == 0:
            raise PersonagateError("could not find the post-instruction tokens of this chat template")
        return n


# The longest prompt accepted, in characters: a chat prompt is a few hundred; a multi-megabyte line
# is a wrong file, and tokenising and running it would take minutes before failing.
MAX_PROMPT_CHARS = 20_000


def check_prompt_lengths(prompts: list[str], where: str, max_chars: int = MAX_PROMPT_CHARS) -> list[str]:
    for index, prompt in enumerate(prompts):
        if len(prompt) > max_chars:
            raise PersonagateError(
                f"{where}: prompt {index} has {len(prompt):,} characters, over the limit of {max_chars:,}; "
                "shorten it or raise the limit (--max-prompt-chars, or prompts.max_chars in a spec)"
            )
        if not prompt.strip():
            raise PersonagateError(f"{where}: prompt {index} is empty")
    return prompts


def load_prompts(path: str | Path, field: str | None = None, *, max_chars: int = MAX_PROMPT_CHARS) -> list[str]:
    """Prompts from a file: ``.txt`` (one per line), ``.json`` (list of strings or objects), ``.jsonl``,
    or ``.csv``; objects are read at ``field`` or the first of instruction/prompt/goal/text."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".txt", ".json", ".jsonl", ".csv"):
        if not p.is_file():
            raise PersonagateError(f"no such prompt file: {path}")
        raise PersonagateError(f"unknown prompt file type {suffix!r}; use .txt, .json, .jsonl or .csv")
    text = checks.read_text(p, "prompt")
    try:
        if suffix == ".txt":
            rows: list[Any] = [line for line in text.splitlines() if line.strip()]
        elif suffix == ".json":
            rows = json.loads(text)
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        rows = checks.nesting(rows, str(path))
    except (ValueError, csv.Error) as exc:
        raise PersonagateError(f"could not parse {path}: {exc}") from None
    except RecursionError:
        raise PersonagateError(f"{path} nests lists or objects too deeply to read") from None
    if not isinstance(rows, list):
        raise PersonagateError(f"{path} must hold a list of prompts")
    return check_prompt_lengths([_prompt_text(row, field, path) for row in rows], str(path), max_chars)


def _prompt_text(row: Any, field: str | None, path: str | Path) -> str:
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        keys: Sequence[str] = [field] if field else ("instruction", "prompt", "goal", "text")
        for key in keys:
            if key in row and isinstance(row[key], str):
                return row[key]
        raise PersonagateError(f"{path}: a row has none of the fields {', '.join(keys)}; pass --field NAME")
    raise PersonagateError(f"{path}: a row is a {type(row).__name__}, expected text or an object")


@dataclass
class PaddedBatch:
    """Left-padded token ids with the mask and the position ids that make padding invisible."""

    input_ids: Any  # torch.LongTensor [B, T]
    attention_mask: Any  # torch.LongTensor [B, T]
    position_ids: Any  # torch.LongTensor [B, T]
    pad_lengths: list[int]


def left_pad(token_lists: Sequence[Sequence[int]], pad_id: int, device: Any = "cpu") -> PaddedBatch:
    """Left-pad so every row's last prompt token sits at index ``T-1``; positions count real tokens only."""
    import torch

    if not token_lists or any(len(t) == 0 for t in token_lists):
        raise PersonagateError("every prompt must have at least one token")
    width = max(len(t) for t in token_lists)
    ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    pads = []
    for row, tokens in enumerate(token_lists):
        pad = width - len(tokens)
        ids[row, pad:] = torch.tensor(list(tokens), dtype=torch.long)
        mask[row, pad:] = 1
        pads.append(pad)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return PaddedBatch(ids.to(device), mask.to(device), positions.to(device), pads)


def length_sorted_batches(token_lists: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding, same results)."""
    if batch_size < 1:
        raise PersonagateError(f"batch size must be at least 1, got {batch_size}")
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


BUILTIN_PREFIX = "builtin:"


# Built-in sets in their own files (data/prompts/, with ATTRIBUTION.md): name -> (file, text key).
BUILTIN_FILES = {
    "harmful-public": ("prompts/harmful.json", "prompt"),  # AdvBench, HarmBench, JailbreakBench, StrongREJECT (MIT)
    "harmless-large": ("prompts/harmless.json", "prompt"),  # written for personagate
    "safe-xstest": ("prompts/safe.json", "prompt"),  # XSTest's safe prompts (CC BY 4.0)
    "neutral": ("prompts/neutral.json", "text"),  # neutral passages for the coherence guard
    "strongreject": ("prompts/strongreject.json", "prompt"),  # all 313 StrongREJECT prompts (MIT): the paper's test
}


def builtin_prompts(name: str) -> list[str]:
    """Prompt sets shipped in the package: our small ``harmful``, ``harmless``, ``safe`` sets (protocol
    v1) and the larger files of ``BUILTIN_FILES`` (see ``data/prompts/ATTRIBUTION.md``)."""
    from importlib import resources

    data_dir = resources.files("personagate").joinpath("data")
    if name in BUILTIN_FILES:
        path, key = BUILTIN_FILES[name]
        return [item[key] for item in json.loads(data_dir.joinpath(path).read_text())["items"]]
    data = json.loads(data_dir.joinpath("prompts.json").read_text())
    if name not in data or name == "about":
        sets = ", ".join([*(k for k in data if k != "about"), *BUILTIN_FILES])
        raise PersonagateError(f"no built-in prompt set {name!r}; available: {sets}")
    return list(data[name])


def resolve_prompt_source(
    source: str, base: Path | None = None, field: str | None = None, max_chars: int = MAX_PROMPT_CHARS
) -> list[str]:
    """``builtin:NAME`` or a prompt file path (relative paths resolve against ``base``)."""
    if source.startswith(BUILTIN_PREFIX):
        return builtin_prompts(source[len(BUILTIN_PREFIX) :])
    path = Path(source).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return load_prompts(path, field, max_chars=max_chars)


def load_xstest_safe(path: Path) -> list[str]:
    """XSTest's safe prompts (rows whose ``type`` does not start with ``contrast_``)."""

    text = checks.read_text(Path(path), "XSTest")
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise PersonagateError(f"could not parse {path}: {exc}") from None
    if not rows or "prompt" not in rows[0] or "type" not in rows[0]:
        raise PersonagateError(f"{path} lacks XSTest's 'prompt' and 'type' columns")
    return [r["prompt"] for r in rows if not r["type"].startswith("contrast")]
