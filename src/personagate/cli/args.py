"""Shared pieces of the command line: one-line parse errors, strict argument types, model flags."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from personagate.errors import PersonagateError


class Parser(argparse.ArgumentParser):
    """argparse with the package's error style: one line, exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"personagate: error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def out_path(text: str) -> Path:
    """An output path; an empty one would mean the current folder, which no output may take by accident."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a path")
    return Path(text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be positive")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} must not be negative")
    return value


def fraction(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value:g} must lie in [0, 1)")
    return value


def seeds(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: seeds are distinct non-negative integers")
    return values


class OrderedOps(argparse.Action):
    """Keeps the op flags (--add, --clamp, --ablate, ...) in the order given: a program is ordered."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        ops = list(getattr(namespace, "ops", None) or [])
        ops.append((self.dest, values))
        namespace.ops = ops


def op_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per op kind of the vocabulary, in its flag form (``personagate.interventions.OPS``)."""
    from personagate.interventions import OPS

    for kind, op in OPS.items():
        parser.add_argument(f"--{kind}", action=OrderedOps, metavar=op.flag_metavar(), help=op.flag_help)


DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


def model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="default",
        help="'default' (bundled Qwen2.5-Coder-0.5B-Instruct), a Hub id, a local folder or a .gguf file",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: fp32 on CPU, bf16 on GPU")
    parser.add_argument("--device-map", default=None, choices=["auto"], help="'auto' to spread a model over GPUs")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code")
    parser.add_argument(
        "--adapter",
        default=None,
        metavar="BLOCKS,ATTN,MLP",
        help="module paths for an architecture personagate does not know, e.g. model.layers,self_attn,mlp",
    )


def adapter(text: str | None):
    if text is None:
        return None
    from personagate.models import ArchitectureAdapter

    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise PersonagateError(f"--adapter {text!r}: expected BLOCKS,ATTN,MLP, e.g. model.layers,self_attn,mlp")
    return ArchitectureAdapter(blocks=parts[0], attn_out=parts[1], mlp_out=parts[2])


def check_model_flags(args: argparse.Namespace, program: Any = None) -> None:
    """What can be checked about the model flags (and a program for that model) before anything loads."""
    from personagate.models.loading import check_device, check_model_source, model_shape

    check_device(args.device)
    adapter(args.adapter)
    check_model_source(args.model)
    shape = model_shape(args.model) if program is not None and len(program) else None
    if shape is not None:
        import torch

        from personagate.interventions import compile_program

        compile_program(program, *shape, torch.device("cpu"), force=True)  # layers, windows, vector sizes


def quiet_libraries() -> None:
    """--quiet: no progress bars from the libraries underneath either (transformers' weight loading)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def load(args: argparse.Namespace):
    from personagate.models import load_model

    if getattr(args, "quiet", False):
        quiet_libraries()

    return load_model(
        args.model,
        device=args.device,
        dtype=args.dtype,
        device_map=args.device_map,
        trust_remote_code=args.trust_remote_code,
        adapter=adapter(args.adapter),
    )
