"""What the handler checks about its own files at load, before it trusts them.

1. Origin, when the operator names a trusted key: ``SQUEEZENET_TRUSTED_KEY=/path/to/public.pem`` (or
   ``SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN=ca.pem[:intermediate.pem]``) in the MMS process's
   environment, which its workers inherit. Then the archive's signature (``MAR-INF/model.sig``, see
   ``signing``) must verify over every file of the model folder, or the model does not load. This
   catches weights, labels, signature or modules swapped or added next to a genuine handler. It
   cannot catch a replaced handler, which would simply skip the check: only a check before MMS sees
   the archive (``squeezenet-mar serve --trusted-key``, the container's entrypoint) protects from that.
   Without a trusted key one log line says the signature was not checked.
2. Consistency: every file listed in ``MAR-INF/SHA256SUMS`` is there with that SHA-256 (damage,
   not origin: whoever replaces an archive can rewrite its checksums).
"""

from __future__ import annotations

import hashlib
import logging
import os
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


TRUSTED_KEY = "SQUEEZENET_TRUSTED_KEY"
TRUSTED_CHAIN = "SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN"  # PEM files, separated like PATH entries


def check_signature(model_dir: Path) -> str | None:
    """With a trusted key or chain in the environment: the signer's key fingerprint, or ModelLoadError
    naming why the signature does not verify. Without one: None, and a log line saying so."""
    key, chain = os.environ.get(TRUSTED_KEY, "").strip(), os.environ.get(TRUSTED_CHAIN, "").strip()
    if not key and not chain:
        logger.warning(
            "squeezenet: archive signature NOT checked (no %s or %s in the environment)",
            TRUSTED_KEY,
            TRUSTED_CHAIN,
        )
        return None
    trusted = f"{TRUSTED_KEY}={key}" if key else f"{TRUSTED_CHAIN}={chain}"
    try:
        from .signing import SignatureError, verify_folder
    except ImportError as exc:
        raise ModelLoadError(
            f"{trusted} asks for a signature check, but the model-signing package is missing "
            f"(pip install model-signing==1.1.1 pyopenssl): {exc}"
        ) from exc
    try:
        info = verify_folder(
            model_dir,
            public_key=Path(key) if key else None,
            certificate_chain=[Path(part) for part in chain.split(os.pathsep) if part] if not key else (),
        )
    except SignatureError as exc:
        logger.error("squeezenet: refusing to load, signature check failed (%s): %s", trusted, exc)
        raise ModelLoadError(f"signature check failed ({trusted}): {exc}") from exc
    except (OSError, ValueError) as exc:
        logger.error("squeezenet: refusing to load, cannot check the signature (%s): %s", trusted, exc)
        raise ModelLoadError(f"cannot check the signature ({trusted}): {exc}") from exc
    logger.info(
        "squeezenet: signature verified in %.0f ms: %d files signed by key sha256:%s",
        info.seconds * 1000,
        info.files,
        info.fingerprint,
    )
    return info.fingerprint
