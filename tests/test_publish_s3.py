"""``publish_archive`` to ``s3://bucket/prefix``, against moto's S3 server on 127.0.0.1 over real HTTP.

The archives are built like those of ``test_publish`` (its ``make_mar``); every check reads the bucket
back with a separate boto3 client.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from squeezenet_mar.errors import PublishError  # noqa: E402
from squeezenet_mar.zoo import INDEX_FILE, publish_archive  # noqa: E402
from squeezenet_mar.zoo import s3 as publish_s3  # noqa: E402
from test_publish import MODEL, SOURCE, make_mar, manifest  # noqa: E402

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


def test_publish_uploads_archive_checksum_card_and_index(s3: Any, mar: Path) -> None:
    result = publish_archive(mar, ZOO)

    digest = sha256(mar.read_bytes())
    folder = f"{PREFIX}/{MODEL}/1.1"
    assert keys(s3) == [  # nothing else: the conditional-put probe writes nothing on this server
        f"{PREFIX}/{INDEX_FILE}",
        f"{folder}/README.md",
        f"{folder}/{MODEL}.mar",
        f"{folder}/{MODEL}.mar.sha256",
    ]
    assert get(s3, f"{MODEL}/1.1/{MODEL}.mar") == mar.read_bytes()
    assert get(s3, f"{MODEL}/1.1/{MODEL}.mar.sha256").decode() == f"{digest}  {MODEL}.mar\n"
    assert result.mar_path == f"{ZOO}/{MODEL}/1.1/{MODEL}.mar"
    assert result.card_path == f"{ZOO}/{MODEL}/1.1/README.md"
    assert result.index_path == f"{ZOO}/{INDEX_FILE}"
    assert (result.model, result.version, result.sha256, result.size, result.url) == (
        MODEL,
        "1.1",
        digest,
        mar.stat().st_size,
        f"{MODEL}/1.1/{MODEL}.mar",
    )

    text = get(s3, INDEX_FILE).decode()
    index = json.loads(text)
    assert text == json.dumps(index, indent=2, sort_keys=True) + "\n"
    assert index["format"] == 1
    entry = index["models"][MODEL]["1.1"]
    assert set(entry) == {"url", "sha256", "size", "card", "published", "signature"}
    assert entry["signature"] is None  # unsigned
    assert entry["url"] == f"{MODEL}/1.1/{MODEL}.mar"
    assert entry["card"] == f"{MODEL}/1.1/README.md"
    assert (entry["sha256"], entry["size"]) == (digest, mar.stat().st_size)
    assert entry["published"].endswith("Z")
    assert sha256(get(s3, entry["url"])) == entry["sha256"]


def test_the_card_is_the_local_zoos_card(s3: Any, mar: Path, tmp_path: Path) -> None:
    evaluation = {"images": 50000, "top1": 56.3, "top5": 79.1}
    publish_archive(mar, ZOO, evaluation=evaluation)
    local = publish_archive(mar, tmp_path / "zoo", evaluation=evaluation)

    card = get(s3, f"{MODEL}/1.1/README.md").decode()
    assert card == Path(local.card_path).read_text()
    for expected in [
        f"# {MODEL} 1.1",
        SOURCE["url"],
        local.sha256,
        "| Top-1 (%) | 56.3 |",
        f"sha256sum -c {MODEL}.mar.sha256",
        f"--models squeezenet=http://HOST/zoo/{MODEL}/1.1/{MODEL}.mar",
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


def test_an_unlisted_archive_of_the_version_is_not_overwritten_without_force(s3: Any, mar: Path) -> None:
    """What another publisher of the same version (or a crashed one) leaves: the archive, no entry."""
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{MODEL}/1.1/{MODEL}.mar", Body=b"someone else's")

    with pytest.raises(PublishError, match="exists but index.json does not list it"):
        publish_archive(mar, ZOO)
    assert get(s3, f"{MODEL}/1.1/{MODEL}.mar") == b"someone else's"

    publish_archive(mar, ZOO, force=True)
    assert get(s3, f"{MODEL}/1.1/{MODEL}.mar") == mar.read_bytes()


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
            other = json.loads(json.dumps(index))
            other["models"][MODEL]["9.9"] = dict(other["models"][MODEL]["1.0"])
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
    publish_archive(mar, f"s3://{BUCKET}")
    index = json.loads(s3.get_object(Bucket=BUCKET, Key=INDEX_FILE)["Body"].read())
    assert index["models"][MODEL]["1.1"]["url"] == f"{MODEL}/1.1/{MODEL}.mar"
    assert s3.get_object(Bucket=BUCKET, Key=f"{MODEL}/1.1/{MODEL}.mar")["Body"].read() == mar.read_bytes()


def test_the_endpoint_comes_from_aws_endpoint_url(s3: Any) -> None:
    assert boto3.session.Session().client("s3").meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
