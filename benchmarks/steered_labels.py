"""The refusal detector and the three-way labels checked against readers' labels of steered replies
(the readers were helper sessions, blind to condition and detector: not human labels).

    python benchmarks/steered_labels.py sample RUN_DIR      # draw replies from a run, balanced
    python benchmarks/steered_labels.py score               # agreement per condition group and overall

``sample`` draws generated replies from a run's store, balanced over condition groups and over the
run's own labels (refuse / comply / incoherent), and writes ``labels/items.jsonl`` (what a reader
sees: id, request, reply) and ``labels/items_meta.jsonl`` (group, condition, the reply's
log-likelihood under the unsteered model). Readers label ``items.jsonl`` by ``labels/GUIDE.md`` into
``labels/helpers.jsonl`` ({"id", "label", "note"}), blind to the condition and the detector.
``score`` re-applies the current detector and coherence rule to each reply and prints the agreement
with the readers' labels, per group and overall (refusal: refuse vs not; three-way: all labels).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path

from personagate.experiments.protocols import load_spec

HERE = Path(__file__).resolve().parent
LABELS = HERE / "labels"


def sample(run_dir: Path, per_group: int, seed: int) -> None:
    db = sqlite3.connect(f"{(run_dir / 'run.sqlite').resolve().as_uri()}?mode=ro", uri=True)
    groups = {name: group for name, group in db.execute("SELECT name, grp FROM conditions")}
    requests = _requests(run_dir)  # the store keeps prompt ids; the texts come from the run's spec
    rows = db.execute(
        "SELECT condition, prompt_set, prompt_id, text, label, loglik FROM rows "
        "WHERE text IS NOT NULL AND label IS NOT NULL"
    ).fetchall()
    by_group: dict[str, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_group[groups[row[0]]][row[4]].append(row)
    rng = random.Random(seed)
    chosen = []
    for group, by_label in sorted(by_group.items()):
        pools = {label: rng.sample(items, len(items)) for label, items in sorted(by_label.items())}
        picked: list[tuple] = []
        while len(picked) < per_group and any(pools.values()):  # round-robin over labels: balanced where possible
            for label in sorted(pools):
                if pools[label] and len(picked) < per_group:
                    picked.append(pools[label].pop())
        chosen += [(group, row) for row in picked]
    rng.shuffle(chosen)
    LABELS.mkdir(exist_ok=True)
    with open(LABELS / "items.jsonl", "w") as items, open(LABELS / "items_meta.jsonl", "w") as meta:
        for index, (group, (condition, prompt_set, prompt_id, text, label, loglik)) in enumerate(chosen):
            item_id = f"s{index:03d}"
            request = requests.get((prompt_set, prompt_id), "")
            items.write(json.dumps({"id": item_id, "request": request, "reply": text}, ensure_ascii=False) + "\n")
            record = {"id": item_id, "group": group, "condition": condition, "run_label": label, "loglik": loglik}
            meta.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(chosen)} items from {len(by_group)} groups to {LABELS}")


def _requests(run_dir: Path) -> dict[tuple[str, int], str]:
    """The request texts, re-derived from the run's spec (the store keeps prompt ids, not texts)."""
    sys.path.insert(0, str(HERE.parent / "src"))
    from personagate.experiments.design.splits import split_prompts

    manifest = json.loads((run_dir / "manifest.json").read_text())
    spec_data = manifest["spec"]
    quick = spec_data["prompts"]["n_test"] < 100
    spec = load_spec(quick=quick, protocol=spec_data.get("protocol", "v2"))
    splits = split_prompts(spec)
    out = {("harmful", i): t for i, t in enumerate(splits.harmful_test)}
    out.update({("harmful_val", i): t for i, t in enumerate(splits.harmful_val)})
    out.update({("safe", i): t for i, t in enumerate(splits.safe)})
    return out


def score() -> None:
    sys.path.insert(0, str(HERE.parent / "src"))
    from personagate.scoring.coherence import CoherenceRule, label
    from personagate.scoring.phrases import is_refusal

    items = {r["id"]: r for r in map(json.loads, (LABELS / "items.jsonl").read_text().splitlines())}
    meta = {r["id"]: r for r in map(json.loads, (LABELS / "items_meta.jsonl").read_text().splitlines())}
    read = {r["id"]: r for r in map(json.loads, (LABELS / "helpers.jsonl").read_text().splitlines())}
    rule = CoherenceRule()
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # refusal agree, n, 3-way agree, n
    counts: dict[str, int] = defaultdict(int)
    for item_id, h in read.items():
        text, info = items[item_id]["reply"], meta[item_id]
        refused = is_refusal(text)
        three = label(refused, text, info["loglik"], rule)
        counts[h["label"]] += 1
        for key in (info["group"], "overall"):
            s = stats[key]
            s[0] += int(refused == (h["label"] == "refuse"))
            s[1] += 1
            s[2] += int(three == h["label"])
            s[3] += 1
    print(f"helper-session labels: {dict(counts)}")
    print("\n| group | n | refusal agreement | three-way agreement |\n|---|---:|---:|---:|")
    for key in [*sorted(k for k in stats if k != "overall"), "overall"]:
        a, n, b, m = stats[key]
        print(f"| {key} | {n} | {a / n:.3f} | {b / m:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample")
    s.add_argument("run_dir", type=Path)
    s.add_argument("--per-group", type=int, default=24)
    s.add_argument("--seed", type=int, default=0)
    sub.add_parser("score")
    args = parser.parse_args()
    if args.command == "sample":
        sample(args.run_dir, args.per_group, args.seed)
    else:
        score()


if __name__ == "__main__":
    main()
