"""The reference: a plain raw-hooks loop in the style of refusal_direction (Arditi et al.).

One condition at a time, hooks registered by hand, Hugging Face ``generate`` with a fixed token
budget, left padding, batches in input order, no early stopping. It is the correctness check and
the speed baseline for benchmarks/run.py; deliberately independent of personagate's hook code.
"""

from __future__ import annotations

import torch

from personagate.interventions import Ablate, Add, Program, resolve_layers


def _project(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return x - (x @ u).unsqueeze(-1) * u


def register(model, program: Program) -> list:
    """Hooks for a program of ``Add`` and ``Ablate`` ops, read from the ops' fields, in order."""
    blocks, handles = model.model.layers, []
    n_layers = len(blocks)

    def at(vectors, layer):
        return vectors[layer] if vectors.dim() == 2 else vectors

    for op in program.ops:
        vectors = op.bound().vectors
        if isinstance(op, Add):
            for layer in resolve_layers(op.layers, n_layers):
                delta = op.coeff * at(vectors, layer)
                handles.append(
                    blocks[layer].register_forward_pre_hook(
                        lambda m, args, delta=delta: (args[0] + delta.to(args[0].dtype), *args[1:])
                    )
                )
        else:
            assert isinstance(op, Ablate), f"the reference has no {op.kind!r}"
            for layer in op.window.resolve(n_layers):
                u = at(vectors, layer) / at(vectors, layer).norm()
                handles.append(
                    blocks[layer].register_forward_pre_hook(lambda m, args, u=u: (_project(args[0], u), *args[1:]))
                )
                for module in (blocks[layer].self_attn, blocks[layer].mlp):
                    handles.append(
                        module.register_forward_hook(
                            lambda m, a, out, u=u: (
                                (_project(out[0], u), *out[1:]) if isinstance(out, tuple) else _project(out, u)
                            )
                        )
                    )
    return handles


@torch.inference_mode()
def generate(model, tokenizer, token_lists, program: Program, max_new_tokens: int, batch_size: int) -> list[str]:
    handles = register(model, program)
    texts = []
    try:
        for i in range(0, len(token_lists), batch_size):
            batch = token_lists[i : i + batch_size]
            width = max(len(t) for t in batch)
            ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(t)) + list(t) for t in batch])
            mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in batch])
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            texts += [tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]
    finally:
        for handle in handles:
            handle.remove()
    return texts


@torch.inference_mode()
def first_token_logits(model, token_lists, program: Program, pad_id: int) -> torch.Tensor:
    handles = register(model, program)
    try:
        rows = []
        for tokens in token_lists:
            rows.append(model(input_ids=torch.tensor([list(tokens)])).logits[0, -1].float())
        return torch.stack(rows)
    finally:
        for handle in handles:
            handle.remove()
