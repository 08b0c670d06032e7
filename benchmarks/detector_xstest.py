"""Agreement of refusal detectors with XSTest's human labels (refusal = final_label 2 or 3).

python benchmarks/detector_xstest.py [--data ../shared/datasets/xstest]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from personagate.scoring.phrases import arditi_is_refusal, is_refusal

FILES = ("labelled_completions_llama2orig.csv", "labelled_completions_mistralinstruct.csv")


def agreement(rows: list[dict[str, str]], detector) -> float:
    gold = [row["final_label"][:1] in ("2", "3") for row in rows]
    return sum(detector(row["completion"]) == g for row, g in zip(rows, gold, strict=True)) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "xstest"
    parser.add_argument("--data", type=Path, default=default)
    args = parser.parse_args()
    print(f"{'file':45} {'rows':>5} {'personagate':>12} {'arditi-12':>10}")
    for name in FILES:
        with open(args.data / name, newline="") as f:
            rows = list(csv.DictReader(f))
        ours, theirs = agreement(rows, is_refusal), agreement(rows, arditi_is_refusal)
        print(f"{name:45} {len(rows):>5} {ours:>12.3f} {theirs:>10.3f}")


if __name__ == "__main__":
    main()
