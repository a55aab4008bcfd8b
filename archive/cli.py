"""``squeezenet-mar``: build, verify and publish the SqueezeNet 1.1 MMS archive, serve it, call it.

This module and the subcommands in ``commands/`` are the only code that prints or chooses exit codes:
library functions return values or raise an ``ArchiveToolError`` whose class carries the exit code,
turned into ``error: ...`` and that code here, in one place.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .commands import COMMANDS
from .commands.aliases import HelpFormatter
from .errors import ArchiveToolError

logger = logging.getLogger("squeezenet_mar")

EPILOG = """exit codes: 0 ok, 1 other error, 2 usage (bad option, missing or unreadable input file),
3 download failed, 4 model check failed, 5 verification failed, 6 publish refused,
7 prediction failed or server unreachable, 8 model server failed to start or to register the model,
9 the archive's signature does not verify (unsigned, another signer, a file changed since signing)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="squeezenet-mar",
        description="Build, verify, publish, serve and call the ONNX model zoo's SqueezeNet 1.1 "
        "as a Multi Model Server archive (.mar).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {tool_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    for subparser in sub.choices.values():  # -v after the subcommand too: squeezenet-mar serve -v
        subparser.formatter_class = HelpFormatter  # old spellings parse, unshown
        subparser.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
        )
    return parser


def tool_version() -> str:
    """The installed distribution's version (pyproject.toml's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("squeezenet-mar")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    tool, handler = logging.getLogger("squeezenet_mar"), logging.getLogger("squeezenet_handler")
    levels = (tool.level, handler.level)  # restored afterwards: main() may run in-process (tests, scripts)
    if not args.verbose:
        tool.setLevel(logging.INFO)
        # The handler's load-time notes are for MMS's worker logs; run in-process by build, verify
        # --run and evaluate, its failures reach the command as exceptions.
        handler.setLevel(logging.ERROR)
    try:
        return args.func(args)
    except ArchiveToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        tool.setLevel(levels[0])
        handler.setLevel(levels[1])


if __name__ == "__main__":
    sys.exit(main())
