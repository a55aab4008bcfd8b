"""Signing and verifying model folders with OpenSSF model signing, with keys made here and now."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from harness import ROOT
from keys import KeyPair, make_authority, make_key
from squeezenet_handler.signing import (
    BUNDLE_NAME,
    SignatureError,
    key_fingerprint,
    sign_files,
    sign_folder,
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


def test_bytecode_written_at_import_is_ignored_in_a_folder_but_refused_in_an_archive(
    signed: Path, keys: tuple[KeyPair, KeyPair]
) -> None:
    (signed / "__pycache__").mkdir()
    (signed / "__pycache__" / "squeezenet_service.cpython-311.pyc").write_bytes(b"\x00" * 16)
    assert verify_folder(signed, public_key=keys[0].public).files == 6
    with pytest.raises(SignatureError, match="file added after signing: __pycache__/squeezenet_service"):
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
