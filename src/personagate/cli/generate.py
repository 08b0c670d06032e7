"""``personagate generate``: greedy completions under an intervention program."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from personagate.cli import args as common
from personagate.errors import PersonagateError


def add_parser(sub: Any) -> None:
    gen = sub.add_parser("generate", help="greedy completions under an intervention program")
    common.model_flags(gen)
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="an instruction (repeatable)")
    source.add_argument("--prompts", type=Path, help="a .txt/.json/.jsonl/.csv file of instructions")
    source.add_argument(
        "--conversation",
        type=Path,
        help="a .jsonl file of conversations in the messages format, each ending with the user's probe",
    )
    gen.add_argument("--field", default=None, help="field holding the instruction in .json/.jsonl/.csv rows")
    persona = gen.add_mutually_exclusive_group()
    persona.add_argument("--system", default=None, help="system prompt (the persona channel)")
    persona.add_argument("--no-system", action="store_true", help="no persona at all (removes Qwen's default)")
    gen.add_argument("--program", type=Path, help="a TOML intervention program (applied before the op flags)")
    common.op_flags(gen)
    gen.add_argument("--force", action="store_true", help="apply directions made for another model")
    gen.add_argument("--max-new-tokens", type=common.positive_int, default=128)
    gen.add_argument("--batch-size", type=common.positive_int, default=16)
    gen.add_argument(
        "--max-prompt-chars", type=common.positive_int, default=None, help="longest prompt accepted (characters)"
    )
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument(
        "--readout",
        type=Path,
        action="append",
        default=[],
        metavar="DIRECTION",
        help="with --conversation: a direction file whose projection at the last token of every turn is reported "
        "(repeatable)",
    )
    gen.add_argument("--readout-layer", type=int, default=None, help="the layer of --readout (default: the middle)")
    gen.add_argument("--out", type=common.out_path, help="write JSONL here instead of printing")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from personagate.conversations import MAX_CONVERSATION_CHARS, load_conversations
    from personagate.interventions.edits import CONVERSATION_SCOPES
    from personagate.outputs import check_output_file
    from personagate.program_files import load_prompts_or_flags, program_from_args
    from personagate.prompts import MAX_PROMPT_CHARS

    conversations = None
    if args.conversation is not None:
        conversations = load_conversations(args.conversation, max_chars=args.max_prompt_chars or MAX_CONVERSATION_CHARS)
        prompts = [c.probe for c in conversations]
    else:
        if args.readout:
            raise PersonagateError("--readout reads turns: it needs --conversation")
        prompts = load_prompts_or_flags(
            args.prompt, args.prompts, args.field, args.max_prompt_chars or MAX_PROMPT_CHARS
        )
    program = program_from_args(args.program, getattr(args, "ops", None) or [])
    scoped = sorted({op.scope for op in program.ops if getattr(op, "scope", "all") in CONVERSATION_SCOPES})
    if scoped and conversations is None:
        raise PersonagateError(f"scope {scoped[0]!r} covers turns of a conversation; pass --conversation FILE.jsonl")
    if args.readout_layer is not None and not args.readout:
        raise PersonagateError("--readout-layer needs --readout DIRECTION")
    readouts = [_direction(path) for path in args.readout]
    if args.out:
        check_output_file(args.out)
    common.check_model_flags(args, program)
    system = _system(args)
    if conversations is not None:
        _check_context_before_loading(args, conversations, system)
    chat = common.load(args)
    if args.readout_layer is not None and not 0 <= args.readout_layer < chat.n_layers:
        raise PersonagateError(f"--readout-layer {args.readout_layer} is outside the model's {chat.n_layers} layers")
    return _generate(args, chat, program, prompts, conversations, readouts, system)


def _system(args: argparse.Namespace) -> Any:
    from personagate.prompts import MODEL_DEFAULT

    return None if args.no_system else (args.system if args.system is not None else MODEL_DEFAULT)


def _direction(path: Path) -> Any:
    from personagate.directions import Direction

    return Direction.load(path)


def _check_context_before_loading(args: argparse.Namespace, conversations: list[Any], system: Any) -> None:
    """A conversation that cannot fit the model's context is an error before the weights load."""
    from personagate.models.loading import load_tokenizer
    from personagate.prompts import ChatFormatter

    loaded = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    if loaded is None or loaded[1] is None:
        return  # checked once the model is loaded
    tokenizer, limit = loaded
    formatter = ChatFormatter(tokenizer, system)
    for number, conversation in enumerate(conversations, start=1):
        length = len(formatter.encode(conversation))
        if length + args.max_new_tokens > limit:
            raise PersonagateError(
                f"{args.conversation}: conversation {number} has {length:,} tokens; with {args.max_new_tokens} new "
                f"tokens it exceeds the model's context of {limit:,}"
            )


def _generate(
    args: argparse.Namespace,
    chat: Any,
    program: Any,
    prompts: list[str],
    conversations: list[Any] | None,
    readouts: list[Any],
    system: Any,
) -> int:
    from personagate.extraction import turn_projections
    from personagate.generation import Decoding, generate
    from personagate.outputs import write_atomically
    from personagate.prompts import ChatFormatter

    formatter = ChatFormatter(chat.tokenizer, system)
    if len(program):
        print(program.describe(chat.n_layers), file=sys.stderr)
    encoded = [formatter.encode_conversation(c) for c in conversations] if conversations is not None else None
    completions = generate(
        chat,
        [e.ids for e in encoded] if encoded is not None else [formatter.encode(p) for p in prompts],
        decoding=Decoding(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, stop_strings=args.stop),
        program=program,
        progress=not args.quiet,
        force=args.force,
        spans=[e.spans for e in encoded] if encoded is not None else None,
    )
    rows: list[dict[str, Any]] = [
        {
            "index": c.index,
            "prompt": prompts[c.index],
            "completion": c.text,
            "finish": c.finish,
            "n_tokens": len(c.tokens),
        }
        for c in completions
    ]
    if encoded is not None:
        layer = args.readout_layer if args.readout_layer is not None else chat.n_layers // 2
        for row, e in zip(rows, encoded, strict=True):
            row["turns"] = len(e.spans.roles)
        for direction in readouts:
            values = turn_projections(
                chat, encoded, direction, program=program, batch_size=args.batch_size, progress=False
            )
            for row, per_turn in zip(rows, values, strict=True):
                row.setdefault("readout", {})[direction.name] = [round(float(v), 4) for v in per_turn[:, layer]]
    if args.out:
        write_atomically(args.out, lambda f: f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        print(f"wrote {len(rows)} completions to {args.out}", file=sys.stderr)
    elif len(rows) == 1 and not readouts:
        print(rows[0]["completion"])
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0
