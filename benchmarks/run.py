"""Side-by-side speed and agreement on the study grid: personagate vs a raw-hooks reference (and peers).

    python benchmarks/run.py --quick        # under 3 minutes on the bundled model here
    python benchmarks/run.py                # the full table, with hook-overhead ratios
    python benchmarks/run.py --peers        # also steering-vectors / repeng / nnsight (benchmarks/install_peers.sh)

Same model, prompts, interventions, greedy decoding and token budget for every implementation. Runs
interleave (A B A B ...) and report medians. personagate stops a row once its refusal decision is
certain, shares the chat-template prefill across prompts, prefills the blocks before the layer where
two conditions part ways once for both, and sorts by length (the full mode also times it without
that layer sharing, and checks it changes no decision); the reference runs
Hugging Face generate with hand-registered hooks for the full budget. Decisions must agree on >= 98%
of rows and first-token refusal scores within 1e-4 (fp32).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_hooks
from personagate import Ablate, Add, ChatFormatter, Decoding, Direction, Program, Window, generate, load_model
from personagate.directions import random_direction
from personagate.generation import generate_grid, next_token_logits
from personagate.persona_directions import PersonaSet, persona_direction
from personagate.prompts import builtin_prompts
from personagate.scoring.first_token import RefusalTokens
from personagate.scoring.phrases import is_refusal


def directions(chat, fmt, n: int) -> dict[str, Direction]:
    """Cheap but real directions: refusal = harmful - harmless mean at the last token; persona = contrast."""
    from personagate.activations import mean_activations

    harm = mean_activations(chat, [fmt.encode(p) for p in builtin_prompts("harmful")[:n]], progress=False).mean
    safe = mean_activations(chat, [fmt.encode(p) for p in builtin_prompts("harmless")[:n]], progress=False).mean
    layer = int(chat.n_layers * 2 / 3)
    refusal = Direction(harm[layer] - safe[layer], name="refusal", meta={"layer": layer})
    personas = PersonaSet.builtin()
    personas.questions = personas.questions[:n]
    persona = persona_direction(chat, personas, progress=False)
    return {"refusal": refusal, "persona": persona, "random": random_direction(persona, 0, orthogonal_to=(persona,))}


def grid(d: dict[str, Direction], n_layers: int, bind: bool = True) -> dict[str, Program]:
    """The quick reproduce grid as programs (the reference and the peers read the same ops); unbound
    (directions by key) for the work units of the executors."""
    late = Window(2 * n_layers // 3, n_layers)
    persona = Add("persona", 4.0, n_layers // 2)
    programs = {
        "baseline": Program(),
        "refusal ablated": Program([Ablate("refusal", Window(0, n_layers))]),
        "persona x4": Program([persona]),
        "persona x4 + refusal @ late": Program([persona, Add("refusal", 1.0, d["refusal"].meta["layer"])]),
        "persona x4 - persona late": Program([persona, Ablate("persona", late)]),
        "persona x4 - random late": Program([persona, Ablate("random", late)]),
    }
    return {name: program.bind(d) if bind else program for name, program in programs.items()}


def time_it(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peers", action="store_true")
    parser.add_argument("--n", type=int, default=None, help="harmful prompts per condition")
    parser.add_argument("--budget", type=int, default=None, help="max new tokens")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--overhead-only", action="store_true", help="only the steered / unsteered table")
    parser.add_argument("--skip-overhead", action="store_true", help="no steered / unsteered table")
    parser.add_argument("--workers", type=int, default=0, help="also run the grid as work units on N Ray actors")
    args = parser.parse_args()
    n = args.n or (8 if args.quick else 32)
    budget = args.budget or 40  # the study spec's max_new_tokens
    repeats = args.repeats or (1 if args.quick else 3)
    batch = 16
    torch.manual_seed(0)
    chat = load_model(args.model)
    fmt = ChatFormatter(chat.tokenizer)
    d = directions(chat, fmt, 8 if args.quick else 24)
    conditions = grid(d, chat.n_layers)
    prompts = [fmt.encode(p) for p in builtin_prompts("harmful")[-n:]]
    if args.overhead_only:
        overhead(chat, prompts, d, budget)
        return
    tokens = RefusalTokens((chat.tokenizer.convert_tokens_to_ids("I"),), ("I",))
    print(
        f"# {chat.name}, {chat.n_layers} layers, {chat.dtype}, {n} prompts x {len(conditions)} conditions, "
        f"budget {budget} tokens, batch {batch}, {repeats} repeat(s), {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    ours_times, ref_times, unshared_times = [], [], []
    impls = ["reference", "personagate"] + ([] if args.quick else ["personagate, no layer sharing"])
    ref_by_condition: dict[str, list[bool]] = {}
    ref_seconds: dict[str, float] = {}
    agree = total = 0
    worst_score = 0.0
    for rep in range(repeats):
        ours_decisions, ref_decisions, unshared_decisions = {}, {}, {}
        for impl in impls if rep % 2 == 0 else impls[::-1]:

            def run_all(impl=impl):
                if impl.startswith("personagate"):  # every condition side by side in one batch, rows stop once decided
                    grid_out = generate_grid(
                        chat,
                        conditions,
                        prompts,
                        decoding=Decoding(
                            max_new_tokens=budget, batch_size=len(conditions) * len(prompts), stop_when=is_refusal
                        ),
                        progress=False,
                        share_layers=impl == "personagate",
                    )
                    return {name: [is_refusal(c.text) for c in replies] for name, replies in grid_out.items()}
                out = {}
                for name, program in conditions.items():
                    start = time.perf_counter()
                    texts = reference_hooks.generate(chat.model, chat.tokenizer, prompts, program, budget, batch)
                    ref_seconds[name] = time.perf_counter() - start
                    out[name] = [is_refusal(t) for t in texts]
                    ref_by_condition[name] = out[name]
                return out

            seconds, decisions = time_it(run_all)
            {"reference": ref_times, "personagate": ours_times}.get(impl, unshared_times).append(seconds)
            if impl == "reference":
                ref_decisions.update(decisions)
            elif impl == "personagate":
                ours_decisions.update(decisions)
            else:
                unshared_decisions = decisions
        for name in conditions:
            agree += sum(a == b for a, b in zip(ours_decisions[name], ref_decisions[name], strict=True))
            total += len(prompts)
            if unshared_times:
                assert unshared_decisions[name] == ours_decisions[name], f"layer sharing changed decisions: {name}"
    for program in conditions.values():  # first-token refusal scores, both ways, on a few prompts
        ours = tokens.score(next_token_logits(chat, prompts[:2], program=program, progress=False))
        pad = chat.tokenizer.pad_token_id
        ref = tokens.score(reference_hooks.first_token_logits(chat.model, prompts[:2], program, pad))
        worst_score = max(worst_score, float((ours - ref).abs().max()))

    rows = [("raw-hooks reference", statistics.median(ref_times)), ("personagate", statistics.median(ours_times))]
    if unshared_times:
        rows.append(("personagate, no layer sharing", statistics.median(unshared_times)))
    print("\n| implementation | grid wall time (s) | conditions/min |")
    print("|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {60 * len(conditions) / seconds:.1f} |")
    if not args.quick and not args.skip_overhead:
        overhead(chat, prompts, d, budget)
    if args.peers:
        from peers import run_peers

        run_peers(chat, prompts, conditions, budget, batch, ref_by_condition, ref_seconds)
    if args.workers:
        workers_row(args.model, chat, d, prompts, budget, args.workers)
    print(f"\nfirst_token_score_max_abs_diff: {worst_score:.2e}")
    print(f"speedup_vs_raw_hooks: {statistics.median(ref_times) / statistics.median(ours_times):.2f}")
    print(f"decision_agreement: {agree / total:.3f}")


def workers_row(model: str, chat, d: dict[str, Direction], prompts, budget: int, workers: int) -> None:
    """The grid cut into work units (as the study runner cuts it: a chunk of prompts x the conditions),
    computed in this process and on a pool of Ray actors, side by side; and one tiny unit's round trip."""
    from personagate.experiments.execution.executors import InProcess
    from personagate.experiments.execution.ray_pool import PoolConfig, RayPool
    from personagate.experiments.execution.units import Settings, Unit, cut
    from personagate.scoring.coherence import CoherenceRule

    programs = [(name, 0, program.to_table()) for name, program in grid(d, chat.n_layers, bind=False).items()]
    items = [(i, tuple(t), ()) for i, t in enumerate(prompts)]
    units = cut("generate", "harmful", programs, items, max(1, len(prompts) // (2 * workers)), 128)
    settings = Settings(
        max_new_tokens=budget,
        screen_tokens=8,
        batch_size=16,
        refusal_token_ids=(chat.tokenizer.convert_tokens_to_ids("I"),),
        rule=CoherenceRule(),
    )
    directions = {0: d}
    start = time.perf_counter()
    local = {u.label + str(i): rows for i, (u, rows) in enumerate(InProcess(chat).run(units, directions, settings))}
    local_s = time.perf_counter() - start
    start = time.perf_counter()
    pool = RayPool(PoolConfig(model, workers=workers))
    pool.pids()  # every actor has loaded the model
    startup_s = time.perf_counter() - start
    start = time.perf_counter()
    remote = {u.label + str(i): rows for i, (u, rows) in enumerate(pool.run(units, directions, settings))}
    ray_s = time.perf_counter() - start
    tiny = Unit("first_token", "harmful", (programs[0],), (items[0],))
    start = time.perf_counter()
    list(InProcess(chat).run([tiny], directions, settings))
    tiny_local = time.perf_counter() - start
    trips = []
    for _ in range(5):
        start = time.perf_counter()
        list(pool.run([tiny], directions, settings))
        trips.append(time.perf_counter() - start)
    pool.close()

    def keyed(results: dict) -> dict:
        return {(r.condition, r.prompt_set, r.prompt_id): r for done in results.values() for r in done.rows}

    same = keyed(local) == keyed(remote)
    print("\n| executor | units | wall (s) | vs in-process |\n|---|---:|---:|---:|")
    print(f"| in process | {len(units)} | {local_s:.1f} | 1.00 |")
    print(
        f"| Ray, {workers} workers (after {startup_s:.1f} s of actor start-up) | {len(units)} | "
        f"{ray_s:.1f} | {local_s / ray_s:.2f} |"
    )
    print(
        f"\nper-unit overhead of the Ray executor (tiny unit, median of 5 round trips minus in-process): "
        f"{(statistics.median(trips) - tiny_local) * 1e3:.0f} ms; rows identical: {same}"
    )


def overhead(chat, prompts, d, budget) -> None:
    """Steered / unsteered generation time on the same batch, fixed budget, no early stopping."""
    L = chat.n_layers
    programs = {
        "Add (one layer)": Program([Add(d["persona"], 4.0, L // 2)]),
        "Add (every layer)": Program([Add(d["persona"], 0.2, "all")]),
        "Ablate (every layer)": Program([Ablate(d["persona"], Window(0, L))]),
    }
    print("\n| batch | program | steered / unsteered | target |")
    print("|---:|---|---:|---:|")
    for size, steps in ((1, 16), (len(prompts), 16)):
        batch = (prompts * 4)[:size]
        base, steered = [], {k: [] for k in programs}

        def run(program, batch=batch, steps=steps, size=size):
            return time_it(
                lambda: generate(
                    chat,
                    batch,
                    decoding=Decoding(max_new_tokens=steps, batch_size=size, stop_at_eos=False),
                    program=program,
                    progress=False,
                )
            )[0]

        for _ in range(3):  # interleaved: unsteered, then each program
            base.append(run(None))
            for name, program in programs.items():
                steered[name].append(run(program))
        for name in programs:
            target = "1.15" if "Ablate" in name else ("1.10" if size == 1 else "1.03")
            print(f"| {size} | {name} | {statistics.median(steered[name]) / statistics.median(base):.3f} | {target} |")


if __name__ == "__main__":
    main()
