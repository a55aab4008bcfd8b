"""``publish_archive``: a zoo folder on disk, written by real processes (some killed at every step),
served over real HTTP and loaded from there by a real MMS.

The archives here are small but valid ``.mar`` zips written with ``layout.write_zip``: the manifest,
signature.json and synset.txt of the repository, and a dummy model blob (publish never runs the model).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from harness import ROOT, private_tmp_env
from squeezenet_mar.errors import PublishError, VerifyError
from squeezenet_mar.layout import (
    MANIFEST,
    SHA256SUMS,
    content_digest,
    manifest_bytes,
    read_archive,
    sha256sums,
    write_zip,
)
from squeezenet_mar.verify import verify_archive
from squeezenet_mar.zoo import INDEX_FILE, LOCK_FILE, S3_NEEDS_BOTO3, publish_archive
from squeezenet_mar.zoo.release import index_problem

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


# A publisher killed (SIGKILL) just before its Nth change to the zoo folder: every mkdir, rename over,
# unlink and rmdir there, so that the kills together leave every state a crash can leave. It prints how
# many changes it made when it is not killed.
KILLED_AT_CHANGE = """
import os, signal, sys
from pathlib import Path
from squeezenet_mar.zoo import publish_archive
archive, zoo, kill_at, force = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "force"
changes = 0
def killing(real):
    def change(path, *args, **kwargs):
        global changes
        if os.fspath(path).startswith(zoo):
            changes += 1
            if changes == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(path, *args, **kwargs)
    return change
for name in ("mkdir", "replace", "rename", "link", "unlink", "rmdir"):
    setattr(os, name, killing(getattr(os, name)))
publish_archive(archive, zoo, force=force)
print("changes", changes)
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


def release_folders(zoo: Path, version: str = "1.1") -> list[Path]:
    return sorted(p for p in (zoo / MODEL / version).iterdir() if p.is_dir())


def zoo_files(zoo: Path) -> dict[str, bytes]:
    """Every file of the zoo but the lock file (which any session creates) and its bytes."""
    return {
        p.relative_to(zoo).as_posix(): p.read_bytes()
        for p in sorted(zoo.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def assert_consistent(files: dict[str, bytes]) -> dict[str, Any]:
    """The zoo's files (``zoo_files``) agree: the index is well formed, every file an entry names is
    there and matches the entry, every ``.sha256`` beside a ``.mar`` matches it. Returns the index."""
    index = json.loads(files[INDEX_FILE]) if INDEX_FILE in files else {"format": 1, "models": {}}
    assert index_problem(index) is None, index
    for model, versions in index["models"].items():
        for version, entry in versions.items():
            archive = files[entry["url"]]
            assert (sha256(archive), len(archive)) == (entry["sha256"], entry["size"]), (model, version)
            name = entry["url"].rsplit("/", 1)[-1]
            assert files[entry["url"] + ".sha256"].decode() == f"{entry['sha256']}  {name}\n"
            assert entry["sha256"] in files[entry["card"]].decode()
            if entry["signature"]:
                assert entry["signature"]["bundle"] in files
    for name, data in files.items():
        if name.endswith(".mar") and f"{name}.sha256" in files:
            assert files[f"{name}.sha256"].decode().split()[0] == sha256(data), name
    return index


def test_publish_writes_archive_checksum_card_and_index(mar: Path, zoo: Path) -> None:
    result = publish_archive(mar, zoo)

    digest = sha256(mar.read_bytes())
    [folder] = release_folders(zoo)
    assert re.fullmatch(f"{digest[:16]}-[0-9a-f]{{8}}", folder.name), folder.name
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
    assert result.url == f"{MODEL}/1.1/{folder.name}/{MODEL}.mar"

    text = (zoo / INDEX_FILE).read_text()
    index = json.loads(text)
    assert text == json.dumps(index, indent=2, sort_keys=True) + "\n"
    assert index["format"] == 1
    entry = index["models"][MODEL]["1.1"]
    assert set(entry) == {"url", "sha256", "size", "card", "published", "signature"}
    assert entry["signature"] is None  # unsigned
    assert entry["url"] == result.url
    assert entry["card"] == f"{MODEL}/1.1/{folder.name}/README.md"
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
        f"--models squeezenet=http://HOST/zoo/{result.url}",
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


def content_of(archive: Path) -> str:
    """What ``evaluate`` records of the archive it measured (``archive_content_sha256``)."""
    return content_digest(read_archive(archive).entries)


def test_card_renders_the_given_evaluation(mar: Path, zoo: Path) -> None:
    evaluation = {
        "archive_content_sha256": content_of(mar),
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
        f"| Archive content SHA-256 (its files; signing leaves it unchanged) | `{content_of(mar)}` |",
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
    first = publish_archive(mar, zoo)
    changed = make_mar(mar.with_name("changed.mar"), "1.1", **{"extra.txt": b"second build"})

    result = publish_archive(changed, zoo, force=True)

    entry = read_index(zoo)["models"][MODEL]["1.1"]
    assert result.mar_path.read_bytes() == changed.read_bytes()
    assert entry["sha256"] == sha256(changed.read_bytes()) != sha256(mar.read_bytes())
    assert entry["size"] == changed.stat().st_size
    assert (result.mar_path.parent / f"{MODEL}.mar.sha256").read_text().startswith(entry["sha256"])
    assert entry["sha256"] in result.card_path.read_text()
    assert release_folders(zoo) == [result.mar_path.parent]  # the replaced release is removed
    assert not first.mar_path.parent.exists()
    assert_consistent(zoo_files(zoo))


def test_force_with_the_same_archive_makes_a_new_release(mar: Path, zoo: Path) -> None:
    """The card may change (another evaluation): a new release folder, never a listed file rewritten."""
    first = publish_archive(mar, zoo)
    evaluation = {"archive_content_sha256": content_of(mar), "images": 10, "top1": 50.0}
    second = publish_archive(mar, zoo, force=True, evaluation=evaluation)
    assert second.sha256 == first.sha256 and second.url != first.url
    assert release_folders(zoo) == [second.mar_path.parent]
    assert "| Top-1 (%) | 50.0 |" in second.card_path.read_text()


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
    [unlisted] = release_folders(zoo, "1.2")  # written, never listed: the next publish removes it
    assert_consistent(zoo_files(zoo))
    listed = publish_archive(make_mar(mar.with_name("v2.mar"), "1.2"), zoo)
    assert release_folders(zoo, "1.2") == [listed.mar_path.parent] != [unlisted]


def test_a_publisher_killed_mid_publish_leaves_the_old_index(mar: Path, zoo: Path) -> None:
    publish_archive(mar, zoo)
    before = (zoo / INDEX_FILE).read_bytes()
    second = make_mar(mar.with_name("v2.mar"), "1.2")

    process = subprocess.run(
        [sys.executable, "-c", KILLED_AT_INDEX_REPLACE, str(second), str(zoo)],
        cwd=ROOT,
        env=private_tmp_env(zoo.parent / "killed-tmp"),
        capture_output=True,
        timeout=30,
    )

    assert process.returncode == -9, process.stderr
    assert (zoo / INDEX_FILE).read_bytes() == before
    assert sorted(read_index(zoo)["models"][MODEL]) == ["1.1"]
    [left_over] = temporaries(zoo)  # the fully written new index that never got renamed
    assert left_over.parent == zoo and left_over.name.startswith(".index.json.")
    assert len(release_folders(zoo, "1.2")) == 1

    # The unlisted version is not "published": publishing it again needs no --force and tidies up.
    result = publish_archive(second, zoo)
    assert sorted(read_index(zoo)["models"][MODEL]) == ["1.1", "1.2"]
    assert temporaries(zoo) == []
    assert release_folders(zoo, "1.2") == [result.mar_path.parent]


@pytest.mark.parametrize(
    ("version", "force"), [("1.1", True), ("1.2", False)], ids=["force_republish", "new_version"]
)
def test_a_publisher_killed_at_any_change_leaves_a_consistent_zoo(
    tmp_path: Path, version: str, force: bool
) -> None:
    """SIGKILL before each change the publish makes, in turn: after every kill the index, the files it
    names and every .sha256 beside a .mar agree, the index still lists the old release (the kill came
    before the commit) or the new one (after it), and both a plain publish of a new version and a
    --force republish succeed."""
    template = tmp_path / "template"
    first = publish_archive(make_mar(tmp_path / "first.mar", "1.1"), template)
    incoming = make_mar(tmp_path / "incoming.mar", version, **{"extra.txt": b"the next build"})
    new_sha = sha256(incoming.read_bytes())
    kills = 0
    for kill_at in range(1, 100):
        zoo = tmp_path / f"zoo{kill_at}"
        shutil.copytree(template, zoo)
        process = subprocess.run(
            [
                sys.executable,
                "-c",
                KILLED_AT_CHANGE,
                str(incoming),
                str(zoo),
                str(kill_at),
                str(force and "force"),
            ],
            cwd=ROOT,
            env=private_tmp_env(tmp_path / "killed-tmp"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if process.returncode == 0:
            assert process.stdout.split() == ["changes", str(kill_at - 1)], process.stdout
            break
        assert process.returncode == -9, process.stderr
        kills += 1
        index = assert_consistent(zoo_files(zoo))
        listed = index["models"][MODEL]
        assert listed["1.1"]["sha256"] in (first.sha256, new_sha)
        assert version not in listed or listed[version]["sha256"] in (first.sha256, new_sha)

        after = publish_archive(make_mar(tmp_path / f"next{kill_at}.mar", "9.9"), zoo)
        again = publish_archive(incoming, zoo, force=True)
        index = assert_consistent(zoo_files(zoo))
        assert index["models"][MODEL]["9.9"]["url"] == after.url
        assert index["models"][MODEL][version]["url"] == again.url
        assert release_folders(zoo, version) == [again.mar_path.parent]  # nothing else is left
        assert temporaries(zoo) == []
        shutil.rmtree(zoo)
    else:
        pytest.fail("the publish never finished")
    assert kills >= 6, kills  # release folder, archive, checksum, card, index (and the cleanup)


def entry_with(**changes: Any) -> dict[str, Any]:
    """A well-formed index entry of version 1.0, some fields changed (``None``: removed)."""
    folder = f"{MODEL}/1.0/0123456789abcdef-01234567"
    entry: dict[str, Any] = {
        "url": f"{folder}/{MODEL}.mar",
        "sha256": "0" * 64,
        "size": 1,
        "card": f"{folder}/README.md",
        "published": "2024-01-31T12:00:00Z",
        "signature": None,
    }
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not None or key == "signature"}


# name -> the index's "models" (each crafted one way), what the refusal names
CRAFTED_INDEXES: dict[str, tuple[Any, str]] = {
    "version_entry_is_a_list": (
        {MODEL: {"1.0": ["not", "an", "entry"]}},
        f"model {MODEL} version 1.0: not an object",
    ),
    "models_of_a_model_is_a_string": ({MODEL: "1.0"}, f"model {MODEL}: not an object of versions"),
    "size_is_a_string": ({MODEL: {"1.0": entry_with(size="12")}}, "size is missing or not an integer"),
    "size_is_a_bool": ({MODEL: {"1.0": entry_with(size=True)}}, "size is missing or not an integer"),
    "sha256_is_not_hex": ({MODEL: {"1.0": entry_with(sha256="xyz")}}, "sha256 is not 64 lowercase hex"),
    "published_is_missing": ({MODEL: {"1.0": entry_with(published=None)}}, "published is missing"),
    "url_escapes_the_zoo": (
        {MODEL: {"1.0": entry_with(url=f"{MODEL}/1.0/../../../etc/passwd.mar")}},
        "url 'squeezenet_v1.1/1.0/../../../etc/passwd.mar' is not a path inside",
    ),
    "url_in_another_version": (
        {MODEL: {"1.0": entry_with(url=f"{MODEL}/1.1/x/{MODEL}.mar")}},
        f"is not a path inside {MODEL}/1.0/",
    ),
    "card_with_a_backslash": (
        {MODEL: {"1.0": entry_with(card=f"{MODEL}/1.0/x\\README.md")}},
        "card",
    ),
    "signature_is_a_list": ({MODEL: {"1.0": entry_with(signature=[])}}, "signature is neither null"),
    "model_name_escapes": ({"../x": {}}, "models: model.modelName '../x' must be"),
}


@pytest.mark.parametrize("name", sorted(CRAFTED_INDEXES))
def test_a_crafted_index_is_refused_before_anything_is_written(mar: Path, zoo: Path, name: str) -> None:
    """Valid JSON with the wrong shape inside crashed publish with a TypeError after archive, checksum
    and card were written; now the whole index is checked first and the zoo is left as it was."""
    models, words = CRAFTED_INDEXES[name]
    zoo.mkdir()
    (zoo / INDEX_FILE).write_text(json.dumps({"format": 1, "models": models}))
    before = zoo_files(zoo)
    for force in (False, True):
        with pytest.raises(PublishError, match=r"index\.json: .*; repair it by hand") as refused:
            publish_archive(mar, zoo, force=force)
        assert words in str(refused.value), str(refused.value)
    assert zoo_files(zoo) == before
    assert sorted(p.name for p in zoo.iterdir()) == sorted([INDEX_FILE, LOCK_FILE])


def test_a_zoo_of_the_earlier_layout_stays_valid_and_is_tidied_by_force(
    mar: Path, zoo: Path, tmp_path: Path
) -> None:
    """Entries at ``<model>/<version>/<model>.mar`` (before release folders) are read as they are; a
    --force republish removes exactly the files of the entry it replaced."""
    old = make_mar(tmp_path / "old.mar", "1.0")
    index: dict[str, Any] = {"format": 1, "models": {MODEL: {}}}
    for version, archive in (("1.0", old), ("1.1", mar)):
        folder = zoo / MODEL / version
        folder.mkdir(parents=True)
        shutil.copyfile(archive, folder / f"{MODEL}.mar")
        digest = sha256(archive.read_bytes())
        (folder / f"{MODEL}.mar.sha256").write_text(f"{digest}  {MODEL}.mar\n")
        (folder / "README.md").write_text(f"card of {digest}\n")
        index["models"][MODEL][version] = {
            "url": f"{MODEL}/{version}/{MODEL}.mar",
            "sha256": digest,
            "size": archive.stat().st_size,
            "card": f"{MODEL}/{version}/README.md",
            "published": "2024-01-31T12:00:00Z",
            "signature": None,
        }
    (zoo / INDEX_FILE).write_text(json.dumps(index))
    (zoo / MODEL / "1.1" / "NOTES.txt").write_text("kept: not a file of a release\n")

    result = publish_archive(make_mar(tmp_path / "new.mar", "1.1", **{"x.txt": b"x"}), zoo, force=True)

    files = zoo_files(zoo)
    assert_consistent(files)
    assert sorted(name for name in files if name.startswith(f"{MODEL}/1.1/")) == sorted(
        [
            f"{MODEL}/1.1/NOTES.txt",
            result.url,
            result.url + ".sha256",
            result.url.replace(f"{MODEL}.mar", "README.md"),
        ]
    )
    assert f"{MODEL}/1.0/{MODEL}.mar" in files  # the other version is untouched


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


def test_mms_loads_the_release_the_index_names(
    mms, onnx_model, inprocess, zoo: Path, served: str, tmp_path: Path
) -> None:
    """The real server registers the archive from the URL the index gives, after a --force republish,
    and answers as the archive's own handler does. The archive is a build of its own (another
    version): MMS 1.1.11 unpacks archives of identical content into one folder and deletes it when
    either model is unregistered, which would break the fixture's own model."""
    import images
    from squeezenet_mar.build import BuildOptions, build_archive
    from squeezenet_mar.server import Registration

    options = BuildOptions(model_file=onnx_model, model_version="1.1.9", output=tmp_path / "zoo.mar")
    archive = build_archive(dataclasses.replace(options, smoke_test=False, progress=False)).archive
    publish_archive(archive, zoo)
    publish_archive(archive, zoo, force=True)
    entry = requests.get(f"{served}/{INDEX_FILE}", timeout=5).json()["models"][MODEL]["1.1.9"]
    photo = images.jpeg(500, 375, 3)
    mms.register(Registration(url=f"{served}/{entry['url']}", name="from_zoo"))
    try:
        answer = requests.post(f"{mms.inference_url}/predictions/from_zoo", data=photo, timeout=60)
        assert answer.status_code == 200, answer.text
        expected = inprocess.predict_bytes([photo], topk=5)[0].body
        assert [row["class"] for row in answer.json()] == [row["class"] for row in expected]
    finally:
        mms.unregister("from_zoo")


def test_an_evaluation_of_another_archive_is_refused_before_anything_is_written(mar: Path, zoo: Path) -> None:
    other = make_mar(mar.with_name("other.mar"), "1.1", **{"extra.txt": b"another build"})
    measured = {"archive": "other.mar", "archive_content_sha256": content_of(other), "model": f"{MODEL} 1.1"}
    with pytest.raises(PublishError, match="the evaluation measured another archive"):
        publish_archive(mar, zoo, evaluation=measured)
    with pytest.raises(PublishError, match="names no archive"):  # a server, evaluated without one
        publish_archive(mar, zoo, evaluation={"served_by": "http://host/predictions/squeezenet"})
    wrong_model = {"archive_content_sha256": content_of(mar), "model": "another 2.0"}
    with pytest.raises(PublishError, match="the evaluation is of another 2.0"):
        publish_archive(mar, zoo, evaluation=wrong_model)
    assert [p.name for p in zoo.rglob("*") if p.is_file()] in ([], [LOCK_FILE])


def test_an_older_record_naming_the_archive_file_is_accepted(mar: Path, zoo: Path) -> None:
    """Records written before archive_content_sha256 existed name the .mar's own SHA-256."""
    card = publish_archive(mar, zoo, evaluation={"archive_sha256": sha256(mar.read_bytes()), "top1": 1.0})
    assert "Measured on this archive" in card.card_path.read_text()
