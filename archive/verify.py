"""Verify a model archive before anybody serves it: layout, manifest, names, hashes and consistency,
all without running anything from the archive.

Every check that fails adds one ``(file, problem)`` pair; nothing stops at the first problem, except
that an archive whose layout is refused (``layout.read_archive``: an entry over a limit, a name that
is unsafe or that MMS would unpack elsewhere, a directory entry that is not the folder of a file, a
zip the two readers see differently) is not checked further. What a passing verification proves: the
archive is intact and self-consistent (every file matches ``MAR-INF/SHA256SUMS``, both zip readers
see the same files, nothing else is unpacked). It does not prove who made it: the checksums live
inside the archive, so whoever replaces it can rewrite them. Origin needs a signature.

``trust`` (``--public-key`` or ``--certificate-chain``) also checks the archive's signature: who
published it. A signature that does not verify raises ``SignatureVerifyError`` (exit code 9).

``run=True`` (``squeezenet-mar verify --run``) also loads the archive's handler and asks it for a
prediction. That executes the archive's code, so it is opt-in and happens in a child process.
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

from squeezenet_handler.signing import SignatureInfo

from .errors import VerifyError
from .inprocess import run_handler_in_child
from .layout import (
    MANIFEST,
    SHA256SUMS,
    SIGNATURE_BUNDLE,
    ArchiveContents,
    parse_sha256sums,
    read_archive,
    unpacked,
)
from .names import name_problem
from .signatures import Trust, verify_signature

logger = logging.getLogger(__name__)

RUNTIMES = ("python", "python2", "python3")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
UNSIGNED_FILES = {SHA256SUMS, SIGNATURE_BUNDLE}  # not listed in SHA256SUMS: written after it


@dataclass
class VerifyReport:
    archive: Path
    problems: list[tuple[str, str]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)  # name -> size
    top5: list[dict[str, Any]] = field(default_factory=list)  # with run=True: the handler's answer
    signed: bool = False  # the archive carries a signature bundle
    signature: SignatureInfo | None = None  # with a trust: the verified signer
    # What was read and checked, for a caller that goes on to use the archive (extract it, publish
    # it): ``layout.extract_checked`` writes exactly these files, so nothing unverified is used.
    contents: ArchiveContents | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, name: str, problem: str) -> None:
        self.problems.append((name, problem))


def check_manifest(contents: ArchiveContents, report: VerifyReport) -> str | None:
    """The fields MMS needs; returns the handler module's file name when the handler spec is sound."""
    if MANIFEST not in contents.entries:
        report.add(MANIFEST, "missing")
        return None
    try:
        manifest = contents.manifest()
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add(MANIFEST, f"not valid JSON: {exc}")
        return None
    if not isinstance(manifest, dict):
        report.add(MANIFEST, "not a JSON object")
        return None
    report.manifest = manifest
    if manifest.get("runtime") not in RUNTIMES:
        report.add(MANIFEST, f"runtime is {manifest.get('runtime')!r}, expected one of {RUNTIMES}")
    model = manifest.get("model")
    if not isinstance(model, dict):
        report.add(MANIFEST, "no 'model' object")
        return None
    for key in ("modelName", "modelVersion"):
        problem = name_problem(model.get(key), key)
        if problem:
            report.add(MANIFEST, problem)
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
    if module_file not in contents.entries:
        report.add(module_file, f"handler module named by {MANIFEST} is missing")
        return None
    return module_file


def check_hashes(contents: ArchiveContents, report: VerifyReport) -> None:
    if SHA256SUMS not in contents.kept:
        report.add(SHA256SUMS, "missing: the archive's files cannot be checked")
        return
    try:
        sums = parse_sha256sums(contents.read(SHA256SUMS))
    except (UnicodeDecodeError, ValueError) as exc:
        report.add(SHA256SUMS, str(exc))
        return
    refused = {name for name, _ in contents.refused}
    for name, expected in sorted(sums.items()):
        entry = contents.entries.get(name)
        if entry is None and name not in refused:  # a refused entry is reported as such already
            report.add(name, f"listed in {SHA256SUMS} but not in the archive")
        elif entry is not None and entry.sha256 != expected:
            report.add(name, f"sha256 is {entry.sha256}, {SHA256SUMS} says {expected}")
    for name in sorted(set(contents.entries) - set(sums) - UNSIGNED_FILES):
        report.add(name, f"not listed in {SHA256SUMS}")


def check_consistency(contents: ArchiveContents, report: VerifyReport) -> None:
    """signature.json readable and 3x224x224; synset.txt has as many labels as classes declared; every
    model file signature.json names is there (an MXNet checkpoint with its -0000.params)."""
    from squeezenet_handler.engines import find_model_files
    from squeezenet_handler.errors import ModelLoadError
    from squeezenet_handler.signature import parse_signature

    for name in ("signature.json", "synset.txt"):
        if name not in contents.kept:
            report.add(name, "missing")
    if "signature.json" not in contents.kept:
        return
    try:
        signature = parse_signature(json.loads(contents.read("signature.json")), "signature.json")
    except (ValueError, ModelLoadError) as exc:
        report.add("signature.json", str(exc))
        return
    if "synset.txt" in contents.kept:
        text = contents.read("synset.txt").decode("utf-8", "replace")
        labels = [line for line in text.splitlines() if line.strip()]
        if len(labels) != signature.num_classes:
            report.add("synset.txt", f"{len(labels)} labels, signature.json declares {signature.num_classes}")
    with tempfile.TemporaryDirectory() as tmp:  # names only, to reuse the handler's model-file rule
        for name in contents.entries:
            if "/" not in name:
                (Path(tmp) / name).touch()
        # Each engine's own file when the archive ships one per engine (engine.model_files), else one.
        named = sorted(set(signature.model_files.values())) or [signature.model_file]
        for model_file in named:
            try:
                find_model_files(Path(tmp), model_file)
            except ModelLoadError as exc:
                report.add(model_file or "model", str(exc).replace(tmp, "archive root"))


def run_handler(contents: ArchiveContents, handler: str, report: VerifyReport) -> None:
    """The archive's handler, loaded in a child process, answers a generated image."""
    with unpacked(contents, "squeezenet-verify-") as root:
        answer = run_handler_in_child(root, handler)
    if answer.status != 200 or not isinstance(answer.body, list):
        report.add(handler, f"the handler failed to load or answer ({answer.status}): {answer.body}")
        return
    report.top5 = answer.body


def verify_archive(path: Path, run: bool = False, trust: Trust | None = None) -> VerifyReport:
    """All checks; raises VerifyError listing every problem, or returns the report of a sound archive.
    With ``trust``, a consistent archive's signature must verify too (else SignatureVerifyError).
    Runs the archive's handler (in a child process) only when ``run`` is True and all else passed."""
    report = VerifyReport(archive=path)
    try:
        contents = read_archive(path)
    except (OSError, ValueError, zipfile.BadZipFile, tarfile.TarError) as exc:
        report.add(path.name, f"cannot open: {exc}")
        raise VerifyError(report.problems) from exc
    report.contents = contents
    report.files = {name: entry.size for name, entry in sorted(contents.entries.items())}
    for name, reason in contents.refused:
        report.add(name, f"refused entry: {reason}")
    if contents.refused:
        raise VerifyError(report.problems)  # a refused layout's other checks would only add noise
    module_file = check_manifest(contents, report)
    check_hashes(contents, report)
    check_consistency(contents, report)
    if report.problems:
        raise VerifyError(report.problems)
    report.signed = SIGNATURE_BUNDLE in contents.entries
    if trust is not None:
        report.signature = verify_signature(contents, trust)
    if run and module_file:
        run_handler(contents, report.manifest["model"]["handler"], report)
        if report.problems:
            raise VerifyError(report.problems)
    return report
