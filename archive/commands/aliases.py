"""Old option spellings, kept working for a release but hidden from ``--help``, and the archive given
either positionally or with the old ``--archive``.

An old spelling is an extra option string of the same argparse action (so ``required`` and defaults
behave exactly as for the new one); :class:`HelpFormatter` leaves it out of usage and help lines."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError

HIDDEN_SPELLINGS: set[str] = set()


def hidden(*spellings: str) -> tuple[str, ...]:
    """Option strings that parse but are not shown: ``add_argument("--new", *hidden("--old"), ...)``."""
    HIDDEN_SPELLINGS.update(spellings)
    return spellings


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter without the hidden spellings (usage shows the first, new spelling anyway).
    An action's first spelling is always shown: a spelling hidden in one subcommand (serve's old
    ``--model-name``) can be another's current one (build's)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        first, *others = action.option_strings or [""]
        shown = [first, *(option for option in others if option not in HIDDEN_SPELLINGS)] if first else []
        if shown == action.option_strings:
            return super()._format_action_invocation(action)
        visible = argparse.Action(shown, action.dest, nargs=action.nargs, metavar=action.metavar)
        return super()._format_action_invocation(visible)


def add_archive_argument(
    parser: argparse.ArgumentParser, help: str, default: Path | None = None, optional: bool = False
) -> None:
    """The archive as the first positional argument, as in every subcommand; ``--archive`` (the spelling
    of ``serve`` and ``evaluate`` in release 1.1.0) still works. Read it back with :func:`archive_path`."""
    if default is not None or optional:
        shown = f" (default: {default})" if default is not None else ""
        parser.add_argument("archive_positional", nargs="?", type=Path, metavar="ARCHIVE", help=help + shown)
    else:
        parser.add_argument("archive_positional", type=Path, metavar="ARCHIVE", help=help)
    parser.add_argument("--archive", type=Path, dest="archive_option", help=argparse.SUPPRESS)
    parser.set_defaults(archive_default=default)


def archive_path(args: argparse.Namespace) -> Path | None:
    """The archive named positionally or with ``--archive`` (both: a usage error), else the default."""
    positional, option = args.archive_positional, args.archive_option
    if positional is not None and option is not None and positional != option:
        raise UsageError(f"two archives given: {positional} and --archive {option}")
    return positional or option or args.archive_default
