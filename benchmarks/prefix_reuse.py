"""What reusing a conversation's history saves: the multi-turn family's screen at the largest k, as
the study cuts it (units of 4 probes, the programs side by side), with the history recomputed for
every row, prefilled once per unit and program, and kept across units (``PrefixCache``).

    python benchmarks/prefix_reuse.py [--model default] [--probes 16] [--exchanges 8] [--nulls 4]

The three give the same tokens (checked here, and in tests/test_conversations.py); the table gives
the wall time of each and the ratios.
"""

from __future__ import annotations

import argparse
import time

import torch

from personagate import Direction, Program, load_model
from personagate.experiments.design.histories import Histories
from personagate.experiments.protocols import load_spec
from personagate.generation import Decoding, generate_grid
from personagate.interventions import Ablate, Window
from personagate.prefill import PrefixCache
from personagate.prompts import ChatFormatter, builtin_prompts

UNIT = 4  # probes per screening unit, as the study cuts them (runner.SCREEN_PROMPTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--probes", type=int, default=16)
    parser.add_argument("--exchanges", type=int, default=8)
    parser.add_argument("--nulls", type=int, default=4)
    parser.add_argument("--form", default="roleplay")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    chat = load_model(args.model, device="cpu")
    fmt = ChatFormatter(chat.tokenizer)
    histories = Histories.of(load_spec())
    probes = builtin_prompts("harmful-public")[: args.probes]
    encoded = [fmt.encode_conversation(histories.conversation(args.form, args.exchanges, p)) for p in probes]
    late = Window(2 / 3, 1.0)
    g = torch.Generator().manual_seed(0)
    directions = [Direction(torch.randn(chat.hidden_size, generator=g), name=f"d{i}") for i in range(args.nulls + 1)]
    programs = {
        "none": None,
        **{f"knockout {i}": Program([Ablate(d, late, scope="probe")]) for i, d in enumerate(directions)},
    }
    decoding = Decoding(max_new_tokens=8, batch_size=len(programs) * UNIT)
    history = encoded[0].spans.probe_start
    print(
        f"{args.model}: {len(probes)} probes after {args.exchanges} exchanges ({history} history tokens, "
        f"{sum(len(e.ids) for e in encoded) / len(encoded):.0f} tokens a prompt), {len(programs)} programs, "
        f"units of {UNIT} probes, 8 new tokens"
    )

    def run(label: str, **options) -> tuple[float, list]:
        started = time.perf_counter()
        tokens = []
        for start in range(0, len(encoded), UNIT):
            unit = encoded[start : start + UNIT]
            out = generate_grid(
                chat,
                programs,
                [e.ids for e in unit],
                decoding=decoding,
                progress=False,
                spans=[e.spans for e in unit],
                **options,
            )
            tokens += [[c.tokens for c in out[name]] for name in programs]
        seconds = time.perf_counter() - started
        print(f"  {label:52} {seconds:8.1f} s")
        return seconds, tokens

    recompute, a = run("history recomputed for every row", share_prefix=False)
    per_unit, b = run("history prefilled once per unit and program")
    cache = PrefixCache()
    kept, c = run("history kept across units (PrefixCache)", prefix_cache=cache)
    assert a == b == c, "the three must give the same tokens"
    print(f"  same tokens: yes; cache hits {cache.hits}, misses {cache.misses}")
    print(f"  ratio recomputed / once per unit: {recompute / per_unit:.2f}x")
    print(f"  ratio recomputed / kept across units: {recompute / kept:.2f}x")
    print(f"  ratio once per unit / kept across units: {per_unit / kept:.2f}x")


if __name__ == "__main__":
    main()
