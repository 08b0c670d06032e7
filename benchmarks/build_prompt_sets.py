"""Rebuild the built-in prompt sets harmful.json and safe.json from the public datasets.

python benchmarks/build_prompt_sets.py [--data ../shared/datasets] [--out src/personagate/data/prompts] [--check]

Deterministic: the same inputs always give byte-identical files. harmless.json and neutral.json in the
same folder are hand-written for this project and are never read or written here.

harmful.json takes harmful instructions from four MIT-licensed benchmarks (AdvBench, HarmBench,
JailbreakBench, StrongREJECT), read from the raw copies in `sources/` (not from the mixed
`refusal_splits/`, which also hold MaliciousInstruct, whose licence is unclear). Filters, in order:

1. HarmBench: keep only the "standard" functional category. "contextual" rows need a context
   string the prompt refers to ("this code", "this text"); "copyright" rows ask to reproduce song
   lyrics or book passages, which tests verbatim recall rather than refusal of harm.
2. StrongREJECT: keep only rows whose upstream `source` has a clear permissive licence ("custom",
   written for StrongREJECT; "AdvBench", MIT; "DAN", from verazuo/jailbreak_llms, MIT). Rows taken
   from MaliciousInstruct (licence unclear) are dropped, and so, to be safe, are the few taken from
   HarmfulQ, "Jailbreaking via Prompt Engineering", the OpenAI GPT-4 system card and MasterKey.
3. Any prompt that points at text it does not contain is dropped: "this code", "the above text",
   "these passages" ... unless the prompt itself introduced that noun earlier, or a dangling "the
   following", "as follows", "below", "given this" at its end.
4. Prompts longer than MAX_CHARS characters are dropped.
5. Exact duplicates (case-insensitive, whitespace-normalised) are dropped, then near-duplicates:
   two prompts whose content words (after dropping stop words and task verbs such as "write",
   "create", "tutorial", "step-by-step") have Jaccard similarity >= NEAR_DUP are the same
   request in other words (or a one-word variant of the same template, such as HarmBench's "chop shops in
   Sao Paulo" / "in Johannesburg"), and only the first is kept. Sources are read in the order
   jailbreakbench, harmbench, strongreject, advbench (smallest first), so a request present in
   several keeps the credit of the smaller benchmark and the large AdvBench loses its rewordings.
6. Balance: at most CAP prompts per source. Within a source the kept prompts are taken round-robin
   over its categories in file order (AdvBench has none: evenly spaced over the file).

The result is shuffled once with random.Random(SEED), so that any prefix mixes the sources (the
package splits train/validation/test by position).

safe.json is the 250 XSTest prompts labelled safe (`type` not starting with "contrast_"), in
XSTest's order, with their XSTest type as category.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from collections import Counter, OrderedDict
from pathlib import Path

SEED = 20261129
MAX_CHARS = 400
NEAR_DUP = 0.7
CAP = 140
SOURCE_ORDER = ("jailbreakbench", "harmbench", "strongreject", "advbench")
STRONGREJECT_KEEP = ("custom", "AdvBench", "DAN")

# "this code", "the above text", ... : a pointer to a text. It needs context unless the prompt itself
# introduced that noun earlier ("Write an email ... make sure this email can't be traced").
POINTER = re.compile(
    r"\b(?:this|these|the (?:above|below|attached|provided|given|following)) "
    r"(text|code|article|passage|paragraph|essay|document|snippet|script|function|email|message|post|tweet|"
    r"letter|information|data|content|story|description|list|query|reply|response|comment|poem|speech)s?\b",
    re.IGNORECASE,
)
# "the following", "as follows", "below", "given this", "the above" with no text after them.
DANGLING = re.compile(r"\b(?:the following|as follows|below|given this|the above)\W*$", re.IGNORECASE)


def needs_context(prompt: str) -> bool:
    """True when the prompt points at a text it does not contain."""
    if DANGLING.search(prompt):
        return True
    for m in POINTER.finditer(prompt):
        noun = m.group(1).lower()
        if not re.search(rf"\b{noun}", prompt[: m.start()], re.IGNORECASE):
            return True
    return False


# Words that carry the form of a request, not its content: ignored when comparing two prompts.
_FILLER_WORDS = """a an the to of for on in into at by with from and or but that which who whom this these those
    it its it's is are be been being can could would should will shall may might must do does how
    what why when where way ways someone somebody something one people person user users others
    me my i you your we our us they their them he his she her
    write create develop provide give explain describe generate design outline teach produce compose
    draft offer suggest list show tell make instruct instructions instruction tutorial guide manual
    step steps step-by-step detailed detail details specific plan strategy process method methods
    article post blog program script website app application video"""
FILLER = frozenset(_FILLER_WORDS.split())


def normalise(text: str) -> str:
    return " ".join(text.split())


def exact_key(text: str) -> str:
    return normalise(text).lower()


def content_words(text: str) -> frozenset[str]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    out = set()
    for w in words:
        w = w.strip("'")
        if w.endswith("'s"):
            w = w[:-2]
        if not w or w in FILLER:
            continue
        if len(w) > 4 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(w)
    return frozenset(out)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_raw(data: Path, stats: Counter) -> dict[str, list[dict]]:
    """Rows per source after the per-source filters (1 and 2)."""
    src = data / "sources"
    raw: dict[str, list[dict]] = {}

    raw["jailbreakbench"] = [
        {"prompt": r["Goal"], "category": r["Category"]} for r in read_csv(src / "jailbreakbench.csv")
    ]
    stats["read jailbreakbench"] = len(raw["jailbreakbench"])

    hb = read_csv(src / "harmbench_val.csv") + read_csv(src / "harmbench_test.csv")
    stats["read harmbench"] = len(hb)
    for kind in ("contextual", "copyright"):
        stats[f"harmbench: dropped {kind} rows"] = sum(r["FunctionalCategory"] == kind for r in hb)
    raw["harmbench"] = [
        {"prompt": r["Behavior"], "category": r["SemanticCategory"]}
        for r in hb
        if r["FunctionalCategory"] == "standard"
    ]

    sr = read_csv(src / "strongreject.csv")
    stats["read strongreject"] = len(sr)
    for name, n in sorted(Counter(r["source"] for r in sr if r["source"] not in STRONGREJECT_KEEP).items()):
        stats[f"strongreject: dropped rows from {name}"] = n
    raw["strongreject"] = [
        {"prompt": r["forbidden_prompt"], "category": r["category"]} for r in sr if r["source"] in STRONGREJECT_KEEP
    ]

    raw["advbench"] = [{"prompt": r["goal"], "category": None} for r in read_csv(src / "advbench.csv")]
    stats["read advbench"] = len(raw["advbench"])
    return raw


def balanced(rows: list[dict], cap: int) -> list[dict]:
    """At most `cap` rows: round-robin over categories in file order, or evenly spaced if uncategorised."""
    if len(rows) <= cap:
        return rows
    if all(r["category"] is None for r in rows):
        return [rows[(i * len(rows)) // cap] for i in range(cap)]
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        groups.setdefault(r["category"], []).append(r)
    chosen: list[dict] = []
    depth = 0
    while len(chosen) < cap:
        for group in groups.values():
            if depth < len(group) and len(chosen) < cap:
                chosen.append(group[depth])
        depth += 1
    keep = {id(r) for r in chosen}
    return [r for r in rows if id(r) in keep]  # file order


def build_harmful(data: Path, stats: Counter, dropped_near: list[tuple[str, str]]) -> list[dict]:
    raw = load_raw(data, stats)
    seen_exact: set[str] = set()
    seen_words: list[frozenset[str]] = []
    seen_text: list[str] = []
    kept: dict[str, list[dict]] = {}
    for source in SOURCE_ORDER:
        kept[source] = []
        for reason in ("empty", "refers to text it lacks", f"longer than {MAX_CHARS} chars"):
            stats[f"{source}: dropped, {reason}"] = 0
        stats[f"{source}: dropped exact duplicate"] = 0
        stats[f"{source}: dropped near-duplicate"] = 0
        for row in raw[source]:
            prompt = normalise(row["prompt"])
            if not prompt:
                stats[f"{source}: dropped, empty"] += 1
                continue
            if needs_context(prompt):
                stats[f"{source}: dropped, refers to text it lacks"] += 1
                continue
            if len(prompt) > MAX_CHARS:
                stats[f"{source}: dropped, longer than {MAX_CHARS} chars"] += 1
                continue
            key = exact_key(prompt)
            if key in seen_exact:
                stats[f"{source}: dropped exact duplicate"] += 1
                continue
            words = content_words(prompt)
            match = next((i for i, w in enumerate(seen_words) if jaccard(words, w) >= NEAR_DUP), None)
            if match is not None:
                stats[f"{source}: dropped near-duplicate"] += 1
                dropped_near.append((prompt, seen_text[match]))
                continue
            seen_exact.add(key)
            seen_words.append(words)
            seen_text.append(prompt)
            kept[source].append({"prompt": prompt, "source": source, "category": row["category"]})
        stats[f"{source}: after filters"] = len(kept[source])
    items: list[dict] = []
    for source in SOURCE_ORDER:
        chosen = balanced(kept[source], CAP)
        stats[f"{source}: dropped by the cap of {CAP}"] = len(kept[source]) - len(chosen)
        stats[f"{source}: shipped"] = len(chosen)
        items.extend(chosen)
    random.Random(SEED).shuffle(items)
    return items


def build_safe(data: Path, stats: Counter) -> list[dict]:
    rows = read_csv(data / "xstest" / "xstest_prompts.csv")
    safe = [r for r in rows if not r["type"].startswith("contrast_")]
    stats["xstest: read"] = len(rows)
    stats["xstest: dropped unsafe contrast prompts"] = len(rows) - len(safe)
    assert all(r["label"] == "safe" for r in safe), "XSTest rows without contrast_ should be labelled safe"
    return [{"prompt": normalise(r["prompt"]), "source": "xstest", "category": r["type"]} for r in safe]


def build_strongreject(data: Path, stats: Counter) -> list[dict]:
    """All 313 StrongREJECT prompts, verbatim and in the dataset's order: the paper's test set."""
    rows = read_csv(data / "sources" / "strongreject.csv")
    stats["strongreject (whole set): read"] = len(rows)
    return [{"prompt": r["forbidden_prompt"], "source": r["source"], "category": r["category"]} for r in rows]


STRONGREJECT_ABOUT = (
    "The 313 forbidden prompts of StrongREJECT, verbatim and in the dataset's order: the test set of "
    "Zhong & Li's experiment (protocol 'paper'). 'source' is where StrongREJECT took each prompt from. "
    "Built by benchmarks/build_prompt_sets.py."
)
STRONGREJECT_LICENCE = (
    "MIT (StrongREJECT: Souly, Lu, Bowen, Trinh, Hsieh, Pandey, Abbeel, Svegliato, Emmons, Watkins, Toyer. "
    "A StrongREJECT for Empty Jailbreaks, 2024, arXiv:2402.10260; https://github.com/alexandrasouly/strongreject)"
)


HARMFUL_ABOUT = (
    "Harmful instructions a chat model should refuse, from AdvBench, HarmBench (standard behaviours), "
    "JailbreakBench (JBB-Behaviors) and StrongREJECT. Built by benchmarks/build_prompt_sets.py: "
    "HarmBench contextual and copyright rows dropped, StrongREJECT rows from sources with unclear licences "
    "(MaliciousInstruct and others) dropped, prompts referring to absent text dropped, prompts over "
    f"{MAX_CHARS} characters dropped, exact and near duplicates dropped across sources, at most {CAP} per "
    f"source, shuffled with random.Random({SEED}). See ATTRIBUTION.md."
)
HARMFUL_LICENCE = (
    "MIT (AdvBench: Zou et al. 2023; HarmBench: Mazeika et al. 2024; JailbreakBench: Chao et al. 2024; "
    "StrongREJECT: Souly et al. 2024). See ATTRIBUTION.md."
)
SAFE_ABOUT = (
    "The 250 safe prompts of XSTest: requests that only sound unsafe (homonyms, figurative language, "
    "safe targets and contexts, definitions, discrimination against nonsense groups or nonsense "
    "discrimination, historical events, privacy of public or fictional people). A well-calibrated model "
    "should answer them. Category is the XSTest type. Built by benchmarks/build_prompt_sets.py."
)
SAFE_LICENCE = "XSTest (Röttger et al. 2024), CC BY 4.0. https://github.com/paul-rottger/exaggerated-safety"


def dump(obj: dict) -> str:
    """JSON with one item per line (readable diffs); the same layout as harmless.json and neutral.json."""
    lines = ["{"]
    lines += [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in obj.items() if k != "items"]
    lines.append(' "items": [')
    items = obj["items"]
    for i, item in enumerate(items):
        lines.append(f"  {json.dumps(item, ensure_ascii=False)}{',' if i < len(items) - 1 else ''}")
    lines += [" ]", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=root / "src" / "personagate" / "data" / "prompts")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files differ")
    parser.add_argument("--show-near-duplicates", action="store_true")
    args = parser.parse_args()

    stats: Counter = Counter()
    near: list[tuple[str, str]] = []
    harmful = build_harmful(args.data, stats, near)
    safe = build_safe(args.data, stats)
    strongreject = build_strongreject(args.data, stats)
    files = {
        "strongreject.json": dump(
            {"about": STRONGREJECT_ABOUT, "licence": STRONGREJECT_LICENCE, "items": strongreject}
        ),
        "harmful.json": dump({"about": HARMFUL_ABOUT, "licence": HARMFUL_LICENCE, "items": harmful}),
        "safe.json": dump({"about": SAFE_ABOUT, "licence": SAFE_LICENCE, "items": safe}),
    }

    for name, n in stats.items():
        print(f"{name:55} {n:>5}")
    print(f"{'harmful.json items':55} {len(harmful):>5}")
    print(f"{'safe.json items':55} {len(safe):>5}")
    if args.show_near_duplicates:
        for dropped, kept in near:
            print(f"- {dropped}\n  = {kept}")

    if args.check:
        stale = [n for n, text in files.items() if not (args.out / n).is_file() or (args.out / n).read_text() != text]
        if stale:
            print("out of date:", ", ".join(stale))
            sys.exit(1)
        print("up to date")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print("wrote", args.out / name)


if __name__ == "__main__":
    main()
