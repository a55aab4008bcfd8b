"""The handler's check at load and the trust settings every layer reads (issue 20, items 1 and 2):

- a trust variable that is set but blank or unusable refuses: the handler does not load, the
  container's entrypoint stops before MMS, the tool's ``trust_from_environment`` raises naming it;
- the archive's own modules run from their ``.py`` files only: bytecode, an extension module or a
  look-alike package planted beside them never runs, and with a trusted key is refused by name;
- the one ``__pycache__`` file the check leaves out is the bytecode Python wrote for the entry module.

Real parts: the built archive unpacked and loaded through its MMS entry point in this process
(``InProcessService``), bytecode made by ``py_compile``, the entrypoint run as a process.
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import py_compile
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

import images
from keys import KeyPair, make_authority, make_key
from squeezenet_handler.errors import ModelLoadError
from squeezenet_handler.trust import TRUST_VARIABLES, check_signature, entry_module_bytecode
from squeezenet_mar.build import BuildOptions, build_archive
from squeezenet_mar.container import settings_from_env
from squeezenet_mar.errors import UsageError
from squeezenet_mar.inprocess import InProcessService
from squeezenet_mar.signatures import SigningKey, Trust, trust_from_environment

TAG = sys.implementation.cache_tag
ENTRY_PYC = f"__pycache__/squeezenet_service.{TAG}.pyc"
PHOTO = images.jpeg(500, 375, 5)


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("keys"), "publisher")


@pytest.fixture(scope="module")
def signed_archive(onnx_model: Path, publisher: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    options = BuildOptions(
        model_file=onnx_model,
        output=tmp_path_factory.mktemp("signed") / "squeezenet_v1.1.mar",
        signing_key=SigningKey(publisher.private),
        smoke_test=False,
        progress=False,
    )
    return build_archive(options).archive


def unpack(archive: Path, folder: Path) -> Path:
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(folder)
    return folder


def compiled(source: str, folder: Path, mode: py_compile.PycInvalidationMode, name: str = "planted") -> bytes:
    (folder / f"{name}.py").write_text(source)
    target = folder / f"{name}.pyc"
    py_compile.compile(str(folder / f"{name}.py"), cfile=str(target), doraise=True, invalidation_mode=mode)
    return target.read_bytes()


def marker_source(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('planted code ran')\n"


@pytest.fixture
def trusted_key(monkeypatch: pytest.MonkeyPatch, publisher: KeyPair) -> KeyPair:
    """The publisher's key in this process's environment, as an MMS worker inherits it."""
    for name in TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SQUEEZENET_TRUSTED_KEY", str(publisher.public))
    return publisher


# -------------------------------------------------------------------- item 1: set means "check"
UNUSABLE_SETTINGS = [
    {"SQUEEZENET_TRUSTED_KEY": ""},
    {"SQUEEZENET_TRUSTED_KEY": " "},
    {"SQUEEZENET_TRUSTED_KEY": "\n"},
    {"SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN": ""},
    {"SQUEEZENET_TRUSTED_IDENTITY": "subject:CN=Zoo signer"},
]


@pytest.mark.parametrize("env", UNUSABLE_SETTINGS, ids=repr)
def test_a_blank_or_lone_trust_variable_refuses_the_load_of_an_unsigned_archive(
    env: dict[str, str], built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``podman run -e SQUEEZENET_TRUSTED_KEY= ...`` used to load an unsigned archive with a warning."""
    folder = unpack(built.archive, tmp_path / "model")
    for name in TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    [variable] = env
    with pytest.raises(Exception, match=f"unusable trust setting: {variable}: ") as refused:
        InProcessService(folder)
    assert type(refused.value).__name__ == "ModelLoadError"  # the archive's own class, not this one


def test_without_any_trust_variable_the_load_says_the_signature_was_not_checked(
    built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert check_signature(unpack(built.archive, tmp_path / "model")) is None
    assert "archive signature NOT checked" in caplog.text


def test_the_trust_variables_are_named_alike_in_the_handler_and_in_signing() -> None:
    from squeezenet_handler import signing

    assert TRUST_VARIABLES == signing.TRUST_VARIABLES


@pytest.mark.parametrize("value", ["", " ", "\n"])
def test_the_tool_and_the_container_refuse_a_blank_trust_variable_naming_it(value: str) -> None:
    for name in ("SQUEEZENET_TRUSTED_KEY", "SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN"):
        with pytest.raises(UsageError, match=f"{name}: set but blank"):
            trust_from_environment({name: value})
        with pytest.raises(UsageError, match=f"{name}: set but blank"):
            settings_from_env({name: value})
    assert trust_from_environment({}) is None and settings_from_env({}).trust is None


def test_the_tool_reads_a_pinned_identity_and_hands_it_to_the_workers(tmp_path: Path) -> None:
    ca = make_authority(tmp_path, "Zoo").ca
    env = {
        "SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN": str(ca),
        "SQUEEZENET_TRUSTED_IDENTITY": "email:a@zoo.example",
    }
    trust = trust_from_environment(env)
    assert trust == Trust(None, (ca,), "email:a@zoo.example")
    assert settings_from_env(env).trust == trust
    assert trust.environment() == {
        "SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN": str(ca.resolve()),
        "SQUEEZENET_TRUSTED_IDENTITY": "email:a@zoo.example",
    }
    with pytest.raises(UsageError, match="needs a certificate chain"):
        Trust(public_key=make_key(tmp_path, "k").public, identity="email:a@zoo.example")


def test_the_container_entrypoint_stops_before_mms_on_a_blank_key(built, tmp_path: Path) -> None:
    mounted = tmp_path / "models"
    mounted.mkdir()
    (mounted / "squeezenet.mar").write_bytes(built.archive.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in TRUST_VARIABLES}
    env.update(
        SQUEEZENET_MODEL_DIR=str(mounted), SQUEEZENET_HOME=str(tmp_path / "home"), SQUEEZENET_TRUSTED_KEY=""
    )
    done = subprocess.run(
        [sys.executable, "-m", "squeezenet_mar.container"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "SQUEEZENET_TRUSTED_KEY: set but blank ('')" in done.stderr
    assert not (tmp_path / "home").exists()  # nothing staged, MMS never started


# ---------------------------------------------- item 2: the package runs from its source files only
def test_planted_bytecode_extension_or_package_for_the_handler_modules_never_runs(
    built, tmp_path: Path
) -> None:
    """Without a trusted key too: each of these would run in place of a module of the package if
    Python imported it the usual way (an unchecked-hash .pyc without looking at the .py)."""
    folder = unpack(built.archive, tmp_path / "model")
    marker = tmp_path / "ran"
    planted = compiled(marker_source(marker), tmp_path, py_compile.PycInvalidationMode.UNCHECKED_HASH)
    cache = folder / "squeezenet_handler" / "__pycache__"
    cache.mkdir()
    for module in ("service", "images", "trust", "signing", "__init__"):
        (cache / f"{module}.{TAG}.pyc").write_bytes(planted)
    (folder / "squeezenet_handler" / "postprocessing").mkdir()  # a package shadows a module of that name
    (folder / "squeezenet_handler" / "postprocessing" / "__init__.py").write_text(marker_source(marker))
    extension = importlib.machinery.EXTENSION_SUFFIXES[0]  # .cpython-311-x86_64-linux-gnu.so
    (folder / "squeezenet_handler" / f"engines{extension}").write_bytes(b"\x7fELF not really")
    before = sorted(cache.iterdir())
    service = InProcessService(folder)
    [answer] = service.predict_bytes([PHOTO])
    assert answer.status == 200 and len(answer.body) == 5
    assert not marker.exists()
    origins = {name: Path(module.__file__).name for name, module in service.modules.items()}
    assert origins["squeezenet_handler.postprocessing"] == "postprocessing.py"
    assert origins["squeezenet_handler.engines"] == "engines.py"
    assert sorted(cache.iterdir()) == before  # no bytecode written for the package either


def test_with_a_trusted_key_planted_package_bytecode_is_refused_by_name(
    signed_archive: Path, trusted_key: KeyPair, tmp_path: Path
) -> None:
    folder = unpack(signed_archive, tmp_path / "model")
    marker = tmp_path / "ran"
    cache = folder / "squeezenet_handler" / "__pycache__"
    cache.mkdir()
    planted = compiled(marker_source(marker), tmp_path, py_compile.PycInvalidationMode.UNCHECKED_HASH)
    (cache / f"service.{TAG}.pyc").write_bytes(planted)
    added = f"file added after signing: squeezenet_handler/__pycache__/service.{TAG}.pyc"
    with pytest.raises(Exception, match=f"signature check failed .*{added}") as refused:
        InProcessService(folder)
    assert type(refused.value).__name__ == "ModelLoadError"  # the archive's own class, not this one
    assert not marker.exists()


def test_with_a_trusted_key_the_signed_archive_loads_beside_the_bytecode_python_wrote_for_its_entry_module(
    signed_archive: Path,
    trusted_key: KeyPair,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as on a host without PYTHONDONTWRITEBYTECODE
    folder = unpack(signed_archive, tmp_path / "model")
    service = InProcessService(folder)  # importing the entry module writes its bytecode
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.pyc")) == [ENTRY_PYC]
    assert entry_module_bytecode(folder) == {ENTRY_PYC}
    assert f"signed by key sha256:{trusted_key.fingerprint}" in caplog.text
    assert service.predict_bytes([PHOTO])[0].status == 200
    InProcessService(folder)  # again, now that Python reads that bytecode instead of writing it


@pytest.mark.parametrize(
    "form",
    [
        py_compile.PycInvalidationMode.UNCHECKED_HASH,
        py_compile.PycInvalidationMode.CHECKED_HASH,
        "stale timestamp",
        "another interpreter",
    ],
    ids=str,
)
def test_any_other_entry_module_bytecode_counts_as_an_added_file(
    form: py_compile.PycInvalidationMode | str, signed_archive: Path, publisher: KeyPair, tmp_path: Path
) -> None:
    """What the check decides about bytecode found for the entry module (that bytecode ran before
    the check, if Python chose it: only the layers before MMS can stop it, see test_signed_archives)."""
    folder = unpack(signed_archive, tmp_path / "model")
    entry = folder / "squeezenet_service.py"
    (folder / "__pycache__").mkdir()
    pyc = folder / ENTRY_PYC
    if isinstance(form, py_compile.PycInvalidationMode):
        py_compile.compile(str(entry), cfile=str(pyc), doraise=True, invalidation_mode=form)
    elif form == "stale timestamp":
        py_compile.compile(str(entry), cfile=str(pyc), doraise=True)
        os.utime(entry, ns=(entry.stat().st_atime_ns, entry.stat().st_mtime_ns + 10**9))
    else:
        py_compile.compile(str(entry), cfile=str(folder / "__pycache__/squeezenet_service.cpython-399.pyc"))
        pyc = folder / "__pycache__/squeezenet_service.cpython-399.pyc"
    assert entry_module_bytecode(folder) == frozenset()
    env = {"SQUEEZENET_TRUSTED_KEY": str(publisher.public)}
    name = pyc.relative_to(folder).as_posix()
    with pytest.raises(ModelLoadError, match=f"file added after signing: {name}"):
        check_signature(folder, env)


def test_the_timestamp_bytecode_python_writes_is_left_out(
    signed_archive: Path, publisher: KeyPair, tmp_path: Path
) -> None:
    folder = unpack(signed_archive, tmp_path / "model")
    py_compile.compile(str(folder / "squeezenet_service.py"), cfile=str(folder / ENTRY_PYC), doraise=True)
    assert entry_module_bytecode(folder) == {ENTRY_PYC}
    assert check_signature(folder, {"SQUEEZENET_TRUSTED_KEY": str(publisher.public)}) == publisher.fingerprint


@pytest.mark.integration
def test_a_stock_mms_with_a_blank_key_refuses_the_unsigned_archive(built, tmp_path: Path) -> None:
    """The reproduction of item 1: MMS started with ``SQUEEZENET_TRUSTED_KEY=' '`` (its workers
    inherit it) used to serve an unsigned archive; now the worker refuses to load it."""
    from squeezenet_mar.server import ModelServer, free_port, write_properties
    from test_robustness import wait_until_unregistered

    config = tmp_path / "config.properties"
    addresses = {f"{api}_address": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management")}
    write_properties(config, addresses)
    server = ModelServer(
        tmp_path / "mms",
        built.archive.parent,
        config=config,
        env={"SQUEEZENET_TRUSTED_KEY": " "},
        lean_logging=False,
    )
    server.start()
    try:
        params = {
            "url": built.archive.name,
            "model_name": "unsigned",
            "initial_workers": 1,
            "synchronous": "true",
        }
        response = requests.post(f"{server.management_url}/models", params=params, timeout=120)
        assert response.status_code == 500, response.text
        assert wait_until_unregistered(server, "unsigned") == 404
        answer = requests.post(f"{server.inference_url}/predictions/unsigned", data=PHOTO, timeout=60)
        assert answer.status_code == 404
    finally:
        server.stop()
    assert not server.processes()
