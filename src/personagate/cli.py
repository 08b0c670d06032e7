"""``personagate`` command line: thin wrappers over the library. User errors print one line, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from personagate.errors import PersonagateError


class _OrderedOps(argparse.Action):
    """Keeps the op flags (--add, --clamp, --ablate, ...) in the order given: a program is ordered."""

    def __call__(self, parser, namespace, values, option_string=None):
        ops = list(getattr(namespace, "ops", None) or [])
        ops.append((self.dest, values))
        namespace.ops = ops


def _op_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per op kind of the vocabulary, in its flag form (``personagate.interventions.OPS``)."""
    from personagate.interventions import OPS

    for kind, op in OPS.items():
        parser.add_argument(f"--{kind}", action=_OrderedOps, metavar=op.flag_metavar(), help=op.flag_help)


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
    gen.add_argument("--program", type=Path, help="a TOML intervention program (applied before the op flags)")
    _op_flags(gen)
    gen.add_argument("--force", action="store_true", help="apply directions made for another model")
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--batch-size", type=int, default=16)
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--out", type=Path, help="write JSONL here instead of printing")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")

    directions = sub.add_parser("directions", help="make refusal, persona and random-control vector files")
    kinds = directions.add_subparsers(dest="kind", required=True)
    ref = kinds.add_parser("refusal", help="difference in means with Arditi et al. selection")
    _model_flags(ref)
    for name in ("harmful-train", "harmless-train", "harmful-val", "harmless-val"):
        ref.add_argument(f"--{name}", type=Path, required=True, help="prompt file (.txt/.json/.jsonl/.csv)")
    ref.add_argument("--n-train", type=int, default=128)
    ref.add_argument("--n-val", type=int, default=32)
    ref.add_argument("--positions", type=int, default=None, help="post-instruction positions to try (default all)")
    ref.add_argument("--layer-stride", type=int, default=1)
    ref.add_argument("--max-kl", type=float, default=0.1)
    ref.add_argument("--min-induce", type=float, default=0.0)
    ref.add_argument("--prune-last", type=float, default=0.2, help="fraction of last layers never chosen")
    ref.add_argument("--batch-size", type=int, default=16)
    ref.add_argument("--out", type=Path, required=True, help="folder for refusal.safetensors and the candidate table")
    per = kinds.add_parser("persona", help="compliant system prompts vs the default (or cautious) persona")
    _model_flags(per)
    per.add_argument("--personas", type=Path, default=None, help="JSON with compliant/contrast/questions lists")
    per.add_argument("--against", choices=["default", "contrast"], default="default")
    per.add_argument("--positions", choices=["last", "post_instruction", "response"], default="last")
    per.add_argument("--batch-size", type=int, default=16)
    per.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    rnd = kinds.add_parser("random", help="seeded Haar-random controls, norm-matched to a direction")
    rnd.add_argument("--like", type=Path, required=True, help="the direction to control for")
    rnd.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2,3,4")
    rnd.add_argument("--orthogonal-to", type=Path, action="append", default=[], help="direction file (repeatable)")
    rnd.add_argument("--out", type=Path, required=True, help="output folder")
    imp = kinds.add_parser("import", help="another tool's vector file as a direction file (layers converted)")
    imp.add_argument(
        "source", type=Path, help="refusal_direction folder or direction.pt, persona_vectors .pt, or .gguf"
    )
    imp.add_argument("--format", required=True, choices=["refusal_direction", "persona_vectors", "llamacpp"])
    imp.add_argument("--n-layers", type=int, default=None, help="llamacpp: the model's number of blocks")
    imp.add_argument("--model", default=None, help="the model the vectors were made for (recorded)")
    imp.add_argument("--name", default=None, help="the direction's name (default: refusal / persona / file stem)")
    imp.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    exp = kinds.add_parser("export", help="a direction file as another tool's vector file")
    exp.add_argument("direction", type=Path, help="a personagate .safetensors direction (one vector per layer)")
    exp.add_argument("--format", choices=["llamacpp"], default="llamacpp")
    exp.add_argument("--coeff", type=float, default=1.0, help="scale written into the control vector")
    exp.add_argument("--model-hint", default="llama", help="llama.cpp's controlvector.model_hint")
    exp.add_argument("--out", type=Path, required=True, help="output .gguf file")

    for name, helptext in (
        ("reproduce", "run the paper's study (the built-in spec) on a model"),
        ("run", "run a study spec (TOML); copy the built-in one with `personagate spec`"),
    ):
        study = sub.add_parser(name, help=helptext)
        if name == "run":
            study.add_argument("spec", type=Path, help="the study spec (TOML)")
        study.add_argument("--model", default=None, help="overrides [model] id of the spec")
        study.add_argument("--quick", action="store_true", help="fewer prompts, first-token screening, coarse grid")
        study.add_argument("--out", type=Path, default=None, help="run directory (default runs/<model>-<profile>)")
        study.add_argument("--quiet", action="store_true", help="no progress bars")
    rep = sub.add_parser("report", help="rebuild summary.csv and report.html from a run directory")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--markdown", action="store_true", help="also print the summary as a Markdown table")
    rep.add_argument("--plots", type=Path, default=None, help="also write the plots as PNG files here")
    sub.add_parser("spec", help="print the built-in study spec (TOML) to copy and edit")

    score = sub.add_parser("score", help="add a 0/1 'refusal' column to a CSV with the phrase detector")
    score.add_argument("csv", type=Path)
    score.add_argument("--text-column", required=True)
    score.add_argument("--out", type=Path, required=True)
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
    from personagate.program_files import load_prompts_or_flags, program_from_args
    from personagate.prompts import MODEL_DEFAULT, ChatFormatter

    prompts = load_prompts_or_flags(args.prompt, args.prompts, args.field)
    program = program_from_args(args.program, getattr(args, "ops", None) or [])
    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise PersonagateError("--max-new-tokens and --batch-size must be at least 1")
    chat = _load(args)
    system = None if args.no_system else (args.system if args.system is not None else MODEL_DEFAULT)
    formatter = ChatFormatter(chat.tokenizer, system)
    if len(program):
        print(program.describe(chat.n_layers), file=sys.stderr)
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


def cmd_directions(args: argparse.Namespace) -> int:
    from personagate.directions import Direction, cosine_by_layer, random_direction

    if args.kind in ("import", "export"):
        return _convert_direction(args)

    if args.kind == "random":
        like = Direction.load(args.like)
        others = tuple(Direction.load(p) for p in args.orthogonal_to)
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise PersonagateError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
        n = like.vectors.shape[0] if like.per_layer else 1
        for seed in seeds:
            control = random_direction(like, seed, orthogonal_to=others)
            path = control.save(args.out / f"random-{seed}.safetensors")
            cos = cosine_by_layer(control, like, n).abs().max()
            print(f"{path}  seed={seed}  max|cos(random, {like.name})|={cos:.3f}")
        return 0

    from personagate.extraction import PersonaSet, RefusalSelection, persona_direction, refusal_direction
    from personagate.prompts import load_prompts

    if args.kind == "refusal":
        sets = [
            load_prompts(getattr(args, n)) for n in ("harmful_train", "harmless_train", "harmful_val", "harmless_val")
        ]
        selection = RefusalSelection(
            max_kl=args.max_kl,
            min_induce=args.min_induce,
            prune_last_fraction=args.prune_last,
            positions=args.positions,
            layer_stride=args.layer_stride,
            n_val=args.n_val,
        )
        chat = _load(args)
        found = refusal_direction(
            chat,
            sets[0][: args.n_train],
            sets[1][: args.n_train],
            sets[2],
            sets[3],
            selection=selection,
            batch_size=args.batch_size,
        )
        found.direction.save(args.out / "refusal.safetensors")
        found.save_candidates(args.out / "refusal_candidates.csv")
        print(f"{'pos':>4} {'layer':>5} {'bypass':>8} {'induce':>8} {'kl':>7}  kept")
        for c in found.candidates:
            print(
                f"{c['position']:>4} {c['layer']:>5} {c['bypass']:>8.3f} {c['induce']:>8.3f} {c['kl']:>7.3f}  "
                f"{'yes' if c['kept'] else c['reason']}"
            )
        meta = found.direction.meta
        print(
            f"chosen: position {meta['position']}, layer {meta['layer']}; refusal tokens "
            f"{list(found.refusal_tokens.tokens)}; wrote {args.out / 'refusal.safetensors'}"
        )
        return 0

    personas = PersonaSet.load(args.personas) if args.personas else PersonaSet.builtin()
    chat = _load(args)
    direction = persona_direction(
        chat, personas, against=args.against, positions=args.positions, batch_size=args.batch_size
    )
    path = direction.save(args.out)
    norms = direction.vectors.norm(dim=-1)
    print("layer  norm")
    for layer, norm in enumerate(norms.tolist()):
        print(f"{layer:>5}  {norm:.3f}")
    print(f"wrote {path}")
    return 0


def _convert_direction(args: argparse.Namespace) -> int:
    from personagate import interop
    from personagate.directions import Direction

    if args.kind == "export":
        direction = Direction.load(args.direction)
        if not direction.per_layer:
            raise PersonagateError(f"{args.direction} holds one vector for all layers; llama.cpp needs one per layer")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = interop.export_llamacpp_control_vector(
                direction, direction.vectors.shape[0], args.out, coeff=args.coeff, model_hint=args.model_hint
            )
        for warning in caught:
            print(f"personagate: note: {warning.message}", file=sys.stderr)
        print(f"wrote {path} (llama.cpp direction.N = our resid_pre[N+1])")
        return 0
    if args.format == "refusal_direction":
        direction = interop.import_refusal_direction(args.source, model=args.model)
    elif args.format == "persona_vectors":
        direction = interop.import_persona_vectors(args.source, model=args.model)
    else:
        if args.n_layers is None or args.n_layers < 3:
            raise PersonagateError("--format llamacpp needs --n-layers (the model's number of blocks, at least 3)")
        direction = interop.read_llamacpp_control_vector(args.source, args.n_layers)
    if args.name:
        direction.name = args.name
    if args.model:
        direction.meta["model"] = args.model
    path = direction.save(args.out)
    shape = "x".join(str(n) for n in direction.vectors.shape)
    print(f"wrote {path} ({direction.name}, {shape}, {direction.meta.get('method', '')})")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    import csv

    from personagate.scoring.phrases import is_refusal

    if not args.csv.is_file():
        raise PersonagateError(f"no such CSV file: {args.csv}")
    with open(args.csv, newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    if args.text_column not in fields:
        raise PersonagateError(f"{args.csv} has no column {args.text_column!r}; columns: {', '.join(fields)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*fields, "refusal"] if "refusal" not in fields else fields)
        writer.writeheader()
        for row in rows:
            row["refusal"] = int(is_refusal(row[args.text_column] or ""))
            writer.writerow(row)
    total = sum(int(r["refusal"]) for r in rows)
    print(f"{total}/{len(rows)} rows refuse; wrote {args.out}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from personagate.experiments.runner import run_study
    from personagate.experiments.spec import StudySpec

    spec = StudySpec.load(getattr(args, "spec", None), quick=args.quick)
    model = args.model or spec.model.id
    out = args.out or Path("runs") / f"{Path(model).name}-{'quick' if args.quick else 'full'}"
    run_dir = run_study(spec, out, model=model, progress=not args.quiet)
    from personagate.report import rebuild

    rebuild(run_dir)
    print(f"wrote {run_dir / 'summary.csv'} and {run_dir / 'report.html'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from personagate.experiments.results import summarise
    from personagate.experiments.store import RunStore
    from personagate.report import markdown_table, rebuild, save_plots

    print(f"wrote {rebuild(args.run_dir)}")
    if args.markdown:
        with RunStore(args.run_dir, create=False) as store:
            print(markdown_table(summarise(store)))
    if args.plots:
        for path in save_plots(args.run_dir, args.plots):
            print(f"wrote {path}")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from personagate.experiments.spec import default_spec_text

    print(default_spec_text(), end="")
    return 0


COMMANDS = {
    "generate": cmd_generate,
    "directions": cmd_directions,
    "score": cmd_score,
    "reproduce": cmd_study,
    "run": cmd_study,
    "report": cmd_report,
    "spec": cmd_spec,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PersonagateError as exc:
        print(f"personagate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("personagate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
