"""Decode throughput on a GPU for a Qwen2.5-7B-Instruct-shaped model (random weights, bf16, no download),
with and without intervention programs, against the memory-bandwidth floor, on two paths side by side
in the same run: ``eager`` (hooks over a dynamic KV cache, one kernel launch after another) and
``static`` (a static KV cache and fixed steering buffers, each decode step captured once as a CUDA
graph by ``torch.compile(mode="reduce-overhead")`` and replayed).

    python benchmarks/gpu.py                 # on a CUDA machine, about 5 minutes
    python benchmarks/gpu.py --tiny --device cpu --repeats 1   # a smoke test of the script itself

The floor per decode step is the weight bytes divided by the measured device copy bandwidth (bytes
read + written per second): a batch-1 decode cannot run faster than streaming every weight once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from transformers import AutoModelForCausalLM, Qwen2Config

from personagate import Ablate, Add, ChatModel, Decoding, Direction, Program, Window, generate
from personagate.static_decode import StaticDecoder

from tiny import byte_tokenizer

QWEN25_7B = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)
TINY = dict(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: torch.device, n_bytes: int) -> float:
    """Bytes read + written per second by a device-to-device copy (median of 10)."""
    src = torch.empty(n_bytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    times = []
    for i in range(13):
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / statistics.median(times)


def timed_generate(
    chat: ChatModel, prompts: list[list[int]], steps: int, program: Program | None, static: StaticDecoder | None = None
) -> float:
    """Wall time of prefill + ``steps`` tokens: the eager path, or the static (CUDA-graph) one."""
    sync(chat.device)
    start = time.perf_counter()
    if static is None:
        out = generate(
            chat,
            prompts,
            decoding=Decoding(max_new_tokens=steps, batch_size=len(prompts)),
            program=program,
            progress=False,
        )
    else:
        out = static.generate(prompts, program or Program(), max_new_tokens=steps, stop_at_eos=False)
    sync(chat.device)
    assert all(len(c.tokens) == steps for c in out), "a row stopped early; the random model emitted EOS"
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--batches", default="1,32,128")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--paths", default="eager,static", help="eager (hooks + dynamic cache), static (CUDA graphs)")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = Qwen2Config(**(TINY if args.tiny else QWEN25_7B))
    config.architectures = ["Qwen2ForCausalLM"]
    config.eos_token_id = None
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    tokenizer = byte_tokenizer()
    tokenizer.eos_token = None
    chat = ChatModel.wrap(model, tokenizer)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = copy_bandwidth(device, 2 << 30 if device.type == "cuda" else 64 << 20)
    floor_s = weight_bytes / bandwidth
    g = torch.Generator().manual_seed(1)
    persona = Direction(torch.randn(chat.n_layers, chat.hidden_size, generator=g), name="persona")
    L = chat.n_layers
    programs = {
        "none": None,
        "add@mid": Program([Add(persona, 0.5, L // 2)]),
        "ablate all layers": Program([Ablate(persona, Window(0, L))]),
        "add + ablate late": Program([Add(persona, 0.5, L // 2), Ablate(persona, Window(2 * L // 3, L))]),
    }
    results = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "weight_gb": weight_bytes / 1e9,
        "copy_bandwidth_tb_s": bandwidth / 1e12,
        "floor_ms_per_step": floor_s * 1e3,
        "rows": [],
    }
    print(
        f"weights {weight_bytes / 1e9:.2f} GB, copy bandwidth {bandwidth / 1e12:.2f} TB/s, "
        f"floor {floor_s * 1e3:.2f} ms per decode step"
    )
    print(f"{'batch':>5} {'path':>6} {'program':>18} {'ms/step':>8} {'tok/s':>9} {'x floor':>8} {'vs none':>8}")
    paths = args.paths.split(",")
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = [
            torch.randint(300, config.vocab_size, (args.prompt_tokens,), generator=g).tolist() for _ in range(batch)
        ]
        # one static decoder per program layout (each captures its own graph), made once and warmed up
        decoders = {
            name: StaticDecoder(chat, max_batch=batch, max_len=args.prompt_tokens + args.steps + 8) for name in programs
        }
        runs = [(path, name) for path in paths for name in programs]
        for path, name in runs:  # warm-up (and capture), every path and program once
            timed_generate(chat, prompts, 4, programs[name], decoders[name] if path == "static" else None)
        decode: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        for _ in range(args.repeats):  # interleaved: every (path, program) once per repeat
            for path, name in runs:  # decode = (prefill + N steps) - (prefill + 1 step)
                static = decoders[name] if path == "static" else None
                full = timed_generate(chat, prompts, args.steps + 1, programs[name], static)
                prefill = timed_generate(chat, prompts, 1, programs[name], static)
                decode[(path, name)].append((full - prefill) / args.steps)
        per_step = {run: statistics.median(values) for run, values in decode.items()}
        for path, name in runs:
            ratio = per_step[(path, name)] / per_step[(path, "none")]
            row = {
                "batch": batch,
                "path": path,
                "program": name,
                "ms_per_step": per_step[(path, name)] * 1e3,
                "tokens_per_s": batch / per_step[(path, name)],
                "x_floor": per_step[(path, name)] / floor_s,
                "vs_none": ratio,
                "spread_ms": [round(v * 1e3, 2) for v in sorted(decode[(path, name)])],
            }
            results["rows"].append(row)
            print(
                f"{batch:>5} {path:>6} {name:>18} {row['ms_per_step']:>8.2f} {row['tokens_per_s']:>9.0f} "
                f"{row['x_floor']:>8.2f} {ratio:>8.3f}",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
