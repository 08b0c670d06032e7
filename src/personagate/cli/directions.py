"""``personagate directions refusal|persona|random|import|export``: vector files made, converted, checked."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from personagate.cli import args as common
from personagate.errors import PersonagateError


def add_parser(sub: Any) -> None:
    directions = sub.add_parser("directions", help="make refusal, persona and random-control vector files")
    kinds = directions.add_subparsers(dest="kind", required=True)
    ref = kinds.add_parser("refusal", help="difference in means with Arditi et al. selection")
    common.model_flags(ref)
    for name in ("harmful-train", "harmless-train", "harmful-val", "harmless-val"):
        ref.add_argument(f"--{name}", type=Path, required=True, help="prompt file (.txt/.json/.jsonl/.csv)")
    ref.add_argument("--n-train", type=common.positive_int, default=128)
    ref.add_argument("--n-val", type=common.positive_int, default=32)
    ref.add_argument("--positions", type=common.positive_int, default=None, help="post-instruction positions to try")
    ref.add_argument("--layer-stride", type=common.positive_int, default=1)
    ref.add_argument("--max-kl", type=common.positive_float, default=0.1)
    ref.add_argument("--min-induce", type=common.finite_float, default=0.0)
    ref.add_argument("--prune-last", type=common.fraction, default=0.2, help="fraction of last layers never chosen")
    ref.add_argument("--batch-size", type=common.positive_int, default=16)
    ref.add_argument(
        "--out", type=common.out_path, required=True, help="folder for refusal.safetensors and the candidate table"
    )
    ref.set_defaults(run=run_refusal)
    per = kinds.add_parser("persona", help="compliant system prompts vs the default (or cautious) persona")
    common.model_flags(per)
    per.add_argument("--personas", type=Path, default=None, help="JSON with compliant/contrast/questions lists")
    per.add_argument("--against", choices=["default", "contrast"], default="default")
    per.add_argument("--positions", choices=["last", "post_instruction", "response"], default="last")
    per.add_argument("--batch-size", type=common.positive_int, default=16)
    per.add_argument("--out", type=common.out_path, required=True, help="output .safetensors file")
    per.set_defaults(run=run_persona)
    rnd = kinds.add_parser("random", help="seeded Haar-random controls, norm-matched to a direction")
    rnd.add_argument("--like", type=Path, required=True, help="the direction to control for")
    rnd.add_argument("--seeds", type=common.seeds, default=[0], help="comma-separated seeds, e.g. 0,1,2,3,4")
    rnd.add_argument("--orthogonal-to", type=Path, action="append", default=[], help="direction file (repeatable)")
    rnd.add_argument("--out", type=common.out_path, required=True, help="output folder")
    rnd.set_defaults(run=run_random)
    imp = kinds.add_parser("import", help="another tool's vector file as a direction file (layers converted)")
    imp.add_argument(
        "source", type=Path, help="refusal_direction folder or direction.pt, persona_vectors .pt, or .gguf"
    )
    imp.add_argument("--format", required=True, choices=["refusal_direction", "persona_vectors", "llamacpp"])
    imp.add_argument("--n-layers", type=common.positive_int, default=None, help="llamacpp: the model's block count")
    imp.add_argument("--model", default=None, help="the model the vectors were made for (recorded)")
    imp.add_argument("--name", default=None, help="the direction's name (default: refusal / persona / file stem)")
    imp.add_argument("--out", type=common.out_path, required=True, help="output .safetensors file")
    imp.set_defaults(run=run_import)
    exp = kinds.add_parser("export", help="a direction file as another tool's vector file")
    exp.add_argument("direction", type=Path, help="a personagate .safetensors direction (one vector per layer)")
    exp.add_argument("--format", choices=["llamacpp"], default="llamacpp")
    exp.add_argument("--coeff", type=common.finite_float, default=1.0, help="scale written into the control vector")
    exp.add_argument("--model-hint", default="llama", help="llama.cpp's controlvector.model_hint")
    exp.add_argument("--out", type=common.out_path, required=True, help="output .gguf file")
    exp.set_defaults(run=run_export)


def run_random(args: argparse.Namespace) -> int:
    from personagate.directions import Direction, random_direction
    from personagate.outputs import check_output_dir

    like = Direction.load(args.like)
    others = tuple(Direction.load(p) for p in args.orthogonal_to)
    check_output_dir(args.out)
    controls = [random_direction(like, seed, orthogonal_to=others) for seed in args.seeds]  # checks shapes first
    n = like.vectors.shape[0] if like.per_layer else 1
    for seed, control in zip(args.seeds, controls, strict=True):
        path = control.save(args.out / f"random-{seed}.safetensors")
        cos = control.cosine(like, n).abs().max()
        print(f"{path}  seed={seed}  max|cos(random, {like.name})|={cos:.3f}")
    return 0


def run_refusal(args: argparse.Namespace) -> int:
    from personagate.extraction import RefusalSelection, refusal_direction
    from personagate.outputs import check_output_dir
    from personagate.prompts import load_prompts

    sets = [load_prompts(getattr(args, n)) for n in ("harmful_train", "harmless_train", "harmful_val", "harmless_val")]
    selection = RefusalSelection(
        max_kl=args.max_kl,
        min_induce=args.min_induce,
        prune_last_fraction=args.prune_last,
        positions=args.positions,
        layer_stride=args.layer_stride,
        n_val=args.n_val,
    )
    check_output_dir(args.out)
    common.check_model_flags(args)
    chat = common.load(args)
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


def run_persona(args: argparse.Namespace) -> int:
    from personagate.outputs import check_output_file
    from personagate.persona_directions import PersonaSet, persona_direction

    personas = PersonaSet.load(args.personas) if args.personas else PersonaSet.builtin()
    check_output_file(args.out)
    common.check_model_flags(args)
    chat = common.load(args)
    direction = persona_direction(
        chat, personas, against=args.against, positions=args.positions, batch_size=args.batch_size
    )
    path = direction.save(args.out)
    print("layer  norm")
    for layer, norm in enumerate(direction.vectors.norm(dim=-1).tolist()):
        print(f"{layer:>5}  {norm:.3f}")
    print(f"wrote {path}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from personagate import interop
    from personagate.directions import Direction
    from personagate.outputs import check_output_file

    direction = Direction.load(args.direction)
    if not direction.per_layer:
        raise PersonagateError(f"{args.direction} holds one vector for all layers; llama.cpp needs one per layer")
    check_output_file(args.out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = interop.export_llamacpp_control_vector(
            direction, direction.vectors.shape[0], args.out, coeff=args.coeff, model_hint=args.model_hint
        )
    for warning in caught:
        print(f"personagate: note: {warning.message}", file=sys.stderr)
    print(f"wrote {path} (llama.cpp direction.N = our resid_pre[N+1])")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from personagate import interop
    from personagate.outputs import check_output_file

    check_output_file(args.out)
    if args.format == "refusal_direction":
        direction = interop.import_refusal_direction(args.source, model=args.model)
    elif args.format == "persona_vectors":
        direction = interop.import_persona_vectors(args.source, model=args.model)
    else:
        if args.n_layers is None or args.n_layers < 3:
            raise PersonagateError("--format llamacpp needs --n-layers (the model's number of blocks, at least 3)")
        direction = interop.read_llamacpp_control_vector(args.source, args.n_layers)
    if args.name or args.model:
        direction = direction.renamed(args.name or direction.name, **({"model": args.model} if args.model else {}))
    path = direction.save(args.out)
    shape = "x".join(str(n) for n in direction.vectors.shape)
    print(f"wrote {path} ({direction.name}, {shape}, {direction.meta.get('method', '')})")
    return 0
