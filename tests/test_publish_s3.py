"""``publish_archive`` to ``s3://bucket/prefix``, against moto's S3 server on 127.0.0.1 over real HTTP,
by this process and by publishers in child processes killed at every step.

The archives are built like those of ``test_publish`` (its ``make_mar``); every check reads the bucket
back with a separate boto3 client.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from harness import ROOT, private_tmp_env  # noqa: E402
from squeezenet_mar.errors import PublishError  # noqa: E402
from squeezenet_mar.layout import content_digest, read_archive  # noqa: E402
from squeezenet_mar.zoo import INDEX_FILE, publish_archive  # noqa: E402
from squeezenet_mar.zoo import s3 as publish_s3  # noqa: E402
from test_publish import CRAFTED_INDEXES, MODEL, SOURCE, assert_consistent, make_mar, manifest  # noqa: E402

BUCKET = "model-zoo"
PREFIX = "zoo/v1"
ZOO = f"s3://{BUCKET}/{PREFIX}"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh moto S3 server on 127.0.0.1 with an empty bucket; a client to inspect it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto keeps its state per process, not per server: start from an empty S3
        requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(variable, raising=False)
        client = boto3.session.Session().client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        server.stop()


@pytest.fixture
def mar(tmp_path: Path) -> Path:
    return make_mar(tmp_path / "build" / f"{MODEL}.mar")


def get(s3: Any, relative: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{relative}")["Body"].read()


def read_index(s3: Any) -> dict[str, Any]:
    return json.loads(get(s3, INDEX_FILE))


def keys(s3: Any) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zoo_objects(s3: Any) -> dict[str, bytes]:
    """Every object under the zoo's prefix, by its path relative to the zoo root."""
    return {key[len(PREFIX) + 1 :]: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys(s3)}


# A publisher killed (SIGKILL) just before its Nth request that changes the bucket (PUT, DELETE), so
# that the kills together leave every state a crash can leave (each S3 request is atomic). It prints
# how many it made when it is not killed.
KILLED_AT_REQUEST = """
import os, signal, sys
from pathlib import Path
import botocore.client
from squeezenet_mar.zoo import publish_archive
archive, zoo, kill_at, force = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "force"
changes = 0
real_call = botocore.client.BaseClient._make_api_call
def call(self, operation, params):
    global changes
    if operation in ("PutObject", "DeleteObject", "DeleteObjects", "CopyObject"):
        changes += 1
        if changes == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_call(self, operation, params)
botocore.client.BaseClient._make_api_call = call
publish_archive(archive, zoo, force=force)
print("changes", changes)
"""


def test_publish_uploads_archive_checksum_card_and_index(s3: Any, mar: Path) -> None:
    result = publish_archive(mar, ZOO)

    digest = sha256(mar.read_bytes())
    release = result.url.split("/")[2]
    assert release.startswith(digest[:16] + "-")
    folder = f"{MODEL}/1.1/{release}"
    assert keys(s3) == [  # nothing else: the conditional-put probe writes nothing on this server
        f"{PREFIX}/{INDEX_FILE}",
        f"{PREFIX}/{folder}/README.md",
        f"{PREFIX}/{folder}/{MODEL}.mar",
        f"{PREFIX}/{folder}/{MODEL}.mar.sha256",
    ]
    assert get(s3, f"{folder}/{MODEL}.mar") == mar.read_bytes()
    assert get(s3, f"{folder}/{MODEL}.mar.sha256").decode() == f"{digest}  {MODEL}.mar\n"
    assert result.mar_path == f"{ZOO}/{folder}/{MODEL}.mar"
    assert result.card_path == f"{ZOO}/{folder}/README.md"
    assert result.index_path == f"{ZOO}/{INDEX_FILE}"
    assert (result.model, result.version, result.sha256, result.size, result.url) == (
        MODEL,
        "1.1",
        digest,
        mar.stat().st_size,
        f"{folder}/{MODEL}.mar",
    )

    text = get(s3, INDEX_FILE).decode()
    index = json.loads(text)
    assert text == json.dumps(index, indent=2, sort_keys=True) + "\n"
    assert index["format"] == 1
    entry = index["models"][MODEL]["1.1"]
    assert set(entry) == {"url", "sha256", "size", "card", "published", "signature"}
    assert entry["signature"] is None  # unsigned
    assert entry["url"] == f"{folder}/{MODEL}.mar"
    assert entry["card"] == f"{folder}/README.md"
    assert (entry["sha256"], entry["size"]) == (digest, mar.stat().st_size)
    assert entry["published"].endswith("Z")
    assert sha256(get(s3, entry["url"])) == entry["sha256"]


def test_the_card_is_the_local_zoos_card(s3: Any, mar: Path, tmp_path: Path) -> None:
    content = content_digest(read_archive(mar).entries)  # what evaluate records of the archive it measured
    evaluation = {"archive_content_sha256": content, "images": 50000, "top1": 56.3, "top5": 79.1}
    remote = publish_archive(mar, ZOO, evaluation=evaluation)
    local = publish_archive(mar, tmp_path / "zoo", evaluation=evaluation)

    card = get(s3, remote.url.replace(f"{MODEL}.mar", "README.md")).decode()
    assert card.replace(remote.url, "URL") == Path(local.card_path).read_text().replace(local.url, "URL")
    for expected in [
        f"# {MODEL} 1.1",
        SOURCE["url"],
        local.sha256,
        "| Top-1 (%) | 56.3 |",
        f"sha256sum -c {MODEL}.mar.sha256",
        f"--models squeezenet=http://HOST/zoo/{remote.url}",
    ]:
        assert expected in card, expected


def test_publishing_the_same_version_again_is_refused(s3: Any, mar: Path) -> None:
    publish_archive(mar, ZOO)
    before = {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys(s3)}
    changed = make_mar(mar.with_name("changed.mar"), document=manifest("1.1", description="changed"))

    with pytest.raises(PublishError, match=r"squeezenet_v1\.1 1\.1 is already published.*--force"):
        publish_archive(changed, ZOO)

    assert {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys(s3)} == before


def test_force_replaces_the_published_version(s3: Any, mar: Path) -> None:
    publish_archive(mar, ZOO)
    changed = make_mar(mar.with_name("changed.mar"), "1.1", **{"extra.txt": b"second build"})

    result = publish_archive(changed, ZOO, force=True)

    entry = read_index(s3)["models"][MODEL]["1.1"]
    assert get(s3, entry["url"]) == changed.read_bytes()
    assert entry["sha256"] == result.sha256 == sha256(changed.read_bytes()) != sha256(mar.read_bytes())
    assert entry["size"] == changed.stat().st_size
    assert get(s3, f"{entry['url']}.sha256").decode().startswith(entry["sha256"])
    assert entry["sha256"] in get(s3, entry["card"]).decode()


def test_unlisted_objects_block_nothing_and_only_stale_ones_are_removed(
    s3: Any, mar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a crashed publisher (or one still at work) leaves: objects no entry names. A plain publish
    goes ahead; a young release folder may be in flight and is left, an old one is removed."""
    fresh = f"{MODEL}/1.1/0123456789abcdef-01234567/{MODEL}.mar"
    stable = f"{MODEL}/1.1/{MODEL}.mar"  # the layout before release folders
    for relative in (fresh, stable):
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{relative}", Body=b"someone else's")

    result = publish_archive(mar, ZOO)
    assert get(s3, result.url) == mar.read_bytes()
    assert get(s3, fresh) == get(s3, stable) == b"someone else's"

    monkeypatch.setattr(publish_s3.S3Store, "stale_after", timedelta(0))
    again = publish_archive(mar, ZOO, force=True)
    listed = {f"{PREFIX}/{name}" for name in (again.url, f"{again.url}.sha256", INDEX_FILE)}
    assert f"{PREFIX}/{fresh}" not in keys(s3) and listed <= set(keys(s3))
    assert get(s3, stable) == b"someone else's"  # not a release folder: never removed
    assert_consistent(zoo_objects(s3))


def test_concurrent_publishers_lose_no_entry(s3: Any, tmp_path: Path) -> None:
    publish_archive(make_mar(tmp_path / "base.mar", "1.0"), ZOO)
    expected = {"1.0"}
    for round_number in range(3):
        versions = [f"2.{round_number}.{i}" for i in range(4)]
        archives = [make_mar(tmp_path / f"{version}.mar", version) for version in versions]
        start = threading.Barrier(len(archives))
        errors: list[BaseException] = []

        def publish(archive: Path, start: threading.Barrier, errors: list[BaseException]) -> None:
            start.wait()
            try:
                publish_archive(archive, ZOO)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=publish, args=(archive, start, errors)) for archive in archives]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        expected.update(versions)
        assert set(read_index(s3)["models"][MODEL]) == expected

    for version, entry in read_index(s3)["models"][MODEL].items():
        data = get(s3, entry["url"])
        assert (sha256(data), len(data)) == (entry["sha256"], entry["size"]), version


def test_an_index_changed_between_read_and_write_is_reread(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another publisher rewrites index.json right after this one has read it: the conditional put gets
    412 and the publish retries on the new index, keeping the other entry."""
    publish_archive(make_mar(tmp_path / "base.mar", "1.0"), ZOO)
    real_read_index = publish_s3.get_index
    reads = []

    def read_then_someone_writes(client: Any, zoo: Any) -> tuple[dict[str, Any], str | None]:
        index, etag = real_read_index(client, zoo)
        reads.append(etag)
        if len(reads) == 2:  # the read before the first index write
            other = json.loads(json.dumps(index).replace(f"{MODEL}/1.0/", f"{MODEL}/9.9/"))
            other["models"][MODEL]["9.9"] = other["models"][MODEL]["1.0"]
            other["models"][MODEL]["1.0"] = index["models"][MODEL]["1.0"]
            s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{INDEX_FILE}", Body=json.dumps(other).encode())
        return index, etag

    monkeypatch.setattr(publish_s3, "get_index", read_then_someone_writes)
    publish_archive(make_mar(tmp_path / "v2.mar", "1.2"), ZOO)

    assert len(reads) == 3 and reads[2] != reads[1]
    assert sorted(read_index(s3)["models"][MODEL]) == ["1.0", "1.2", "9.9"]


def test_a_damaged_index_is_not_overwritten(s3: Any, mar: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{INDEX_FILE}", Body=b'{"format": 1, "models": {')
    with pytest.raises(PublishError, match="not valid JSON"):
        publish_archive(mar, ZOO)
    assert get(s3, INDEX_FILE) == b'{"format": 1, "models": {'


def test_a_missing_bucket_is_a_publish_error(s3: Any, mar: Path) -> None:
    with pytest.raises(PublishError, match="NoSuchBucket"):
        publish_archive(mar, "s3://no-such-bucket/zoo")


def test_the_zoo_root_may_be_the_bucket(s3: Any, mar: Path) -> None:
    result = publish_archive(mar, f"s3://{BUCKET}")
    index = json.loads(s3.get_object(Bucket=BUCKET, Key=INDEX_FILE)["Body"].read())
    assert index["models"][MODEL]["1.1"]["url"] == result.url
    assert s3.get_object(Bucket=BUCKET, Key=result.url)["Body"].read() == mar.read_bytes()


def test_the_endpoint_comes_from_aws_endpoint_url(s3: Any) -> None:
    assert boto3.session.Session().client("s3").meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]


@pytest.mark.parametrize(
    ("version", "force"), [("1.1", True), ("1.2", False)], ids=["force_republish", "new_version"]
)
def test_a_publisher_killed_at_any_request_leaves_a_consistent_zoo(
    s3: Any, tmp_path: Path, version: str, force: bool
) -> None:
    """SIGKILL before each request that changes the bucket, in turn: after every kill the index, the
    objects it names and every .sha256 beside a .mar agree, and both a plain publish of a new version
    and a --force republish succeed. (The bucket starts again from the same state for each kill.)"""
    first = publish_archive(make_mar(tmp_path / "first.mar", "1.1"), ZOO)
    template = zoo_objects(s3)
    incoming = make_mar(tmp_path / "incoming.mar", version, **{"extra.txt": b"the next build"})
    kills = 0
    for kill_at in range(1, 100):
        for key in keys(s3):
            s3.delete_object(Bucket=BUCKET, Key=key)
        for relative, data in template.items():
            s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{relative}", Body=data)
        process = subprocess.run(
            [
                sys.executable,
                "-c",
                KILLED_AT_REQUEST,
                str(incoming),
                ZOO,
                str(kill_at),
                str(force and "force"),
            ],
            cwd=ROOT,
            env=private_tmp_env(tmp_path / "killed-tmp"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if process.returncode == 0:
            assert process.stdout.split() == ["changes", str(kill_at - 1)], process.stdout
            break
        assert process.returncode == -9, process.stderr
        kills += 1
        index = assert_consistent(zoo_objects(s3))
        assert index["models"][MODEL]["1.1"]["sha256"] in (first.sha256, sha256(incoming.read_bytes()))

        after = publish_archive(make_mar(tmp_path / f"next{kill_at}.mar", "9.9"), ZOO)
        again = publish_archive(incoming, ZOO, force=True)
        index = assert_consistent(zoo_objects(s3))
        assert index["models"][MODEL]["9.9"]["url"] == after.url
        assert index["models"][MODEL][version]["url"] == again.url
    else:
        pytest.fail("the publish never finished")
    assert kills >= 5, kills  # probe, archive, checksum, card, index (and the cleanup)


def test_a_crafted_index_is_refused_before_anything_is_written(s3: Any, mar: Path) -> None:
    models, words = CRAFTED_INDEXES["version_entry_is_a_list"]
    s3.put_object(
        Bucket=BUCKET, Key=f"{PREFIX}/{INDEX_FILE}", Body=json.dumps({"format": 1, "models": models})
    )
    before = zoo_objects(s3)
    with pytest.raises(PublishError, match="repair it by hand") as refused:
        publish_archive(mar, ZOO, force=True)
    assert words in str(refused.value)
    assert zoo_objects(s3) == before
