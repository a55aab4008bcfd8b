"""`make archive` (issue 18, item 6), run for real: GNU make on the repository's Makefile, in a folder
of its own whose sources are links to the repository's (so model_store/ is the test's), with the
seeded test model as MODEL. A signed archive is never rebuilt unsigned; nothing is rebuilt when nothing
changed; a signature left over from a deleted archive does not count as one."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import ROOT
from keys import make_key

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

LINKED = (
    "Makefile",
    "deploy",
    "handler",
    "signature.json",
    "synset.txt",
    "pyproject.toml",
    "constraints.txt",
    ".venv",
)
ARCHIVE = Path("model_store/squeezenet_v1.1.mar")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "checkout"
    folder.mkdir()
    for name in LINKED:
        (folder / name).symlink_to(ROOT / name)
    return folder


def make(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "archive", *arguments],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nothing_is_rebuilt_when_nothing_changed(workspace, onnx_model):
    first = make(workspace, f"MODEL={onnx_model}")
    assert first.returncode == 0, first.stdout + first.stderr
    built = digest(workspace / ARCHIVE)
    again = make(workspace, f"MODEL={onnx_model}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "squeezenet-mar build" not in again.stdout
    assert digest(workspace / ARCHIVE) == built


def test_a_signed_archive_is_not_rebuilt_unsigned(workspace, onnx_model, tmp_path):
    key = make_key(tmp_path, "publisher")
    signed = make(workspace, f"MODEL={onnx_model}", f"SIGN_KEY={key.private}")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert (workspace / f"{ARCHIVE}.sig").is_file()
    before = digest(workspace / ARCHIVE)

    other_model = shutil.copyfile(onnx_model, tmp_path / "another-copy.onnx")  # an input changed
    refused = make(workspace, f"MODEL={other_model}")

    assert refused.returncode == 2
    assert "is signed and its inputs changed: rebuilding would drop its signature" in refused.stdout
    assert digest(workspace / ARCHIVE) == before


def test_a_signature_left_from_a_deleted_archive_does_not_stop_the_build(workspace, onnx_model, tmp_path):
    key = make_key(tmp_path, "publisher")
    assert make(workspace, f"MODEL={onnx_model}", f"SIGN_KEY={key.private}").returncode == 0
    (workspace / ARCHIVE).unlink()  # the archive deleted, its .sig left beside where it was

    rebuilt = make(workspace, f"MODEL={onnx_model}")

    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (workspace / ARCHIVE).is_file()
    assert not (workspace / f"{ARCHIVE}.sig").exists()  # the build removed the stale one
