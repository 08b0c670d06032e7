"""``personagate`` command line: thin wrappers over the library. User errors print one line, exit 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from personagate.cli import directions, generate, study
from personagate.cli.args import Parser
from personagate.errors import PersonagateError


def build_parser() -> Parser:
    parser = Parser(prog="personagate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    generate.add_parser(sub)
    directions.add_parser(sub)
    study.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad flag (one line printed by Parser.error) or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.run(args)
    except PersonagateError as exc:
        print(f"personagate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("personagate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
