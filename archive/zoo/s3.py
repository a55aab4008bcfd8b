"""Publish a ``.mar`` into a model zoo kept in S3 (``s3://bucket/prefix``), same layout as a local zoo.

Keys under ``prefix`` (see ``publish`` for the formats; URLs in the index stay relative to the zoo root)::

    <prefix>/index.json
    <prefix>/<model>/<version>/<model>.mar
    <prefix>/<model>/<version>/<model>.mar.sha256
    <prefix>/<model>/<version>/README.md

There is no lock. The archive, its checksum and its card are uploaded first, then ``index.json`` is
rewritten with a conditional put: ``IfMatch=<ETag read>`` (``IfNoneMatch='*'`` when the zoo has no index
yet). A concurrent publisher makes it fail with HTTP 412; the read-modify-write is then retried, a bounded
number of times, so no entry is lost and the index never lists an object that is not there yet.

A new version's archive is itself created with ``IfNoneMatch='*'``: of two publishers of the same version
only one gets to upload, so the index cannot end up pointing at the other's bytes. An unlisted archive
left by a crashed publisher therefore needs ``force`` to be overwritten.

Conditional puts need botocore >= 1.35.65 and a server that honours ``If-Match`` on PutObject (AWS S3
since November 2024). Both are checked before anything is written: a server that ignored the header would
let publishers silently overwrite each other's index entries, so it is refused instead.

The endpoint, credentials and region come from the usual boto3 sources; ``AWS_ENDPOINT_URL`` points the
publisher at another S3 server (MinIO, moto).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import PublishError
from ..layout import sha256_file
from .release import (
    INDEX_FILE,
    INDEX_FORMAT,
    CheckedArchive,
    PublishResult,
    empty_index,
    index_bytes,
    index_entry,
    refuse_published,
    release_card,
    release_paths,
)

logger = logging.getLogger(__name__)

INDEX_ATTEMPTS = 10  # read-modify-write rounds of index.json before giving up
RETRY_SLEEP = (0.05, 0.5)  # seconds: first sleep and cap; doubled each round, jittered
PROBE_KEY = ".conditional-put-probe"  # never written by a server that honours If-Match
_BOGUS_ETAG = '"00000000000000000000000000000000"'
# A conditional put lost to another writer: 412, or 404 when the index vanished since it was read.
_CONFLICT_CODES = {"PreconditionFailed", "NoSuchKey", "ConditionalRequestConflict"}


@dataclass(frozen=True)
class S3Zoo:
    bucket: str
    prefix: str  # "" or "a/b", without slashes at either end

    @classmethod
    def parse(cls, url: str) -> S3Zoo:
        if not url.startswith("s3://"):
            raise PublishError(f"{url}: not an s3://bucket/prefix address")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise PublishError(f"{url}: no bucket name (give s3://bucket/prefix)")
        return cls(bucket, prefix.strip("/"))

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def url(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self.key(relative)}"


def publish_to_s3(
    checked: CheckedArchive, zoo_url: str, *, force: bool, evaluation: dict[str, Any] | None
) -> PublishResult:
    """Add the checked archive to the S3 zoo at ``zoo_url``; refuse a listed version unless ``force``."""
    zoo = S3Zoo.parse(zoo_url)
    try:
        client = boto3.session.Session().client("s3")  # a session per call: publishers may be threads
        _require_conditional_puts(client, zoo)
        return _publish(client, zoo, checked, force, evaluation)
    except ClientError as exc:
        raise PublishError(f"{zoo_url}: cannot publish {checked.path.name}: {exc}") from exc
    except BotoCoreError as exc:
        raise PublishError(f"{zoo_url}: cannot publish {checked.path.name}: {exc}") from exc
    except OSError as exc:
        raise PublishError(f"{zoo_url}: cannot publish {checked.path.name}: {exc}") from exc


def _publish(
    client: Any, zoo: S3Zoo, checked: CheckedArchive, force: bool, evaluation: dict[str, Any] | None
) -> PublishResult:
    model, version = checked.model, checked.version
    index, _ = _read_index(client, zoo)
    refuse_published(index["models"].get(model, {}), model, version, zoo.url(""), force)

    name, url, card = release_paths(model, version)
    digest = sha256_file(checked.path)
    size = checked.path.stat().st_size
    _upload_archive(client, zoo, checked, url, create_only=not force)
    _put(client, zoo, f"{url}.sha256", f"{digest}  {name}\n".encode(), "text/plain; charset=utf-8")
    text = release_card(checked, name=name, url=url, sha256=digest, size=size, evaluation=evaluation)
    _put(client, zoo, card, text.encode("utf-8"), "text/markdown; charset=utf-8")

    _add_to_index(client, zoo, model, version, index_entry(url, card, digest, size), force)
    logger.info("published %s %s as %s (%d bytes, sha256 %s)", model, version, zoo.url(url), size, digest)
    return PublishResult(zoo.url(url), digest, zoo.url(card), zoo.url(INDEX_FILE), url, model, version, size)


def _upload_archive(client: Any, zoo: S3Zoo, checked: CheckedArchive, url: str, create_only: bool) -> None:
    """One PUT (archives up to 5 GB); ``create_only`` claims the key so one publisher owns the version."""
    condition = {"IfNoneMatch": "*"} if create_only else {}
    with checked.path.open("rb") as body:
        try:
            client.put_object(
                Bucket=zoo.bucket,
                Key=zoo.key(url),
                Body=body,
                ContentType="application/octet-stream",
                **condition,
            )
        except ClientError as exc:
            if _error_code(exc) not in _CONFLICT_CODES:
                raise
            raise PublishError(
                f"{zoo.url(url)} exists but {INDEX_FILE} does not list it: another publisher is publishing "
                "this version right now, or an earlier publish died before updating the index; "
                "check the index and pass --force to overwrite it"
            ) from exc


def _add_to_index(
    client: Any, zoo: S3Zoo, model: str, version: str, entry: dict[str, Any], force: bool
) -> None:
    """Read-modify-write of index.json, made safe by a conditional put and retried when it loses."""
    sleep = RETRY_SLEEP[0]
    for attempt in range(1, INDEX_ATTEMPTS + 1):
        index, etag = _read_index(client, zoo)
        versions = index["models"].setdefault(model, {})
        if version in versions and not force and versions[version].get("sha256") != entry["sha256"]:
            raise PublishError(
                f"{model} {version} was published in {zoo.url('')} by another publisher meanwhile "
                f"(sha256 {versions[version].get('sha256')}); pass --force to replace it"
            )
        versions[version] = entry
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            _put(client, zoo, INDEX_FILE, index_bytes(index), "application/json", **condition)
            return
        except ClientError as exc:
            if _error_code(exc) not in _CONFLICT_CODES:
                raise
        logger.info("%s changed while publishing (attempt %d); retrying", zoo.url(INDEX_FILE), attempt)
        time.sleep(random.uniform(0, sleep))
        sleep = min(sleep * 2, RETRY_SLEEP[1])
    raise PublishError(
        f"{zoo.url(INDEX_FILE)}: still changed by other publishers after {INDEX_ATTEMPTS} attempts; "
        f"{model} {version} is uploaded but not listed; publish it again"
    )


def _read_index(client: Any, zoo: S3Zoo) -> tuple[dict[str, Any], str | None]:
    """The zoo's index and its ETag; an empty index and None when there is none yet."""
    try:
        response = client.get_object(Bucket=zoo.bucket, Key=zoo.key(INDEX_FILE))
    except ClientError as exc:
        if _error_code(exc) in {"NoSuchKey", "404"}:
            return empty_index(), None
        raise
    where = zoo.url(INDEX_FILE)
    try:
        index = json.loads(response["Body"].read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{where}: not valid JSON ({exc}); repair or remove it by hand") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise PublishError(f"{where}: not a format {INDEX_FORMAT} zoo index")
    if not isinstance(index.get("models"), dict):
        raise PublishError(f"{where}: 'models' is missing or not an object")
    return index, response["ETag"]


def _require_conditional_puts(client: Any, zoo: S3Zoo) -> None:
    """Refuse to publish unless botocore can send, and the server honours, conditional puts."""
    members = client.meta.service_model.operation_model("PutObject").input_shape.members
    if "IfMatch" not in members or "IfNoneMatch" not in members:
        raise PublishError(
            "this botocore cannot send conditional puts (IfMatch / IfNoneMatch on PutObject), which "
            "publishing to S3 needs to keep concurrent publishers from losing entries; "
            "pip install 'boto3>=1.35.65'"
        )
    # If-Match with an ETag no object has: a server that honours it answers 412 (or 404 when the key
    # does not exist) and writes nothing; one that ignores it writes the probe object.
    key = zoo.key(PROBE_KEY)
    try:
        client.put_object(Bucket=zoo.bucket, Key=key, Body=b"", IfMatch=_BOGUS_ETAG)
    except ClientError as exc:
        if _error_code(exc) in _CONFLICT_CODES:
            return
        if _error_code(exc) in {"NotImplemented", "InvalidArgument", "InvalidRequest"}:
            raise PublishError(_NO_CONDITIONAL_PUTS.format(zoo=zoo.url(""), detail=f": {exc}")) from exc
        raise
    client.delete_object(Bucket=zoo.bucket, Key=key)
    raise PublishError(_NO_CONDITIONAL_PUTS.format(zoo=zoo.url(""), detail=" (If-Match was ignored)"))


_NO_CONDITIONAL_PUTS = (
    "{zoo}: the S3 server does not honour conditional puts{detail}; without them concurrent publishers "
    "would overwrite each other's index entries. Publish to a local folder and upload it from one "
    "publisher at a time"
)


def _put(client: Any, zoo: S3Zoo, relative: str, data: bytes, content_type: str, **condition: str) -> None:
    client.put_object(
        Bucket=zoo.bucket, Key=zoo.key(relative), Body=data, ContentType=content_type, **condition
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
