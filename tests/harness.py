"""Helpers shared by the tests: unpacked-archive folders and raw-body requests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HANDLER_FILE = ROOT / "handler" / "squeezenet_service.py"


def make_model_dir(target: Path, onnx_file: Path, signature: Path | None = None) -> Path:
    """An unpacked-archive folder: the model, signature.json, synset.txt and the handler module."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, target / "squeezenet1.1.onnx")
    shutil.copyfile(signature or ROOT / "signature.json", target / "signature.json")
    shutil.copyfile(ROOT / "synset.txt", target / "synset.txt")
    shutil.copyfile(HANDLER_FILE, target / HANDLER_FILE.name)
    return target


def raw(body: bytes) -> dict[str, Any]:
    """A request whose image is the raw HTTP body (``curl -T``), as MMS hands it to the handler."""
    return {"body": bytearray(body)}
