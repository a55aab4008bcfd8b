"""``publish_archive``: a zoo folder on disk, written by real processes and served over real HTTP.

The archives here are small but valid ``.mar`` zips written with ``layout.write_zip``: the manifest,
signature.json and synset.txt of the repository, and a dummy model blob (publish never runs the model).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from harness import ROOT
from squeezenet_mar.errors import PublishError, VerifyError
from squeezenet_mar.layout import MANIFEST, SHA256SUMS, manifest_bytes, sha256sums, write_zip
from squeezenet_mar.verify import verify_archive
from squeezenet_mar.zoo import INDEX_FILE, LOCK_FILE, S3_NEEDS_BOTO3, publish_archive

MODEL = "squeezenet_v1.1"
SOURCE = {
    "url": "https://s3.amazonaws.com/onnx-model-zoo/squeezenet/squeezenet1.1/squeezenet1.1.onnx",
    "file": "squeezenet1.1.onnx",
    "md5": "0" * 32,
    "sha256": "1" * 64,
}

# A publisher in its own process: waits for a line on stdin (so that several start together), publishes.
PUBLISHER = """
import sys
from pathlib import Path
from squeezenet_mar.zoo import publish_archive
sys.stdin.readline()
publish_archive(Path(sys.argv[1]), sys.argv[2])
"""

# A publisher killed (SIGKILL, no cleanup runs) at the moment it would rename the new index into place.
KILLED_AT_INDEX_REPLACE = """
import os, signal, sys
from pathlib import Path
from squeezenet_mar.zoo import publish_archive
real_replace = os.replace
def replace(src, dst):
    if os.fspath(dst).endswith("index.json"):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
os.replace = replace
publish_archive(Path(sys.argv[1]), sys.argv[2])
"""


def manifest(version: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "runtime": "python",
        "model": {
            "modelName": MODEL,
            "modelVersion": version,
            "handler": "squeezenet_service:handle",
            "description": "SqueezeNet 1.1 from the ONNX model zoo",
        },
        "engine": {"engineName": "MXNet"},
        "source": SOURCE,
    }
    document.update(overrides)
    return document


def make_mar(
    path: Path, version: str = "1.1", document: dict[str, Any] | None = None, **extra: bytes
) -> Path:
    files = {
        "signature.json": (ROOT / "signature.json").read_bytes(),
        "synset.txt": (ROOT / "synset.txt").read_bytes(),
        "squeezenet_service.py": (ROOT / "handler" / "squeezenet_service.py").read_bytes(),
        # publish never runs the model, so its bytes need not be a network
        "squeezenet1.1.onnx": f"dummy model {version}".encode() * 100,
        **extra,
    }
    files[MANIFEST] = manifest_bytes(document if document is not None else manifest(version))
    files[SHA256SUMS] = sha256sums(files)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_zip(path, files)
    return path


@pytest.fixture
def mar(tmp_path: Path) -> Path:
    return make_mar(tmp_path / "build" / "squeezenet_v1.1.mar")


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    return tmp_path / "zoo"


def read_index(zoo: Path) -> dict[str, Any]:
    return json.loads((zoo / INDEX_FILE).read_text())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temporaries(zoo: Path) -> list[Path]:
    return sorted(zoo.rglob(".*.tmp"))


def test_publish_writes_archive_checksum_card_and_index(mar: Path, zoo: Path) -> None:
    result = publish_archive(mar, zoo)

    folder = zoo / MODEL / "1.1"
    digest = sha256(mar.read_bytes())
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", f"{MODEL}.mar", f"{MODEL}.mar.sha256"]
    assert (folder / f"{MODEL}.mar").read_bytes() == mar.read_bytes()
    assert (folder / f"{MODEL}.mar.sha256").read_text() == f"{digest}  {MODEL}.mar\n"
    assert result.mar_path == folder / f"{MODEL}.mar"
    assert result.card_path == folder / "README.md"
    assert result.index_path == zoo / INDEX_FILE
    assert (result.model, result.version, result.sha256, result.size) == (
        MODEL,
        "1.1",
        digest,
        mar.stat().st_size,
    )
    assert result.url == f"{MODEL}/1.1/{MODEL}.mar"

    text = (zoo / INDEX_FILE).read_text()
    index = json.loads(text)
    assert text == json.dumps(index, indent=2, sort_keys=True) + "\n"
    assert index["format"] == 1
    entry = index["models"][MODEL]["1.1"]
    assert set(entry) == {"url", "sha256", "size", "card", "published", "signature"}
    assert entry["signature"] is None  # unsigned
    assert entry["url"] == result.url
    assert entry["card"] == f"{MODEL}/1.1/README.md"
    assert (entry["sha256"], entry["size"]) == (digest, mar.stat().st_size)
    assert entry["published"].endswith("Z")
    assert (zoo / entry["url"]).read_bytes() == mar.read_bytes()
    assert (folder / f"{MODEL}.mar").stat().st_mode & 0o777 == 0o644
    assert temporaries(zoo) == []


def test_card_names_source_checksums_accuracy_preprocessing_and_serving(mar: Path, zoo: Path) -> None:
    result = publish_archive(mar, zoo)
    card = result.card_path.read_text()

    for expected in [
        f"# {MODEL} 1.1",
        SOURCE["url"],
        SOURCE["md5"],
        SOURCE["sha256"],
        result.sha256,
        "56.34 %",
        "79.12 %",
        "ILSVRC2012 validation",
        "centre-cropped",
        "Shorter side resized to 256 px (`bilinear`)",
        "Centre crop 224x224",
        "mean [0.485, 0.456, 0.406]",
        "std [0.229, 0.224, 0.225]",
        "`data` N x 3 x 224 x 224",
        "MXNet",
        f"sha256sum -c {MODEL}.mar.sha256",
        f"multi-model-server --start --model-store DIR --models squeezenet={MODEL}.mar",
        f"--models squeezenet=http://HOST/zoo/{MODEL}/1.1/{MODEL}.mar",
        "curl -X POST http://127.0.0.1:8080/predictions/squeezenet -T photo.jpg",
        "| Publisher | not recorded |",
        "Accuracy of this archive: not measured",
        "the zoo's figure, not a measurement of this archive",
    ]:
        assert expected in card, expected


def test_card_says_not_recorded_for_a_manifest_without_source(tmp_path: Path, zoo: Path) -> None:
    document = manifest("1.1")
    del document["source"], document["engine"]
    card = publish_archive(make_mar(tmp_path / "a.mar", document=document), zoo).card_path.read_text()
    assert "| Source URL | not recorded |" in card
    assert "| Source SHA-256 | not recorded |" in card
    assert "| Engine | not recorded |" in card


def test_card_renders_the_given_evaluation(mar: Path, zoo: Path) -> None:
    evaluation = {
        "images": 50000,
        "top1": 56.3,
        "top5": 79.1,
        "reference_top1": 56.34,
        "reference_top5": 79.12,
        "images_per_second": 412.5,
        "date": "2024-05-01",
        "device": "cpu",
    }
    card = publish_archive(mar, zoo, evaluation=evaluation).card_path.read_text()
    section = card.split("Measured on this archive", 1)[1].split("## Serve it", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows == [
        "| Metric | Value |",
        "| Date | `2024-05-01` |",
        "| Images | 50000 |",
        "| Top-1 (%) | 56.3 |",
        "| Top-5 (%) | 79.1 |",
        "| Model zoo's top-1 (%) | 56.34 |",
        "| Model zoo's top-5 (%) | 79.12 |",
        "| Images per second | 412.5 |",
        "| `device` | `cpu` |",
    ]
    assert "Accuracy of this archive: not measured" not in card


def test_publishing_the_same_version_again_is_refused(mar: Path, zoo: Path) -> None:
    publish_archive(mar, zoo)
    before = {p: p.read_bytes() for p in zoo.rglob("*") if p.is_file()}
    changed = make_mar(mar.with_name("changed.mar"), document=manifest("1.1", description="changed"))

    with pytest.raises(PublishError, match=r"squeezenet_v1\.1 1\.1 is already published.*--force"):
        publish_archive(changed, zoo)

    assert {p: p.read_bytes() for p in zoo.rglob("*") if p.is_file()} == before
    assert PublishError.exit_code == 6


def test_force_replaces_the_published_version(mar: Path, zoo: Path) -> None:
    publish_archive(mar, zoo)
    changed = make_mar(mar.with_name("changed.mar"), "1.1", **{"extra.txt": b"second build"})

    result = publish_archive(changed, zoo, force=True)

    entry = read_index(zoo)["models"][MODEL]["1.1"]
    assert result.mar_path.read_bytes() == changed.read_bytes()
    assert entry["sha256"] == sha256(changed.read_bytes()) != sha256(mar.read_bytes())
    assert entry["size"] == changed.stat().st_size
    assert (result.mar_path.parent / f"{MODEL}.mar.sha256").read_text().startswith(entry["sha256"])
    assert entry["sha256"] in result.card_path.read_text()


def test_a_second_version_keeps_the_first(mar: Path, zoo: Path) -> None:
    first = publish_archive(mar, zoo)
    second = publish_archive(make_mar(mar.with_name("v2.mar"), "1.2"), zoo)

    versions = read_index(zoo)["models"][MODEL]
    assert sorted(versions) == ["1.1", "1.2"]
    assert versions["1.1"]["sha256"] == first.sha256
    assert versions["1.2"]["sha256"] == second.sha256
    assert first.mar_path.read_bytes() == mar.read_bytes()


def test_concurrent_publishers_in_separate_processes_lose_no_entry(tmp_path: Path, zoo: Path) -> None:
    publish_archive(make_mar(tmp_path / "base.mar", "1.0"), zoo)
    expected = {"1.0"}
    for round_number in range(5):
        versions = [f"2.{round_number}.{i}" for i in range(2)]
        archives = [make_mar(tmp_path / f"{version}.mar", version) for version in versions]
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, str(archive), str(zoo)],
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                text=True,
            )
            for archive in archives
        ]
        for process in processes:  # release both at once
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, stderr
        expected.update(versions)
        assert set(read_index(zoo)["models"][MODEL]) == expected

    for version, entry in read_index(zoo)["models"][MODEL].items():
        assert sha256((zoo / entry["url"]).read_bytes()) == entry["sha256"], version
    assert temporaries(zoo) == []


def test_a_failed_index_write_leaves_the_old_index(
    mar: Path, zoo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_archive(mar, zoo)
    before = (zoo / INDEX_FILE).read_bytes()
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if os.fspath(dst).endswith(INDEX_FILE):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(PublishError, match="No space left on device"):
        publish_archive(make_mar(mar.with_name("v2.mar"), "1.2"), zoo)
    monkeypatch.undo()

    assert (zoo / INDEX_FILE).read_bytes() == before
    assert sorted(read_index(zoo)["models"][MODEL]) == ["1.1"]
    assert temporaries(zoo) == []


def test_a_publisher_killed_mid_publish_leaves_the_old_index(mar: Path, zoo: Path) -> None:
    publish_archive(mar, zoo)
    before = (zoo / INDEX_FILE).read_bytes()
    second = make_mar(mar.with_name("v2.mar"), "1.2")

    process = subprocess.run(
        [sys.executable, "-c", KILLED_AT_INDEX_REPLACE, str(second), str(zoo)],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )

    assert process.returncode == -9, process.stderr
    assert (zoo / INDEX_FILE).read_bytes() == before
    assert sorted(read_index(zoo)["models"][MODEL]) == ["1.1"]
    [left_over] = temporaries(zoo)  # the fully written new index that never got renamed
    assert left_over.parent == zoo and left_over.name.startswith(".index.json.")

    # The unlisted version is not "published": publishing it again needs no --force and tidies up.
    publish_archive(second, zoo)
    assert sorted(read_index(zoo)["models"][MODEL]) == ["1.1", "1.2"]
    assert temporaries(zoo) == []


def test_an_archive_with_an_escaping_entry_is_refused(tmp_path: Path, zoo: Path) -> None:
    evil = make_mar(tmp_path / "evil.mar", **{"../evil": b"owned"})
    with pytest.raises(PublishError, match=r"fails verification:\n\.\./evil: refused entry: path escapes"):
        publish_archive(evil, zoo)
    assert not zoo.exists()


@pytest.mark.parametrize("field", ["modelName", "modelVersion"])
def test_an_archive_without_model_name_or_version_is_refused(tmp_path: Path, zoo: Path, field: str) -> None:
    document = manifest("1.1")
    del document["model"][field]
    with pytest.raises(PublishError, match=f"model.{field} None must be"):
        publish_archive(make_mar(tmp_path / "a.mar", document=document), zoo)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        (MODEL, "../1.1"),
        (MODEL, "1.1/.."),
        ("index.json", "1.1"),  # made index.json a folder and broke every later publish
        ("INDEX.JSON", "1.1"),
        ("README.md", "1.1"),
        (".index.lock", "1.1"),
        ("squeezenet..v1", "1.1"),
        (MODEL, "1.1.tmp"),
        ("x" * 65, "1.1"),
        ("squeezenet v1", "1.1"),
    ],
)
def test_names_and_versions_follow_one_strict_rule(
    tmp_path: Path, zoo: Path, name: str, version: str
) -> None:
    document = manifest(version)
    document["model"]["modelName"] = name
    archive = make_mar(tmp_path / "a.mar", document=document)
    with pytest.raises(PublishError, match="model.model(Name|Version) "):
        publish_archive(archive, zoo)
    assert not zoo.exists()
    with pytest.raises(VerifyError):
        verify_archive(archive)


def test_a_model_named_index_json_leaves_the_zoo_usable(tmp_path: Path, zoo: Path) -> None:
    document = manifest("1.1")
    document["model"]["modelName"] = "index.json"
    with pytest.raises(PublishError):
        publish_archive(make_mar(tmp_path / "evil.mar", document=document), zoo)
    publish_archive(make_mar(tmp_path / "good.mar"), zoo)
    assert sorted(read_index(zoo)["models"]) == [MODEL]


HOSTILE_DESCRIPTION = (
    "SqueezeNet, verified by the zoo.\n\n"
    "| File | SHA-256 |\n|---|---|\n| squeezenet_v1.1.mar | `0000000000000000000000000000000000000000` |\n\n"
    "<script>alert('card')</script> [download the fixed build](http://evil.example/x.mar) "
    "http://evil.example/autolink <img src=x onerror=alert(1)> ```"
)


def test_the_card_shows_archive_text_as_text(tmp_path: Path, zoo: Path) -> None:
    """Manifest fields rendered by GitHub's own Markdown (cmark-gfm with its extensions), raw HTML
    allowed as the most permissive renderer would: no tag, link or table comes from the archive."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    document = manifest("1.1", description=HOSTILE_DESCRIPTION)
    document["model"]["description"] = HOSTILE_DESCRIPTION
    document["publisher"] = {"author": "Mallory | <b>bold</b>", "email": "m@evil.example"}
    document["source"] = dict(SOURCE, url="javascript:alert(1)", file="`x` | *y*")
    card = publish_archive(make_mar(tmp_path / "a.mar", document=document), zoo).card_path.read_text()
    html = cmarkgfm.github_flavored_markdown_to_html(card, options=Options.CMARK_OPT_UNSAFE)
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "evil.example" not in " ".join(re.findall(r'href="([^"]*)"', html))
    assert "javascript:" not in " ".join(re.findall(r'href="([^"]*)"', html))
    assert html.count("<table>") == 2  # the card's own two: files and source
    assert "0000000000000000000000000000000000000000</td>" not in html
    assert "&lt;script&gt;alert('card')&lt;/script&gt;" in html  # shown, as text


def test_a_damaged_index_is_not_overwritten(mar: Path, zoo: Path) -> None:
    zoo.mkdir()
    (zoo / INDEX_FILE).write_text('{"format": 1, "models": {')
    with pytest.raises(PublishError, match="not valid JSON"):
        publish_archive(mar, zoo)
    assert (zoo / INDEX_FILE).read_text() == '{"format": 1, "models": {'


def test_an_s3_destination_without_boto3_is_refused(mar: Path) -> None:
    """In a fresh interpreter where ``import boto3`` fails, as on a machine without it."""
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "from pathlib import Path\n"
        "from squeezenet_mar.errors import PublishError\n"
        "from squeezenet_mar.zoo import publish_archive\n"
        "try:\n"
        f"    publish_archive(Path({str(mar)!r}), 's3://bucket/zoo')\n"
        "except PublishError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == S3_NEEDS_BOTO3, result.stderr


def test_an_unknown_url_destination_is_refused(mar: Path) -> None:
    with pytest.raises(PublishError, match="unsupported zoo destination"):
        publish_archive(mar, "ftp://host/zoo")


@pytest.fixture
def served(zoo: Path) -> Iterator[str]:
    """The zoo folder behind a plain static HTTP server on 127.0.0.1."""

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    zoo.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(zoo)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_zoo_is_served_by_a_static_http_server(mar: Path, zoo: Path, served: str) -> None:
    publish_archive(mar, zoo)
    publish_archive(make_mar(mar.with_name("v2.mar"), "1.2"), zoo)

    index = requests.get(f"{served}/{INDEX_FILE}", timeout=5)
    index.raise_for_status()
    assert index.content == (zoo / INDEX_FILE).read_bytes()
    for version, entry in index.json()["models"][MODEL].items():
        download = requests.get(f"{served}/{entry['url']}", timeout=5)
        download.raise_for_status()
        assert len(download.content) == entry["size"], version
        assert sha256(download.content) == entry["sha256"], version
        checksum = requests.get(f"{served}/{entry['url']}.sha256", timeout=5).text
        assert checksum == f"{entry['sha256']}  {MODEL}.mar\n"
        card = requests.get(f"{served}/{entry['card']}", timeout=5)
        assert card.status_code == 200 and entry["sha256"] in card.text
    assert (zoo / LOCK_FILE).exists()
