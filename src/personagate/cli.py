"""``personagate`` command line: thin wrappers over the library. User errors print one line, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from personagate.errors import PersonagateError


class _OrderedOps(argparse.Action):
    """Keeps --add and --ablate flags in the order given: a program is ordered."""

    def __call__(self, parser, namespace, values, option_string=None):
        ops = list(getattr(namespace, "ops", None) or [])
        ops.append((self.dest, values))
        namespace.ops = ops


def _model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="default",
        help="'default' (bundled Qwen2.5-Coder-0.5B-Instruct), a Hub id, a local folder or a .gguf file",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
    parser.add_argument("--device-map", default=None, help="'auto' to spread a large model over several GPUs")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code")
    parser.add_argument(
        "--adapter",
        default=None,
        metavar="BLOCKS,ATTN,MLP",
        help="module paths for an architecture personagate does not know, e.g. model.layers,self_attn,mlp",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personagate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="greedy completions under an intervention program")
    _model_flags(gen)
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="an instruction (repeatable)")
    source.add_argument("--prompts", type=Path, help="a .txt/.json/.jsonl/.csv file of instructions")
    gen.add_argument("--field", default=None, help="field holding the instruction in .json/.jsonl/.csv rows")
    persona = gen.add_mutually_exclusive_group()
    persona.add_argument("--system", default=None, help="system prompt (the persona channel)")
    persona.add_argument("--no-system", action="store_true", help="no persona at all (removes Qwen's default)")
    gen.add_argument("--program", type=Path, help="a TOML intervention program (applied before --add/--ablate flags)")
    gen.add_argument("--add", action=_OrderedOps, metavar="FILE,COEFF[,LAYERS[,SCOPE]]", help="add a direction")
    gen.add_argument("--ablate", action=_OrderedOps, metavar="FILE[,WINDOW[,SCOPE]]", help="project a direction out")
    gen.add_argument("--force", action="store_true", help="apply directions made for another model")
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--batch-size", type=int, default=16)
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--out", type=Path, help="write JSONL here instead of printing")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _adapter(text: str | None):
    if text is None:
        return None
    from personagate.models import ArchitectureAdapter

    parts = text.split(",")
    if len(parts) != 3:
        raise PersonagateError(f"--adapter {text!r}: expected BLOCKS,ATTN,MLP, e.g. model.layers,self_attn,mlp")
    return ArchitectureAdapter(blocks=parts[0], attn_out=parts[1], mlp_out=parts[2])


def _load(args: argparse.Namespace):
    from personagate.models import load_model

    return load_model(
        args.model,
        device=args.device,
        dtype=args.dtype,
        device_map=args.device_map,
        trust_remote_code=args.trust_remote_code,
        adapter=_adapter(args.adapter),
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from personagate.generation import generate
    from personagate.interventions import Program, compile_program
    from personagate.program_files import load_prompts_or_flags, program_from_args
    from personagate.prompts import MODEL_DEFAULT, ChatFormatter

    prompts = load_prompts_or_flags(args.prompt, args.prompts, args.field)
    program = program_from_args(args.program, getattr(args, "ops", None) or [])
    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise PersonagateError("--max-new-tokens and --batch-size must be at least 1")
    chat = _load(args)
    compile_program(
        program, chat.n_layers, chat.hidden_size, chat.device, model_hash=chat.config_hash(), force=args.force
    )
    system = None if args.no_system else (args.system if args.system is not None else MODEL_DEFAULT)
    formatter = ChatFormatter(chat.tokenizer, system)
    if len(program):
        print(Program(program.ops).describe(chat.n_layers), file=sys.stderr)
    completions = generate(
        chat,
        [formatter.encode(p) for p in prompts],
        program=program,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        stop_strings=args.stop,
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
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} completions to {args.out}", file=sys.stderr)
    elif len(rows) == 1:
        print(rows[0]["completion"])
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0


COMMANDS = {"generate": cmd_generate}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PersonagateError as exc:
        print(f"personagate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("personagate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
