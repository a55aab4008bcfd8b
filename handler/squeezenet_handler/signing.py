"""Sign a model folder with OpenSSF model signing, and verify it before trusting it.

Standalone (no import from this repository): it travels inside the archive next to the handler, and
the archive tool imports it too. It wraps ``model_signing`` 1.1.1, offline modes only::

    model folder                        Sigstore bundle (MAR-INF/model.sig, JSON)
    ├── MAR-INF/MANIFEST.json, ...      ├── verificationMaterial: key hint, or X.509 chain (leaf first)
    ├── *.py, *.onnx, synset.txt        └── dsseEnvelope: ECDSA signature over an in-toto statement:
    ├── MAR-INF/model.sig  (not signed)       predicate.resources [{name, algorithm: sha256, digest}]
    └── __pycache__/       (not signed)       subject: {"model", sha256 over all the digests}

Verifying: model_signing checks the signature with the trusted key (or the certificate chain up to
the trusted CA); each file's SHA-256 is then compared here with the now authentic statement, so that
a folder, bytes in memory or an archive's digests go one way and a refusal names the file. Success
proves the signer signed exactly the files present, byte for byte, none missing, none added; only the
bundle and, in a folder, ``__pycache__`` are ignored. It says who published the bytes, not that the
code is harmless. Every refusal is one ``SignatureError`` naming the problem and the file when there
is one; mistakes of the caller (no key given, not an EC key) raise ``ValueError`` or ``OSError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import posixpath
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

if TYPE_CHECKING:  # importing model_signing takes ~0.4 s: only the functions that use it import it
    from model_signing import verifying

logger = logging.getLogger(__name__)

Files = Mapping[str, bytes]  # archive member name (relative, POSIX) -> content
PEMs = Sequence[Path]  # PEM certificate files
Digests = Mapping[str, str]  # file name -> sha256 hex

BUNDLE_NAME = "MAR-INF/model.sig"
BYTECODE_DIR = "__pycache__"
SUBJECT_NAME = "model"  # model_signing names the subject after the folder it signs: always this one
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


class SignatureError(Exception):
    """The files cannot be trusted. ``reason``: unsigned, malformed, wrong-key, bad-signature, changed,
    added, removed, foreign-bundle or unsupported-file; ``files``: the names at fault, if any."""

    def __init__(self, reason: str, message: str, files: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.files = tuple(files)


@dataclass(frozen=True)
class SignatureInfo:
    fingerprint: str  # SHA-256 of the signer's DER SubjectPublicKeyInfo (certificate mode: the leaf's key)
    files: int  # number of files the signature covers
    mode: str  # "key" or "certificate"
    subject: str | None  # the leaf certificate's subject, certificate mode only
    seconds: float  # time the verification took


@dataclass(frozen=True)
class _Bundle:
    key_hint: str  # model_signing's hint (key mode): SHA-256 of the PEM public key
    leaf: x509.Certificate | None
    resources: dict[str, str]  # the signed files: name -> sha256 hex


def key_fingerprint(public_key_pem: Path) -> str:
    """SHA-256 of the key's DER SubjectPublicKeyInfo: ``openssl pkey -pubin -outform DER | sha256sum``."""
    return _fingerprint(serialization.load_pem_public_key(public_key_pem.read_bytes()))


def sign_folder(
    folder: Path, private_key: Path, *, certificate_chain: PEMs = (), signing_certificate: Path | None = None
) -> bytes:
    """The Sigstore bundle (JSON bytes) over every file of ``folder`` but the bundle and bytecode."""
    files = {name: path.read_bytes() for name, path in _tree(folder).items()}
    chain, certificate = certificate_chain, signing_certificate
    return sign_files(files, private_key, certificate_chain=chain, signing_certificate=certificate)


def sign_files(
    files: Files, private_key: Path, *, certificate_chain: PEMs = (), signing_certificate: Path | None = None
) -> bytes:
    """Sign in-memory files. Key mode: an EC private key alone. Certificate mode: the key, its
    ``signing_certificate`` and a ``certificate_chain`` (model_signing needs one: at least the CA)."""
    from model_signing import hashing, signing

    if bool(certificate_chain) != (signing_certificate is not None):
        raise ValueError("certificate mode takes both the signing certificate and its chain (CA first)")
    # Per-file SHA-256, symlinks refused, nothing ignored (by default model_signing skips .git*).
    config = signing.Config().set_hashing_config(
        hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)
    )
    try:
        if signing_certificate is None:
            config.use_elliptic_key_signer(private_key=private_key)
        else:
            chain = list(certificate_chain)
            config.use_certificate_signer(
                private_key=private_key, signing_certificate=signing_certificate, certificate_chain=chain
            )
    except (ValueError, TypeError, AttributeError) as exc:  # not PEM, not EC, key/certificate mismatch
        raise ValueError(f"cannot sign with {private_key} (an EC P-256/384/521 PEM key?): {exc}") from exc
    signable = {n: data for n, data in files.items() if n != BUNDLE_NAME and BYTECODE_DIR not in n.split("/")}
    with tempfile.TemporaryDirectory(prefix="squeezenet-sign-") as tmp:
        root = _write(Path(tmp) / SUBJECT_NAME, signable)
        config.sign(root, Path(tmp) / "bundle.sig")
        bundle = (Path(tmp) / "bundle.sig").read_bytes()
    logger.info("signed %d files (%s mode)", len(signable), "key" if signing_certificate is None else "cert")
    return bundle


def verify_folder(
    folder: Path, bundle: bytes | None = None, *, public_key: Path | None = None, certificate_chain: PEMs = ()
) -> SignatureInfo:
    """Check ``folder`` against ``bundle`` (default: its own ``MAR-INF/model.sig``), ignoring the
    bundle file and ``__pycache__`` folders (MMS imports the handler before it can check)."""
    if bundle is None:
        stored = folder / BUNDLE_NAME
        bundle = stored.read_bytes() if stored.is_file() else b""
    actual = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in _tree(folder).items()}
    return _verify(bundle, actual, public_key, certificate_chain)


def verify_digests(
    digests: Digests, bundle: bytes, *, public_key: Path | None = None, certificate_chain: PEMs = ()
) -> SignatureInfo:
    """Check an archive from its entries' SHA-256 (name -> hex, as the archive reader computes them),
    nothing extracted. The ``MAR-INF/model.sig`` entry is ignored; ``__pycache__`` entries count as
    added files (Python would run that bytecode instead of the signed source)."""
    actual = {name: digest for name, digest in digests.items() if name != BUNDLE_NAME}
    return _verify(bundle, actual, public_key, certificate_chain)


def verify_files(
    files: Files, bundle: bytes | None = None, *, public_key: Path | None = None, certificate_chain: PEMs = ()
) -> SignatureInfo:
    """``verify_digests`` for an archive read as bytes (default bundle: its ``MAR-INF/model.sig``)."""
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    bundle = files.get(BUNDLE_NAME, b"") if bundle is None else bundle
    return verify_digests(digests, bundle, public_key=public_key, certificate_chain=certificate_chain)


def _fingerprint(key: PublicKeyTypes) -> str:
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER, _SPKI)).hexdigest()


def _tree(root: Path) -> dict[str, Path]:
    """Files under ``root`` by POSIX name, sorted, but the bundle and bytecode; refuses symlinks and
    special files."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):  # rglob lists hidden files too
        relative = path.relative_to(root)
        name = relative.as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise SignatureError("unsupported-file", f"{name}: a symbolic link or special file", [name])
        if path.is_file() and name != BUNDLE_NAME and BYTECODE_DIR not in relative.parts:
            found[name] = path
    return found


def _write(root: Path, files: Files) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        unsafe = name.startswith("/") or ".." in name.split("/") or "\x00" in name
        if not name or unsafe or name != posixpath.normpath(name):
            raise SignatureError("unsupported-file", f"{name!r}: not a plain relative file name", [name])
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _parse_bundle(bundle: bytes) -> _Bundle:
    """The bundle's statement and signer, read without checking anything cryptographic."""
    try:
        document = json.loads(bundle.decode("utf-8"))
        if set(document) != {"mediaType", "verificationMaterial", "dsseEnvelope"}:
            raise ValueError(f"fields {sorted(document)}, expected a DSSE bundle")
        statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"], validate=True))
        method = statement["predicate"]["serialization"]
        if (method["method"], method["hash_type"]) != ("files", "sha256"):
            raise ValueError(f"serialization {method}, only per-file sha256 is supported")
        resources = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
        material = document["verificationMaterial"]
        if "x509CertificateChain" in material:
            der = base64.b64decode(material["x509CertificateChain"]["certificates"][0]["rawBytes"])
            return _Bundle("", x509.load_der_x509_certificate(der), resources)
        return _Bundle(str(material["publicKey"]["hint"]), None, resources)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise SignatureError("malformed", f"malformed signature bundle: {type(exc).__name__}: {exc}") from exc


def _verify(bundle: bytes, actual: Digests, public_key: Path | None, chain: PEMs) -> SignatureInfo:
    """The signer first (bundle, key or chain), through model_signing; then the files, named."""
    from model_signing import verifying

    start = time.perf_counter()
    if (public_key is None) == (not chain):
        raise ValueError("give exactly one of public_key or certificate_chain to verify against")
    if not bundle.strip():
        raise SignatureError("unsigned", f"unsigned: no signature bundle ({BUNDLE_NAME} missing or empty)")
    parsed = _parse_bundle(bundle)
    mode = "key" if public_key is not None else "certificate"
    if public_key is not None and parsed.leaf is None:
        signer: PublicKeyTypes = _trusted_key(public_key, parsed)
    elif public_key is None and parsed.leaf is not None:
        signer = parsed.leaf.public_key()
    else:
        raise SignatureError("wrong-key", f"wrong key: the bundle is not {mode}-signed")
    config = verifying.Config()
    if public_key is not None:
        config.use_elliptic_key_verifier(public_key=public_key)
    else:
        config.use_certificate_verifier(certificate_chain=list(chain))
    with tempfile.TemporaryDirectory(prefix="squeezenet-verify-") as tmp:
        (Path(tmp) / "model").mkdir()
        (Path(tmp) / "model.sig").write_bytes(bundle)
        _check_signature(config, Path(tmp) / "model", Path(tmp) / "model.sig", bool(parsed.resources))
    _compare(parsed.resources, actual)  # the statement is authentic now: it names what differs
    info = SignatureInfo(
        fingerprint=_fingerprint(signer),
        files=len(parsed.resources),
        mode=mode,
        subject=parsed.leaf.subject.rfc4514_string() if parsed.leaf else None,
        seconds=time.perf_counter() - start,
    )
    logger.info("signature verified: %d files, signer key sha256:%s", info.files, info.fingerprint)
    return info


def _trusted_key(public_key: Path, parsed: _Bundle) -> ec.EllipticCurvePublicKey:
    trusted = serialization.load_pem_public_key(public_key.read_bytes())
    if not isinstance(trusted, ec.EllipticCurvePublicKey):
        raise ValueError(f"{public_key}: not an elliptic-curve public key")
    if parsed.key_hint != hashlib.sha256(trusted.public_bytes(serialization.Encoding.PEM, _SPKI)).hexdigest():
        message = f"wrong key: signed by another key than the trusted sha256:{_fingerprint(trusted)}"
        raise SignatureError("wrong-key", message)
    return trusted


def _check_signature(config: verifying.Config, empty: Path, bundle: Path, signs_files: bool) -> None:
    """model_signing's public API verifies a signature only with a folder: given an ``empty`` one, it
    checks the signature, then reports every signed file missing, the sign that the signature held."""
    from OpenSSL.crypto import X509StoreContextError

    try:
        config.verify(empty, bundle)
    except InvalidSignature as exc:
        raise SignatureError("bad-signature", "bad signature: the bundle was altered after signing") from exc
    except X509StoreContextError as exc:
        raise SignatureError("wrong-key", f"wrong key: certificate not from a trusted CA: {exc}") from exc
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        if "cannot be used for signing" in str(exc):
            raise SignatureError("wrong-key", f"wrong key: the certificate may not sign: {exc}") from exc
        held = str(exc).startswith("Signature mismatch") and "Missing files" in str(exc)
        if not (signs_files and held):
            raise SignatureError("malformed", f"bundle rejected: {type(exc).__name__}: {exc}") from exc


def _compare(signed: Digests, actual: Digests) -> None:
    """Raises naming every file changed, added or removed since ``signed`` (name -> sha256)."""
    problems = {
        "changed": sorted(n for n in signed.keys() & actual.keys() if signed[n] != actual[n]),
        "added": sorted(actual.keys() - signed.keys()),
        "removed": sorted(signed.keys() - actual.keys()),
    }
    files = [name for names in problems.values() for name in names]
    if not files:
        return
    message = "; ".join(f"file {kind} after signing: {n}" for kind, names in problems.items() for n in names)
    differ = len(problems["changed"]) + len(problems["removed"])
    if 2 * differ > len(signed):  # most signed files are not here as signed
        summary = f"bundle from another archive ({differ} of {len(signed)} signed files differ)"
        raise SignatureError("foreign-bundle", f"{summary}: {message}", files)
    raise SignatureError(next(kind for kind, names in problems.items() if names), message, files)
