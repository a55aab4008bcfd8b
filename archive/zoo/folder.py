"""The folder store: a zoo in a local folder, served as it is by any static HTTP server.

Besides the release files (see the package docstring for the layout) the folder holds
``DEST/.index.lock``, the flock(2) target: a session holds an exclusive ``flock`` on it, so publishers
run one at a time and none loses another's index entry. The lock file stays (removing it would race).

Every file is written to a temporary name in its own folder (``.<name>.<random>.tmp``), fsynced, made
0644, then ``os.replace``d and its folder fsynced: a reader never sees half a file, and a crash leaves
the old ``index.json`` intact. The new version's files may then lie in its folder unlisted; they are not
"published" (the index is the record), so publishing again overwrites them without ``force``.
Temporaries left by a publisher that died mid-write are removed under the lock, which every writer
holds, so any temporary present then belongs to nobody.

Under the lock nobody else writes: ``read_index`` gives no version token, ``replace_index`` always
wins, and ``create_only`` needs no check (an existing release folder is left by a crash).
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

    def put_file(self, relative: str, source: Path, *, create_only: bool = False) -> tuple[str, int]:
        """``source`` copied to ``relative``; (sha256, size) of the copy. With ``create_only`` the caller
        expects no release there: files already in the folder are left by a crashed publish (the lock
        rules out a live one) and are overwritten, with a warning."""
        target = self._writable(relative, expect_new=create_only)
        _atomic_copy(source, target)
        return sha256_file(target), target.stat().st_size

    def put_bytes(self, relative: str, data: bytes, content_type: str) -> None:
        """``data`` written to ``relative`` (the content type is the HTTP server's business here)."""
        _atomic_write(self._writable(relative), data)

    def replace_index(self, data: bytes, token: str | None) -> bool:
        """``index.json`` replaced; always wins, as no other publisher can hold the lock meanwhile (so
        ``token``, always None from ``read_index``, is not needed)."""
        _atomic_write(self.root / INDEX_FILE, data)
        return True

    def _writable(self, relative: str, *, expect_new: bool = False) -> Path:
        """``relative``'s folder created and cleared of stale temporaries (we hold the lock)."""
        target = self.root / relative
        folder = target.parent
        if expect_new and folder.exists():
            logger.warning(
                "%s holds files of an unlisted publish (an earlier crash?); overwriting them", folder
            )
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(folder)
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
