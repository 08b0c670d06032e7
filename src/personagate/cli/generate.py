"""``personagate generate``: greedy completions under an intervention program."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from personagate.cli import args as common


def add_parser(sub: Any) -> None:
    gen = sub.add_parser("generate", help="greedy completions under an intervention program")
    common.model_flags(gen)
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="an instruction (repeatable)")
    source.add_argument("--prompts", type=Path, help="a .txt/.json/.jsonl/.csv file of instructions")
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
    gen.add_argument("--out", type=common.out_path, help="write JSONL here instead of printing")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from personagate.generation import Decoding, generate
    from personagate.outputs import check_output_file, write_atomically
    from personagate.program_files import load_prompts_or_flags, program_from_args
    from personagate.prompts import MAX_PROMPT_CHARS, MODEL_DEFAULT, ChatFormatter

    prompts = load_prompts_or_flags(args.prompt, args.prompts, args.field, args.max_prompt_chars or MAX_PROMPT_CHARS)
    program = program_from_args(args.program, getattr(args, "ops", None) or [])
    if args.out:
        check_output_file(args.out)
    common.check_model_flags(args, program)
    chat = common.load(args)
    system = None if args.no_system else (args.system if args.system is not None else MODEL_DEFAULT)
    formatter = ChatFormatter(chat.tokenizer, system)
    if len(program):
        print(program.describe(chat.n_layers), file=sys.stderr)
    completions = generate(
        chat,
        [formatter.encode(p) for p in prompts],
        decoding=Decoding(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, stop_strings=args.stop),
        program=program,
        progress=not args.quiet,
        force=args.force,
    )
    rows = [
        {
            "index": c.index,
            "prompt": prompts[c.index],
            "completion": c.text,
            "finish": c.finish,
            "n_tokens": len(c.tokens),
        }
        for c in completions
    ]
    if args.out:
        write_atomically(args.out, lambda f: f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        print(f"wrote {len(rows)} completions to {args.out}", file=sys.stderr)
    elif len(rows) == 1:
        print(rows[0]["completion"])
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0
