"""What the handler checks about its own files at load, before it trusts them."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from .errors import ModelLoadError

logger = logging.getLogger(__name__)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_archive_hashes(model_dir: Path) -> int:
    """Refuse a tampered or incomplete archive: every file in ``MAR-INF/SHA256SUMS`` must exist inside
    ``model_dir`` with that SHA-256. Archives without the file (built by other tools) pass unchecked.
    Returns the number of files checked."""
    sums = model_dir / "MAR-INF" / "SHA256SUMS"
    if not sums.is_file():
        logger.warning("%s: no MAR-INF/SHA256SUMS, archive integrity not checked", model_dir)
        return 0
    root = model_dir.resolve()
    checked = 0
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        path = (model_dir / name).resolve()
        if not path.is_relative_to(root):
            raise ModelLoadError(f"MAR-INF/SHA256SUMS: {name!r} points outside the archive")
        if not path.is_file():
            raise ModelLoadError(f"{name}: listed in MAR-INF/SHA256SUMS but missing from the archive")
        digest = _sha256_file(path)
        if digest != expected:
            raise ModelLoadError(f"{name}: sha256 {digest} does not match MAR-INF/SHA256SUMS ({expected})")
        checked += 1
    return checked
