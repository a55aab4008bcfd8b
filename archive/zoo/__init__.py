"""The model zoo: publish a ``.mar`` into a folder any static HTTP server can serve, or into S3.

Layout of a zoo (``DEST``: a folder, or ``s3://bucket/prefix`` with the same keys under the prefix)::

    DEST/index.json                              every published model and version (see below)
    DEST/.index.lock                             folder zoos only: flock(2) target; serialises publishers
    DEST/<model>/<version>/<model>.mar           the archive, byte for byte
    DEST/<model>/<version>/<model>.mar.sha256    ``<sha256>  <model>.mar`` (``sha256sum -c`` format)
    DEST/<model>/<version>/<model>.mar.sig       a signed archive's signature bundle (also inside it)
    DEST/<model>/<version>/README.md             the model card

``index.json`` (``json.dumps(..., indent=2, sort_keys=True)``; URLs relative to the zoo root)::

    {"format": 1,
     "models": {"<model>": {"<version>": {"url": "<model>/<version>/<model>.mar", "sha256": "...",
                                          "size": 123, "card": "<model>/<version>/README.md",
                                          "published": "2024-01-31T12:00:00Z",
                                          "signature": null | {"bundle": "<model>/<version>/<model>.mar.sig",
                                                               "verified_by_publisher": true,
                                                               "key_sha256": "...", "mode": "key"}}}}}

The index is the record of what is published: a version is "already published" when the index lists it,
and the index is replaced last, so it never lists a file that is not there yet.

One publish algorithm (``publish_archive``) drives either store through the same few operations::

    ZooStore                               folder.FolderStore               s3.S3Store
    session() -> context manager           mkdir, flock DEST/.index.lock,   a boto3 client, once the server
                                           remove stale temporaries         is shown to honour If-Match
    read_index() -> (index, token)         token None (the lock suffices)   token: the ETag (None: no index)
    put_file(rel, path, *, create_only)    fsynced temporary, os.replace;   PUT; IfNoneMatch='*' when
      -> (sha256, size)                    create_only: crash debris is     create_only (another publisher
                                           overwritten, with a warning      owns the version: refused)
    put_bytes(rel, data, content_type)     fsynced temporary, os.replace    PUT
    replace_index(data, token) -> bool     always True (under the lock)     IfMatch=token / IfNoneMatch='*';
                                                                            False when it lost (412)
    address(rel) -> Path | str             DEST / rel                       s3://bucket/prefix/rel
    name, failures                         str(DEST), (OSError,)            the URL, boto/OS errors

``publish_archive`` verifies the archive before anything is written; then, in a session, reads the index
and refuses a listed version unless ``force``; puts the archive (create-only unless ``force``), its
checksum and its card; last, re-reads the index, adds the entry and calls ``replace_index`` with the token
it read, re-reading and retrying (a bounded number of times) when another publisher got there first.
``failures`` are the exceptions by which a store's backend fails; ``publish_archive`` turns them into a
``PublishError`` naming the zoo and the archive. The modules:

- ``release.py``: what a release is (paths, checked archive, refusal of a published version, the index);
- ``card.py``: the model card;
- ``folder.py`` and ``s3.py``: the two stores (``s3.py`` is imported, with boto3, only for ``s3://``).
"""

from __future__ import annotations

import importlib.util
import logging
import random
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from ..errors import PublishError
from ..signatures import Trust
from .folder import LOCK_FILE, FolderStore
from .release import (
    INDEX_FILE,
    CheckedArchive,
    PublishResult,
    ReleasePaths,
    checksum_file,
    index_bytes,
    index_entry,
    read_checked_archive,
    refuse_published,
    release_card,
    signing_record,
)

__all__ = [
    "INDEX_FILE",
    "LOCK_FILE",
    "S3_NEEDS_BOTO3",
    "PublishResult",
    "ZooStore",
    "publish_archive",
    "store_for",
]

logger = logging.getLogger(__name__)

S3_NEEDS_BOTO3 = "s3:// destinations need boto3: pip install boto3"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
INDEX_ATTEMPTS = 10  # read-modify-write rounds of index.json before giving up
RETRY_SLEEP = (0.05, 0.5)  # seconds: first sleep and cap; doubled each round, jittered


class ZooStore(Protocol):
    """Where a zoo's files are kept: the operations ``publish_archive`` needs (see the module docstring)."""

    name: str  # the zoo as given, for messages
    failures: tuple[type[Exception], ...]  # what the backend raises when it fails

    def session(self) -> AbstractContextManager[None]: ...

    def address(self, relative: str) -> Path | str: ...

    def read_index(self) -> tuple[dict[str, Any], str | None]: ...

    def put_file(self, relative: str, source: Path, *, create_only: bool = False) -> tuple[str, int]: ...

    def put_bytes(self, relative: str, data: bytes, content_type: str) -> None: ...

    def replace_index(self, data: bytes, token: str | None) -> bool: ...


def store_for(zoo: Path | str) -> ZooStore:
    """The store ``zoo`` names: ``s3://bucket/prefix``, or a local folder; other URLs are refused."""
    if not (isinstance(zoo, str) and "://" in zoo):
        return FolderStore(Path(zoo))
    if not zoo.startswith("s3://"):
        raise PublishError(f"{zoo}: unsupported zoo destination; give a local folder or s3://bucket/prefix")
    if importlib.util.find_spec("boto3") is None:
        raise PublishError(S3_NEEDS_BOTO3)
    from .s3 import S3Store  # imports boto3, needed only here

    return S3Store(zoo)


def publish_archive(
    archive: Path,
    zoo: Path | str,
    *,
    force: bool = False,
    evaluation: dict[str, Any] | None = None,
    trust: Trust | None = None,
    require_signature: bool = False,
) -> PublishResult:
    """Add ``archive`` to the zoo at ``zoo``; refuse a version already in its index unless ``force``.
    ``trust``: a signed archive's signature must verify; ``require_signature``: unsigned ones are refused
    (see ``release.read_checked_archive``)."""
    store = store_for(zoo)
    checked = read_checked_archive(archive, trust, require_signature)
    try:
        with store.session():
            return _publish(store, checked, force, evaluation)
    except store.failures as exc:
        raise PublishError(f"{store.name}: cannot publish {archive.name}: {exc}") from exc


def _publish(
    store: ZooStore, checked: CheckedArchive, force: bool, evaluation: dict[str, Any] | None
) -> PublishResult:
    """The archive, its checksum and its card first, the index entry last."""
    model, version = checked.model, checked.version
    index, _ = store.read_index()
    refuse_published(index["models"].get(model, {}), model, version, str(store.address("")), force)

    paths = ReleasePaths.of(model, version)
    digest, size = store.put_file(paths.archive, checked.path, create_only=not force)
    store.put_bytes(paths.checksum, checksum_file(digest, paths.name), "text/plain; charset=utf-8")
    if checked.bundle is not None:
        store.put_bytes(paths.bundle, checked.bundle, BUNDLE_MEDIA_TYPE)
    card = release_card(checked, paths=paths, sha256=digest, size=size, evaluation=evaluation)
    store.put_bytes(paths.card, card.encode("utf-8"), "text/markdown; charset=utf-8")

    signing = signing_record(checked, paths)
    _add_to_index(store, model, version, index_entry(paths, digest, size, signing), force)
    logger.debug(
        "published %s %s as %s (%d bytes, sha256 %s)",
        model,
        version,
        store.address(paths.archive),
        size,
        digest,
    )
    return PublishResult(
        store.address(paths.archive),
        digest,
        store.address(paths.card),
        store.address(INDEX_FILE),
        paths.archive,
        model,
        version,
        size,
        signing,
    )


def _add_to_index(store: ZooStore, model: str, version: str, entry: dict[str, Any], force: bool) -> None:
    """Read-modify-write of the index, made safe by ``replace_index`` and retried when it loses."""
    sleep = RETRY_SLEEP[0]
    for attempt in range(1, INDEX_ATTEMPTS + 1):
        index, token = store.read_index()
        versions = index["models"].setdefault(model, {})
        if version in versions and not force and versions[version].get("sha256") != entry["sha256"]:
            raise PublishError(
                f"{model} {version} was published in {store.address('')} by another publisher meanwhile "
                f"(sha256 {versions[version].get('sha256')}); pass --force to replace it"
            )
        versions[version] = entry
        if store.replace_index(index_bytes(index), token):
            return
        logger.info("%s changed while publishing (attempt %d); retrying", store.address(INDEX_FILE), attempt)
        time.sleep(random.uniform(0, sleep))
        sleep = min(sleep * 2, RETRY_SLEEP[1])
    raise PublishError(
        f"{store.address(INDEX_FILE)}: still changed by other publishers after {INDEX_ATTEMPTS} attempts; "
        f"{model} {version} is uploaded but not listed; publish it again"
    )
