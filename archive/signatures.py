"""Signed archives, on the tool's side: make a key, sign an archive, verify its signature.

The signature is an OpenSSF model-signing bundle (``squeezenet_handler.signing``) over every file of
the archive but the bundle itself, stored inside it as ``MAR-INF/model.sig`` and beside it as
``<archive>.sig``. It proves who published the bytes (the holder of the private key), not that the
code is harmless. Verifying needs no extraction: the bundle's statement lists each file's SHA-256,
compared with the digests the archive reader computed while streaming the entries.

    Trust          what the verifier trusts: one public key, or a certificate chain (CA first) and
                   optionally the signer's identity (``subject:CN=...``, ``email:...``, ``uri:...``,
                   ``dns:...``); from options, or from the environment (``trust_from_environment``)
    SigningKey     what the signer holds: a private key, plus certificate and chain in certificate mode
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from squeezenet_handler.signing import (
    TRUSTED_CHAIN,
    TRUSTED_IDENTITY,
    TRUSTED_KEY,
    SignatureError,
    SignatureInfo,
    TrustSettingError,
    key_fingerprint,
    load_certificates,
    load_public_key,
    parse_identity,
    sign_files,
    trusted_signer_from_environment,
    verify_digests,
)

from .errors import SignatureVerifyError, UsageError
from .layout import SIGNATURE_BUNDLE, ArchiveContents

logger = logging.getLogger(__name__)

BUNDLE_SUFFIX = ".sig"  # the bundle's copy beside the archive: squeezenet_v1.1.mar.sig


@dataclass(frozen=True)
class Trust:
    """Exactly one of a public key (key mode) or a certificate chain (certificate mode), checked to
    load; in certificate mode optionally the signer's identity, which must then match."""

    public_key: Path | None = None
    certificate_chain: tuple[Path, ...] = ()
    identity: str | None = None

    def __post_init__(self) -> None:
        if (self.public_key is None) == (not self.certificate_chain):
            raise UsageError("name exactly one of a public key or a certificate chain to trust")
        if self.identity is not None and self.public_key is not None:
            raise UsageError("a trusted identity pins a certificate's signer: it needs a certificate chain")
        for path in (self.public_key, *self.certificate_chain):
            if path is not None and not path.is_file():
                raise UsageError(f"{path}: no such key or certificate file")
        try:
            if self.public_key is not None:
                load_public_key(self.public_key)
            else:
                load_certificates(self.certificate_chain)
            if self.identity is not None:
                parse_identity(self.identity)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot trust this: {exc}") from exc

    def describe(self) -> str:
        if self.public_key is not None:
            return f"key {self.public_key} (sha256:{key_fingerprint(self.public_key)})"
        pinned = f", signer {self.identity}" if self.identity else ""
        return "certificate chain " + ", ".join(str(path) for path in self.certificate_chain) + pinned

    def environment(self) -> dict[str, str]:
        """What an MMS process needs for its workers' load-time check (``squeezenet_handler.trust``)."""
        if self.public_key is not None:
            return {TRUSTED_KEY: str(self.public_key.resolve())}
        env = {TRUSTED_CHAIN: os.pathsep.join(str(path.resolve()) for path in self.certificate_chain)}
        if self.identity is not None:
            env[TRUSTED_IDENTITY] = self.identity
        return env


def trust_from_environment(env: Mapping[str, str]) -> Trust | None:
    """What ``env`` says to trust (``SQUEEZENET_TRUSTED_KEY``, or ``SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN``
    and optionally ``SQUEEZENET_TRUSTED_IDENTITY``): None only when none of them is set. A variable
    that is set but blank or names nothing usable is a UsageError naming it, never "no check": the
    same rule as the handler's load-time check (``squeezenet_handler.signing``)."""
    try:
        signer = trusted_signer_from_environment(env)
    except TrustSettingError as exc:
        raise UsageError(f"cannot trust this: {exc}") from exc
    if signer is None:
        return None
    return Trust(signer.public_key, signer.certificate_chain, signer.identity)


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
            digests,
            bundle,
            public_key=trust.public_key,
            certificate_chain=trust.certificate_chain,
            identity=trust.identity,
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
