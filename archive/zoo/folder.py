"""A zoo in a local folder, served as it is by any static HTTP server (phase 1: moved from publish.py)."""

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

from ..errors import PublishError
from ..layout import sha256_file
from .release import (
    CARD_FILE,
    INDEX_FILE,
    CheckedArchive,
    PublishResult,
    index_bytes,
    index_entry,
    read_index,
    refuse_published,
    release_card,
    release_paths,
)

logger = logging.getLogger(__name__)

LOCK_FILE = ".index.lock"


def publish_to_folder(
    checked: CheckedArchive, dest: Path, *, force: bool, evaluation: dict[str, Any] | None
) -> PublishResult:
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with _locked(dest / LOCK_FILE):
            return _publish_locked(checked, dest, force, evaluation)
    except OSError as exc:
        raise PublishError(f"{dest}: cannot publish {checked.path.name}: {exc}") from exc


def _publish_locked(
    checked: CheckedArchive, dest: Path, force: bool, evaluation: dict[str, Any] | None
) -> PublishResult:
    model, version = checked.model, checked.version
    index_path = dest / INDEX_FILE
    _remove_stale_temporaries(dest)
    index = read_index(index_path)
    versions = index["models"].setdefault(model, {})
    refuse_published(versions, model, version, str(dest), force)

    name, url, card_url = release_paths(model, version)
    folder = dest / model / version
    if folder.exists() and version not in versions:
        logger.warning("%s holds files of an unlisted publish (an earlier crash?); overwriting them", folder)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    mar_path = folder / name
    _atomic_copy(checked.path, mar_path)
    digest = sha256_file(mar_path)
    size = mar_path.stat().st_size
    _atomic_write(folder / f"{name}.sha256", f"{digest}  {name}\n".encode())

    card_path = folder / CARD_FILE
    card = release_card(checked, name=name, url=url, sha256=digest, size=size, evaluation=evaluation)
    _atomic_write(card_path, card.encode("utf-8"))

    versions[version] = index_entry(url, card_url, digest, size)
    _atomic_write(index_path, index_bytes(index))
    logger.info("published %s %s as %s (%d bytes, sha256 %s)", model, version, url, size, digest)
    return PublishResult(mar_path, digest, card_path, index_path, url, model, version, size)


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
