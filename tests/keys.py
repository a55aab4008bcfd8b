"""Signing keys and certificates made by the tests, here and now (never checked in): EC P-256 key
pairs, and a self-made CA with leaf certificates it issued: a code-signing one by default, or one for
another use, outside its validity period, or with other names (``issue_leaf``)."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CODE_SIGNING = (ExtendedKeyUsageOID.CODE_SIGNING,)
DAY = datetime.timedelta(days=1)
YEAR = datetime.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    fingerprint: str  # computed here, independently of the module under test


@dataclass(frozen=True)
class Authority:
    ca: Path  # the CA certificate a verifier trusts
    leaf_key: Path
    leaf: Path  # the signing certificate, issued by ``ca``
    ca_key: Path  # to issue more leaves (``issue_leaf``)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def make_key(folder: Path, name: str) -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = _write_private(folder / f"{name}.pem", key), folder / f"{name}.pub.pem"
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, spki))
    der = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    return KeyPair(private, public, hashlib.sha256(der).hexdigest())


def _certificate(
    subject: str | x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    valid_from: datetime.timedelta = -datetime.timedelta(minutes=5),
    valid_for: datetime.timedelta = DAY,
) -> x509.CertificateBuilder:
    """Valid from now + ``valid_from`` for ``valid_for``."""
    start = datetime.datetime.now(datetime.UTC) + valid_from
    name = (
        subject
        if isinstance(subject, x509.Name)
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
    )


def make_authority(
    folder: Path,
    name: str,
    ca_valid_from: datetime.timedelta = -datetime.timedelta(minutes=5),
    ca_valid_for: datetime.timedelta = 10 * YEAR,
) -> Authority:
    """A self-made CA and a code-signing leaf certificate it issued, ``CN=<name> signer``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        _certificate(f"{name} CA", ca_key, None, ca_valid_from, ca_valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    authority = Authority(
        folder / f"{name}-ca.pem",
        folder / f"{name}-leaf.key",
        folder / f"{name}-leaf.pem",
        folder / f"{name}-ca.key",
    )
    authority.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_private(authority.ca_key, ca_key)
    return issue_leaf(authority, "leaf")


def issue_leaf(
    authority: Authority,
    name: str,
    *,
    subject: str | x509.Name | None = None,
    usages: Sequence[x509.ObjectIdentifier] | None = CODE_SIGNING,
    digital_signature: bool = True,
    alternative_names: Sequence[x509.GeneralName] = (),
    valid_from: datetime.timedelta = -datetime.timedelta(minutes=4),
    valid_for: datetime.timedelta = DAY,
) -> Authority:
    """Another leaf of ``authority``'s CA, in the same folder: ``usages`` its extended key usages
    (None: no such extension), valid from now + ``valid_from`` for ``valid_for``."""
    ca = x509.load_pem_x509_certificate(authority.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(authority.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{authority.ca_key}: not an EC key")
    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature, False, False, False, False, not digital_signature, False, False, False
    )
    builder = (
        _certificate(subject or f"{str(cn).removesuffix(' CA')} signer", key, ca, valid_from, valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if alternative_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(alternative_names)), critical=False)
    folder = authority.ca.parent
    stem = authority.ca.name.removesuffix("-ca.pem")
    leaf = replace(authority, leaf_key=folder / f"{stem}-{name}.key", leaf=folder / f"{stem}-{name}.pem")
    leaf.leaf.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    _write_private(leaf.leaf_key, key)
    return leaf
