"""What a release is, in any zoo: the rules every store follows, written once.

A release of ``<model> <version>`` is four things, at paths relative to the zoo root (``ReleasePaths``):
the archive byte for byte, its checksum file, its model card (``card.py``) and its entry in
``index.json``. This module holds

- ``read_checked_archive``: the archive verified and its manifest read, before anything is written;
- ``refuse_published``: a version the index lists is published, and replaced only with ``force``;
- the index: ``parse_index`` (a damaged index is an error, never reset), ``index_entry``,
  ``index_bytes`` (``json.dumps(..., indent=2, sort_keys=True)``);
- ``PublishResult``: what a publish reports.

It knows nothing of folders or S3: the stores (``folder.py``, ``s3.py``) import it, never the reverse.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from squeezenet_handler.signing import SignatureInfo

from ..errors import PublishError, SignatureVerifyError, VerifyError
from ..layout import SIGNATURE_BUNDLE, Entry, read_archive
from ..signatures import BUNDLE_SUFFIX, Trust
from ..verify import verify_archive
from .card import SIGNATURE_FILE, render_card

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
CARD_FILE = "README.md"
INDEX_FORMAT = 1


@dataclass(frozen=True)
class PublishResult:
    # Paths in a local zoo; s3://bucket/key addresses in an S3 zoo.
    mar_path: Path | str
    sha256: str
    card_path: Path | str
    index_path: Path | str
    url: str  # relative to the zoo root, as in index.json
    model: str
    version: str
    size: int
    signature: dict[str, Any] | None = None  # the index's record of the signature; None: unsigned


# ------------------------------------------------------------------------------- the files of a release
@dataclass(frozen=True)
class ReleasePaths:
    """Where a release's files lie, relative to the zoo root (the URLs of ``index.json``)."""

    name: str  # <model>.mar, the archive's file name
    archive: str  # <model>/<version>/<model>.mar
    checksum: str  # <model>/<version>/<model>.mar.sha256
    card: str  # <model>/<version>/README.md
    bundle: str  # <model>/<version>/<model>.mar.sig, a signed archive's signature bundle

    @classmethod
    def of(cls, model: str, version: str) -> ReleasePaths:
        name = f"{model}.mar"
        archive = f"{model}/{version}/{name}"
        card = f"{model}/{version}/{CARD_FILE}"
        return cls(name, archive, f"{archive}.sha256", card, f"{archive}{BUNDLE_SUFFIX}")


def checksum_file(sha256: str, name: str) -> bytes:
    """``<sha256>  <name>``: the ``sha256sum -c`` format."""
    return f"{sha256}  {name}\n".encode()


def refuse_published(versions: dict[str, Any], model: str, version: str, where: str, force: bool) -> None:
    """A version listed in the index is published: refused unless ``force``."""
    if version in versions and not force:
        raise PublishError(
            f"{model} {version} is already published in {where} (sha256 {versions[version].get('sha256')}); "
            "publish a new version or pass --force to replace it"
        )
    if version in versions:
        logger.info("replacing %s %s in %s (--force)", model, version, where)


def release_card(
    checked: CheckedArchive,
    *,
    paths: ReleasePaths,
    sha256: str,
    size: int,
    evaluation: dict[str, Any] | None,
) -> str:
    return render_card(
        checked.manifest,
        checked.entries,
        checked.signature,
        name=paths.name,
        url=paths.archive,
        sha256=sha256,
        size=size,
        evaluation=evaluation,
        signing=signing_record(checked, paths),
    )


# ---------------------------------------------------------------------------------------- the archive
@dataclass(frozen=True)
class CheckedArchive:
    """An archive that passed ``verify_archive``, with what the card and the index need from it."""

    path: Path
    manifest: dict[str, Any]
    entries: dict[str, Entry]
    signature: dict[str, Any] | None  # signature.json (input, preprocessing)
    model: str
    version: str
    bundle: bytes | None = None  # MAR-INF/model.sig of a signed archive
    signer: SignatureInfo | None = None  # the signer, when the publisher gave a key to trust


def read_checked_archive(
    archive: Path, trust: Trust | None = None, require_signature: bool = False
) -> CheckedArchive:
    """The archive's manifest and files, refused when it fails verification (read without running
    anything) or its model name or version cannot name a zoo folder (see ``names``).

    Signatures: with ``trust``, a signed archive's signature must verify; ``require_signature`` (which
    needs ``trust``) refuses an unsigned archive too. Without ``trust`` a signed archive is published
    as signed but not verified by the publisher."""
    if not archive.is_file():
        raise PublishError(f"{archive}: no such .mar file (publish takes a built archive, not a folder)")
    if require_signature and trust is None:
        raise PublishError("--require-signature needs the key to trust: --public-key or --certificate-chain")
    contents = read_archive(archive)
    signed = SIGNATURE_BUNDLE in contents.entries
    try:  # layout, names, hashes and consistency (and the signature), without running code
        report = verify_archive(archive, trust=trust if signed or require_signature else None)
    except VerifyError as exc:
        raise PublishError(f"{archive.name}: refusing an archive that fails verification:\n{exc}") from exc
    except SignatureVerifyError as exc:
        raise PublishError(f"refusing an archive whose signature does not verify: {exc}") from exc
    manifest = contents.manifest()
    model = manifest["model"]
    return CheckedArchive(
        path=archive,
        manifest=manifest,
        entries=contents.entries,
        signature=_signature(contents.kept, archive),
        model=str(model["modelName"]),
        version=str(model["modelVersion"]),
        bundle=contents.kept.get(SIGNATURE_BUNDLE) if signed else None,
        signer=report.signature,
    )


def signing_record(checked: CheckedArchive, paths: ReleasePaths) -> dict[str, Any] | None:
    """What the index and the card say of the release's signature; None for an unsigned archive."""
    if checked.bundle is None:
        return None
    signer = checked.signer
    return {
        "bundle": paths.bundle,
        "verified_by_publisher": signer is not None,
        "key_sha256": signer.fingerprint if signer else None,
        "mode": signer.mode if signer else None,
    }


def _signature(files: dict[str, bytes], archive: Path) -> dict[str, Any] | None:
    """The archive's signature.json (input and preprocessing for the card), None when it has none."""
    if SIGNATURE_FILE not in files:
        return None
    try:
        signature = json.loads(files[SIGNATURE_FILE].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{archive.name}: {SIGNATURE_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(signature, dict):
        raise PublishError(f"{archive.name}: {SIGNATURE_FILE} is not a JSON object")
    return signature


# ------------------------------------------------------------------------------------------ the index
def empty_index() -> dict[str, Any]:
    """The index of a zoo with nothing published yet (a store that has no ``index.json`` reads this)."""
    return {"format": INDEX_FORMAT, "models": {}}


def parse_index(data: bytes, where: str) -> dict[str, Any]:
    """The index read from ``data`` (found at ``where``); a damaged index is an error, never reset."""
    try:
        index = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{where}: not valid JSON ({exc}); repair or remove it by hand") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise PublishError(f"{where}: not a format {INDEX_FORMAT} zoo index")
    if not isinstance(index.get("models"), dict):
        raise PublishError(f"{where}: 'models' is missing or not an object")
    return index


def index_entry(
    paths: ReleasePaths, sha256: str, size: int, signing: dict[str, Any] | None = None
) -> dict[str, Any]:
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "url": paths.archive,
        "sha256": sha256,
        "size": size,
        "card": paths.card,
        "published": published,
        "signature": signing,
    }


def index_bytes(index: dict[str, Any]) -> bytes:
    return (json.dumps(index, indent=2, sort_keys=True) + "\n").encode("utf-8")
