"""The archive read without extracting it: its checked contents (for the in-process handler), its
synset (the class order of the ground truth), its manifest and digest (for the published record)."""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import HANDLER, MODEL_NAME
from ..errors import VerifyError
from ..layout import MANIFEST, ArchiveContents, read_archive, sha256_file
from .errors import EvaluationError
from .ground_truth import read_synset


@dataclass(frozen=True)
class ArchiveFiles:
    """An archive read without extracting it: its checked contents, manifest and synset."""

    path: Path
    contents: ArchiveContents
    manifest: dict[str, Any]
    synset: list[str]
    sha256: str | None  # of the .mar file; None for a folder

    @property
    def model(self) -> str:
        model = self.manifest.get("model")
        model = model if isinstance(model, dict) else {}
        return f"{model.get('modelName', MODEL_NAME)} {model.get('modelVersion', '')}".strip()

    @property
    def handler(self) -> str:
        model = self.manifest.get("model")
        return (model.get("handler") if isinstance(model, dict) else None) or HANDLER


def read_archive_files(archive: Path) -> ArchiveFiles:
    """A zip or tgz ``.mar`` or a folder, refused when any entry is unsafe (absolute, ``..``, a link)."""
    try:
        contents = read_archive(archive)
    except (OSError, ValueError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise EvaluationError(f"{archive}: cannot read the archive: {exc}") from exc
    if contents.refused:
        raise VerifyError([(name, f"refused entry: {reason}") for name, reason in contents.refused])
    try:
        synset = read_synset(contents.read("synset.txt").decode("utf-8"))
        manifest = contents.manifest() if MANIFEST in contents.kept else {}
    except KeyError as exc:
        raise EvaluationError(f"{archive.name}: the archive has no synset.txt") from exc
    except ValueError as exc:  # UnicodeDecodeError, json.JSONDecodeError
        raise EvaluationError(f"{archive.name}: unreadable synset.txt or {MANIFEST}: {exc}") from exc
    if not synset:
        raise EvaluationError(f"{archive.name}: synset.txt has no classes")
    if not isinstance(manifest, dict):
        raise EvaluationError(f"{archive.name}: {MANIFEST} is not a JSON object")
    digest = sha256_file(archive) if archive.is_file() else None
    return ArchiveFiles(archive, contents, manifest, synset, digest)
