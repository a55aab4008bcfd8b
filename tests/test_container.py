"""The container: its entrypoint (``squeezenet_mar.container``), SageMaker's ``model.tar.gz``
(``squeezenet_mar.sagemaker``) and the image built from deploy/Containerfile, run with podman.

Three layers, each with real parts:

- the entrypoint's functions on real archives and a real 127.0.0.1 HTTP server (no marker);
- the entrypoint as a process on this machine with the real MMS (``integration``): it serves, a
  SIGTERM stops every process, a model that fails to load or an archive that fails verification
  stops it with its exit code;
- the image (``container``): built once per session with podman from the test model's archive, then
  run the ways the README documents: archive baked in, mounted folder on a read-only root, a URL,
  SageMaker's ``/opt/ml/model`` with ``serve``. Every container and image is removed by its id.
  If podman cannot build or run, the tests fail and say so; they never skip.

Podman facts they rely on (measured on this machine): runc and cgroupfs (deploy/podman/containers.conf),
``-p 127.0.0.1:PORT:8080`` and ``--network=host`` both work, and a HEALTHCHECK needs ``--format docker``.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest
import requests

import images
from harness import ROOT
from keys import KeyPair, make_key
from squeezenet_handler.cores import usable_cores
from squeezenet_handler.health import HEALTH_DIR_ENV
from squeezenet_mar import container as entry
from squeezenet_mar.build import BuildOptions, build_archive
from squeezenet_mar.errors import DownloadError, SignatureVerifyError, VerifyError
from squeezenet_mar.layout import SHA256SUMS, sha256_file, sha256sums, write_zip
from squeezenet_mar.sagemaker import TAR_MTIME, model_tar_entries, write_model_tar
from squeezenet_mar.server import free_port, fresh_private_folder, is_model_worker
from squeezenet_mar.signatures import SigningKey, Trust
from test_serving import same_prediction

PHOTO = images.jpeg(500, 375, 31)
START_TIMEOUT = 120.0  # seconds for a container or entrypoint to answer its first prediction
STOP_LIMIT = 5.0  # SIGTERM to exit, everything included


def load_deploy_module(name: str) -> ModuleType:
    """deploy/<name>.py, which is a script folder, not a package."""
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"deploy/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


deploy_image = load_deploy_module("image")


# ------------------------------------------------------------------------------------------ helpers
def rewrite(source: Path, target: Path, change: Callable[[dict[str, bytes]], None], resum: bool) -> Path:
    """A copy of ``source`` with ``change`` applied to its files; ``resum`` recomputes SHA256SUMS so
    the copy passes the hash checks (and fails only later, e.g. when its handler loads)."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    change(files)
    if resum:
        del files[SHA256SUMS]
        files[SHA256SUMS] = sha256sums(files)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_zip(target, files)
    return target


def refusing_handler(files: dict[str, bytes]) -> None:
    files["squeezenet_service.py"] = (
        b"def handle(data, context):\n    raise RuntimeError('refusing to load')\n"
    )


def flip_a_model_byte(files: dict[str, bytes]) -> None:
    model = bytearray(files["squeezenet1.1.onnx"])
    model[len(model) // 2] ^= 0xFF
    files["squeezenet1.1.onnx"] = bytes(model)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def static_http(tmp_path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (a stand-in for a model zoo), and its URL."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def copy_with_checksum(archive: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / archive.name
    target.write_bytes(archive.read_bytes())
    checksum = archive.with_name(archive.name + ".sha256")
    target.with_name(checksum.name).write_bytes(checksum.read_bytes())
    return target


# ------------------------------------------------------------------------------ settings (pure)
def test_default_settings_serve_inference_on_all_interfaces_and_management_on_loopback():
    settings = entry.settings_from_env({})
    assert settings.inference_address == "http://0.0.0.0:8080"
    assert settings.management_address == "http://127.0.0.1:8081"
    assert (settings.model_name, settings.workers, settings.response_timeout) == (
        "squeezenet",
        usable_cores(),
        120,
    )
    assert settings.urls == () and settings.trust is None
    assert settings.mms_port is None  # MMS's own inference port: a free one on 127.0.0.1, behind nginx
    assert (settings.drain_timeout, settings.stop_timeout) == (25, 3)  # within SageMaker's 30 s


def test_sagemaker_environment_variables_are_honoured():
    settings = entry.settings_from_env(
        {
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "SAGEMAKER_SAFE_PORT_RANGE": "10000-10999",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
        }
    )
    assert settings.inference_address == "http://0.0.0.0:9090"
    assert settings.management_address == "http://127.0.0.1:10000"
    assert settings.mms_port == 10001  # every port but the inference port within the safe range
    assert (settings.workers, settings.response_timeout) == (2, 30)


def test_on_sagemaker_the_model_server_timeout_defaults_to_sagemakers_60_s():
    assert entry.settings_from_env({"SAGEMAKER_BIND_TO_PORT": "8080"}).response_timeout == 60
    assert entry.settings_from_env({"SAGEMAKER_SAFE_PORT_RANGE": "10000-10999"}).response_timeout == 60
    assert entry.settings_from_env({}).response_timeout == 120


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"SAGEMAKER_BIND_TO_PORT": "40000"}, "MMS refuses higher"),
        ({"SQUEEZENET_INFERENCE_ADDRESS": "0.0.0.0:8080"}, "http://HOST:PORT"),
        ({"SQUEEZENET_MANAGEMENT_ADDRESS": "http://127.0.0.1:8080"}, "must differ"),
        ({"SQUEEZENET_MODEL_URL": "ftp://zoo/squeezenet.mar"}, "not an http(s) URL"),
        ({"SQUEEZENET_WORKERS": "0"}, "positive whole number"),
        ({"SQUEEZENET_MODEL_NAME": "squeeze net"}, "letters, digits"),
    ],
)
def test_bad_settings_are_refused_with_their_name(env, words):
    with pytest.raises(entry.ContainerError) as refused:
        entry.settings_from_env(env)
    assert words in str(refused.value) and next(iter(env)) in str(refused.value)


def test_several_urls_are_split_on_commas_and_spaces():
    assert entry.parse_urls(" http://a/x.mar, https://b/y.mar\nhttp://c/z.mar ") == (
        "http://a/x.mar",
        "https://b/y.mar",
        "http://c/z.mar",
    )


def test_mms_properties_keep_both_apis_on_loopback_behind_nginx(tmp_path):
    properties = entry.mms_properties(entry.Settings(), tmp_path / "store", 23456)
    assert properties["inference_address"] == "http://127.0.0.1:23456"
    assert properties["management_address"] == "http://127.0.0.1:8081"
    assert properties["model_store"] == str(tmp_path / "store")
    assert properties["default_response_timeout_seconds"] == "120"
    assert "decode_input_request" not in properties  # the archive's handler takes raw bodies itself


# ----------------------------------------------------------------------------- model sources
def sources(tmp_path: Path, **overrides: Any) -> entry.Settings:
    base = entry.Settings(
        mounted_dir=tmp_path / "models",
        sagemaker_dir=tmp_path / "opt_ml_model",
        baked_dir=tmp_path / "baked",
        home=tmp_path / "home",
    )
    return replace(base, **overrides)


def test_the_first_source_with_archives_wins(tmp_path, built):
    settings = sources(tmp_path)
    for folder in ("baked", "opt_ml_model", "models"):
        copy_with_checksum(built.archive, tmp_path / folder)
        label, found = entry.locate_archives(settings, tmp_path / "downloads")
        assert found == [tmp_path / folder / built.archive.name]
        assert label.endswith(str(tmp_path / folder))


def test_an_unpacked_archive_folder_is_one_archive(tmp_path, built):
    folder = tmp_path / "opt_ml_model"
    with zipfile.ZipFile(built.archive) as archive:
        archive.extractall(folder)
    assert entry.local_archives(folder) == [folder]
    staged = entry.stage_archives({"squeezenet": folder}, tmp_path / "store")
    assert (
        staged == {"squeezenet": "squeezenet"} and (tmp_path / "store" / "squeezenet" / SHA256SUMS).is_file()
    )


def test_no_archive_anywhere_names_every_place_it_looked(tmp_path):
    with pytest.raises(entry.ContainerError) as refused:
        entry.locate_archives(sources(tmp_path), tmp_path / "downloads")
    for place in ("SQUEEZENET_MODEL_URL", "models", "opt_ml_model", "baked"):
        assert place in str(refused.value)


def test_one_archive_is_served_as_squeezenet_and_several_by_their_file_names(tmp_path):
    one = [tmp_path / "squeezenet_v1.1.mar"]
    assert entry.model_names(one, "squeezenet") == {"squeezenet": one[0]}
    two = [tmp_path / "squeezenet_v1.1.mar", tmp_path / "other-model.mar"]
    assert list(entry.model_names(two, "squeezenet")) == ["squeezenet_v1_1", "other_model"]
    with pytest.raises(entry.ContainerError, match="both be served"):
        entry.model_names([tmp_path / "a" / "x.mar", tmp_path / "b" / "x.mar"], "squeezenet")


def test_a_url_is_downloaded_with_the_checksum_beside_it(static_http, tmp_path, built):
    zoo, url = static_http
    copy_with_checksum(built.archive, zoo / "squeezenet_v1.1" / "1.1")
    settings = sources(tmp_path, urls=(f"{url}/squeezenet_v1.1/1.1/squeezenet_v1.1.mar",))
    label, [downloaded] = entry.locate_archives(settings, tmp_path / "downloads")
    assert label == "SQUEEZENET_MODEL_URL" and downloaded.read_bytes() == built.archive.read_bytes()
    assert downloaded.with_name(downloaded.name + ".sha256").read_bytes() == built.sha256_file.read_bytes()
    assert entry.check_archive(downloaded).ok


def test_a_missing_or_unreachable_url_is_a_download_error_naming_it(static_http, tmp_path):
    _zoo, url = static_http
    downloads = tmp_path / "downloads"
    with pytest.raises(DownloadError, match=rf"{url}/missing.mar: HTTP 404"):
        entry.download_archive(f"{url}/missing.mar", downloads)
    closed = f"http://127.0.0.1:{free_port()}/squeezenet_v1.1.mar"
    with pytest.raises(DownloadError, match="Connection refused") as refused:
        entry.download_archive(closed, downloads)
    assert closed in str(refused.value) and refused.value.exit_code == 3
    assert list(downloads.iterdir()) == []  # no partial file left behind


# ----------------------------------------------------------------------------------- the check
def test_the_staged_copy_is_what_gets_checked(tmp_path, built):
    staged = entry.stage_archives({"squeezenet": built.archive}, tmp_path / "store")
    assert staged == {"squeezenet": "squeezenet.mar"}
    copy = tmp_path / "store" / "squeezenet.mar"
    assert copy.read_bytes() == built.archive.read_bytes()
    assert (tmp_path / "store" / "squeezenet.mar.sha256").read_bytes() == built.sha256_file.read_bytes()


def test_an_archive_that_does_not_match_its_sha256_file_is_refused(tmp_path, built):
    archive = copy_with_checksum(built.archive, tmp_path / "models")
    archive.with_name(archive.name + ".sha256").write_text("0" * 64 + "  squeezenet_v1.1.mar\n")
    with pytest.raises(VerifyError, match="squeezenet.mar.sha256 says 0000"):
        entry.stage_archives({"squeezenet": archive}, tmp_path / "store")


def test_an_archive_whose_files_do_not_match_sha256sums_is_refused(tmp_path, built):
    tampered = rewrite(built.archive, tmp_path / "models" / "tampered.mar", flip_a_model_byte, resum=False)
    with pytest.raises(VerifyError, match="squeezenet1.1.onnx: sha256 is"):
        entry.check_archive(tampered)


@pytest.fixture(scope="module")
def signed(onnx_model, tmp_path_factory) -> tuple[Path, KeyPair]:
    """An archive signed with a key made here, and that key."""
    folder = tmp_path_factory.mktemp("signed")
    key = make_key(folder, "zoo")
    options = BuildOptions(
        model_file=onnx_model,
        output=folder / "squeezenet_v1.1.mar",
        signing_key=SigningKey(key.private),
        smoke_test=False,
        progress=False,
    )
    return build_archive(options).archive, key


def test_a_trusted_key_makes_the_check_verify_the_signature(signed, built):
    archive, key = signed
    trust = Trust(public_key=key.public)
    assert entry.settings_from_env({"SQUEEZENET_TRUSTED_KEY": str(key.public)}).trust == trust
    assert entry.check_archive(archive, trust).signature.fingerprint == key.fingerprint
    with pytest.raises(SignatureVerifyError, match="unsigned"):
        entry.check_archive(built.archive, trust)


def test_prepare_puts_nginx_on_the_public_address_and_mms_on_loopback_behind_it(tmp_path, built):
    copy_with_checksum(built.archive, tmp_path / "models")
    launch = entry.prepare_model_server(sources(tmp_path))
    assert launch.front.listen == "0.0.0.0:8080"
    mms = launch.server.properties
    assert mms["inference_address"] == f"http://127.0.0.1:{launch.front.upstream.rsplit(':', 1)[1]}"
    assert mms["management_address"] == "http://127.0.0.1:8081"
    assert launch.front.health == tmp_path / "home" / "health"
    assert launch.server.extra_env[HEALTH_DIR_ENV] == str(launch.front.health)
    assert "MMS_DECODE_INPUT_REQUEST" not in launch.server.extra_env  # the handler sets it itself
    assert [(m.name, m.entry) for m in launch.models] == [("squeezenet", "squeezenet.mar")]


def test_a_restarted_container_s_stale_pid_file_does_not_stop_mms(tmp_path):
    """A restarted pod keeps its emptyDir: MMS's pid file may name pid 1 (tini, now) or any process."""
    stale = tmp_path / "tmp" / ".model_server.pid"
    stale.parent.mkdir()
    stale.write_text(f"{os.getpid()}")  # alive, but not an MMS
    (stale.parent / "models" / ("0" * 40)).mkdir(parents=True)  # and an unpacked model MMS would reuse
    assert fresh_private_folder(stale.parent) == stale.parent
    assert list(stale.parent.iterdir()) == [] and stale.parent.stat().st_mode & 0o777 == 0o700


def test_a_home_that_cannot_be_written_is_one_line_naming_the_fix(tmp_path):
    """(The container test runs the image with --read-only; here the home lies under a file, which no
    user, root included, can write into.)"""
    (tmp_path / "file").write_text("")
    with pytest.raises(entry.ContainerError) as refused:
        entry.prepare_model_server(sources(tmp_path, home=tmp_path / "file" / "home"))
    message = str(refused.value)
    assert "is not writable" in message and "--tmpfs /tmp" in message and "\n" not in message


# ------------------------------------------------------------------------------- model.tar.gz
def test_model_tar_gz_is_deterministic_and_holds_the_archive_and_its_sha256(tmp_path, built):
    first = write_model_tar(built.archive, tmp_path / "a" / "model.tar.gz")
    time.sleep(1.1)  # a timestamp taken from the clock would now differ
    second = write_model_tar(built.archive, tmp_path / "b" / "model.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    raw = first.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00" and raw[4:8] == b"\x00\x00\x00\x00"  # no FNAME, mtime 0
    with tarfile.open(first) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == model_tar_entries(built.archive)
        assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.type) for m in members} == {
            (TAR_MTIME, 0o644, 0, 0, "", tarfile.REGTYPE)
        }
        extracted = tar.extractfile(built.archive.name)
        assert extracted is not None and extracted.read() == built.archive.read_bytes()
        checksum = tar.extractfile(f"{built.archive.name}.sha256")
        assert checksum is not None
        assert checksum.read().decode() == f"{sha256_file(built.archive)}  {built.archive.name}\n"
    assert gzip.decompress(raw)  # one complete gzip stream


def test_the_sagemaker_command_verifies_then_writes_model_tar_gz(tmp_path, built, capsys):
    from squeezenet_mar.cli import main

    output = tmp_path / "model.tar.gz"
    assert main(["sagemaker", str(built.archive), "--output", str(output)]) == 0
    with tarfile.open(output) as tar:
        assert tar.getnames() == model_tar_entries(built.archive)
    assert "/opt/ml/model/squeezenet_v1.1.mar" in capsys.readouterr().out
    tampered = rewrite(built.archive, tmp_path / "t" / "squeezenet_v1.1.mar", flip_a_model_byte, resum=False)
    assert main(["sagemaker", str(tampered), "--output", str(tmp_path / "bad.tar.gz")]) == 5
    assert not (tmp_path / "bad.tar.gz").exists()


def unpack_model_tar(model_tar: Path, target: Path) -> Path:
    """What SageMaker does with ``model.tar.gz`` before it starts the container."""
    target.mkdir(parents=True)
    with tarfile.open(model_tar) as tar:
        tar.extractall(target, filter="data")
    return target


def test_what_sagemaker_unpacks_is_found_and_passes_the_check(tmp_path, built):
    model_tar = write_model_tar(built.archive, tmp_path / "model.tar.gz")
    opt_ml_model = unpack_model_tar(model_tar, tmp_path / "opt_ml_model")
    label, [found] = entry.locate_archives(sources(tmp_path), tmp_path / "downloads")
    assert label == f"SageMaker model folder {opt_ml_model}" and found.name == built.archive.name
    assert entry.stage_archives({"squeezenet": found}, tmp_path / "store") == {"squeezenet": "squeezenet.mar"}


# -------------------------------------------------------------- the entrypoint with a real MMS
@dataclass
class Entrypoint:
    """``python -m squeezenet_mar.container`` on this machine, on free 127.0.0.1 ports."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    home: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


@pytest.fixture
def entrypoint(tmp_path) -> Iterator[Callable[[Path], Entrypoint]]:
    started: list[Entrypoint] = []

    def start(models: Path, **extra_env: str) -> Entrypoint:
        inference, management = free_port(), free_port()
        env = dict(
            os.environ,
            **extra_env,
            SQUEEZENET_MODEL_DIR=str(models),
            SQUEEZENET_HOME=str(tmp_path / f"home{len(started)}"),
            SQUEEZENET_INFERENCE_ADDRESS=f"http://127.0.0.1:{inference}",
            SQUEEZENET_MANAGEMENT_ADDRESS=f"http://127.0.0.1:{management}",
            SQUEEZENET_WORKERS="1",
            SQUEEZENET_THREADS="1",
        )
        log = tmp_path / f"entrypoint{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "squeezenet_mar.container"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(
            Entrypoint(process, f"http://127.0.0.1:{inference}", log, Path(env["SQUEEZENET_HOME"]))
        )
        return started[-1]

    yield start
    for running in started:  # only what this test started, by PID
        procs = running.processes()
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        if running.process.poll() is None:
            running.process.wait(timeout=10)


def wait_for_prediction(url: str, alive: Callable[[], bool], logs: Callable[[], str]) -> requests.Response:
    """Poll ``POST url/predictions/squeezenet`` until it answers 200; fail with the logs if the server
    exits or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            response = requests.post(f"{url}/predictions/squeezenet", data=PHOTO, timeout=30)
            if response.status_code == 200:
                return response
        except requests.RequestException:
            pass
        if not alive():
            pytest.fail(f"the server exited before answering:\n{logs()[-4000:]}")
        time.sleep(0.1)
    pytest.fail(f"no 200 from {url} within {START_TIMEOUT:.0f} s:\n{logs()[-4000:]}")


@pytest.mark.integration
def test_entrypoint_serves_and_sigterm_stops_every_process(entrypoint, tmp_path, built, inprocess):
    server = entrypoint(copy_with_checksum(built.archive, tmp_path / "models").parent)
    answer = wait_for_prediction(server.url, lambda: server.process.poll() is None, server.output)
    [local] = inprocess.predict_bytes([PHOTO])
    assert same_prediction(answer.json(), local.body)
    assert requests.get(f"{server.url}/ping", timeout=10).json() == {"status": "Healthy"}
    procs = server.processes()
    assert len(procs) >= 6  # entrypoint, nginx (2), launcher, Java frontend, worker (and its fork)
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert time.monotonic() - began < STOP_LIMIT
    _gone, alive = psutil.wait_procs(procs, timeout=1)
    assert alive == []
    assert "ready after" in server.output() and "stopped, " in server.output()
    assert not (server.home / "health" / "ready").exists()  # a stopped server is not ready


@pytest.mark.integration
def test_entrypoint_stops_with_8_when_mms_cannot_load_the_model(entrypoint, tmp_path, built):
    """The archive passes every hash check but its handler raises: MMS would retry it forever and
    answer /ping all along; the entrypoint sees the failed load and stops."""
    rewrite(built.archive, tmp_path / "models" / "refusing.mar", refusing_handler, resum=True)
    server = entrypoint(tmp_path / "models")
    assert server.process.wait(timeout=START_TIMEOUT) == 8
    output = server.output()
    assert "MMS failed to load model 'squeezenet'" in output and "Load model failed: squeezenet," in output
    assert "ready after" not in output


@pytest.mark.integration
def test_entrypoint_refuses_a_tampered_archive_before_mms_starts(entrypoint, tmp_path, built):
    rewrite(built.archive, tmp_path / "models" / "tampered.mar", flip_a_model_byte, resum=False)
    server = entrypoint(tmp_path / "models")
    assert server.process.wait(timeout=60) == 5
    output = server.output()
    assert "an archive failed verification; MMS was not started" in output
    assert "squeezenet1.1.onnx: sha256 is" in output and "starting MMS" not in output


@pytest.mark.integration
def test_entrypoint_with_a_trusted_key_refuses_an_unsigned_archive_before_mms_starts(
    entrypoint, tmp_path, built, signed
):
    _, key = signed
    copy_with_checksum(built.archive, tmp_path / "models")
    server = entrypoint(tmp_path / "models", SQUEEZENET_TRUSTED_KEY=str(key.public))
    assert server.process.wait(timeout=60) == 9
    output = server.output()
    assert "unsigned: no signature bundle" in output and "starting MMS" not in output


# ------------------------------------------------------------------------------------ the image
@dataclass(frozen=True)
class BuiltImages:
    baked: str  # image id: the test archive inside
    generic: str  # image id: no archive inside
    build_seconds: float


@pytest.fixture(scope="session")
def podman_runtime() -> str:
    """podman works here: fail (never skip) with what to do when it does not."""
    try:
        info = deploy_image.podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (deploy_image.ImageError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"the container runtime cannot start: {exc}")
    base = deploy_image.default_base_image()
    if deploy_image.podman("image", "exists", base, check=False).returncode != 0:
        pulled = deploy_image.podman("pull", "--quiet", base, check=False, timeout=300)
        if pulled.returncode != 0:
            pytest.fail(
                f"base image {base} is not here and cannot be pulled ({pulled.stderr.strip()}): "
                "run `make container-setup` to import the local bookworm-minbase image"
            )
    return info.stdout.strip()


@pytest.fixture(scope="session")
def container_images(podman_runtime, tmp_path_factory, built) -> Iterator[BuiltImages]:
    """Both images, built once: unique labels make them new images, removed at the end by id."""
    context = tmp_path_factory.mktemp("image_context")
    run = uuid.uuid4().hex[:12]
    made: list[str] = []
    try:
        deploy_image.prepare_wheels(context)
        deploy_image.stage_models(context, built.archive)
        baked = deploy_image.build_image(
            context, tag=f"localhost/squeezenet-mms-test:baked-{run}", labels={"squeezenet-mar.test-run": run}
        )
        made.append(baked.id)
        deploy_image.stage_models(context, None)
        generic = deploy_image.build_image(
            context,
            tag=f"localhost/squeezenet-mms-test:generic-{run}",
            labels={"squeezenet-mar.test-run": run},
        )
        made.append(generic.id)
        yield BuiltImages(baked.id, generic.id, baked.seconds + generic.seconds)
    except deploy_image.ImageError as exc:
        pytest.fail(f"building the image failed: {exc}")
    finally:
        for image_id in made:
            deploy_image.remove_image(image_id)


@dataclass
class Container:
    id: str
    url: str  # the published inference port, on 127.0.0.1

    def alive(self) -> bool:
        return bool(deploy_image.container_state(self.id).get("Running"))

    def logs(self) -> str:
        return deploy_image.container_logs(self.id)

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return deploy_image.podman("exec", self.id, *command, check=False)

    def wait_ready(self) -> requests.Response:
        return wait_for_prediction(self.url, self.alive, self.logs)


@pytest.fixture
def containers() -> Iterator[Callable[..., Container]]:
    """Start containers (published on a free 127.0.0.1 port unless told otherwise); every one is
    removed, by its id, when the test ends."""
    started: list[str] = []

    def start(image: str, *options: str, args: tuple[str, ...] = (), publish: bool = True) -> Container:
        port = free_port()
        publishing = ("--publish", f"127.0.0.1:{port}:8080") if publish else ()
        container = deploy_image.run_container(image, *publishing, *options, args=args)
        started.append(container)
        return Container(container, f"http://127.0.0.1:{port}")

    yield start
    for container in started:
        deploy_image.remove_container(container)


@pytest.fixture(scope="module")
def baked(container_images) -> Iterator[Container]:
    """The image with the archive baked in, run as README says: `podman run -p 8080:8080 IMAGE`."""
    port = free_port()
    container = deploy_image.run_container(container_images.baked, "--publish", f"127.0.0.1:{port}:8080")
    try:
        running = Container(container, f"http://127.0.0.1:{port}")
        running.wait_ready()
        yield running
    finally:
        deploy_image.remove_container(container)


def post(url: str, body: bytes, path: str = "/predictions/squeezenet") -> requests.Response:
    return requests.post(f"{url}{path}", data=body, timeout=60)


@pytest.mark.container
def test_the_baked_image_serves_squeezenet_at_once(baked, inprocess):
    assert requests.get(f"{baked.url}/ping", timeout=10).json() == {"status": "Healthy"}
    [local] = inprocess.predict_bytes([PHOTO])
    answer = post(baked.url, PHOTO)
    assert answer.status_code == 200 and same_prediction(answer.json(), local.body)
    assert "model source: image /opt/squeezenet/models (squeezenet_v1.1.mar)" in baked.logs()


@pytest.mark.container
def test_invocations_answers_the_same_json_as_predictions(baked):
    for body in (PHOTO, images.png()):
        invocation, prediction = post(baked.url, body, "/invocations"), post(baked.url, body)
        assert invocation.status_code == prediction.status_code == 200
        assert invocation.json() == prediction.json()


@pytest.mark.container
@pytest.mark.parametrize("name", sorted(images.bad_inputs()))
def test_a_bad_image_gets_its_4xx(baked, name):
    body, status, word = images.bad_inputs()[name]
    for path in ("/predictions/squeezenet", "/invocations"):
        answer = post(baked.url, body, path)
        assert answer.status_code == status, answer.text
        assert word.lower() in answer.json()["message"].lower()


@pytest.mark.container
def test_only_the_inference_port_is_published_and_management_stays_on_loopback(baked):
    published = deploy_image.podman("port", baked.id).stdout.split("\n")
    assert [line for line in published if line.strip()] == [
        f"8080/tcp -> 127.0.0.1:{baked.url.rsplit(':', 1)[1]}"
    ]
    config = baked.exec("cat", "/tmp/squeezenet/mms/config.properties").stdout
    assert "management_address=http://127.0.0.1:8081\n" in config
    assert "inference_address=http://127.0.0.1:" in config  # MMS itself: behind nginx only
    assert "listen 0.0.0.0:8080 " in baked.exec("cat", "/tmp/squeezenet/nginx/nginx.conf").stdout
    listing = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8081/models').read().decode())"
    inside = baked.exec("python", "-c", listing)
    assert json.loads(inside.stdout)["models"][0]["modelName"] == "squeezenet"


@pytest.mark.container
def test_it_runs_as_a_non_root_user_and_its_healthcheck_passes(baked):
    assert baked.exec("id", "-u").stdout.strip() == "10001"
    users = deploy_image.podman("top", baked.id, "user").stdout.split()[1:]
    assert users and set(users) == {"model-server"}
    assert deploy_image.podman("healthcheck", "run", baked.id, check=False).returncode == 0


@pytest.mark.container
def test_sigterm_stops_it_in_under_5_s_with_no_process_left(container_images, containers):
    server = containers(container_images.baked)
    server.wait_ready()
    pids = deploy_image.host_pids(server.id)
    assert len(pids) >= 7  # tini, entrypoint, nginx (2), launcher, Java frontend, worker (and its fork)
    began = time.monotonic()
    deploy_image.podman("kill", "--signal", "TERM", server.id)
    code = deploy_image.wait_for_exit(server.id, timeout=STOP_LIMIT)
    seconds = time.monotonic() - began
    assert code == 0, f"exit code {code} after {seconds:.1f} s:\n{server.logs()[-3000:]}"
    assert seconds < STOP_LIMIT
    assert [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"] == []
    assert "SIGTERM: draining" in server.logs()


@pytest.mark.container
def test_the_generic_image_serves_a_mounted_folder_on_a_read_only_root(
    container_images, containers, tmp_path, built, inprocess
):
    folder = copy_with_checksum(built.archive, tmp_path / "models").parent
    server = containers(container_images.generic, "--read-only", "--volume", f"{folder}:/models:ro")
    answer = server.wait_ready()
    [local] = inprocess.predict_bytes([PHOTO])
    assert same_prediction(answer.json(), local.body)
    assert "model source: mounted folder /models (squeezenet_v1.1.mar)" in server.logs()
    assert server.exec("touch", "/opt/probe").returncode != 0  # the root filesystem is read-only


@pytest.mark.container
def test_the_generic_image_downloads_the_archive_its_url_names(
    container_images, containers, static_http, built, inprocess
):
    zoo, url = static_http
    copy_with_checksum(built.archive, zoo / "squeezenet_v1.1" / "1.1")
    inference, management = free_port(), free_port()
    server = containers(
        container_images.generic,
        "--network", "host",  # the zoo listens on this machine's 127.0.0.1
        "--env", "SQUEEZENET_METRICS_ADDRESS=off",  # 8082 of the host may be taken
        "--env", f"SQUEEZENET_MODEL_URL={url}/squeezenet_v1.1/1.1/squeezenet_v1.1.mar",
        "--env", f"SQUEEZENET_INFERENCE_ADDRESS=http://127.0.0.1:{inference}",
        "--env", f"SQUEEZENET_MANAGEMENT_ADDRESS=http://127.0.0.1:{management}",
        publish=False,
    )  # fmt: skip
    server.url = f"http://127.0.0.1:{inference}"
    answer = server.wait_ready()
    [local] = inprocess.predict_bytes([PHOTO])
    assert same_prediction(answer.json(), local.body)
    logs = server.logs()
    assert "model source: SQUEEZENET_MODEL_URL" in logs and "verified squeezenet.mar" in logs


@pytest.mark.container
def test_an_unreachable_url_stops_the_container_with_exit_code_3(container_images, containers):
    server = containers(
        container_images.generic,
        "--network", "none",
        "--env", "SQUEEZENET_MODEL_URL=http://127.0.0.1:9/squeezenet_v1.1.mar",
        publish=False,
    )  # fmt: skip
    assert deploy_image.wait_for_exit(server.id, timeout=60) == 3
    assert "error: cannot download the model archive http://127.0.0.1:9/squeezenet_v1.1.mar" in server.logs()


@pytest.mark.container
def test_a_tampered_archive_is_refused_before_mms_starts(container_images, containers, tmp_path, built):
    rewrite(built.archive, tmp_path / "models" / "squeezenet_v1.1.mar", flip_a_model_byte, resum=False)
    server = containers(container_images.generic, "--volume", f"{tmp_path / 'models'}:/models:ro")
    assert deploy_image.wait_for_exit(server.id, timeout=60) == 5
    logs = server.logs()
    assert "squeezenet1.1.onnx: sha256 is" in logs and "starting MMS" not in logs


@pytest.mark.container
def test_with_a_mounted_trusted_key_the_image_serves_only_a_signed_archive(
    container_images, containers, tmp_path, built, signed, inprocess
):
    archive, key = signed
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "zoo.pub.pem").write_bytes(key.public.read_bytes())
    trusted = ("--volume", f"{keys}:/keys:ro", "--env", "SQUEEZENET_TRUSTED_KEY=/keys/zoo.pub.pem")
    good = copy_with_checksum(archive, tmp_path / "signed").parent
    server = containers(container_images.generic, *trusted, "--volume", f"{good}:/models:ro")
    answer = server.wait_ready()
    [local] = inprocess.predict_bytes([PHOTO])
    assert same_prediction(answer.json(), local.body)
    logs = server.logs()
    assert f"signed by key sha256:{key.fingerprint}" in logs  # the entrypoint, before MMS
    assert "signature verified" in logs and key.fingerprint in logs  # the handler, at load
    bad = copy_with_checksum(built.archive, tmp_path / "unsigned").parent
    refused = containers(container_images.generic, *trusted, "--volume", f"{bad}:/models:ro")
    assert deploy_image.wait_for_exit(refused.id, timeout=60) == 9
    assert "starting MMS" not in refused.logs()


@pytest.mark.container
def test_sagemaker_serve_reads_opt_ml_model_and_answers_invocations_from_the_first_ping_200(
    container_images, containers, tmp_path, built, inprocess
):
    """SageMaker's contract: `serve`, port 8080, /ping 200 when ready, POST /invocations, the model
    unpacked from model.tar.gz into /opt/ml/model. MMS 1.1.11 answers the first /ping 200 about a
    second before its worker has loaded the model (measured); a request sent then waits for the
    model and is answered. So an /invocations sent at the first /ping 200 must succeed."""
    model_tar = write_model_tar(built.archive, tmp_path / "model.tar.gz")
    opt_ml_model = unpack_model_tar(model_tar, tmp_path / "opt_ml_model")
    server = containers(
        container_images.generic, "--volume", f"{opt_ml_model}:/opt/ml/model:ro", args=("serve",)
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            ping = requests.get(f"{server.url}/ping", timeout=5)
            if ping.status_code == 200:
                break
        except requests.RequestException:
            pass
        if not server.alive() or time.monotonic() > deadline:
            pytest.fail(f"/ping never answered 200:\n{server.logs()[-4000:]}")
        time.sleep(0.05)
    invocation = post(server.url, PHOTO, "/invocations")
    assert invocation.status_code == 200, invocation.text
    [local] = inprocess.predict_bytes([PHOTO])
    assert same_prediction(invocation.json(), local.body)
    assert invocation.json() == post(server.url, PHOTO).json()
    assert f"model source: SageMaker model folder /opt/ml/model ({built.archive.name})" in server.logs()
    assert "verified squeezenet.mar" in server.logs()


# ---------------------------------------------------------------- operations (issue 19), in podman
def container_in_flight(server: Container) -> int:
    """Requests nginx is answering inside the container (its stub_status, over its private socket)."""
    probe = (
        "from pathlib import Path; from squeezenet_mar.serving.front import front_status; "
        "s = front_status(Path('/tmp/squeezenet/nginx/status.sock')); print(s.writing if s else 0)"
    )
    done = server.exec("python", "-c", probe)
    return int(done.stdout.strip() or 0)


def container_workers(server: Container) -> list[int]:
    """Host PIDs of the container's Python workers that hold the model (MMS forks one per worker)."""
    workers = []
    for pid in deploy_image.host_pids(server.id):
        try:
            process = psutil.Process(pid)
        except psutil.Error:
            continue
        if is_model_worker(process):
            workers.append(pid)
    return workers


def ping_status(url: str) -> int:
    try:
        return requests.get(f"{url}/ping", timeout=5).status_code
    except requests.RequestException:
        return 0


def poll(condition: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``condition`` held (every 50 ms), None if it did not within ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if condition():
            return time.monotonic() - began
        time.sleep(0.05)
    return None


@pytest.mark.container
def test_every_worker_killed_fails_ping_within_10_s_and_it_answers_again_within_30_s(
    container_images, containers
):
    server = containers(container_images.baked)
    server.wait_ready()
    workers = container_workers(server)
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)  # the container's own processes, started by this test
    failed = poll(lambda: ping_status(server.url) == 503, 10)
    assert failed is not None, server.logs()[-3000:]
    assert deploy_image.podman("healthcheck", "run", server.id, check=False).returncode != 0
    back = poll(lambda: ping_status(server.url) == 200 and post(server.url, PHOTO).status_code == 200, 30)
    assert back is not None, server.logs()[-3000:]
    assert server.alive()
    print(f"/ping 503 {failed:.2f} s after the kill, answering again {failed + back:.2f} s after it")


@pytest.mark.container
def test_podman_stop_answers_the_16_requests_in_flight_and_exits_0(container_images, containers):
    """16 requests accepted and not yet answered at `podman stop -t 30` (held by pausing the workers
    with SIGSTOP, so the count is exact): every one is answered, then the container exits 0."""
    server = containers(container_images.baked)
    server.wait_ready()
    workers = [psutil.Process(pid) for pid in container_workers(server)]
    answers: list[object] = []

    def client() -> None:
        try:
            answers.append(post(server.url, PHOTO).status_code)
        except requests.RequestException as exc:
            answers.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(16)]
    stop: list[subprocess.CompletedProcess[str]] = []
    stopper = threading.Thread(
        target=lambda: stop.append(
            deploy_image.podman("stop", "--time", "30", server.id, timeout=60, check=False)
        )
    )
    for worker in workers:
        worker.suspend()  # the container's processes, started by this test
    try:
        for thread in threads:
            thread.start()
        assert poll(lambda: container_in_flight(server) >= 16, 30) is not None, server.logs()[-3000:]
        began = time.monotonic()
        stopper.start()
        assert poll(lambda: "SIGTERM: draining" in server.logs(), 10) is not None, server.logs()[-3000:]
    finally:
        for worker in workers:
            worker.resume()
    for thread in (*threads, stopper):
        thread.join(timeout=60)
    seconds = time.monotonic() - began
    assert answers == [200] * 16, answers
    assert stop and stop[0].returncode == 0 and deploy_image.container_state(server.id).get("ExitCode") == 0
    print(f"podman stop with 16 in flight: 16 answered, exit 0 after {seconds:.2f} s")


@pytest.mark.container
def test_a_read_only_root_without_a_writable_tmp_is_one_line_naming_the_fix(container_images, containers):
    server = containers(container_images.baked, "--read-only", "--read-only-tmpfs=false", publish=False)
    assert deploy_image.wait_for_exit(server.id, timeout=60) == 1
    lines = [line for line in server.logs().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "not writable" in lines[0] and "--tmpfs /tmp" in lines[0], server.logs()
    assert "Traceback" not in server.logs()


@pytest.mark.container
def test_sagemaker_contract_label_and_timeout(container_images, containers):
    labels = json.loads(deploy_image.podman("image", "inspect", container_images.baked).stdout)[0]["Labels"]
    assert labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    server = containers(container_images.baked, "--env", "SAGEMAKER_BIND_TO_PORT=8080", args=("serve",))
    server.wait_ready()
    config = server.exec("cat", "/tmp/squeezenet/mms/config.properties").stdout
    assert "default_response_timeout_seconds=60\n" in config  # SageMaker's own limit


def oom_kills(container: str) -> int:
    """Processes the kernel killed in the container's memory cgroup (v1 memory.oom_control, v2
    memory.events), read on the host."""
    path = deploy_image.podman("inspect", "--format", "{{.State.CgroupPath}}", container).stdout.strip()
    for file, key in (
        (Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.oom_control", "oom_kill"),
        (Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events", "oom_kill"),
    ):
        if file.is_file():
            counts = dict(line.split() for line in file.read_text().splitlines() if len(line.split()) == 2)
            return int(counts.get(key, 0))
    pytest.fail(f"no memory cgroup found for {container} ({path})")


@pytest.fixture(scope="module")
def largest_images() -> dict[str, bytes]:
    """The largest image of each kind the handler accepts in the Kubernetes pod (1.5 GiB, 2 workers),
    found with the handler's own estimate (about a minute of encoding)."""
    import hostile_images
    from squeezenet_handler.errors import ServiceError
    from squeezenet_handler.images import estimate_request
    from squeezenet_handler.memory import decode_budget
    from squeezenet_handler.signature import read_signature

    pre = read_signature(ROOT / "signature.json").preprocessing
    pre = pre.with_budget(decode_budget(pre.max_decode_bytes, (POD_MEMORY, "pod"), (2, "workers")))

    def accepted(body: bytes) -> bool:
        try:
            estimate_request(body, pre)
        except ServiceError:
            return False
        return True

    return hostile_images.largest_accepted(accepted)


POD_MEMORY = 1536 * 1024 * 1024  # deploy/kubernetes: the memory limit of a pod of 2 workers


@pytest.mark.container
@pytest.mark.parametrize("memory", [POD_MEMORY, 1024 * 1024 * 1024])
def test_eight_clients_of_the_largest_images_never_oom_a_worker_nor_get_a_5xx(
    container_images, containers, largest_images, memory
):
    """The pod's limits (2 CPUs, 1.5 GiB): every kind answered. A pod too small for its two workers
    (1 GiB): the large ones refused with 413 naming the budget, still no OOM kill and no 5xx. (Before
    the budget followed the memory: 13 OOM kills and 13 of 38 requests 500 for a 39.8 MP PNG.)"""
    limits = ("--memory", str(memory), "--memory-swap", str(memory), "--cpus", "2")
    server = containers(container_images.baked, *limits)
    server.wait_ready()
    seen = {}
    for name, body in largest_images.items():
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, [server.url] * 8, [body] * 8))
        seen[name] = sorted({a.status_code for a in answers})
        for answer in answers:
            assert answer.status_code in (200, 413), (name, answer.status_code, answer.text[:300])
            if answer.status_code == 413:
                assert "memory budget" in answer.json()["message"], answer.text
    assert oom_kills(server.id) == 0, server.logs()[-3000:]
    assert server.alive() and "restarting MMS" not in server.logs()
    if memory == POD_MEMORY:
        assert all(statuses == [200] for statuses in seen.values()), seen
    print(f"--memory {memory >> 20} MiB: {seen}")
