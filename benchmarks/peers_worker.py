"""Runs inside .venv-peers (steering-vectors, repeng) or .venv-nnsight (nnsight): the same additive conditions.

Layer conventions: our Add at resid_pre[l] (input of block l) is the output of block l-1 for all
three peers (steering-vectors' "decoder_block" layer, repeng's layer id, nnsight's layers[l-1].output).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

SRC = Path(__file__).resolve().parents[1] / "src" / "personagate" / "scoring" / "phrases.py"
spec = importlib.util.spec_from_file_location("phrases", SRC)
phrases = importlib.util.module_from_spec(spec)
spec.loader.exec_module(phrases)


def batches(prompts, size):
    for i in range(0, len(prompts), size):
        chunk = prompts[i : i + size]
        width = max(len(t) for t in chunk)
        yield (
            torch.tensor([[PAD] * (width - len(t)) + list(t) for t in chunk]),
            torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in chunk]),
            width,
        )


@torch.inference_mode()
def hf_generate(model, ids, mask):
    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=BUDGET, do_sample=False, pad_token_id=PAD)


def decide(texts):
    return [phrases.is_refusal(t) for t in texts]


def run_steering_vectors(model, tok, prompts, conditions):
    from steering_vectors import SteeringVector

    out = {}
    for name, vectors in conditions.items():  # {block output index: vector}, made by peers.py
        texts = []
        sv = SteeringVector(layer_activations=vectors, layer_type="decoder_block") if vectors else None
        for ids, mask, width in batches(prompts, BATCH):
            if sv is None:
                rows = hf_generate(model, ids, mask)
            else:
                with sv.apply(model, multiplier=1.0, min_token_index=0):
                    rows = hf_generate(model, ids, mask)
            texts += [tok.decode(r[width:], skip_special_tokens=True) for r in rows]
        out[name] = decide(texts)
    return out


def run_repeng(model, tok, prompts, conditions):
    import numpy as np
    from repeng import ControlModel, ControlVector
    from repeng.control import ControlModule, model_layer_list

    layer_ids = sorted({k for vectors in conditions.values() for k in vectors})
    wrapped = ControlModel(model, layer_ids)
    # repeng 0.4.0 predates transformers reading ``attention_type`` off each decoder block; its wrapper
    # does not pass attributes through, so copy the one the forward needs (else: AttributeError).
    for layer in model_layer_list(wrapped):
        if isinstance(layer, ControlModule) and hasattr(layer.block, "attention_type"):
            layer.attention_type = layer.block.attention_type
    out = {}
    try:
        for name, vectors in conditions.items():
            if vectors:
                directions = {
                    k: (vectors[k].numpy() if k in vectors else np.zeros(model.config.hidden_size, dtype=np.float32))
                    for k in layer_ids
                }
                wrapped.set_control(ControlVector(model_type=model.config.model_type, directions=directions), 1.0)
            else:
                wrapped.reset()
            texts = []
            for ids, mask, width in batches(prompts, BATCH):
                rows = wrapped.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=BUDGET, do_sample=False, pad_token_id=PAD
                )
                texts += [tok.decode(r[width:], skip_special_tokens=True) for r in rows]
            out[name] = decide(texts)
    finally:
        wrapped.unwrap()
    return out


def run_nnsight(model, tok, prompts, conditions):
    """nnsight's per-step pattern: edit the block outputs and read the greedy token at every step.

    Code after an open-ended ``tracer.iter[:]`` loop never runs (the loop ends on the request the
    model never answers), so the tokens are collected inside it rather than from ``tracer.result``.
    """
    from nnsight import LanguageModel

    lm = LanguageModel(model, tokenizer=tok)
    eos = eos_ids(model, tok)
    out = {}
    for name, vectors in conditions.items():  # {block output index: vector}, made by peers.py
        texts = []
        for ids, mask, _ in batches(prompts, BATCH):
            with lm.generate(
                {"input_ids": ids, "attention_mask": mask}, max_new_tokens=BUDGET, do_sample=False, pad_token_id=PAD
            ) as tracer:
                steps = list().save()
                for _ in tracer.iter[:]:  # the prompt pass, then each generated token
                    for block, v in vectors.items():
                        hidden = lm.model.layers[block].output
                        if isinstance(hidden, tuple):
                            hidden = hidden[0]
                        hidden[:] += v
                    steps.append(lm.lm_head.output[:, -1].argmax(-1))
            for row in torch.stack(list(steps)[:BUDGET], dim=1).tolist():
                cut = next((i for i, t in enumerate(row) if t in eos), len(row))
                texts.append(tok.decode(row[:cut], skip_special_tokens=True))
        out[name] = decide(texts)
    return out


def eos_ids(model, tok) -> set[int]:
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    config = model.generation_config.eos_token_id
    ids.update(config if isinstance(config, (list, tuple)) else [config] if config is not None else [])
    return ids


def config_for_v4(folder: str):
    """Our cache is written by transformers 5, which keeps RoPE's base in ``rope_parameters``; 4.x
    reads ``rope_theta`` and silently falls back to 10000 (a different model: Qwen2.5 uses 1e6)."""
    config = AutoConfig.from_pretrained(folder)
    rope = getattr(config, "rope_parameters", None) or {}
    if "rope_theta" in rope:
        config.rope_theta = rope["rope_theta"]
    return config


PEERS = {
    "steering-vectors 0.12.2": run_steering_vectors,
    "repeng 0.4.0": run_repeng,
    "nnsight 0.8.1": run_nnsight,
}


def main() -> None:
    """``peers_worker.py JOB [PEER]``: every peer, or the one named (peers.py runs one per process)."""
    global PAD, BUDGET, BATCH
    job = torch.load(sys.argv[1], weights_only=False)
    chosen = sys.argv[2:] or list(PEERS)
    PAD, BUDGET, BATCH = job["pad_id"], job["budget"], job["batch"]
    torch.set_num_threads(job.get("threads", torch.get_num_threads()))
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(job["model"])
    model = AutoModelForCausalLM.from_pretrained(job["model"], config=config_for_v4(job["model"]), dtype=torch.float32)
    model.eval()
    print(f"loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    results = {}
    for peer in chosen:
        try:
            start = time.perf_counter()
            decisions = PEERS[peer](model, tok, job["prompts"], job["conditions"])
            results[peer] = {"seconds": [time.perf_counter() - start], "decisions": decisions}
        except Exception as exc:  # a peer that cannot run is reported, not fatal
            results[peer] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        print(peer, "done", file=sys.stderr, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
