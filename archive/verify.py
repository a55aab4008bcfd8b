"""Verify a model archive before anybody serves it: layout, manifest, hashes, consistency, and a real
prediction by the archive's own handler.

Every check that fails adds one ``(file, problem)`` pair; nothing stops at the first problem except
that the handler only runs on an archive whose files all passed (it executes the archive's code).
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import VerifyError
from .inprocess import InProcessService, smoke_image
from .layout import (
    MANIFEST,
    SHA256SUMS,
    ArchiveContents,
    parse_sha256sums,
    read_archive,
    sha256_hex,
    unpacked,
)

logger = logging.getLogger(__name__)

RUNTIMES = ("python", "python2", "python3")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")  # what MMS accepts as a model name


@dataclass
class VerifyReport:
    archive: Path
    problems: list[tuple[str, str]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)  # name -> size
    top5: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, name: str, problem: str) -> None:
        self.problems.append((name, problem))


def check_manifest(contents: ArchiveContents, report: VerifyReport) -> str | None:
    """The fields MMS needs; returns the handler module's file name when the handler spec is sound."""
    if MANIFEST not in contents.files:
        report.add(MANIFEST, "missing")
        return None
    try:
        manifest = contents.manifest()
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add(MANIFEST, f"not valid JSON: {exc}")
        return None
    report.manifest = manifest
    if manifest.get("runtime") not in RUNTIMES:
        report.add(MANIFEST, f"runtime is {manifest.get('runtime')!r}, expected one of {RUNTIMES}")
    model = manifest.get("model")
    if not isinstance(model, dict):
        report.add(MANIFEST, "no 'model' object")
        return None
    name = model.get("modelName")
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        report.add(MANIFEST, f"model.modelName {name!r} is missing or not a valid model name")
    handler = model.get("handler")
    if not isinstance(handler, str) or not handler:
        report.add(MANIFEST, "model.handler is missing")
        return None
    module, _, function = handler.partition(":")
    module = module.removesuffix(".py")
    if not _MODULE_NAME.match(module) or (function and not _MODULE_NAME.match(function)):
        report.add(MANIFEST, f"model.handler {handler!r} must be 'module:function' inside the archive")
        return None
    module_file = f"{module}.py"
    if module_file not in contents.files:
        report.add(module_file, f"handler module named by {MANIFEST} is missing")
        return None
    return module_file


def check_hashes(contents: ArchiveContents, report: VerifyReport) -> None:
    if SHA256SUMS not in contents.files:
        report.add(SHA256SUMS, "missing: the archive's files cannot be checked")
        return
    try:
        sums = parse_sha256sums(contents.files[SHA256SUMS])
    except (UnicodeDecodeError, ValueError) as exc:
        report.add(SHA256SUMS, str(exc))
        return
    for name, expected in sorted(sums.items()):
        if name not in contents.files:
            report.add(name, f"listed in {SHA256SUMS} but not in the archive")
        elif sha256_hex(contents.files[name]) != expected:
            report.add(name, f"sha256 is {sha256_hex(contents.files[name])}, {SHA256SUMS} says {expected}")
    for name in sorted(set(contents.files) - set(sums) - {SHA256SUMS}):
        report.add(name, f"not listed in {SHA256SUMS}")


def check_consistency(contents: ArchiveContents, report: VerifyReport) -> None:
    """signature.json readable and 3x224x224; synset.txt has as many labels as classes declared."""
    from squeezenet_service import ModelLoadError, find_model_files, parse_signature

    for name in ("signature.json", "synset.txt"):
        if name not in contents.files:
            report.add(name, "missing")
    if "signature.json" not in contents.files:
        return
    try:
        signature = parse_signature(json.loads(contents.files["signature.json"]), "signature.json")
    except (ValueError, ModelLoadError) as exc:
        report.add("signature.json", str(exc))
        return
    if "synset.txt" in contents.files:
        text = contents.files["synset.txt"].decode("utf-8", "replace")
        labels = [line for line in text.splitlines() if line.strip()]
        if len(labels) != signature.num_classes:
            report.add("synset.txt", f"{len(labels)} labels, signature.json declares {signature.num_classes}")
    with tempfile.TemporaryDirectory() as tmp:  # names only, to reuse the handler's model-file rule
        for name in contents.files:
            if "/" not in name:
                (Path(tmp) / name).touch()
        try:
            find_model_files(Path(tmp), signature.model_file)
        except ModelLoadError as exc:
            report.add(signature.model_file or "model", str(exc).replace(tmp, "archive root"))


def run_handler(contents: ArchiveContents, handler: str, report: VerifyReport) -> None:
    with unpacked(contents.files, "squeezenet-verify-") as root:
        try:
            [answer] = InProcessService(root, handler).predict_bytes([smoke_image()])
        except Exception as exc:  # anything the archive's handler raises is a failed verification
            report.add(handler, f"the handler failed to load or answer: {type(exc).__name__}: {exc}")
            return
    if answer.status != 200 or not isinstance(answer.body, list):
        report.add(handler, f"answered {answer.status} to a valid image: {answer.body}")
        return
    report.top5 = answer.body


def verify_archive(path: Path, run: bool = True) -> VerifyReport:
    """All checks; raises VerifyError listing every problem, or returns the report of a sound archive."""
    report = VerifyReport(archive=path)
    try:
        contents = read_archive(path)
    except (OSError, ValueError, zipfile.BadZipFile, tarfile.TarError) as exc:
        report.add(path.name, f"cannot open: {exc}")
        raise VerifyError(report.problems) from exc
    report.files = {name: len(data) for name, data in sorted(contents.files.items())}
    for name, reason in contents.unsafe:
        report.add(name, f"refused entry: {reason}")
    module_file = check_manifest(contents, report)
    check_hashes(contents, report)
    check_consistency(contents, report)
    if run and not report.problems and module_file:
        run_handler(contents, report.manifest["model"]["handler"], report)
    if report.problems:
        raise VerifyError(report.problems)
    return report
