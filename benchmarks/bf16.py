"""bf16 against fp32 on this CPU, side by side on the same prompts and programs, through the study's own
work units (the same labels a run would record): time, share of identical tokens, identical replies,
label agreement, refusal-decision agreement, per program.

    python benchmarks/bf16.py                  # 48 harmful prompts x the quick grid, 64 tokens
    python benchmarks/bf16.py --prompts 16     # a smoke run

Run it alone on the machine (it times both dtypes, interleaved). The directions are made once in fp32
and used by both models, so that only the dtype of the forward pass differs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from personagate import ChatFormatter, load_model
from personagate.experiments.execution.units import Settings, compute, cut
from personagate.prompts import builtin_prompts
from personagate.scoring.coherence import CoherenceRule
from run import directions, grid  # the quick grid's real directions and programs


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "?"
    have = [f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f" {f}" in flags]
    return ", ".join(have) or "none of avx512_bf16/amx_bf16/avx512f/avx2"


def run_units(chat, units, d, settings):
    start = time.perf_counter()
    rows = [r for unit in units for r in compute(chat, {0: d}, unit, settings).rows]
    return time.perf_counter() - start, {(r.condition, r.prompt_id): r for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.manual_seed(0)
    fp32 = load_model(args.model, device="cpu", dtype="fp32")
    bf16 = load_model(args.model, device="cpu", dtype="bf16")
    assert bf16.dtype == torch.bfloat16 and getattr(bf16.model, "hf_quantizer", None) is None
    fmt = ChatFormatter(fp32.tokenizer)
    d = directions(fp32, fmt, 16)
    prompts = [fmt.encode(p) for p in builtin_prompts("harmful")[-args.prompts :]]  # away from the directions'
    programs = [(name, 0, p.to_table()) for name, p in grid(d, fp32.n_layers, bind=False).items()]
    items = [(i, tuple(t), ()) for i, t in enumerate(prompts)]
    units = cut("generate", "harmful", programs, items, 16, 128)
    settings = Settings(args.tokens, 8, 16, (fp32.tokenizer.convert_tokens_to_ids("I"),), CoherenceRule())
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    rows: dict[str, dict] = {}
    for _ in range(args.repeats):  # interleaved: A B A B
        for name, chat in (("fp32", fp32), ("bf16", bf16)):
            s, rows[name] = run_units(chat, units, d, settings)
            seconds[name].append(s)
    tok = fp32.tokenizer
    table = []
    for name, _, _ in programs:
        keys = [k for k in rows["fp32"] if k[0] == name]
        same_tokens = total = same_reply = same_label = same_refusal = 0
        for k in keys:
            a, b = rows["fp32"][k], rows["bf16"][k]
            ta, tb = tok(a.text or "")["input_ids"], tok(b.text or "")["input_ids"]
            prefix = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y), min(len(ta), len(tb)))
            same_tokens += prefix
            total += max(len(ta), len(tb))
            same_reply += a.text == b.text
            same_label += a.label == b.label
            same_refusal += a.refusal == b.refusal
        n = len(keys)
        table.append(
            {
                "program": name,
                "n": n,
                "identical_prefix_tokens": same_tokens / total if total else 1.0,
                "identical_replies": same_reply / n,
                "label_agreement": same_label / n,
                "refusal_agreement": same_refusal / n,
                "fp32_refusal": sum(rows["fp32"][k].refusal for k in keys) / n,
                "bf16_refusal": sum(rows["bf16"][k].refusal for k in keys) / n,
            }
        )
    best = {k: min(v) for k, v in seconds.items()}
    print(f"model {args.model} · {platform.processor() or platform.machine()} · CPU flags: {cpu_flags()}")
    shape = f"{args.prompts} prompts x {len(programs)} programs · {args.tokens} tokens, greedy"
    print(f"torch {torch.__version__} · threads {torch.get_num_threads()} · {shape} · best of {args.repeats}")
    print(f"\nfp32 {best['fp32']:.1f} s · bf16 {best['bf16']:.1f} s · bf16 speed-up x{best['fp32'] / best['bf16']:.2f}")
    print("\n| program | n | tokens identical (shared prefix) | replies identical | label agree | "
          "refusal agree | refusal fp32 | refusal bf16 |\n|---|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for r in table:
        print(
            f"| {r['program']} | {r['n']} | {r['identical_prefix_tokens']:.1%} | {r['identical_replies']:.1%} | "
            f"{r['label_agreement']:.1%} | {r['refusal_agreement']:.1%} | {r['fp32_refusal']:.1%} | "
            f"{r['bf16_refusal']:.1%} |"
        )
    n_all = sum(r["n"] for r in table)
    overall = {key: sum(r[key] * r["n"] for r in table) / n_all for key in ("label_agreement", "refusal_agreement")}
    print(f"\nall rows: label agreement {overall['label_agreement']:.1%}, refusal agreement "
          f"{overall['refusal_agreement']:.1%} (n = {n_all})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "table": table, "overall": overall}, indent=1))


if __name__ == "__main__":
    main()
