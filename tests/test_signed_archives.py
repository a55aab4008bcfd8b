"""Signed archives end to end (issues 13 and 20), with keys made by the test: the genuine signed
archive is accepted everywhere, and tampered ones are refused by every layer that trusts an archive —
`verify`, `publish`, `serve` and the container's entrypoint (before MMS sees it) and, with the genuine
handler, MMS's registration.

Some additions run before the handler can check anything, because MMS puts the model folder on the
worker's PYTHONPATH ahead of everything else: a `sitecustomize.py` (at interpreter start), bytecode
for the entry module (in place of its source), a package named like a dependency. They could switch
the handler's check off, so they are refused before MMS sees the archive, and these tests show those
layers refusing them; they are not registered on an MMS.

The tampered archives keep MAR-INF/SHA256SUMS consistent, as an attacker would: only the signature
can tell them from the genuine one. Planted code writes a marker file if it ever runs."""

from __future__ import annotations

import json
import py_compile
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

import images
from harness import ROOT
from keys import KeyPair, make_key
from squeezenet_mar.build import BuildOptions, build_archive, sign_archive
from squeezenet_mar.container import prepare_model_server, settings_from_env
from squeezenet_mar.errors import PublishError, SignatureVerifyError
from squeezenet_mar.layout import SHA256SUMS, SIGNATURE_BUNDLE, sha256sums, write_zip
from squeezenet_mar.server import ModelServer, free_port, read_properties, write_properties
from squeezenet_mar.signatures import SigningKey, Trust
from squeezenet_mar.verify import verify_archive
from squeezenet_mar.zoo import publish_archive

PHOTO = images.jpeg(500, 375, 0)
CLI = str(Path(sys.executable).with_name("squeezenet-mar"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, KeyPair]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: make_key(folder, name) for name in ("publisher", "intruder")}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("signed_store")


@pytest.fixture(scope="module")
def signed(onnx_model, keys, store) -> Path:
    result = build_archive(
        BuildOptions(
            model_file=onnx_model,
            model_name="signed",
            output=store / "signed.mar",
            signing_key=SigningKey(keys["publisher"].private),
            progress=False,
        )
    )
    return result.archive


def files_of(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as opened:
        return {info.filename: opened.read(info) for info in opened.infolist()}


def rewrite(files: dict[str, bytes], target: Path) -> Path:
    """``files`` as an archive whose SHA256SUMS is consistent again (the bundle, if any, kept as is)."""
    files = dict(files)
    files[SHA256SUMS] = sha256sums({k: v for k, v in files.items() if k != SIGNATURE_BUNDLE})
    write_zip(target, files)
    return target


def resigned_by_intruder(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    target.write_bytes(signed.read_bytes())
    sign_archive(target, SigningKey(keys["intruder"].private))
    return target


def unsigned(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    files = files_of(signed)
    del files[SIGNATURE_BUNDLE]
    return rewrite(files, target)


def model_byte_flipped(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    files = files_of(signed)
    model = bytearray(files["squeezenet1.1.onnx"])
    model[len(model) // 2] ^= 0x01
    files["squeezenet1.1.onnx"] = bytes(model)
    return rewrite(files, target)


def marker_code(target: Path) -> bytes:
    """Python source that leaves ``ran-<archive name>`` beside the archive when it runs."""
    marker = target.with_name(f"ran-{target.stem}")
    return f"open({str(marker)!r}, 'w').write('planted code ran')\n".encode()


def unchecked_pyc(source: bytes, folder: Path) -> bytes:
    """Bytecode of ``source`` that Python runs without looking at the .py beside it (PEP 552)."""
    (folder / "planted.py").write_bytes(source)
    compiled = py_compile.compile(
        str(folder / "planted.py"),
        cfile=str(folder / "planted.pyc"),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    return Path(compiled).read_bytes()


BYTECODE_TAG = sys.implementation.cache_tag  # cpython-311


def sitecustomize_added(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    files = files_of(signed)
    files["sitecustomize.py"] = marker_code(target)
    return rewrite(files, target)


def module_added_to_the_package(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    files = files_of(signed)
    files["squeezenet_handler/extra.py"] = marker_code(target)
    return rewrite(files, target)


def bytecode_planted_for_a_package_module(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    """Python would run this instead of squeezenet_handler/service.py if it imported that normally."""
    files = files_of(signed)
    pyc = unchecked_pyc(marker_code(target), target.parent)
    files[f"squeezenet_handler/__pycache__/service.{BYTECODE_TAG}.pyc"] = pyc
    return rewrite(files, target)


def bytecode_planted_for_the_entry_module(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    files = files_of(signed)
    files[f"__pycache__/squeezenet_service.{BYTECODE_TAG}.pyc"] = unchecked_pyc(
        marker_code(target), target.parent
    )
    return rewrite(files, target)


def dependency_shadowed(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    files = files_of(signed)
    files["PIL/__init__.py"] = marker_code(target)
    return rewrite(files, target)


def bundle_from_another_archive(signed: Path, keys: dict[str, KeyPair], target: Path) -> Path:
    other = files_of(signed)
    other["synset.txt"] = other["synset.txt"].replace(b"tench", b"tinca")  # another build
    other["squeezenet1.1.onnx"] = other["squeezenet1.1.onnx"][::-1]
    files = files_of(signed)
    files[SIGNATURE_BUNDLE] = sign_files_of(rewrite(other, target.with_suffix(".other.mar")), keys)
    return rewrite(files, target)


def sign_files_of(archive: Path, keys: dict[str, KeyPair]) -> bytes:
    sign_archive(archive, SigningKey(keys["publisher"].private))
    return files_of(archive)[SIGNATURE_BUNDLE]


# name -> (how the archive is made from the signed one, what the refusal says). The handler's own
# check at load catches these too (test_a_trusting_mms_refuses_each_tampered_archive_at_registration).
TAMPERED = {
    "resigned_by_another_key": (resigned_by_intruder, "wrong key: signed by another key"),
    "unsigned": (unsigned, "unsigned: no signature bundle"),
    "model_byte_flipped_after_signing": (
        model_byte_flipped,
        "file changed after signing: squeezenet1.1.onnx",
    ),
    "module_added_to_the_package": (
        module_added_to_the_package,
        "file added after signing: squeezenet_handler/extra.py",
    ),
    # squeezenet_service imports its package from source only: this bytecode never runs.
    "bytecode_planted_for_a_package_module": (
        bytecode_planted_for_a_package_module,
        f"file added after signing: squeezenet_handler/__pycache__/service.{BYTECODE_TAG}.pyc",
    ),
    # Another build of the same project shares most files: the ones that differ are named.
    "bundle_from_another_archive": (bundle_from_another_archive, "file changed after signing: synset.txt"),
}
# Code that an MMS worker would run before the handler (see the module docstring): refused before
# MMS sees the archive, never handed to one.
RUNS_BEFORE_THE_HANDLER = {
    "sitecustomize_added": (sitecustomize_added, "file added after signing: sitecustomize.py"),
    "bytecode_planted_for_the_entry_module": (
        bytecode_planted_for_the_entry_module,
        f"file added after signing: __pycache__/squeezenet_service.{BYTECODE_TAG}.pyc",
    ),
    "dependency_shadowed": (dependency_shadowed, "file added after signing: PIL/__init__.py"),
}
REFUSED_BEFORE_MMS = {**TAMPERED, **RUNS_BEFORE_THE_HANDLER}


@pytest.fixture(scope="module")
def tampered(signed, keys, store) -> dict[str, Path]:
    return {name: make(signed, keys, store / f"{name}.mar") for name, (make, _) in REFUSED_BEFORE_MMS.items()}


def planted_code_ran(store: Path) -> list[str]:
    return sorted(path.name for path in store.glob("ran-*"))


# ------------------------------------------------------------------------------------------- verify
def test_the_signed_archive_verifies_and_names_its_signer(signed, keys):
    report = verify_archive(signed, trust=Trust(public_key=keys["publisher"].public))
    assert report.signed and report.signature is not None
    assert report.signature.fingerprint == keys["publisher"].fingerprint
    assert report.signature.files == len(files_of(signed)) - 1  # every file but the bundle
    assert (signed.parent / "signed.mar.sig").read_bytes() == files_of(signed)[SIGNATURE_BUNDLE]


@pytest.mark.parametrize("name", sorted(REFUSED_BEFORE_MMS))
def test_verify_refuses_each_tampered_archive(tampered, keys, store, name):
    assert verify_archive(tampered[name]).ok  # consistent: only the signature tells
    with pytest.raises(SignatureVerifyError, match=REFUSED_BEFORE_MMS[name][1]):
        verify_archive(tampered[name], trust=Trust(public_key=keys["publisher"].public))
    assert planted_code_ran(store) == []


def test_cli_verify_reports_the_fingerprint_and_exits_9_on_a_bad_signature(signed, tampered, keys):
    ok = subprocess.run(
        [CLI, "verify", str(signed), "--trusted-key", str(keys["publisher"].public)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"signed by key sha256:{keys['publisher'].fingerprint}" in ok.stdout
    bad = subprocess.run(
        [
            CLI,
            "verify",
            str(tampered["sitecustomize_added"]),
            "--trusted-key",
            str(keys["publisher"].public),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 9, bad.stdout + bad.stderr
    assert "file added after signing: sitecustomize.py" in bad.stdout + bad.stderr


# ---------------------------------------------------------------------------------------------- build
def test_signing_changes_nothing_but_the_bundle(onnx_model, keys, tmp_path):
    def build(name: str, key: SigningKey | None) -> dict[str, bytes]:
        options = BuildOptions(model_file=onnx_model, output=tmp_path / name, signing_key=key, progress=False)
        return files_of(build_archive(options).archive)

    plain, again = build("a.mar", None), build("b.mar", None)
    assert (tmp_path / "a.mar").read_bytes() == (tmp_path / "b.mar").read_bytes()
    first = build("c.mar", SigningKey(keys["publisher"].private))
    second = build("d.mar", SigningKey(keys["publisher"].private))
    assert first[SIGNATURE_BUNDLE] != second[SIGNATURE_BUNDLE]  # ECDSA: a fresh nonce every time
    for files in (first, second):
        assert {k: v for k, v in files.items() if k != SIGNATURE_BUNDLE} == plain == again


def test_keygen_sign_and_verify_from_the_command_line(built, tmp_path):
    keygen = subprocess.run(
        [CLI, "keygen", "--output-dir", str(tmp_path / "keys")], capture_output=True, text=True
    )
    assert keygen.returncode == 0, keygen.stderr
    private, public = tmp_path / "keys" / "signing-key.pem", tmp_path / "keys" / "signing-key.pub.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    copy = tmp_path / "copy.mar"
    copy.write_bytes(built.archive.read_bytes())
    signing = subprocess.run(
        [CLI, "sign", str(copy), "--signing-key", str(private)], capture_output=True, text=True
    )
    assert signing.returncode == 0, signing.stderr
    verified = subprocess.run(
        [CLI, "verify", str(copy), "--trusted-key", str(public)], capture_output=True, text=True, timeout=120
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    fingerprint = keygen.stdout.split("sha256:")[1].split()[0]
    assert f"sha256:{fingerprint}" in signing.stdout and f"sha256:{fingerprint}" in verified.stdout


# ------------------------------------------------------------------------------------------ publish
def test_publish_records_the_verified_signature_and_publishes_the_bundle(signed, keys, tmp_path):
    zoo = tmp_path / "zoo"
    trust = Trust(public_key=keys["publisher"].public)
    result = publish_archive(signed, zoo, trust=trust, require_signature=True)
    entry = json.loads((zoo / "index.json").read_text())["models"]["signed"]["1.1"]
    assert entry["signature"] == {
        "bundle": f"{result.url}.sig",  # beside the archive, in its release folder
        "verified_by_publisher": True,
        "key_sha256": keys["publisher"].fingerprint,
        "mode": "key",
    }
    assert (zoo / entry["signature"]["bundle"]).read_bytes() == files_of(signed)[SIGNATURE_BUNDLE]
    card = Path(result.card_path).read_text()
    assert keys["publisher"].fingerprint in card and "squeezenet-mar verify signed.mar --trusted-key" in card
    assert verify_archive(zoo / entry["url"], trust=trust).signature is not None  # still verifies there


def test_publish_without_a_key_marks_the_signature_unverified(signed, tmp_path):
    result = publish_archive(signed, tmp_path / "zoo")
    assert result.signature is not None and result.signature["verified_by_publisher"] is False
    assert result.signature["key_sha256"] is None


def test_require_signature_needs_a_key(signed, tmp_path):
    with pytest.raises(PublishError, match="--require-signature needs what to trust: --trusted-key"):
        publish_archive(signed, tmp_path / "zoo", require_signature=True)


@pytest.mark.parametrize("name", sorted(REFUSED_BEFORE_MMS))
def test_a_zoo_requiring_signatures_refuses_each_tampered_archive(tampered, keys, tmp_path, name):
    zoo = tmp_path / "zoo"
    trust = Trust(public_key=keys["publisher"].public)
    with pytest.raises(PublishError, match=REFUSED_BEFORE_MMS[name][1]):
        publish_archive(tampered[name], zoo, trust=trust, require_signature=True)
    assert not (zoo / "index.json").exists()


# -------------------------------------------------------------------------------------------- serve
def run_serve(archive: Path, trusted: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`squeezenet-mar serve --trusted-key` on a refused archive: it must exit before MMS starts."""
    home.mkdir(parents=True)
    config = home / "config.properties"
    ports = {f"{api}_address": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management")}
    write_properties(config, {**read_properties(ROOT / "config.properties"), **ports})
    command = [
        CLI,
        "serve",
        str(archive),
        "--config",
        str(config),
        "--metrics-port",
        str(free_port()),
        "--trusted-key",
        str(trusted),
    ]
    command += ["--home", str(home / ".mms"), "--log-dir", str(home / "logs")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(REFUSED_BEFORE_MMS))
def test_serve_refuses_each_tampered_archive_before_mms_sees_it(tampered, keys, store, tmp_path, name):
    done = run_serve(tampered[name], keys["publisher"].public, tmp_path / "serve")
    assert done.returncode == 9, done.stdout + done.stderr
    assert REFUSED_BEFORE_MMS[name][1] in done.stderr
    assert "starting MMS" not in done.stderr and not (tmp_path / "serve" / ".mms" / "tmp").exists()
    assert planted_code_ran(store) == []


# ------------------------------------------------------------------------- the container's entrypoint
@pytest.mark.parametrize("name", sorted(REFUSED_BEFORE_MMS))
def test_the_container_refuses_each_tampered_archive_before_mms_starts(tampered, keys, store, tmp_path, name):
    """What the entrypoint does before it starts MMS, on a mounted folder holding the archive."""
    mounted = tmp_path / "models"
    mounted.mkdir()
    (mounted / "squeezenet.mar").write_bytes(tampered[name].read_bytes())
    env = {
        "SQUEEZENET_MODEL_DIR": str(mounted),
        "SQUEEZENET_HOME": str(tmp_path / "home"),
        "SQUEEZENET_TRUSTED_KEY": str(keys["publisher"].public),
    }
    with pytest.raises(SignatureVerifyError, match=REFUSED_BEFORE_MMS[name][1]):
        prepare_model_server(settings_from_env(env), env)
    assert not (tmp_path / "home" / "config.properties").exists()  # MMS was not configured
    assert planted_code_ran(store) == []


def test_the_container_serves_the_signed_archive_with_the_publishers_key(signed, keys, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "squeezenet.mar").write_bytes(signed.read_bytes())
    env = {
        "SQUEEZENET_MODEL_DIR": str(tmp_path / "models"),
        "SQUEEZENET_HOME": str(tmp_path / "home"),
        "SQUEEZENET_TRUSTED_KEY": str(keys["publisher"].public),
    }
    prepare_model_server(settings_from_env(env), env)  # raises if the check refuses
    assert (tmp_path / "home" / "model_store" / "squeezenet.mar").read_bytes() == signed.read_bytes()


# --------------------------------------------------------------------- the handler, at registration
@pytest.fixture(scope="module")
def trusting_mms(tmp_path_factory, keys, store, tampered):
    """An MMS whose environment names the publisher's key: its workers' genuine handler checks the
    signature of whatever is registered, however it is registered."""
    server = ModelServer.on_free_ports(
        tmp_path_factory.mktemp("trusting_mms"),
        store,
        config=ROOT / "config.properties",
        # PYTHONDONTWRITEBYTECODE empty: Python writes the entry module's bytecode, as on most hosts
        env={**Trust(public_key=keys["publisher"].public).environment(), "PYTHONDONTWRITEBYTECODE": ""},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        assert not server.processes()


@pytest.fixture(scope="module")
def trusting_torchserve(tmp_path_factory, keys, store, tampered):
    """The same on TorchServe 0.12 (tests/torchserve.py): the minimal config plus ``enable_model_api``
    (to register), the publisher's key in its environment, which its workers inherit."""
    from torchserve import TorchServe, minimal_properties, torchserve_missing

    missing = torchserve_missing()
    if missing:
        pytest.skip(missing)
    server = TorchServe(
        tmp_path_factory.mktemp("trusting_torchserve"),
        store,
        minimal_properties(enable_model_api="true"),
        env={**Trust(public_key=keys["publisher"].public).environment(), "PYTHONDONTWRITEBYTECODE": ""},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        assert not server.processes()


@pytest.fixture(scope="module", params=["mms", "torchserve"])
def trusting(request) -> tuple[Any, Path]:
    """(a server whose workers trust the publisher's key, the log its workers write to)."""
    if request.param == "mms":
        server = request.getfixturevalue("trusting_mms")
        return server, server.log_dir / "mms_log.log"
    server = request.getfixturevalue("trusting_torchserve")
    return server, server.model_log


def register(server: Any, archive: Path, name: str) -> requests.Response:
    params = {"url": archive.name, "model_name": name, "initial_workers": 1, "synchronous": "true"}
    return requests.post(f"{server.management_url}/models", params=params, timeout=120)


@pytest.mark.integration
def test_a_trusting_mms_loads_the_signed_archive(trusting, signed):
    trusting_mms, log_file = trusting
    response = register(trusting_mms, signed, "genuine")
    assert response.status_code == 200, response.text
    answer = requests.post(f"{trusting_mms.inference_url}/predictions/genuine", data=PHOTO, timeout=60)
    assert answer.status_code == 200 and len(answer.json()) == 5
    log = log_file.read_text(errors="replace")
    assert "signature verified" in log
    # ... beside the bytecode Python wrote for the entry module, the one file the check leaves out
    written = trusting_mms.home.glob(f"tmp/models/*/__pycache__/squeezenet_service.{BYTECODE_TAG}.pyc")
    assert len(list(written)) == 1


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_a_trusting_mms_refuses_each_tampered_archive_at_registration(trusting, tampered, store, name):
    from test_robustness import wait_until_unregistered

    trusting_mms, _ = trusting
    response = register(trusting_mms, tampered[name], name)
    assert response.status_code == 500, response.text
    assert wait_until_unregistered(trusting_mms, name) == 404
    predicted = requests.post(f"{trusting_mms.inference_url}/predictions/{name}", data=PHOTO, timeout=60)
    assert predicted.status_code == 404
    assert planted_code_ran(store) == []  # the planted .pyc was refused, never run


def test_the_archive_says_it_is_signed_in_its_manifest_not_at_all(signed):
    """The signature covers the manifest, so the manifest cannot name the signature: only the bundle."""
    manifest = json.loads(files_of(signed)["MAR-INF/MANIFEST.json"])
    assert "signature" not in json.dumps(manifest).lower()
