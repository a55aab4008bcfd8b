"""Signed archives, on the tool's side: make a key, sign an archive, verify its signature.

The signature is an OpenSSF model-signing bundle (``squeezenet_handler.signing``) over every file of
the archive but the bundle itself, stored inside it as ``MAR-INF/model.sig`` and beside it as
``<archive>.sig``. It proves who published the bytes (the holder of the private key), not that the
code is harmless. Verifying needs no extraction: the bundle's statement lists each file's SHA-256,
compared with the digests the archive reader computed while streaming the entries.

    Trust          what the verifier trusts: one public key, or a certificate chain (CA first)
    SigningKey     what the signer holds: a private key, plus certificate and chain in certificate mode
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from squeezenet_handler.signing import (
    SignatureError,
    SignatureInfo,
    key_fingerprint,
    sign_files,
    verify_digests,
)

from .errors import SignatureVerifyError, UsageError
from .layout import SIGNATURE_BUNDLE, ArchiveContents

logger = logging.getLogger(__name__)

BUNDLE_SUFFIX = ".sig"  # the bundle's copy beside the archive: squeezenet_v1.1.mar.sig


@dataclass(frozen=True)
class Trust:
    """Exactly one of a public key (key mode) or a certificate chain (certificate mode)."""

    public_key: Path | None = None
    certificate_chain: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if (self.public_key is None) == (not self.certificate_chain):
            raise UsageError("name exactly one of a public key or a certificate chain to trust")
        for path in (self.public_key, *self.certificate_chain):
            if path is not None and not path.is_file():
                raise UsageError(f"{path}: no such key or certificate file")

    def describe(self) -> str:
        if self.public_key is not None:
            return f"key {self.public_key} (sha256:{key_fingerprint(self.public_key)})"
        return "certificate chain " + ", ".join(str(path) for path in self.certificate_chain)

    def environment(self) -> dict[str, str]:
        """What an MMS process needs for its workers' load-time check (``squeezenet_handler.trust``)."""
        if self.public_key is not None:
            return {"SQUEEZENET_TRUSTED_KEY": str(self.public_key.resolve())}
        chain = os.pathsep.join(str(path.resolve()) for path in self.certificate_chain)
        return {"SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN": chain}


@dataclass(frozen=True)
class SigningKey:
    private_key: Path
    signing_certificate: Path | None = None  # certificate mode: the leaf certificate of private_key
    certificate_chain: tuple[Path, ...] = ()  # certificate mode: its chain up to the CA

    def __post_init__(self) -> None:
        for path in (self.private_key, self.signing_certificate, *self.certificate_chain):
            if path is not None and not path.is_file():
                raise UsageError(f"{path}: no such key or certificate file")
        if (self.signing_certificate is None) != (not self.certificate_chain):
            raise UsageError("certificate mode needs both --signing-certificate and --certificate-chain")


def sign(files: dict[str, bytes], key: SigningKey) -> bytes:
    """The bundle over ``files`` (an existing bundle among them is not signed)."""
    try:
        return sign_files(
            files,
            key.private_key,
            signing_certificate=key.signing_certificate,
            certificate_chain=key.certificate_chain,
        )
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot sign with {key.private_key}: {exc}") from exc


def signer_fingerprint(key: SigningKey) -> str:
    """SHA-256 of the signer's public key (DER SubjectPublicKeyInfo), as verification reports it."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(key.private_key.read_bytes(), password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return hashlib.sha256(private.public_key().public_bytes(serialization.Encoding.DER, spki)).hexdigest()


def verify_signature(contents: ArchiveContents, trust: Trust) -> SignatureInfo:
    """The signer of an archive read by ``layout.read_archive``, or SignatureVerifyError naming why
    not: unsigned, signed by another key, or a file changed, added or removed after signing."""
    bundle = contents.kept.get(SIGNATURE_BUNDLE, b"")
    digests = {name: entry.sha256 for name, entry in contents.entries.items()}
    try:
        return verify_digests(
            digests, bundle, public_key=trust.public_key, certificate_chain=trust.certificate_chain
        )
    except SignatureError as exc:
        raise SignatureVerifyError(f"{contents.path.name}: {exc}", exc.reason, exc.files) from exc
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot verify with {trust.describe()}: {exc}") from exc


def write_key_pair(folder: Path, name: str = "signing-key") -> tuple[Path, Path, str]:
    """A new EC P-256 key pair: ``name.pem`` (private, mode 0600) and ``name.pub.pem``; its fingerprint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    for path in (private, public):
        if path.exists():
            raise UsageError(f"{path} exists: refusing to overwrite a key")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, spki))
    return private, public, key_fingerprint(public)
