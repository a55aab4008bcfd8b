"""The S3 store: a zoo kept in S3 (``s3://bucket/prefix``), with a folder zoo's layout under ``prefix``.

The only module that imports boto3 (``store_for`` imports it only for an ``s3://`` zoo).

There is no lock. A release's files (archive, checksum, bundle, card) are uploaded into a release folder
no index entry names yet, each with ``IfNoneMatch='*'`` (written once, never replaced); then
``index.json`` is rewritten with a conditional put: ``IfMatch=<ETag read>`` (``IfNoneMatch='*'`` when the
zoo has no index yet). A concurrent publisher makes it fail with HTTP 412: ``replace_index`` answers
False and the publish re-reads the index and tries again, a bounded number of times, so no entry is lost
and the index never lists an object that is not there yet. Each PUT is atomic, so whenever a publisher
dies the index, the objects it names and every ``.sha256`` beside a ``.mar`` agree.

Release folders nobody lists (a publisher died, or lost) are removed by a later publish of the version
once they are older than ``stale_after`` (a day): a younger one may belong to a publisher still at
work, whose index entry is yet to come (the assumption: no publish takes a day from its first upload
to its index write).

Conditional puts need botocore >= 1.35.65 and a server that honours ``If-Match`` on PutObject (AWS S3
since November 2024). A session checks both before anything is written: a server that ignored the header
would let publishers silently overwrite each other's index entries, so it is refused instead.

The endpoint, credentials and region come from the usual boto3 sources; ``AWS_ENDPOINT_URL`` points the
publisher at another S3 server (MinIO, moto).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import PublishError
from ..layout import sha256_file
from .release import INDEX_FILE, empty_index, parse_index

logger = logging.getLogger(__name__)

PROBE_KEY = ".conditional-put-probe"  # never written by a server that honours If-Match
_BOGUS_ETAG = '"00000000000000000000000000000000"'
# A conditional put lost to another writer: 412, or 404 when the index vanished since it was read.
_CONFLICT_CODES = {"PreconditionFailed", "NoSuchKey", "ConditionalRequestConflict"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "a/b", without slashes at either end

    @classmethod
    def parse(cls, url: str) -> S3Location:
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


class S3Store:
    """The zoo at ``url`` (``s3://bucket/prefix``); the bucket must exist."""

    failures: tuple[type[Exception], ...] = (ClientError, BotoCoreError, OSError)
    stale_after = timedelta(days=1)  # an unlisted release folder younger than this may be in flight

    def __init__(self, url: str) -> None:
        self.name = url
        self.location = S3Location.parse(url)
        self._client: Any = None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """A client for the block (one per publish: publishers may be threads), once the server has
        shown it honours conditional puts."""
        self._client = boto3.session.Session().client("s3")
        try:
            _require_conditional_puts(self._client, self.location)
            yield
        finally:
            self._client = None

    def address(self, relative: str) -> str:
        return self.location.url(relative)

    def read_index(self) -> tuple[dict[str, Any], str | None]:
        """The index and its ETag; an empty index and None when there is none yet."""
        return get_index(self._session_client(), self.location)

    def put_file(self, relative: str, source: Path) -> tuple[str, int]:
        """One PUT (archives up to 5 GB) of a new object; (sha256, size) of ``source``."""
        digest, size = sha256_file(source), source.stat().st_size
        with source.open("rb") as body:
            self._put_new(relative, body, "application/octet-stream")
        return digest, size

    def put_bytes(self, relative: str, data: bytes, content_type: str) -> None:
        self._put_new(relative, data, content_type)

    def _put_new(self, relative: str, body: Any, content_type: str) -> None:
        """A new object (``IfNoneMatch='*'``): release files are written once, never replaced."""
        try:
            _put(self._session_client(), self.location, relative, body, content_type, IfNoneMatch="*")
        except ClientError as exc:
            if _error_code(exc) not in _CONFLICT_CODES:
                raise
            raise PublishError(
                f"{self.address(relative)} exists already: release files are written once, never replaced"
            ) from exc

    def stale_files(self, prefix: str) -> list[str]:
        """Objects under ``prefix`` last written more than ``stale_after`` ago."""
        client, cutoff = self._session_client(), datetime.now(UTC) - self.stale_after
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self.location.key(prefix)
        )
        start = len(self.location.key(""))
        return sorted(
            item["Key"][start:]
            for page in pages
            for item in page.get("Contents", [])
            if item["LastModified"] < cutoff
        )

    def remove_files(self, relatives: list[str]) -> None:
        """The objects deleted one by one, in the order given (absent ones are no error in S3)."""
        for relative in relatives:
            self._session_client().delete_object(Bucket=self.location.bucket, Key=self.location.key(relative))

    def replace_index(self, data: bytes, token: str | None) -> bool:
        """``index.json`` replaced if it still has the ETag ``token`` (if there is still none, for
        None); False when another publisher changed it since it was read."""
        condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}
        try:
            _put(self._session_client(), self.location, INDEX_FILE, data, "application/json", **condition)
        except ClientError as exc:
            if _error_code(exc) not in _CONFLICT_CODES:
                raise
            return False
        return True

    def _session_client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3Store used outside its session()")
        return self._client


def get_index(client: Any, location: S3Location) -> tuple[dict[str, Any], str | None]:
    """The zoo's index and its ETag; an empty index and None when there is none yet."""
    try:
        response = client.get_object(Bucket=location.bucket, Key=location.key(INDEX_FILE))
    except ClientError as exc:
        if _error_code(exc) in {"NoSuchKey", "404"}:
            return empty_index(), None
        raise
    return parse_index(response["Body"].read(), location.url(INDEX_FILE)), response["ETag"]


def _require_conditional_puts(client: Any, location: S3Location) -> None:
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
    key = location.key(PROBE_KEY)
    try:
        client.put_object(Bucket=location.bucket, Key=key, Body=b"", IfMatch=_BOGUS_ETAG)
    except ClientError as exc:
        if _error_code(exc) in _CONFLICT_CODES:
            return
        if _error_code(exc) in {"NotImplemented", "InvalidArgument", "InvalidRequest"}:
            raise PublishError(_NO_CONDITIONAL_PUTS.format(zoo=location.url(""), detail=f": {exc}")) from exc
        raise
    client.delete_object(Bucket=location.bucket, Key=key)
    raise PublishError(_NO_CONDITIONAL_PUTS.format(zoo=location.url(""), detail=" (If-Match was ignored)"))


_NO_CONDITIONAL_PUTS = (
    "{zoo}: the S3 server does not honour conditional puts{detail}; without them concurrent publishers "
    "would overwrite each other's index entries. Publish to a local folder and upload it from one "
    "publisher at a time"
)


def _put(
    client: Any, location: S3Location, relative: str, data: Any, content_type: str, **condition: str
) -> None:
    client.put_object(
        Bucket=location.bucket, Key=location.key(relative), Body=data, ContentType=content_type, **condition
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
