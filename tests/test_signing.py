"""Signing and verifying model folders with OpenSSF model signing, with keys made here and now."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from harness import ROOT
from keys import DAY, YEAR, Authority, KeyPair, issue_leaf, make_authority, make_key
from squeezenet_handler.signing import (
    BUNDLE_NAME,
    TRUSTED_CHAIN,
    TRUSTED_IDENTITY,
    TRUSTED_KEY,
    SignatureError,
    TrustedSigner,
    TrustSettingError,
    key_fingerprint,
    sign_files,
    sign_folder,
    trusted_signer_from_environment,
    verify_digests,
    verify_files,
    verify_folder,
)

WEIGHTS = "squeezenet1.1.onnx"


def make_folder(target: Path, seed: int = 0) -> Path:
    """An unpacked archive's six files: weights, labels, signature, handler, manifest and sums."""
    rng = random.Random(seed)
    files = {
        WEIGHTS: rng.randbytes(200_000),
        "signature.json": (ROOT / "signature.json").read_bytes(),
        "synset.txt": (ROOT / "synset.txt").read_bytes() + f"# build {seed}\n".encode(),
        "squeezenet_service.py": (ROOT / "handler" / "squeezenet_service.py").read_bytes(),
        "MAR-INF/MANIFEST.json": json.dumps({"model": {"modelName": f"squeezenet-{seed}"}}).encode(),
    }
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    files["MAR-INF/SHA256SUMS"] = sums.encode()
    for name, data in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    return target


def read_folder(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def statement(bundle: bytes) -> dict[str, Any]:
    return json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    folder = tmp_path_factory.mktemp("keys")
    return make_key(folder, "publisher"), make_key(folder, "intruder")


@pytest.fixture
def signed(tmp_path: Path, keys: tuple[KeyPair, KeyPair]) -> Path:
    """A model folder whose bundle is stored inside it, as the archive carries it."""
    folder = make_folder(tmp_path / "squeezenet")
    (folder / BUNDLE_NAME).write_bytes(sign_folder(folder, keys[0].private))
    return folder


def test_signed_folder_verifies_and_reports_the_signer(signed: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    info = verify_folder(signed, public_key=keys[0].public)
    assert (info.fingerprint, info.files, info.mode, info.subject) == (keys[0].fingerprint, 6, "key", None)
    assert key_fingerprint(keys[0].public) == keys[0].fingerprint
    names = [r["name"] for r in statement((signed / BUNDLE_NAME).read_bytes())["predicate"]["resources"]]
    assert names == sorted(read_folder(signed).keys() - {BUNDLE_NAME})


def test_archive_in_memory_verifies_without_extracting_it(
    signed: Path, keys: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    files = read_folder(signed)
    assert verify_files(files, public_key=keys[0].public).fingerprint == keys[0].fingerprint
    bundle = sign_files({n: d for n, d in files.items() if n != BUNDLE_NAME}, keys[0].private)
    assert verify_folder(signed, bundle, public_key=keys[0].public).files == 6
    archive = tmp_path / "squeezenet.mar"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as mar:
        for name, data in files.items():
            mar.writestr(name, data)
    with zipfile.ZipFile(archive) as mar:  # what the archive reader reports: each entry's SHA-256
        digests = {name: hashlib.sha256(mar.read(name)).hexdigest() for name in mar.namelist()}
        stored = mar.read(BUNDLE_NAME)
    assert verify_digests(digests, stored, public_key=keys[0].public).files == 6
    digests["synset.txt"] = hashlib.sha256(b"tampered").hexdigest()
    with pytest.raises(SignatureError, match="file changed after signing: synset.txt"):
        verify_digests(digests, stored, public_key=keys[0].public)


def _resign_with_intruder_key(folder: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    (folder / BUNDLE_NAME).write_bytes(sign_folder(folder, keys[1].private))


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _add_module_and_fix_sums(folder: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    module = b"import os\n"
    (folder / "sitecustomize.py").write_bytes(module)
    with (folder / "MAR-INF" / "SHA256SUMS").open("a") as sums:  # consistent sums: only the signature sees it
        sums.write(f"{hashlib.sha256(module).hexdigest()}  sitecustomize.py\n")


def _add_module(folder: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    (folder / "extra.py").write_bytes(b"print('hello')\n")


def _bundle_from_another_archive(folder: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    other = make_folder(folder.parent / "other", seed=1)
    (folder / BUNDLE_NAME).write_bytes(sign_folder(other, keys[0].private))


def _truncate_bundle(folder: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    bundle = folder / BUNDLE_NAME
    bundle.write_bytes(bundle.read_bytes()[:200])


def _edit_signed_digest(folder: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    """Swap the weights and write their digest into the statement, keeping the old signature."""
    flip_one_byte(folder / WEIGHTS)
    bundle = json.loads((folder / BUNDLE_NAME).read_bytes())
    payload = statement((folder / BUNDLE_NAME).read_bytes())
    for resource in payload["predicate"]["resources"]:
        if resource["name"] == WEIGHTS:
            resource["digest"] = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    (folder / BUNDLE_NAME).write_text(json.dumps(bundle))


REFUSALS: dict[str, tuple[Callable[[Path, tuple[KeyPair, KeyPair]], None], str, str]] = {
    "re-signed with another key": (
        _resign_with_intruder_key,
        "wrong-key",
        "wrong key: signed by another key than the trusted sha256:",
    ),
    "unsigned": (lambda folder, keys: (folder / BUNDLE_NAME).unlink(), "unsigned", "unsigned"),
    "one weight byte flipped": (
        lambda folder, keys: flip_one_byte(folder / WEIGHTS),
        "changed",
        f"file changed after signing: {WEIGHTS}",
    ),
    "extra .py added": (_add_module, "added", "file added after signing: extra.py"),
    ".py added, sums fixed": (
        _add_module_and_fix_sums,
        "changed",
        "file added after signing: sitecustomize.py",
    ),
    "file removed": (
        lambda folder, keys: (folder / "synset.txt").unlink(),
        "removed",
        "file removed after signing: synset.txt",
    ),
    "hidden file added": (
        lambda folder, keys: (folder / ".gitignore").write_text("*\n"),
        "added",
        "file added after signing: .gitignore",
    ),
    "bundle from another archive": (
        _bundle_from_another_archive,
        "foreign-bundle",
        f"bundle from another archive \\(4 of 6 signed files differ\\).*changed after signing: {WEIGHTS}",
    ),
    "corrupt bundle": (_truncate_bundle, "malformed", "malformed signature bundle: JSONDecodeError"),
    "statement edited": (_edit_signed_digest, "bad-signature", "bundle was altered after signing"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_refused_with_the_problem_and_the_file(
    case: str, signed: Path, keys: tuple[KeyPair, KeyPair]
) -> None:
    tamper, reason, message = REFUSALS[case]
    tamper(signed, keys)
    with pytest.raises(SignatureError, match=message) as refused:
        verify_folder(signed, public_key=keys[0].public)
    assert refused.value.reason == reason
    with pytest.raises(SignatureError, match=message):  # the same verdict on the archive in memory
        verify_files(read_folder(signed), public_key=keys[0].public)


def test_bytecode_is_an_added_file_unless_the_caller_leaves_that_file_out(
    signed: Path, keys: tuple[KeyPair, KeyPair]
) -> None:
    """Bytecode is never signed, and Python may run it in place of the signed source: every
    ``__pycache__`` file is refused, in a folder as in an archive, but those the caller names (the
    load-time check names the one Python wrote for the entry module, see test_load_time_trust)."""
    (signed / "__pycache__").mkdir()
    (signed / "__pycache__" / "squeezenet_service.cpython-311.pyc").write_bytes(b"\x00" * 16)
    added = "file added after signing: __pycache__/squeezenet_service.cpython-311.pyc"
    with pytest.raises(SignatureError, match=added) as refused:
        verify_folder(signed, public_key=keys[0].public)
    assert refused.value.reason == "added"
    ignore = {"__pycache__/squeezenet_service.cpython-311.pyc"}
    assert verify_folder(signed, public_key=keys[0].public, ignore=ignore).files == 6
    with pytest.raises(SignatureError, match=added):
        verify_files(read_folder(signed), public_key=keys[0].public)


def test_two_signatures_differ_only_in_the_signature(signed: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    first, second = sign_folder(signed, keys[0].private), sign_folder(signed, keys[0].private)
    assert first != second  # ECDSA draws a fresh nonce per signature
    assert statement(first) == statement(second)
    assert json.loads(first)["verificationMaterial"] == json.loads(second)["verificationMaterial"]
    for bundle in (first, second):
        assert verify_folder(signed, bundle, public_key=keys[0].public).fingerprint == keys[0].fingerprint


def test_signing_skips_the_bundle_and_bytecode(signed: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    (signed / "__pycache__").mkdir()
    (signed / "__pycache__" / "x.pyc").write_bytes(b"\x00")
    names = {r["name"] for r in statement(sign_folder(signed, keys[0].private))["predicate"]["resources"]}
    assert BUNDLE_NAME not in names
    assert not any("__pycache__" in name for name in names)


def test_certificate_chain_signs_verifies_and_refuses_another_ca(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "squeezenet")
    ours, theirs = make_authority(tmp_path / "pki", "Zoo"), make_authority(tmp_path / "pki", "Other")
    bundle = sign_folder(folder, ours.leaf_key, signing_certificate=ours.leaf, certificate_chain=[ours.ca])
    info = verify_folder(folder, bundle, certificate_chain=[ours.ca])
    leaf_key = x509.load_pem_x509_certificate(ours.leaf.read_bytes()).public_key()
    spki = leaf_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert (info.mode, info.files, info.subject) == ("certificate", 6, "CN=Zoo signer")
    assert info.fingerprint == hashlib.sha256(spki).hexdigest()
    with pytest.raises(SignatureError, match="wrong key: certificate not from a trusted CA") as refused:
        verify_folder(folder, bundle, certificate_chain=[theirs.ca])
    assert refused.value.reason == "wrong-key"
    with pytest.raises(SignatureError, match="wrong key: the bundle is not key-signed"):
        verify_folder(folder, bundle, public_key=make_key(tmp_path / "keys", "other").public)
    flip_one_byte(folder / WEIGHTS)
    with pytest.raises(SignatureError, match=f"file changed after signing: {WEIGHTS}"):
        verify_folder(folder, bundle, certificate_chain=[ours.ca])


def test_a_key_signature_is_not_accepted_as_a_certificate_one(
    signed: Path, keys: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    ca = make_authority(tmp_path / "pki", "Zoo").ca
    with pytest.raises(SignatureError, match="wrong key: the bundle is not certificate-signed") as refused:
        verify_folder(signed, certificate_chain=[ca])
    assert refused.value.reason == "wrong-key"
    with pytest.raises(ValueError, match="exactly one of public_key or certificate_chain"):
        verify_folder(signed)


def test_copying_a_folder_keeps_its_signature(
    signed: Path, keys: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    copy = shutil.copytree(signed, tmp_path / "elsewhere" / "renamed")
    assert verify_folder(copy, public_key=keys[0].public).files == 6


def test_symbolic_links_are_refused(signed: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    (signed / "labels.txt").symlink_to(signed / "synset.txt")
    with pytest.raises(SignatureError, match="labels.txt: a symbolic link") as refused:
        verify_folder(signed, public_key=keys[0].public)
    assert refused.value.reason == "unsupported-file"
    with pytest.raises(SignatureError, match="labels.txt: a symbolic link"):
        sign_folder(signed, keys[0].private)


# ------------------------------------------------------------------ certificate mode: what is trusted
SIGNER_EMAIL = "releases@zoo.example"
SIGNER_URI = "https://zoo.example/signers/release"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Authority]:
    """One CA and leaves it issued: the good code-signing one (with alternative names) and one
    variant per refusal; plus a CA that expired a year ago with a leaf valid today."""
    folder = tmp_path_factory.mktemp("pki")
    zoo = make_authority(folder, "Zoo", ca_valid_from=-3 * YEAR)  # it issued the leaf that expired
    names = [
        x509.RFC822Name(SIGNER_EMAIL),
        x509.UniformResourceIdentifier(SIGNER_URI),
        x509.DNSName("Zoo.Example"),
    ]
    lapsed_ca = make_authority(folder, "Lapsed", ca_valid_from=-2 * YEAR, ca_valid_for=YEAR)
    return {
        "good": issue_leaf(zoo, "good", alternative_names=names),
        "other signer": issue_leaf(
            zoo, "other", subject="Zoo intern", alternative_names=[x509.RFC822Name("intern@zoo.example")]
        ),
        "TLS server": issue_leaf(zoo, "tls", usages=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "no extended key usage": issue_leaf(zoo, "plain", usages=None),
        "code signing without digitalSignature": issue_leaf(zoo, "nodigital", digital_signature=False),
        "expired a year ago": issue_leaf(zoo, "expired", valid_from=-2 * YEAR, valid_for=YEAR),
        "valid from tomorrow": issue_leaf(zoo, "future", valid_from=DAY),
        "issued by a CA that expired": issue_leaf(
            lapsed_ca, "late", valid_from=-YEAR - 30 * DAY, valid_for=2 * YEAR
        ),
    }


def certificate_signed(folder: Path, signer: Authority) -> bytes:
    return sign_folder(
        folder, signer.leaf_key, signing_certificate=signer.leaf, certificate_chain=[signer.ca]
    )


def test_a_code_signing_leaf_verifies_and_reports_its_names(
    tmp_path: Path, pki: dict[str, Authority]
) -> None:
    folder = make_folder(tmp_path / "squeezenet")
    info = verify_folder(folder, certificate_signed(folder, pki["good"]), certificate_chain=[pki["good"].ca])
    assert (info.mode, info.subject) == ("certificate", "CN=Zoo signer")
    assert info.identities == (f"email:{SIGNER_EMAIL}", f"uri:{SIGNER_URI}", "dns:Zoo.Example")


# variant -> (reason, message): model_signing 1.1.1 accepts every one of these
REFUSED_SIGNERS = {
    "TLS server": (
        "not-code-signing",
        "CN=Zoo signer is not for code signing \\(extended key usage: serverAuth\\)",
    ),
    "no extended key usage": ("not-code-signing", "is not for code signing \\(extended key usage: none\\)"),
    "code signing without digitalSignature": ("not-code-signing", "may not make digital signatures"),
    "expired a year ago": (
        "certificate-not-valid-now",
        "CN=Zoo signer in the signer's chain: certificate has expired",
    ),
    "valid from tomorrow": (
        "certificate-not-valid-now",
        "CN=Zoo signer in the signer's chain: certificate is not yet valid",
    ),
    "issued by a CA that expired": (
        "certificate-not-valid-now",
        "CN=Lapsed CA in the signer's chain: certificate has expired",
    ),
}


@pytest.mark.parametrize("variant", REFUSED_SIGNERS)
def test_a_leaf_not_for_code_signing_or_not_valid_now_is_refused(
    variant: str, tmp_path: Path, pki: dict[str, Authority]
) -> None:
    folder, signer = make_folder(tmp_path / "squeezenet"), pki[variant]
    bundle = certificate_signed(folder, signer)
    reason, message = REFUSED_SIGNERS[variant]
    with pytest.raises(SignatureError, match=message) as refused:
        verify_folder(folder, bundle, certificate_chain=[signer.ca])
    assert refused.value.reason == reason
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in read_folder(folder).items()}
    with pytest.raises(SignatureError, match=message):  # the archive path, as verify and serve take it
        verify_digests(digests, bundle, certificate_chain=[signer.ca])


@pytest.mark.parametrize(
    "identity",
    [
        "subject:CN=Zoo signer",
        f"email:{SIGNER_EMAIL}",
        f"uri:{SIGNER_URI}",
        "dns:zoo.example",
        "dns:ZOO.EXAMPLE",
    ],
)
def test_a_pinned_identity_accepts_its_signer_and_refuses_another_of_the_same_ca(
    identity: str, tmp_path: Path, pki: dict[str, Authority]
) -> None:
    folder = make_folder(tmp_path / "squeezenet")
    chain = [pki["good"].ca]
    info = verify_folder(
        folder, certificate_signed(folder, pki["good"]), certificate_chain=chain, identity=identity
    )
    assert info.subject == "CN=Zoo signer"
    intern = certificate_signed(folder, pki["other signer"])
    assert verify_folder(folder, intern, certificate_chain=chain).subject == "CN=Zoo intern"  # same CA
    with pytest.raises(
        SignatureError, match=f"wrong identity: signed by CN=Zoo intern .*not {identity}"
    ) as refused:
        verify_folder(folder, intern, certificate_chain=chain, identity=identity)
    assert refused.value.reason == "wrong-identity"


@pytest.mark.parametrize(
    "identity",
    [
        "subject:CN=Zoo signer,O=Zoo",
        "subject:CN=Zoo signe",
        f"email:{SIGNER_EMAIL.upper()}",
        f"uri:{SIGNER_URI}/",
        "dns:zoo.example.org",
    ],
)
def test_an_identity_matches_exactly(identity: str, tmp_path: Path, pki: dict[str, Authority]) -> None:
    folder = make_folder(tmp_path / "squeezenet")
    bundle = certificate_signed(folder, pki["good"])
    with pytest.raises(SignatureError, match="wrong identity"):
        verify_folder(folder, bundle, certificate_chain=[pki["good"].ca], identity=identity)


@pytest.mark.parametrize("identity", ["CN=Zoo signer", "name:Zoo", "email:", "subject:not a name"])
def test_a_malformed_identity_is_a_mistake_of_the_caller(
    identity: str, signed: Path, pki: dict[str, Authority]
) -> None:
    with pytest.raises(ValueError, match="expected one of subject:..., email:..., uri:..., dns:...|RFC 4514"):
        verify_folder(signed, certificate_chain=[pki["good"].ca], identity=identity)


def test_an_identity_with_a_bare_key_is_a_mistake_of_the_caller(
    signed: Path, keys: tuple[KeyPair, KeyPair]
) -> None:
    with pytest.raises(ValueError, match="an identity pins a certificate's signer"):
        verify_folder(signed, public_key=keys[0].public, identity="subject:CN=Zoo signer")


# ---------------------------------------------------------------- what to trust, from the environment
def test_no_trust_variable_means_no_trust_and_set_ones_are_read(
    keys: tuple[KeyPair, KeyPair], pki: dict[str, Authority]
) -> None:
    assert trusted_signer_from_environment({"PATH": "/usr/bin"}) is None
    key = trusted_signer_from_environment({TRUSTED_KEY: f" {keys[0].public}\n"})
    assert key == TrustedSigner(public_key=keys[0].public)
    chain = f"{pki['good'].ca}{os.pathsep}{pki['other signer'].ca}"
    pinned = trusted_signer_from_environment({TRUSTED_CHAIN: chain, TRUSTED_IDENTITY: "email:a@b.example"})
    assert pinned == TrustedSigner(None, (pki["good"].ca, pki["other signer"].ca), "email:a@b.example")


def _unusable_settings(
    keys: tuple[KeyPair, KeyPair], pki: dict[str, Authority], tmp: Path
) -> dict[str, tuple[dict[str, str], str]]:
    """case -> (environment, the variable the refusal must name)."""
    public, ca = str(keys[0].public), str(pki["good"].ca)
    (tmp / "garbage.pem").write_text("not a key\n")
    settings: dict[str, tuple[dict[str, str], str]] = {}
    for blank in ("", " ", "\n"):
        settings[f"key {blank!r}"] = ({TRUSTED_KEY: blank}, TRUSTED_KEY)
        settings[f"chain {blank!r}"] = ({TRUSTED_CHAIN: blank}, TRUSTED_CHAIN)
        settings[f"identity {blank!r} with a chain"] = (
            {TRUSTED_CHAIN: ca, TRUSTED_IDENTITY: blank},
            TRUSTED_IDENTITY,
        )
    settings["blank key beside a good chain"] = ({TRUSTED_KEY: "", TRUSTED_CHAIN: ca}, TRUSTED_KEY)
    settings["key and chain"] = (
        {TRUSTED_KEY: public, TRUSTED_CHAIN: ca},
        f"{TRUSTED_KEY} and {TRUSTED_CHAIN}",
    )
    settings["identity alone"] = ({TRUSTED_IDENTITY: "subject:CN=Zoo signer"}, TRUSTED_IDENTITY)
    settings["identity with a key"] = (
        {TRUSTED_KEY: public, TRUSTED_IDENTITY: "subject:CN=Zoo signer"},
        TRUSTED_IDENTITY,
    )
    settings["missing key file"] = ({TRUSTED_KEY: str(tmp / "absent.pem")}, TRUSTED_KEY)
    settings["key file that is no key"] = ({TRUSTED_KEY: str(tmp / "garbage.pem")}, TRUSTED_KEY)
    settings["a certificate as the key"] = ({TRUSTED_KEY: ca}, TRUSTED_KEY)
    settings["a private key as the key"] = ({TRUSTED_KEY: str(keys[0].private)}, TRUSTED_KEY)
    settings["a folder as the key"] = ({TRUSTED_KEY: str(tmp)}, TRUSTED_KEY)
    settings["chain with an empty entry"] = ({TRUSTED_CHAIN: f"{ca}{os.pathsep}"}, TRUSTED_CHAIN)
    settings["chain naming a key"] = ({TRUSTED_CHAIN: public}, TRUSTED_CHAIN)
    settings["missing chain file"] = ({TRUSTED_CHAIN: str(tmp / "absent.pem")}, TRUSTED_CHAIN)
    settings["malformed identity"] = ({TRUSTED_CHAIN: ca, TRUSTED_IDENTITY: "Zoo signer"}, TRUSTED_IDENTITY)
    return settings


UNUSABLE_CASES = [
    *(f"{what} {blank!r}" for blank in ("", " ", "\n") for what in ("key", "chain")),
    *(f"identity {blank!r} with a chain" for blank in ("", " ", "\n")),
    "blank key beside a good chain",
    "key and chain",
    "identity alone",
    "identity with a key",
    "missing key file",
    "key file that is no key",
    "a certificate as the key",
    "a private key as the key",
    "a folder as the key",
    "chain with an empty entry",
    "chain naming a key",
    "missing chain file",
    "malformed identity",
]


@pytest.mark.parametrize("case", UNUSABLE_CASES)
def test_a_set_but_unusable_trust_variable_is_refused_naming_it(
    case: str, keys: tuple[KeyPair, KeyPair], pki: dict[str, Authority], tmp_path: Path
) -> None:
    """Never "no check": ``podman run -e SQUEEZENET_TRUSTED_KEY= ...`` used to turn every check off."""
    env, variable = _unusable_settings(keys, pki, tmp_path)[case]
    with pytest.raises(TrustSettingError, match=f"^{variable}: ") as refused:
        trusted_signer_from_environment(env)
    assert refused.value.setting == variable
