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
bundle is ignored, and in a folder the files the caller names (``ignore``: the bytecode Python wrote
for the entry module, see ``trust``). Bytecode is never signed, so any other ``__pycache__`` file is
an added file. It says who published the bytes, not that the code is harmless.

Certificate mode adds what model_signing leaves out (it checks the chain at the leaf's issue time and
takes any leaf allowed a digital signature): the leaf must carry the code-signing extended key usage,
every certificate of the chain must be valid now, and the operator may pin the signer's identity,
``subject:<RFC 4514 name>`` or a subject alternative name ``email:``, ``uri:``, ``dns:<value>``.

Every refusal is one ``SignatureError`` naming the problem and the file when there is one; mistakes
of the caller (no key given, not an EC key) raise ``ValueError`` or ``OSError``. What a verifier
trusts can come from the environment (:func:`trusted_signer_from_environment`): a variable that is
set must name something usable, or ``TrustSettingError`` names it; a blank one never means "no check".
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import posixpath
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

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

# What a process trusts, from its environment (MMS's workers, the container's entrypoint).
TRUSTED_KEY = "SQUEEZENET_TRUSTED_KEY"  # the publisher's EC public key (PEM)
TRUSTED_CHAIN = "SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN"  # or: CA certificates (PEM), os.pathsep between
TRUSTED_IDENTITY = "SQUEEZENET_TRUSTED_IDENTITY"  # with the chain: the signer's identity, see below
TRUST_VARIABLES = (TRUSTED_KEY, TRUSTED_CHAIN, TRUSTED_IDENTITY)
IDENTITY_KINDS = {  # kind -> the subject alternative name type it matches (None: the subject)
    "subject": None,
    "email": x509.RFC822Name,
    "uri": x509.UniformResourceIdentifier,
    "dns": x509.DNSName,
}
_OUTSIDE_VALIDITY = (9, 10)  # OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED


class SignatureError(Exception):
    """The files cannot be trusted. ``reason``: unsigned, malformed, wrong-key, bad-signature, changed,
    added, removed, foreign-bundle, unsupported-file, or in certificate mode not-code-signing,
    certificate-not-valid-now and wrong-identity; ``files``: the names at fault, if any."""

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
    identities: tuple[str, ...] = ()  # certificate mode: the leaf's alternative names, "email:..." etc.


class TrustSettingError(ValueError):
    """A setting of what to trust that is set but unusable; ``setting`` names it (a variable)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


@dataclass(frozen=True)
class TrustedSigner:
    """What a verifier trusts: a public key, or a certificate chain and optionally the signer's identity."""

    public_key: Path | None = None
    certificate_chain: tuple[Path, ...] = ()
    identity: str | None = None  # certificate mode: "subject:CN=...", "email:...", "uri:...", "dns:..."

    def describe(self) -> str:
        """The variables that name this trust, as an operator would write them."""
        if self.public_key is not None:
            return f"{TRUSTED_KEY}={self.public_key}"
        chain = f"{TRUSTED_CHAIN}={os.pathsep.join(str(path) for path in self.certificate_chain)}"
        return chain + (f" {TRUSTED_IDENTITY}={self.identity}" if self.identity else "")


@dataclass(frozen=True)
class _Bundle:
    key_hint: str  # model_signing's hint (key mode): SHA-256 of the PEM public key
    leaf: x509.Certificate | None
    resources: dict[str, str]  # the signed files: name -> sha256 hex
    intermediates: tuple[x509.Certificate, ...] = ()  # certificate mode: the rest of the bundle's chain


def key_fingerprint(public_key_pem: Path) -> str:
    """SHA-256 of the key's DER SubjectPublicKeyInfo: ``openssl pkey -pubin -outform DER | sha256sum``."""
    return _fingerprint(serialization.load_pem_public_key(public_key_pem.read_bytes()))


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """The EC public key in the PEM file ``path``; OSError or ValueError saying why not."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError(f"{path}: a {type(key).__name__}, not an elliptic-curve public key")
    return key


def load_certificates(paths: PEMs) -> list[x509.Certificate]:
    """Every certificate of the PEM files ``paths`` (each holds at least one); OSError or ValueError."""
    if not paths:
        raise ValueError("no certificate file named")
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            found = x509.load_pem_x509_certificates(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path}: no PEM certificate in it ({exc})") from exc
        certificates += found
    return certificates


def parse_identity(identity: str) -> tuple[str, str]:
    """``kind:value`` -> (kind, value), kind one of IDENTITY_KINDS; ValueError saying what is expected."""
    kind, colon, value = identity.partition(":")
    if not colon or kind not in IDENTITY_KINDS or not value:
        kinds = ", ".join(f"{name}:..." for name in IDENTITY_KINDS)
        raise ValueError(f"{identity!r}: expected one of {kinds} (e.g. 'subject:CN=Zoo signer')")
    if kind == "subject":
        try:
            x509.Name.from_rfc4514_string(value)
        except ValueError as exc:
            raise ValueError(f"{identity!r}: not an RFC 4514 name ({exc})") from exc
    return kind, value


def trusted_signer_from_environment(env: Mapping[str, str]) -> TrustedSigner | None:
    """What ``env`` says to trust (``TRUSTED_KEY``, or ``TRUSTED_CHAIN`` and optionally
    ``TRUSTED_IDENTITY``), checked: None only when none of the three is set. A variable that is set
    but blank, names a file that is not a key or certificate, or comes without the others it needs,
    raises ``TrustSettingError`` naming it: a mistake in the trust setting never turns the check off."""
    present = {name: env[name] for name in TRUST_VARIABLES if name in env}
    if not present:
        return None
    for name, value in present.items():
        if not value.strip():
            raise TrustSettingError(name, f"set but blank ({value!r}): name what to trust, or unset it")
    key, chain, identity = (present.get(name, "").strip() for name in TRUST_VARIABLES)
    if key and chain:
        raise TrustSettingError(f"{TRUSTED_KEY} and {TRUSTED_CHAIN}", "both set: trust one of them")
    if identity and not chain:
        raise TrustSettingError(TRUSTED_IDENTITY, f"pins a certificate's signer: it needs {TRUSTED_CHAIN}")
    if key:
        try:
            load_public_key(Path(key))
        except (OSError, ValueError) as exc:
            raise TrustSettingError(TRUSTED_KEY, str(exc)) from exc
        return TrustedSigner(public_key=Path(key))
    entries = chain.split(os.pathsep)
    if not all(entries):
        raise TrustSettingError(TRUSTED_CHAIN, f"{chain!r} has an empty entry")
    parts = tuple(Path(entry) for entry in entries)
    try:
        load_certificates(parts)
    except (OSError, ValueError) as exc:
        raise TrustSettingError(TRUSTED_CHAIN, str(exc)) from exc
    if identity:
        try:
            parse_identity(identity)
        except ValueError as exc:
            raise TrustSettingError(TRUSTED_IDENTITY, str(exc)) from exc
    return TrustedSigner(certificate_chain=parts, identity=identity or None)


def sign_folder(
    folder: Path, private_key: Path, *, certificate_chain: PEMs = (), signing_certificate: Path | None = None
) -> bytes:
    """The Sigstore bundle (JSON bytes) over every file of ``folder`` but the bundle and bytecode
    (never signed: ``verify_folder`` then counts any ``__pycache__`` file as added)."""
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
    folder: Path,
    bundle: bytes | None = None,
    *,
    public_key: Path | None = None,
    certificate_chain: PEMs = (),
    identity: str | None = None,
    ignore: Collection[str] = (),
) -> SignatureInfo:
    """Check every file of ``folder``, ``__pycache__`` included, against ``bundle`` (default: its own
    ``MAR-INF/model.sig``); only the bundle and the names in ``ignore`` (relative, POSIX) are left out."""
    if bundle is None:
        stored = folder / BUNDLE_NAME
        bundle = stored.read_bytes() if stored.is_file() else b""
    actual = {
        name: hashlib.sha256(path.read_bytes()).hexdigest()
        for name, path in _tree(folder).items()
        if name != BUNDLE_NAME and name not in ignore
    }
    return _verify(bundle, actual, public_key, certificate_chain, identity)


def verify_digests(
    digests: Digests,
    bundle: bytes,
    *,
    public_key: Path | None = None,
    certificate_chain: PEMs = (),
    identity: str | None = None,
) -> SignatureInfo:
    """Check an archive from its entries' SHA-256 (name -> hex, as the archive reader computes them),
    nothing extracted. The ``MAR-INF/model.sig`` entry is ignored; ``__pycache__`` entries count as
    added files (Python would run that bytecode instead of the signed source)."""
    actual = {name: digest for name, digest in digests.items() if name != BUNDLE_NAME}
    return _verify(bundle, actual, public_key, certificate_chain, identity)


def verify_files(
    files: Files,
    bundle: bytes | None = None,
    *,
    public_key: Path | None = None,
    certificate_chain: PEMs = (),
    identity: str | None = None,
) -> SignatureInfo:
    """``verify_digests`` for an archive read as bytes (default bundle: its ``MAR-INF/model.sig``)."""
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    bundle = files.get(BUNDLE_NAME, b"") if bundle is None else bundle
    return verify_digests(
        digests, bundle, public_key=public_key, certificate_chain=certificate_chain, identity=identity
    )


def _fingerprint(key: PublicKeyTypes) -> str:
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER, _SPKI)).hexdigest()


def _tree(root: Path) -> dict[str, Path]:
    """Every file under ``root`` by POSIX name, sorted, bundle and bytecode included; refuses symlinks
    and special files."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):  # rglob lists hidden files too
        name = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise SignatureError("unsupported-file", f"{name}: a symbolic link or special file", [name])
        if path.is_file():
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
            chain = [
                x509.load_der_x509_certificate(base64.b64decode(certificate["rawBytes"]))
                for certificate in material["x509CertificateChain"]["certificates"]
            ]
            return _Bundle("", chain[0], resources, tuple(chain[1:]))
        return _Bundle(str(material["publicKey"]["hint"]), None, resources)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise SignatureError("malformed", f"malformed signature bundle: {type(exc).__name__}: {exc}") from exc


def _verify(
    bundle: bytes, actual: Digests, public_key: Path | None, chain: PEMs, identity: str | None
) -> SignatureInfo:
    """The signer first (bundle, key or chain), through model_signing, and in certificate mode what
    model_signing leaves out; then the files, named."""
    from model_signing import verifying

    start = time.perf_counter()
    if (public_key is None) == (not chain):
        raise ValueError("give exactly one of public_key or certificate_chain to verify against")
    if identity is not None and public_key is not None:
        raise ValueError("an identity pins a certificate's signer: it goes with certificate_chain")
    if identity is not None:
        parse_identity(identity)
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
    if parsed.leaf is not None:  # before model_signing, whose chain check runs as of the leaf's notBefore
        _check_certificate_now(parsed, chain, identity)
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
        identities=tuple(_identities(parsed.leaf)) if parsed.leaf else (),
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


def _check_certificate_now(parsed: _Bundle, chain: PEMs, identity: str | None) -> None:
    """What model_signing does not check about a certificate signer (it verifies the chain as of the
    leaf's notBefore and accepts any leaf allowed a digital signature, a TLS server's included):
    the chain up to a trusted CA valid now, the leaf made for code signing, and the pinned identity."""
    from OpenSSL import crypto

    leaf = parsed.leaf
    if leaf is None:
        raise ValueError("not a certificate-signed bundle")
    subject = leaf.subject.rfc4514_string()
    store = crypto.X509Store()  # no set_time: OpenSSL checks every certificate's validity as of now
    for certificate in load_certificates(chain):
        store.add_cert(crypto.X509.from_cryptography(certificate))
    bundled = [crypto.X509.from_cryptography(certificate) for certificate in parsed.intermediates]
    try:
        crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf), bundled).verify_certificate()
    except crypto.X509StoreContextError as exc:
        failed = exc.certificate.to_cryptography()
        if exc.errors[0] not in _OUTSIDE_VALIDITY:
            raise SignatureError("wrong-key", f"wrong key: certificate not from a trusted CA: {exc}") from exc
        start, end = failed.not_valid_before_utc, failed.not_valid_after_utc
        period = f"valid from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        message = f"certificate {failed.subject.rfc4514_string()} in the signer's chain: {exc} ({period})"
        raise SignatureError("certificate-not-valid-now", message) from exc
    extensions = {type(extension.value): extension.value for extension in leaf.extensions}
    usages = extensions.get(x509.ExtendedKeyUsage, x509.ExtendedKeyUsage([]))
    if ExtendedKeyUsageOID.CODE_SIGNING not in usages:
        named = ", ".join(getattr(usage, "_name", usage.dotted_string) for usage in usages) or "none"
        message = f"the signing certificate {subject} is not for code signing (extended key usage: {named})"
        raise SignatureError("not-code-signing", message)
    key_usage = extensions.get(x509.KeyUsage)
    if key_usage is not None and not key_usage.digital_signature:
        message = f"the signing certificate {subject} may not make digital signatures (key usage)"
        raise SignatureError("not-code-signing", message)
    if identity is not None and not _has_identity(leaf, identity):
        names = ", ".join(_identities(leaf)) or "none"
        message = f"wrong identity: signed by {subject} (alternative names: {names}), not {identity}"
        raise SignatureError("wrong-identity", message)


def _identities(certificate: x509.Certificate) -> list[str]:
    """The certificate's subject alternative names as ``kind:value`` (the kinds an identity can pin)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        f"{kind}:{value}"
        for kind, type_ in IDENTITY_KINDS.items()
        if type_
        for value in names.get_values_for_type(type_)
    ]


def _has_identity(certificate: x509.Certificate, identity: str) -> bool:
    """The subject equals the pinned RFC 4514 name, or a subject alternative name of that kind is the
    pinned value (exactly; DNS names without regard to case)."""
    kind, value = parse_identity(identity)
    if kind == "subject":
        return certificate.subject == x509.Name.from_rfc4514_string(value)
    if kind == "dns":
        return any(
            name.split(":", 1)[1].lower() == value.lower()
            for name in _identities(certificate)
            if name.startswith("dns:")
        )
    return identity in _identities(certificate)


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
