"""Input files a command needs, checked before it starts any work: a missing or unreadable one is a
usage error (exit code 2) in every subcommand, named with what it was for."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError


def require_file(path: Path, what: str) -> Path:
    """``path`` when it is a readable file; else UsageError naming ``what`` it was for."""
    if not path.exists():
        raise UsageError(f"{path}: no such {what}")
    if not path.is_file():
        raise UsageError(f"{path}: the {what} is not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{path}: cannot read the {what} (permission denied)")
    return path


def require_folder(path: Path, what: str) -> Path:
    """``path`` when it is a folder; else UsageError naming ``what`` it was for."""
    if not path.is_dir():
        raise UsageError(f"{path}: no such {what} (a folder)")
    return path


def require_archive(path: Path) -> Path:
    """An archive: a .mar file (zip or tgz) or an unpacked archive folder."""
    if path.is_dir():
        return path
    return require_file(path, "archive")
