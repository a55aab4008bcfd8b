"""The model zoo: publish a ``.mar`` into a folder any static HTTP server can serve, or into S3.

Layout of a zoo (``DEST``: a folder, or ``s3://bucket/prefix`` with the same keys under the prefix)::

    DEST/index.json                                        every published model and version (below)
    DEST/.index.lock                                       folder zoos only: flock(2) target
    DEST/<model>/<version>/<release>/<model>.mar           the archive, byte for byte
    DEST/<model>/<version>/<release>/<model>.mar.sha256    ``<sha256>  <model>.mar`` (``sha256sum -c``)
    DEST/<model>/<version>/<release>/<model>.mar.sig       a signed archive's bundle (also inside it)
    DEST/<model>/<version>/<release>/README.md             the model card

``<release>`` is ``<first 16 hex digits of the archive's sha256>-<8 random hex digits>``, new for each
publish (``release.ReleasePaths``). ``index.json`` (``json.dumps(..., indent=2, sort_keys=True)``; URLs
relative to the zoo root; ``R`` the entry's release folder)::

    {"format": 1,
     "models": {"<model>": {"<version>": {"url": "R/<model>.mar", "sha256": "...", "size": 123,
                                          "card": "R/README.md", "published": "2024-01-31T12:00:00Z",
                                          "signature": null | {"bundle": "R/<model>.mar.sig",
                                                               "verified_by_publisher": true,
                                                               "key_sha256": "...", "mode": "key"}}}}}

The index is the record of what is published, and replacing it is the only commit: release files are
written once into a folder of their own and never changed, so at every instant, wherever a publisher is
killed, the index, the files it names and every ``.sha256`` beside a ``.mar`` agree, and the next publish
(plain or ``--force``) proceeds. A version is "already published" when the index lists it. Files the
index no longer names (the release a ``--force`` replaced, folders left by a publisher that died) are
removed after the commit. Zoos written before release folders (``<model>/<version>/<model>.mar``) stay
valid: their entries are read as they are, and their files removed when ``--force`` replaces them.

One publish algorithm (``publish_archive``) drives either store through the same few operations::

    ZooStore                               folder.FolderStore               s3.S3Store
    session() -> context manager           mkdir, flock DEST/.index.lock,   a boto3 client, once the server
                                           remove stale temporaries         is shown to honour If-Match
    read_index() -> (index, token)         token None (the lock suffices)   token: the ETag (None: no index)
    put_file(rel, path) -> (sha256, size)  a new file: fsynced temporary,   PUT with IfNoneMatch='*'
    put_bytes(rel, data, content_type)     os.replace; refused if present   (an existing key: refused)
    replace_index(data, token) -> bool     always True (under the lock)     IfMatch=token / IfNoneMatch='*';
                                                                            False when it lost (412)
    stale_files(prefix) -> [rel]           every file and empty folder      objects older than a day
                                           (``dir/``), under the lock
    remove_files([rel])                    unlink, then rmdir if empty      DeleteObject, in order
    address(rel) -> Path | str             DEST / rel                       s3://bucket/prefix/rel
    name, failures                         str(DEST), (OSError,)            the URL, boto/OS errors

``publish_archive`` copies the archive to a private temporary file and verifies the copy, which is what
it publishes; then, in a session: reads the index, whose every entry is checked (``release.parse_index``)
before anything is written, and refuses a listed version unless ``force``; puts the archive, its
checksum, its bundle and its card into a new release folder; re-reads the index, adds the entry and
calls ``replace_index`` with the token it read, re-reading and retrying (a bounded number of times)
when another publisher got there first; last, removes the files of the entry it replaced and the stale
release folders of the version that no entry names. ``failures`` are the exceptions by which a store's
backend fails; ``publish_archive`` turns them into a ``PublishError`` naming the zoo and the archive.
The modules:

- ``release.py``: what a release is (paths, checked archive, refusal of a published version, the index);
- ``card.py``: the model card;
- ``folder.py`` and ``s3.py``: the two stores (``s3.py`` is imported, with boto3, only for ``s3://``).
"""

from __future__ import annotations

import importlib.util
import logging
import random
import shutil
import tempfile
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
    check_evaluation,
    checksum_file,
    entry_files,
    index_bytes,
    index_entry,
    is_release_file,
    read_checked_archive,
    referenced_files,
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

    def put_file(self, relative: str, source: Path) -> tuple[str, int]: ...

    def put_bytes(self, relative: str, data: bytes, content_type: str) -> None: ...

    def replace_index(self, data: bytes, token: str | None) -> bool: ...

    def stale_files(self, prefix: str) -> list[str]: ...

    def remove_files(self, relatives: list[str]) -> None: ...


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
    (see ``release.read_checked_archive``). What is verified is a private copy, and that copy is what
    is published, so the file changing meanwhile changes nothing."""
    store = store_for(zoo)
    if not archive.is_file():
        raise PublishError(f"{archive}: no such .mar file (publish takes a built archive, not a folder)")
    with tempfile.TemporaryDirectory(prefix="squeezenet-publish-") as tmp:
        snapshot = Path(tmp) / archive.name
        try:
            shutil.copyfile(archive, snapshot)
        except OSError as exc:
            raise PublishError(f"{archive}: cannot read it: {exc}") from exc
        checked = read_checked_archive(snapshot, trust, require_signature)
        if evaluation is not None:  # before anything is written: the card would say "this archive"
            check_evaluation(evaluation, checked)
        if checked.manifest.get("test_only"):
            logger.warning(
                "publishing a TEST-ONLY archive (%s): its card says so", checked.manifest["test_only"]
            )
        try:
            with store.session():
                return _publish(store, checked, force, evaluation)
        except store.failures as exc:
            raise PublishError(f"{store.name}: cannot publish {archive.name}: {exc}") from exc


def _publish(
    store: ZooStore, checked: CheckedArchive, force: bool, evaluation: dict[str, Any] | None
) -> PublishResult:
    """The release's files into a new release folder, then the index entry (the commit), then the
    removal of what the index no longer names."""
    model, version = checked.model, checked.version
    index, _ = store.read_index()  # every entry checked: a bad index stops us before any write
    refuse_published(index["models"].get(model, {}), model, version, str(store.address("")), force)

    paths = ReleasePaths.new(model, version, checked.sha256)
    digest, size = store.put_file(paths.archive, checked.path)
    if (digest, size) != (checked.sha256, checked.size):
        raise PublishError(f"{store.address(paths.archive)}: the copy differs from the verified archive")
    store.put_bytes(paths.checksum, checksum_file(digest, paths.name), "text/plain; charset=utf-8")
    if checked.bundle is not None:
        store.put_bytes(paths.bundle, checked.bundle, BUNDLE_MEDIA_TYPE)
    card = release_card(checked, paths=paths, sha256=digest, size=size, evaluation=evaluation)
    store.put_bytes(paths.card, card.encode("utf-8"), "text/markdown; charset=utf-8")

    signing = signing_record(checked, paths)
    try:
        replaced, committed = _add_to_index(
            store, model, version, index_entry(paths, digest, size, signing), force
        )
    except PublishError:  # the index was not written: nobody names this release
        _remove_quietly(store, paths.files())
        raise
    _remove_unlisted(store, committed, model, version, replaced)
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


def _add_to_index(
    store: ZooStore, model: str, version: str, entry: dict[str, Any], force: bool
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Read-modify-write of the index, made safe by ``replace_index`` and retried when it loses.
    Returns the entry it replaced (None for a new version) and the index it wrote."""
    sleep = RETRY_SLEEP[0]
    for attempt in range(1, INDEX_ATTEMPTS + 1):
        index, token = store.read_index()
        versions = index["models"].setdefault(model, {})
        replaced = versions.get(version)
        if replaced is not None and not force:
            raise PublishError(
                f"{model} {version} was published in {store.address('')} by another publisher meanwhile "
                f"(sha256 {replaced['sha256']}); pass --force to replace it"
            )
        versions[version] = entry
        if store.replace_index(index_bytes(index), token):
            return replaced, index
        logger.info("%s changed while publishing (attempt %d); retrying", store.address(INDEX_FILE), attempt)
        time.sleep(random.uniform(0, sleep))
        sleep = min(sleep * 2, RETRY_SLEEP[1])
    raise PublishError(
        f"{store.address(INDEX_FILE)}: still changed by other publishers after {INDEX_ATTEMPTS} attempts; "
        f"{model} {version} is not published; publish it again"
    )


def _remove_unlisted(
    store: ZooStore, index: dict[str, Any], model: str, version: str, replaced: dict[str, Any] | None
) -> None:
    """After the commit: the files of the entry it replaced, and the stale release folders of this
    version, unless the index still names them. A failure leaves files nobody names, removed by a
    later publish; the publish itself has succeeded."""
    listed = referenced_files(index)
    superseded = entry_files(replaced) if replaced is not None else []
    try:
        stale = [
            name for name in store.stale_files(f"{model}/{version}/") if is_release_file(name, model, version)
        ]
        unlisted = [name for name in dict.fromkeys(superseded + stale) if name not in listed]
        archives_first = sorted(unlisted, key=lambda name: not name.endswith(".mar"))
        if archives_first:
            logger.info("removing %d file(s) %s no longer lists", len(archives_first), INDEX_FILE)
        store.remove_files(archives_first)
    except store.failures as exc:
        logger.warning("%s: could not remove files the index no longer names: %s", store.name, exc)


def _remove_quietly(store: ZooStore, relatives: list[str]) -> None:
    try:
        store.remove_files(relatives)
    except store.failures as exc:
        logger.warning("%s: could not remove the unlisted release %s: %s", store.name, relatives[0], exc)
