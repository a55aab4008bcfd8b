"""What a release is, in any zoo: the rules every store follows, written once.

A release of ``<model> <version>`` is its files in a folder of its own, ``<model>/<version>/<release>/``
(``ReleasePaths``): the archive byte for byte, its checksum file, its signature bundle when signed, its
model card (``card.py``); and its entry in ``index.json``, which names them. ``<release>`` is
``<first 16 hex digits of the archive's sha256>-<8 random hex digits>``, new for every publish, so
release files are written once and never changed: a ``.sha256`` always lies beside the archive it
describes, and the only thing a publish replaces is ``index.json``. This module holds

- ``read_checked_archive``: the archive verified and its manifest read, before anything is written;
- ``refuse_published``: a version the index lists is published, and replaced only with ``force``;
- the index: ``parse_index`` (a damaged index, or one with any entry of the wrong shape, is an error,
  never reset or half used), ``index_entry``, ``entry_files`` (the files an entry names),
  ``index_bytes`` (``json.dumps(..., indent=2, sort_keys=True)``);
- ``PublishResult``: what a publish reports.

It knows nothing of folders or S3: the stores (``folder.py``, ``s3.py``) import it, never the reverse.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from squeezenet_handler.signing import SignatureInfo

from ..errors import PublishError, SignatureVerifyError, VerifyError
from ..layout import SIGNATURE_BUNDLE, Entry, content_digest, sha256_file, unsafe_reason
from ..names import name_problem
from ..signatures import BUNDLE_SUFFIX, Trust, verify_signature
from ..verify import verify_archive
from .card import SIGNATURE_FILE, render_card

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
CARD_FILE = "README.md"
INDEX_FORMAT = 1
CHECKSUM_SUFFIX = ".sha256"
RELEASE_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]{8}")  # <sha256 prefix>-<random>: one publish
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    """Where one release's files lie, relative to the zoo root (the URLs of ``index.json``)."""

    name: str  # <model>.mar, the archive's file name
    folder: str  # <model>/<version>/<release>
    archive: str  # <folder>/<model>.mar
    checksum: str  # <folder>/<model>.mar.sha256
    card: str  # <folder>/README.md
    bundle: str  # <folder>/<model>.mar.sig, a signed archive's signature bundle

    @classmethod
    def new(cls, model: str, version: str, sha256: str) -> ReleasePaths:
        """The folder of a new release of the archive with this sha256: nobody has used it before."""
        return cls.of(model, version, f"{sha256[:16]}-{secrets.token_hex(4)}")

    @classmethod
    def of(cls, model: str, version: str, release: str) -> ReleasePaths:
        name = f"{model}.mar"
        folder = f"{model}/{version}/{release}"
        archive = f"{folder}/{name}"
        return cls(
            name,
            folder,
            archive,
            f"{archive}{CHECKSUM_SUFFIX}",
            f"{folder}/{CARD_FILE}",
            f"{archive}{BUNDLE_SUFFIX}",
        )

    def files(self) -> list[str]:
        """Every file a release may have, the archive first (removed first, a folder without it is
        no release)."""
        return [self.archive, self.checksum, self.bundle, self.card]


def is_release_file(relative: str, model: str, version: str) -> bool:
    """A file in a release folder of ``model`` ``version`` (``<model>/<version>/<release>/<file>``),
    or the folder itself, empty (``<model>/<version>/<release>/``)."""
    parts = relative.split("/")
    return len(parts) == 4 and parts[:2] == [model, version] and bool(RELEASE_ID.fullmatch(parts[2]))


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
    sha256: str  # of the archive file
    size: int
    bundle: bytes | None = None  # MAR-INF/model.sig of a signed archive
    signer: SignatureInfo | None = None  # the signer, when the publisher gave a key to trust


def read_checked_archive(
    archive: Path, trust: Trust | None = None, require_signature: bool = False
) -> CheckedArchive:
    """The archive's manifest and files, refused when it fails verification (read without running
    anything) or its model name or version cannot name a zoo folder (see ``names``). Read once: what
    was verified is what the card and the index describe.

    Signatures: with ``trust``, a signed archive's signature must verify; ``require_signature`` (which
    needs ``trust``) refuses an unsigned archive too. Without ``trust`` a signed archive is published
    as signed but not verified by the publisher."""
    if not archive.is_file():
        raise PublishError(f"{archive}: no such .mar file (publish takes a built archive, not a folder)")
    if require_signature and trust is None:
        raise PublishError(
            "--require-signature needs what to trust: --trusted-key or --trusted-certificate-chain"
        )
    try:  # layout, names, hashes and consistency, without running code; then the signature if asked
        report = verify_archive(archive)
        contents = report.contents
        if contents is None:
            raise PublishError(f"{archive.name}: verification read nothing")
        signed = SIGNATURE_BUNDLE in contents.entries
        if trust is not None and (signed or require_signature):
            report.signature = verify_signature(contents, trust)
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
        sha256=sha256_file(archive),
        size=archive.stat().st_size,
        bundle=contents.kept.get(SIGNATURE_BUNDLE) if signed else None,
        signer=report.signature,
    )


def check_evaluation(evaluation: dict[str, Any], checked: CheckedArchive) -> None:
    """The card says "measured on this archive": refuse an evaluation of anything else. It names the
    archive's content (``archive_content_sha256``, which signing leaves unchanged: evaluate, sign,
    publish works) or, in records without it, the archive file's SHA-256; and the model and version."""
    content = content_digest(checked.entries)
    recorded = evaluation.get("archive_content_sha256")
    model = f"{checked.model} {checked.version}"
    if recorded is None and evaluation.get("archive_sha256") is None:
        raise PublishError(
            "the evaluation names no archive (a server was evaluated without one): evaluate the archive "
            f"itself ('squeezenet-mar evaluate {checked.path.name} --images DIR --json FILE') to publish it"
        )
    if recorded is not None and recorded != content:
        raise PublishError(
            f"the evaluation measured another archive ({evaluation.get('model')}, "
            f"{evaluation.get('archive')}: content sha256 {recorded}), not {checked.path.name} ({model}, "
            f"content sha256 {content}): evaluate this archive, or publish the one evaluated"
        )
    if recorded is None and evaluation.get("archive_sha256") != checked.sha256:
        raise PublishError(
            f"the evaluation measured another archive (sha256 {evaluation.get('archive_sha256')}), not "
            f"{checked.path.name} (sha256 {checked.sha256}): evaluate this archive"
        )
    if evaluation.get("model") not in (None, model):
        raise PublishError(f"the evaluation is of {evaluation.get('model')}, the archive is {model}")


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
    """The index read from ``data`` (found at ``where``), every entry's shape checked before anybody
    uses it; a damaged index is an error, never reset, so nothing is written to a zoo whose index
    cannot be read whole."""
    try:
        index = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{where}: not valid JSON ({exc}); repair or remove it by hand") from exc
    problem = index_problem(index)
    if problem:
        raise PublishError(f"{where}: {problem}; repair it by hand")
    return index


def index_problem(index: Any) -> str | None:
    """What is wrong with a parsed index, or None: the format, every model and version name, every
    entry's fields and types, every path it names (inside its own ``<model>/<version>/``)."""
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        return f"not a format {INDEX_FORMAT} zoo index"
    models = index.get("models")
    if not isinstance(models, dict):
        return "'models' is missing or not an object"
    for model, versions in models.items():
        problem = name_problem(model, "modelName")
        if problem:
            return f"models: {problem}"
        if not isinstance(versions, dict):
            return f"model {model}: not an object of versions"
        for version, entry in versions.items():
            problem = name_problem(version, "modelVersion") or _entry_problem(entry, f"{model}/{version}/")
            if problem:
                return f"model {model} version {version[:100]}: {problem}"
    return None


def _entry_problem(entry: Any, folder: str) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    for key, kind in (("url", str), ("sha256", str), ("size", int), ("card", str), ("published", str)):
        if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
            return f"{key} is missing or not {'an integer' if kind is int else 'a string'}"
    if not _SHA256.fullmatch(entry["sha256"]):
        return "sha256 is not 64 lowercase hex digits"
    if entry["size"] < 0:
        return "size is negative"
    if not entry["url"].endswith(".mar"):
        return "url does not name a .mar file"
    signature = entry.get("signature")
    paths = [("url", entry["url"]), ("card", entry["card"])]
    if signature is not None:
        if not isinstance(signature, dict):
            return "signature is neither null nor an object"
        if not isinstance(signature.get("bundle"), str):
            return "signature.bundle is missing or not a string"
        if not isinstance(signature.get("verified_by_publisher"), bool):
            return "signature.verified_by_publisher is missing or not true or false"
        for key in ("key_sha256", "mode"):
            if signature.get(key) is not None and not isinstance(signature[key], str):
                return f"signature.{key} is neither null nor a string"
        paths.append(("signature.bundle", signature["bundle"]))
    for key, path in paths:
        if unsafe_reason(path) or posixpath.normpath(path) != path or not path.startswith(folder):
            return f"{key} {path[:200]!r} is not a path inside {folder}"
    return None


def entry_files(entry: dict[str, Any]) -> list[str]:
    """The files an index entry names: archive, its checksum, signature bundle, card (archive first)."""
    files = [entry["url"], entry["url"] + CHECKSUM_SUFFIX]
    if entry.get("signature"):
        files.append(entry["signature"]["bundle"])
    return [*files, entry["card"]]


def referenced_files(index: dict[str, Any]) -> set[str]:
    """Every file any entry of the index names."""
    return {
        name
        for versions in index["models"].values()
        for entry in versions.values()
        for name in entry_files(entry)
    }


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
