"""The archive verified without running anything (``verify_archive``, with the signature when a trust
is given), then used: its checked contents (for the in-process handler), its synset (the class order
of the ground truth), its manifest and digest (for the published record). An archive that fails
verification is refused before any of its code is imported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import HANDLER, MODEL_NAME
from ..layout import MANIFEST, ArchiveContents, sha256_file
from ..signatures import Trust
from ..verify import verify_archive
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


def read_archive_files(archive: Path, trust: Trust | None = None) -> ArchiveFiles:
    """A zip or tgz ``.mar`` or a folder, verified first (``verify_archive``: layout, names, hashes,
    manifest, consistency; with ``trust`` the signature too). Raises VerifyError or
    SignatureVerifyError for an archive that fails, before anything of it is unpacked or imported;
    the contents returned are those verified, which is what ``load_handler`` unpacks."""
    contents = verify_archive(archive, trust=trust).contents
    if contents is None:
        raise EvaluationError(f"{archive}: verification read nothing")
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
