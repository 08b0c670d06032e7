"""``personagate`` command line: thin wrappers over the library. User errors print one line, exit 2; an
unexpected exception (a bug) prints one line naming a crash log that holds its traceback, exit 1
(``PERSONAGATE_DEBUG=1`` prints the traceback as well)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

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
    except Exception as exc:  # a bug, not the user's input: one line, the traceback in a file
        log = crash_log(exc)
        if os.environ.get("PERSONAGATE_DEBUG") == "1":
            traceback.print_exception(exc, file=sys.stderr)
        print(
            f"personagate: internal error ({type(exc).__name__}); the traceback is in {log}. Please report it "
            "(PERSONAGATE_DEBUG=1 prints it here)",
            file=sys.stderr,
        )
        return 1


def crash_log(exc: BaseException) -> Path:
    """Write the exception's traceback (and the command line) to a new file; its path."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    handle, name = tempfile.mkstemp(prefix=f"personagate-crash-{stamp}-", suffix=".log")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write("command: " + " ".join(sys.argv) + "\n\n")
        f.write("".join(traceback.format_exception(exc)))
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())
