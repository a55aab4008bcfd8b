"""The folder store: a zoo in a local folder, served as it is by any static HTTP server.

Besides the release files (see the package docstring for the layout) the folder holds
``DEST/.index.lock``, the flock(2) target: a session holds an exclusive ``flock`` on it, so publishers
run one at a time and none loses another's index entry. The lock file stays (removing it would race).

Every file is written to a temporary name in its own folder (``.<name>.<random>.tmp``), fsynced, made
0644, then ``os.replace``d and its folder fsynced: a reader never sees half a file, and a crash leaves
the old ``index.json`` intact. Release files are written once, in a release folder no index entry
names yet (``put_file`` and ``put_bytes`` refuse to replace an existing file), so a crash at any point
leaves at most an unlisted release folder, which the next publish of that version removes
(``stale_files``: under the lock every file is stale, no other publisher is writing).
Temporaries left by a publisher that died mid-write are removed under the lock, which every writer
holds, so any temporary present then belongs to nobody.

Under the lock nobody else writes: ``read_index`` gives no version token and ``replace_index`` always
wins.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..layout import sha256_file
from .release import INDEX_FILE, empty_index, parse_index

logger = logging.getLogger(__name__)

LOCK_FILE = ".index.lock"


class FolderStore:
    """The zoo at ``root``, a local folder (created by the first publish)."""

    failures: tuple[type[Exception], ...] = (OSError,)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = str(root)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """The zoo folder created, locked for the block, its stale temporaries removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / LOCK_FILE):
            _remove_stale_temporaries(self.root)
            yield

    def address(self, relative: str) -> Path:
        return self.root / relative

    def read_index(self) -> tuple[dict[str, Any], None]:
        """The index, or an empty one when there is none yet; no version token (the lock suffices)."""
        path = self.root / INDEX_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return empty_index(), None
        return parse_index(data, str(path)), None

    def put_file(self, relative: str, source: Path) -> tuple[str, int]:
        """``source`` copied to ``relative``, a new file; (sha256, size) of the copy."""
        target = self._new_file(relative)
        _atomic_copy(source, target)
        return sha256_file(target), target.stat().st_size

    def put_bytes(self, relative: str, data: bytes, content_type: str) -> None:
        """``data`` written to ``relative``, a new file (the content type is the HTTP server's business)."""
        _atomic_write(self._new_file(relative), data)

    def replace_index(self, data: bytes, token: str | None) -> bool:
        """``index.json`` replaced; always wins, as no other publisher can hold the lock meanwhile (so
        ``token``, always None from ``read_index``, is not needed)."""
        _atomic_write(self.root / INDEX_FILE, data)
        return True

    def stale_files(self, prefix: str) -> list[str]:
        """Every file under ``prefix``, and every empty folder (as ``folder/``): under the lock no
        publisher is writing any of them."""
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(self.root).as_posix()
            if path.is_file():
                found.append(relative)
            elif path.is_dir() and not any(path.iterdir()):  # a publisher died removing its files
                found.append(f"{relative}/")
        return found

    def remove_files(self, relatives: list[str]) -> None:
        """The files (and ``folder/``s) removed in the order given, then their folders if that left
        them empty."""
        folders = []
        for relative in relatives:
            target = self.root / relative
            if relative.endswith("/"):
                folders.append(target)
                continue
            target.unlink(missing_ok=True)
            if target.parent not in folders:
                folders.append(target.parent)
        for folder in folders:
            with contextlib.suppress(OSError):  # not empty (another release's files, a temporary)
                folder.rmdir()

    def _new_file(self, relative: str) -> Path:
        """``relative``'s folder created and cleared of stale temporaries (we hold the lock); refused
        when the file exists, as release files are never replaced."""
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(target.parent)
        if target.exists():
            raise FileExistsError(f"{target} exists: release files are written once, never replaced")
        return target


# ---------------------------------------------------------------------------------------- file writes
@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive flock held for the block. The lock file stays: removing it would race."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside ``target``; on success fsynced, made 0644 and renamed over ``target``."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)  # mkstemp makes 0600; a static HTTP server must be able to read the file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _atomic_write(target: Path, data: bytes) -> None:
    with _replacing(target) as handle:
        handle.write(data)


def _atomic_copy(source: Path, target: Path) -> None:
    with source.open("rb") as src, _replacing(target) as handle:
        shutil.copyfileobj(src, handle, 1 << 20)


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files left by a publisher that died mid-write. Only call this holding the lock: every
    writer holds it, so any temporary file present then belongs to nobody."""
    for stale in folder.glob(".*.tmp"):
        logger.warning("removing %s, left by an interrupted publish", stale)
        stale.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
