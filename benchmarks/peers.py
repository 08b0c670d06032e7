"""Run the peers (steering-vectors, repeng, nnsight) on the same workload, in their own environment.

Their pins clash with ours (steering-vectors needs transformers < 5, repeng numpy < 2), so they run in
``.venv-peers``, and nnsight (which needs transformers 5) in ``.venv-nnsight`` (both made by
``bash benchmarks/install_peers.sh``), through ``peers_worker.py``. Each peer runs the
conditions its API can express; additive steering only (none of them projects a direction out of the
attention and MLP outputs inside a window).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import torch

from personagate.interventions import Add, Program, resolve_layers

HERE = Path(__file__).resolve().parent
PEERS_PYTHON = HERE.parent / ".venv-peers" / "bin" / "python"
NNSIGHT_PYTHON = HERE.parent / ".venv-nnsight" / "bin" / "python"
# Each peer runs in the environment it works in (see install_peers.sh).
PEERS = {
    "steering-vectors 0.12.2": PEERS_PYTHON,
    "repeng 0.4.0": PEERS_PYTHON,
    "nnsight 0.8.1": NNSIGHT_PYTHON,
}


def per_block_output(program: Program, n_layers: int) -> dict[int, torch.Tensor]:
    """An additive program as {block output index: summed vector}: resid_pre[l] is the output of block
    l - 1, the site the peers hook (what the worker needs, with no personagate in its environment)."""
    out: dict[int, torch.Tensor] = {}
    for op in program.ops:
        assert isinstance(op, Add) and not op.unit
        for layer in resolve_layers(op.layers, n_layers):
            out[layer - 1] = out.get(layer - 1, 0) + op.coeff * op.bound().at(layer)
    return out


def run_peers(
    chat,
    prompts,
    conditions,
    budget: int,
    batch: int,
    reference: dict[str, list[bool]],
    reference_seconds: dict[str, float],
) -> None:
    if not PEERS_PYTHON.exists() or not NNSIGHT_PYTHON.exists():
        print("\npeers: .venv-peers or .venv-nnsight is missing; run `bash benchmarks/install_peers.sh` first")
        return
    folder = chat.info.get("folder") or chat.model.config._name_or_path
    additive = {
        name: per_block_output(program, chat.n_layers)
        for name, program in conditions.items()
        if all(isinstance(op, Add) for op in program.ops)
    }
    ref_time = sum(reference_seconds[name] for name in additive)
    limit = max(300.0, 20 * ref_time)  # a peer that takes 20x the reference is reported as too slow
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.pt"
        torch.save(
            {
                "model": str(folder),
                "prompts": prompts,
                "conditions": additive,
                "budget": budget,
                "batch": batch,
                "pad_id": chat.tokenizer.pad_token_id,
                "threads": torch.get_num_threads(),
            },
            job,
        )
        for peer, python in PEERS.items():  # one process each, so one that stalls costs only its own time
            command = [str(python), str(HERE / "peers_worker.py"), str(job), peer]
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=limit)
            except subprocess.TimeoutExpired as exc:
                err = exc.stderr or ""
                tail = (err.decode(errors="replace") if isinstance(err, bytes) else err).strip().splitlines()[-1:]
                results[peer] = {"error": f"no result within {limit:.0f} s (last output: {tail})"}
                continue
            if proc.returncode != 0:
                results[peer] = {"error": f"worker failed: {proc.stderr.strip().splitlines()[-1:]}"}
                continue
            results.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("\n| peer | conditions run | wall time (s) | vs raw-hooks reference on those | decision agreement |")
    print("|---|---:|---:|---:|---:|")
    print(f"| raw-hooks reference | {len(additive)} | {ref_time:.1f} | 1.00 | 1.000 |")
    for peer, result in results.items():
        if "error" in result:
            print(f"| {peer} | 0 | - | - | could not run: {result['error'][:120]} |")
            continue
        agree = [
            a == b
            for name, decisions in result["decisions"].items()
            for a, b in zip(decisions, reference[name], strict=True)
        ]
        seconds = statistics.median(result["seconds"])
        print(
            f"| {peer} | {len(result['decisions'])} | {seconds:.1f} | {seconds / ref_time:.2f} | "
            f"{sum(agree) / len(agree):.3f} |"
        )
