"""Conversations as prompts: a system prompt, then user and assistant turns in turn, ending with the
user's probe. A single instruction is the one-turn case.

Files use the OpenAI / Hugging Face ``messages`` format, one conversation per JSONL line::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}, ...]}

Every malformed conversation is one error naming the file, the line and what is wrong, raised
before a model is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from personagate import checks
from personagate.errors import PersonagateError

Speaker = Literal["user", "assistant"]
MESSAGE_FIELDS = frozenset({"role", "content"})
LINE_FIELDS = frozenset({"messages", "id"})

# The longest conversation accepted, in characters (a many-shot history of 8 exchanges is a few
# thousand); a longer one is a wrong file, or one to pass with a raised limit.
MAX_CONVERSATION_CHARS = 200_000


@dataclass(frozen=True)
class Message:
    role: Speaker
    content: str


@dataclass(frozen=True)
class Conversation:
    """Turns alternate user / assistant, starting and ending with the user (the probe).

    ``system`` is the conversation's own system prompt; ``None`` leaves the choice to the chat
    formatter (its persona channel), so a study can frame one conversation with several personas.
    """

    turns: tuple[Message, ...]
    system: str | None = None

    def __post_init__(self) -> None:
        problem = _turn_problem(self.turns)
        if problem:
            raise PersonagateError(f"conversation: {problem}")
        if self.system is not None and not isinstance(self.system, str):
            raise PersonagateError("conversation: the system prompt must be text")

    @classmethod
    def single(cls, instruction: str, system: str | None = None) -> Conversation:
        return cls((Message("user", instruction),), system)

    @classmethod
    def of(cls, history: Sequence[tuple[str, str]], probe: str, system: str | None = None) -> Conversation:
        """``history``: (user, assistant) exchanges before the probe."""
        turns = [Message(r, text) for user, reply in history for r, text in (("user", user), ("assistant", reply))]
        return cls((*turns, Message("user", probe)), system)

    @property
    def probe(self) -> str:
        return self.turns[-1].content

    @property
    def exchanges(self) -> int:
        """Completed user/assistant exchanges before the probe."""
        return len(self.turns) // 2

    def history(self) -> tuple[Message, ...]:
        return self.turns[:-1]

    def with_probe(self, probe: str) -> Conversation:
        return Conversation((*self.turns[:-1], Message("user", probe)), self.system)

    def characters(self) -> int:
        return sum(len(m.content) for m in self.turns) + len(self.system or "")

    def to_messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return head + [{"role": m.role, "content": m.content} for m in self.turns]


def _turn_problem(turns: Sequence[Message], first: int = 1) -> str | None:
    """What is wrong with the turns, numbering messages from ``first`` (2 after a system message)."""
    if not turns:
        return "no messages; a conversation ends with the user's message"
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        number = index + first
        if message.role != expected:
            return f"message {number} is from the {message.role}, expected the {expected} (user first, then in turn)"
        if not isinstance(message.content, str) or not message.content.strip():
            return f"message {number} ({message.role}) is empty"
    if turns[-1].role != "user":
        return "the last message is the assistant's; a conversation ends with the user's probe"
    return None


def from_messages(messages: Any, where: str = "conversation") -> Conversation:
    """A conversation from a ``messages`` list (an optional first system message, then the turns)."""
    if not isinstance(messages, list) or not messages:
        raise PersonagateError(f"{where}: 'messages' must be a non-empty list")
    system: str | None = None
    turns: list[Message] = []
    for index, item in enumerate(messages):
        if not isinstance(item, Mapping):
            raise PersonagateError(f"{where}: message {index + 1} is a {type(item).__name__}, expected an object")
        unknown = sorted(set(item) - MESSAGE_FIELDS)
        if unknown:
            raise PersonagateError(f"{where}: message {index + 1} has unknown field(s) {', '.join(map(repr, unknown))}")
        role, content = item.get("role"), item.get("content")
        if not isinstance(content, str):
            raise PersonagateError(f"{where}: message {index + 1} has no text 'content'")
        if role == "system":
            if index != 0:
                raise PersonagateError(f"{where}: message {index + 1} is a system message; only the first may be")
            system = content
            continue
        if role not in ("user", "assistant"):
            raise PersonagateError(f"{where}: message {index + 1} has role {role!r}; expected user or assistant")
        turns.append(Message(role, content))
    problem = _turn_problem(turns, 2 if system is not None else 1)
    if problem:
        raise PersonagateError(f"{where}: {problem}")
    return Conversation(tuple(turns), system)


def parse_conversations(
    lines: Iterable[str], where: str, *, max_chars: int = MAX_CONVERSATION_CHARS
) -> list[Conversation]:
    """Conversations from JSONL text, one ``{"messages": [...]}`` object per non-blank line."""
    out: list[Conversation] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        at = f"{where}:{number}"
        try:
            row = checks.nesting(json.loads(line), at)
        except ValueError as exc:
            raise PersonagateError(f"{at}: not JSON ({exc})") from None
        except RecursionError:
            raise PersonagateError(f"{at}: nests lists or objects too deeply to read") from None
        if not isinstance(row, dict) or "messages" not in row:
            raise PersonagateError(f'{at}: expected an object {{"messages": [...]}}')
        unknown = sorted(set(row) - LINE_FIELDS)
        if unknown:
            raise PersonagateError(f"{at}: unknown field(s) {', '.join(map(repr, unknown))}; expected 'messages'")
        conversation = from_messages(row["messages"], at)
        if conversation.characters() > max_chars:
            raise PersonagateError(
                f"{at}: the conversation has {conversation.characters():,} characters, over the limit of {max_chars:,}"
            )
        out.append(conversation)
    if not out:
        raise PersonagateError(f"{where}: no conversations in the file")
    return out


def load_conversations(path: str | Path, *, max_chars: int = MAX_CONVERSATION_CHARS) -> list[Conversation]:
    """Conversations from a ``.jsonl`` file in the ``messages`` format."""
    p = Path(path)
    if p.suffix.lower() != ".jsonl":
        raise PersonagateError(f"{path}: conversations are read from .jsonl files (one messages object per line)")
    return parse_conversations(checks.read_text(p, "conversation").splitlines(), str(path), max_chars=max_chars)


@dataclass(frozen=True)
class TurnSpans:
    """Where each turn of an encoded conversation lies, in token indices of its prompt.

    Turn ``i`` covers ``[starts[i], ends[i])``: from the end of the previous turn (so its own
    header tokens belong to it) to its end-of-turn tokens; the first turn starts after the
    preamble every prompt shares (BOS, system prompt, the user header). The probe turn ends where
    the reply begins (its assistant header included), so ``ends[-1]`` is the prompt length.
    """

    roles: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @property
    def probe_start(self) -> int:
        return self.starts[-1]

    @property
    def last_tokens(self) -> tuple[int, ...]:
        """The last token of every turn (of the probe: the last prompt token, where the reply is predicted)."""
        return tuple(end - 1 for end in self.ends)

    def ranges(self, scope: str) -> list[tuple[int, int]]:
        """The prompt's token ranges a conversation scope covers (generated tokens are always covered)."""
        if scope == "probe":
            return [(self.starts[-1], self.ends[-1])]
        if scope == "assistant":
            turns = zip(self.roles, self.starts, self.ends, strict=True)
            return [(start, end) for role, start, end in turns if role == "assistant"]
        raise PersonagateError(f"unknown conversation scope {scope!r}; use probe or assistant")


@dataclass(frozen=True)
class EncodedConversation:
    ids: list[int]
    spans: TurnSpans
