"""Issue-3 acceptance figures on a model (default: the bundled one), with the public refusal splits.

    python benchmarks/directions_default.py --out runs/directions-default

Finds the refusal direction (Arditi selection, reduced grid for a CPU), the compliant-persona
direction, then measures refusal rates with Wilson 95% intervals: harmful test prompts at baseline
and with the refusal direction ablated at all layers; harmless prompts at baseline and with it added
at its layer; harmful prompts with the persona direction added (coefficients 0.25, 0.5, 1.0), each
with the first-token KL on harmless prompts as a coherence check. Writes vectors, the candidate
table and results.json under --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from personagate import Ablate, Add, ChatFormatter, Decoding, Program, Window, generate, load_model, next_token_logits
from personagate.extraction import RefusalSelection, first_token_kl, refusal_direction
from personagate.persona_directions import persona_direction
from personagate.scoring import refusal_flags, refusal_rate

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "refusal_splits"


def instructions(name: str, n: int) -> list[str]:
    return [row["instruction"] for row in json.loads((SPLITS / f"{name}.json").read_text())][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path, default=Path("runs/directions-default"))
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-val", type=int, default=16)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--positions", type=int, default=2)
    parser.add_argument("--layer-stride", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--persona-layer", type=int, default=None, help="default: the middle layer")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chat = load_model(args.model)
    fmt = ChatFormatter(chat.tokenizer)
    results: dict = {"model": chat.name, "args": {k: str(v) for k, v in vars(args).items()}}

    found = refusal_direction(
        chat,
        instructions("harmful_train", args.n_train),
        instructions("harmless_train", args.n_train),
        instructions("harmful_val", args.n_val),
        instructions("harmless_val", args.n_val),
        selection=RefusalSelection(positions=args.positions, layer_stride=args.layer_stride, n_val=args.n_val),
        batch_size=args.batch_size,
    )
    found.direction.save(args.out / "refusal.safetensors")
    found.save_candidates(args.out / "refusal_candidates.csv")
    refusal = found.direction
    results["refusal"] = {k: refusal.meta[k] for k in ("position", "layer", "bypass", "induce", "kl")}
    results["refusal_tokens"] = found.refusal_tokens.to_dict()
    print("refusal direction:", results["refusal"], "tokens:", found.refusal_tokens.tokens, flush=True)

    persona = persona_direction(chat, batch_size=args.batch_size)
    persona.save(args.out / "persona.safetensors")
    persona_layer = args.persona_layer if args.persona_layer is not None else chat.n_layers // 2

    harmful = [fmt.encode(p) for p in instructions("harmful_test", args.n_test)]
    harmless = [fmt.encode(p) for p in instructions("harmless_test", args.n_test)]
    base_safe_logits = next_token_logits(chat, harmless, batch_size=args.batch_size, progress=False)

    def measure(label: str, ids, program: Program) -> None:
        replies = generate(
            chat,
            ids,
            decoding=Decoding(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
            program=program,
            desc=label,
        )
        rate = refusal_rate(refusal_flags(c.text for c in replies))
        kl = float("nan")
        if len(program):
            logits = next_token_logits(chat, harmless, program=program, batch_size=args.batch_size, progress=False)
            kl = float(first_token_kl(base_safe_logits, logits).mean())
        low, high = rate.interval
        results.setdefault("conditions", []).append(
            {
                "condition": label,
                "refusal_rate": rate.value,
                "ci_low": low,
                "ci_high": high,
                "n": rate.n,
                "kl_harmless": kl,
                "samples": [c.text for c in replies[:3]],
            }
        )
        print(f"{label:40} {rate}  KL={kl:.3f}", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))

    everywhere = Window(0, chat.n_layers)
    measure("harmful: baseline", harmful, Program())
    measure("harmful: refusal ablated (all layers)", harmful, Program([Ablate(refusal, everywhere)]))
    measure("harmless: baseline", harmless, Program())
    measure(
        f"harmless: refusal added (layer {refusal.meta['layer']})",
        harmless,
        Program([Add(refusal, 1.0, refusal.meta["layer"])]),
    )
    for coeff in (0.25, 0.5, 1.0):
        measure(
            f"harmful: persona x{coeff} (layer {persona_layer})", harmful, Program([Add(persona, coeff, persona_layer)])
        )
    results["seconds"] = time.perf_counter() - started
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"done in {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
