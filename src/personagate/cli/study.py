"""``personagate reproduce|run|report|spec|score``: the study and what is done with its results."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import sys
from pathlib import Path
from typing import Any

from personagate.cli import args as common
from personagate.errors import PersonagateError


def protocol_help() -> str:
    from personagate.experiments import protocols

    return "; ".join(f"{name}: {protocols.get(name).help}" for name in protocols.names())


def add_parsers(sub: Any) -> None:
    from personagate.experiments import protocols

    names = list(protocols.names())
    for name, helptext in (
        ("reproduce", "run the paper's study (the built-in spec) on a model"),
        ("run", "run a study spec (TOML); copy the built-in one with `personagate spec`"),
    ):
        study = sub.add_parser(name, help=helptext)
        if name == "run":
            study.add_argument("spec", type=Path, help="the study spec (TOML)")
        study.add_argument("--model", default=None, help="overrides [model] id of the spec")
        study.add_argument("--dtype", default=None, choices=common.DTYPES, help="overrides [model] dtype of the spec")
        study.add_argument("--quick", action="store_true", help="every arm, fewer prompts, seeds and layers")
        study.add_argument(
            "--protocol",
            choices=names,
            default=protocols.DEFAULT,
            help=protocol_help(),
        )
        study.add_argument(
            "--out", type=common.out_path, default=None, help="run directory (default runs/<model>-<profile>)"
        )
        study.add_argument("--quiet", action="store_true", help="no progress bars")
        study.add_argument(
            "--workers", type=common.positive_int, default=None, help="measure on N Ray actors (personagate[ray])"
        )
        study.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start one here)")
        study.add_argument(
            "--gpus-per-worker", type=common.non_negative_float, default=0.0, help="GPUs each actor reserves"
        )
        study.set_defaults(run=run_study)
    rep = sub.add_parser("report", help="rebuild summary.csv and report.html from a run directory")
    rep.add_argument("run_dir", type=Path, help="a run directory (made by reproduce or run)")
    rep.add_argument("--markdown", action="store_true", help="also print the summary as a Markdown table")
    rep.add_argument("--plots", type=common.out_path, default=None, help="also write the plots as PNG files here")
    rep.add_argument("--profile", action="store_true", help="also print where the run's time went, per stage")
    rep.set_defaults(run=report)
    export = sub.add_parser("export", help="write a run's tables again, as CSV/JSONL or Parquet")
    export.add_argument("run_dir", type=Path, help="a run directory (made by reproduce or run)")
    export.add_argument("--format", choices=["csv", "parquet"], default="parquet")
    export.set_defaults(run=export_run)
    compare = sub.add_parser("compare", help="two runs' verdicts side by side (e.g. protocol paper and v3)")
    compare.add_argument("run_a", type=Path, help="a run directory (its verdicts are the first column)")
    compare.add_argument("run_b", type=Path, help="another run directory on the same model")
    compare.add_argument("--out", type=common.out_path, default=None, help="also write the table as an HTML page here")
    compare.set_defaults(run=compare_runs)
    spec = sub.add_parser("spec", help="print the built-in study spec (TOML) to copy and edit")
    spec.add_argument("--protocol", choices=names, default=protocols.DEFAULT, help="print this protocol's spec file")
    spec.set_defaults(run=print_spec)
    score = sub.add_parser("score", help="add a 0/1 refusal column to a CSV with the phrase detector")
    score.add_argument("csv", type=Path)
    score.add_argument("--text-column", required=True)
    score.add_argument("--column", default="refusal", help="name of the new column (must not exist yet)")
    score.add_argument("--out", type=common.out_path, required=True)
    score.set_defaults(run=score_csv)


def run_study(args: argparse.Namespace) -> int:
    from personagate.experiments.protocols import load_spec, profile_name
    from personagate.experiments.study import run_study as run
    from personagate.report import write_report
    from personagate.report.terminal import verdict_table

    spec = load_spec(getattr(args, "spec", None), quick=args.quick, protocol=args.protocol)
    if args.dtype:
        spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, dtype=args.dtype))
    model = args.model or spec.model.id
    profile = profile_name(spec.protocol, args.quick) + (f"-{args.dtype}" if args.dtype not in (None, "auto") else "")
    out = args.out or Path("runs") / f"{Path(model).name}-{profile}"
    if args.ray_address and not args.workers:
        raise PersonagateError("--ray-address needs --workers N")
    results = run(
        spec,
        out,
        model=model,
        progress=not args.quiet,
        workers=args.workers or 0,
        ray_address=args.ray_address,
        gpus_per_worker=args.gpus_per_worker,
    )
    write_report(results)
    print(verdict_table(results))
    for name in ("verdicts.csv", "summary.csv", "report.html"):
        print(f"wrote {results.path / name}")
    return 0


def report(args: argparse.Namespace) -> int:
    from personagate.outputs import check_output_dir
    from personagate.report import load_results, markdown, rebuild, save_plots

    if args.plots:
        check_output_dir(args.plots, "--plots")
    results = load_results(args.run_dir)  # computed once: exports, report, markdown and plots share it
    # status on stderr, so that `report --markdown > results.md` holds the markdown alone
    print(f"wrote {rebuild(results)}", file=sys.stderr)
    if args.markdown:
        print(markdown(results))
    if args.profile:
        from personagate.report.profile import profile_text

        print(profile_text(results.profile))
    if args.plots:
        for path in save_plots(results, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def export_run(args: argparse.Namespace) -> int:
    from personagate.experiments.analysis.exports import write_exports
    from personagate.report import load_results

    for path in write_exports(load_results(args.run_dir), (args.format,)):
        print(f"wrote {path}")
    return 0


def compare_runs(args: argparse.Namespace) -> int:
    from personagate.outputs import check_output_file, write_atomically
    from personagate.report import load_results
    from personagate.report.compare import markdown, page

    if args.out is not None:
        check_output_file(args.out)
    a, b = load_results(args.run_a), load_results(args.run_b)
    print(markdown(a, b))
    if args.out is not None:
        text = page(a, b)
        write_atomically(args.out, lambda f: f.write(text))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def print_spec(args: argparse.Namespace) -> int:
    from personagate.experiments import protocols
    from personagate.experiments.design.profiles import spec_file_text

    print(spec_file_text(protocols.get(args.protocol).spec), end="")
    return 0


def score_csv(args: argparse.Namespace) -> int:
    from personagate.checks import read_text
    from personagate.outputs import check_output_file, write_atomically
    from personagate.scoring.phrases import is_refusal

    text = read_text(args.csv, "CSV")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    except csv.Error as exc:
        raise PersonagateError(f"could not parse {args.csv}: {exc}") from None
    longer = next((i for i, row in enumerate(rows, start=2) if None in row), None)
    if longer is not None:
        raise PersonagateError(f"{args.csv}: line {longer} has more fields than the header; fix the file")
    if args.text_column not in fields:
        raise PersonagateError(f"{args.csv} has no column {args.text_column!r}; columns: {', '.join(fields)}")
    if args.column in fields:
        raise PersonagateError(f"{args.csv} already has a column {args.column!r}; name the new one with --column")
    check_output_file(args.out)
    for row in rows:
        row[args.column] = int(is_refusal(row[args.text_column] or ""))

    def write(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=[*fields, args.column])
        writer.writeheader()
        writer.writerows(rows)

    write_atomically(args.out, write)
    print(f"{sum(int(r[args.column]) for r in rows)}/{len(rows)} rows refuse; wrote {args.out}")
    return 0
