"""Local judges against labelled replies: agreement on refuse vs not, with Wilson 95% intervals, and
the time per reply.

    python benchmarks/judges.py [--judges hf:default hf:smollm2] [--xstest-sample 150] [--out FILE.json]

Two label sets:
- ``steered``: the 264 steered replies of ``labels/items.jsonl``, labelled by helper sessions (not
  people) by ``labels/GUIDE.md`` (``labels/helpers.jsonl``); refusal = their "refuse";
- ``xstest``: XSTest's human-labelled completions (Llama-2 and Mistral; refusal = full or partial
  refusal, labels 2 and 3), a seeded sample of ``--xstest-sample`` per file (every row: 0).

Every judge runs as ``personagate`` runs it (``scoring.local_judges``, rubric kind for chat models);
the phrase detector is the reference row. A judge that leaves a reply unread counts as a
disagreement there.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

from personagate.scoring.local_judges import make_local_judge
from personagate.scoring.phrases import is_refusal
from personagate.scoring.rates import Rate

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "datasets"
XSTEST = ("labelled_completions_llama2orig.csv", "labelled_completions_mistralinstruct.csv")

Item = tuple[str, str, int]  # request, reply, refused (gold)


def steered_items() -> list[Item]:
    items = {r["id"]: r for r in map(json.loads, (HERE / "labels" / "items.jsonl").read_text().splitlines())}
    labels = [json.loads(line) for line in (HERE / "labels" / "helpers.jsonl").read_text().splitlines()]
    return [(items[r["id"]]["request"], items[r["id"]]["reply"], int(r["label"] == "refuse")) for r in labels]


def xstest_items(folder: Path, sample: int, seed: int = 0) -> list[Item]:
    out: list[Item] = []
    for name in XSTEST:
        with open(folder / name, newline="") as f:
            rows = list(csv.DictReader(f))
        if sample:
            rows = random.Random(seed).sample(rows, min(sample, len(rows)))
        out += [(r["prompt"], r["completion"], int(r["final_label"][:1] in ("2", "3"))) for r in rows]
    return out


def kappa(flags: list[int | None], gold: list[int]) -> float:
    """Cohen's kappa of two binary raters (an unread reply counts as the opposite of gold)."""
    a = [f if f is not None else 1 - g for f, g in zip(flags, gold, strict=True)]
    n = len(gold)
    observed = sum(x == y for x, y in zip(a, gold, strict=True)) / n
    pa, pg = sum(a) / n, sum(gold) / n
    expected = pa * pg + (1 - pa) * (1 - pg)
    return (observed - expected) / (1 - expected) if expected < 1 else float("nan")


def score(name: str, flags: list[int | None], gold: list[int], seconds: float) -> dict[str, object]:
    agree = Rate(sum(f == g for f, g in zip(flags, gold, strict=True)), len(gold))
    low, high = agree.interval
    return {
        "judge": name,
        "n": len(gold),
        "agreement": round(agree.value, 4),
        "ci_low": round(low, 4),
        "ci_high": round(high, 4),
        "kappa": round(kappa(flags, gold), 4),
        "unread": sum(f is None for f in flags),
        "ms_per_reply": round(1000 * seconds / len(gold), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judges", nargs="*", default=["hf:default", "hf:smollm2"])
    parser.add_argument("--kind", default="rubric")
    parser.add_argument("--xstest", type=Path, default=SHARED / "xstest")
    parser.add_argument("--xstest-sample", type=int, default=150)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sets = {
        "steered (helper-session labels)": steered_items(),
        "xstest (human labels)": xstest_items(args.xstest, args.xstest_sample),
    }
    rows = []
    for set_name, items in sets.items():
        gold = [g for _, _, g in items]
        started = time.perf_counter()
        detector = [int(is_refusal(reply)) for _, reply, _ in items]
        rows.append({"set": set_name, **score("phrase detector", detector, gold, time.perf_counter() - started)})
    for spec in args.judges:
        judge = make_local_judge(spec, args.kind, "cpu")
        for set_name, items in sets.items():
            gold = [g for _, _, g in items]
            started = time.perf_counter()
            flags = judge.judge([p for p, _, _ in items], [r for _, r, _ in items])
            rows.append({"set": set_name, **score(f"{args.kind} {spec}", flags, gold, time.perf_counter() - started)})
    print(f"{'set':34} {'judge':26} {'n':>4} {'agreement [95% CI]':>24} {'kappa':>6} {'unread':>6} {'ms/reply':>8}")
    for r in rows:
        ci = f"{r['agreement']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        print(
            f"{r['set']:34} {r['judge']:26} {r['n']:>4} {ci:>24} {r['kappa']:>6.3f} {r['unread']:>6} "
            f"{r['ms_per_reply']:>8}"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
