"""Helpers shared by the tests: unpacked-archive folders, raw-body requests, children's temporary folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HANDLER_FILE = ROOT / "handler" / "squeezenet_service.py"


def copy_handler(target: Path) -> Path:
    """The handler as the build packs it: the entry module and its package, into ``target``."""
    from squeezenet_mar.build import handler_files

    for name, source in handler_files(HANDLER_FILE).items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / name)
    return target


def make_model_dir(target: Path, onnx_file: Path, signature: Path | None = None) -> Path:
    """An unpacked-archive folder: the model, signature.json, synset.txt and the handler."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, target / "squeezenet1.1.onnx")
    shutil.copyfile(signature or ROOT / "signature.json", target / "signature.json")
    shutil.copyfile(ROOT / "synset.txt", target / "synset.txt")
    return copy_handler(target)


def raw(body: bytes) -> dict[str, Any]:
    """A request whose image is the raw HTTP body (``curl -T``), as MMS hands it to the handler."""
    return {"body": bytearray(body)}


def private_tmp_env(folder: Path) -> dict[str, str]:
    """The environment for a child that a test kills with SIGKILL: no cleanup runs in it, so its
    temporary files go to ``folder`` (inside the test's own tmp_path), not the machine's /tmp."""
    folder.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(folder)}
