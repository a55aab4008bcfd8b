"""The archive builder and verifier on real files: zips opened with zipfile, a golden manifest,
byte-for-byte rebuilds, tampering, unsafe entries, and downloads from a local HTTP server."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import images
from harness import ROOT
from squeezenet_mar.build import BuildOptions, build_archive
from squeezenet_mar.cli import main
from squeezenet_mar.errors import DownloadError, ModelCheckError, VerifyError
from squeezenet_mar.inprocess import InProcessService
from squeezenet_mar.layout import MANIFEST, SHA256SUMS, sha256sums, write_zip
from squeezenet_mar.model_source import fetch_model
from squeezenet_mar.verify import verify_archive
from squeezenet_onnx import build_squeezenet11

HANDLER_PACKAGE = [
    "__init__.py",
    "cores.py",
    "decode_memory.py",
    "engines.py",
    "errors.py",
    "graph.py",
    "health.py",
    "image_headers.py",
    "images.py",
    "load_failures.py",
    "memory.py",
    "metrics.py",
    "mms_worker.py",
    "postprocessing.py",
    "protocols.py",
    "responses.py",
    "service.py",
    "signature.py",
    "signing.py",
    "torchserve_worker.py",
    "trust.py",
]
EXPECTED_ENTRIES = [
    "MAR-INF/MANIFEST.json",
    "MAR-INF/SHA256SUMS",
    "requirements.txt",
    "signature.json",
    "squeezenet1.1-0000.params",  # the MXNet checkpoint converted at build time (--format both)
    "squeezenet1.1-symbol.json",
    "squeezenet1.1.onnx",  # ONNX Runtime's (TorchServe, KServe)
    *[f"squeezenet_handler/{name}" for name in HANDLER_PACKAGE],
    "squeezenet_service.py",
    "synset.txt",
]


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rezip(source: Path, target: Path, change: dict[str, bytes | None], resum: bool = False) -> Path:
    """A copy of an archive with some entries replaced, added or (value None) removed."""
    files = {**read_zip(source), **change}
    files = {name: data for name, data in files.items() if data is not None}
    if resum:
        files[SHA256SUMS] = sha256sums({k: v for k, v in files.items() if k != SHA256SUMS})
    write_zip(target, files)
    return target


def problems_of(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(VerifyError) as caught:
        verify_archive(path)
    return caught.value.problems


# -------------------------------------------------------------------------------------------- build
def seeded_model_note(onnx_file: Path) -> str:
    import onnx

    from squeezenet_onnx import TEST_ONLY_KEY

    [note] = [p.value for p in onnx.load(str(onnx_file)).metadata_props if p.key == TEST_ONLY_KEY]
    return note


def test_a_test_only_model_is_described_as_one_and_a_zoo_file_is_not(built, onnx_model, tmp_path):
    """The seeded model marks itself TEST-ONLY: the manifest and a published card say so; an ONNX file
    without the mark keeps the zoo's description (figures given as the zoo's)."""
    import onnx

    from squeezenet_mar.build import DESCRIPTION, TEST_ONLY_DESCRIPTION
    from squeezenet_mar.zoo import publish_archive

    assert built.manifest["description"] == TEST_ONLY_DESCRIPTION and built.manifest["test_only"]
    card = publish_archive(built.archive, tmp_path / "zoo").card_path.read_text()
    assert "**TEST-ONLY archive**" in card
    unmarked = onnx.load(str(onnx_model))
    del unmarked.metadata_props[:]
    unmarked.producer_name = "a trained model's exporter"
    onnx.save(unmarked, str(tmp_path / "unmarked.onnx"))
    options = BuildOptions(model_file=tmp_path / "unmarked.onnx", output=tmp_path / "u.mar", smoke_test=False)
    result = build_archive(dataclasses.replace(options, progress=False))
    assert result.manifest["description"] == DESCRIPTION and "test_only" not in result.manifest
    assert "the zoo reports" in DESCRIPTION


def test_archive_layout_and_golden_manifest(built, onnx_model):
    with zipfile.ZipFile(built.archive) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == EXPECTED_ENTRIES
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {(i.external_attr >> 16) & 0o777 for i in infos} == {0o644}
        manifest = json.loads(archive.read(MANIFEST))
        assert archive.read("squeezenet1.1.onnx") == onnx_model.read_bytes()
        assert archive.read("synset.txt") == (ROOT / "synset.txt").read_bytes()
        assert archive.read("squeezenet_service.py") == (ROOT / "handler/squeezenet_service.py").read_bytes()
        for name in HANDLER_PACKAGE:
            packed = archive.read(f"squeezenet_handler/{name}")
            assert packed == (ROOT / "handler/squeezenet_handler" / name).read_bytes()
    model = onnx_model.read_bytes()
    golden = (ROOT / "tests/data/manifest_golden.json").read_text()
    golden = golden.replace("{model_md5}", hashlib.md5(model).hexdigest())
    golden = golden.replace("{model_sha256}", hashlib.sha256(model).hexdigest())
    golden = golden.replace("{test_only}", seeded_model_note(onnx_model))  # the seeded model says so itself
    assert manifest == json.loads(golden)


def test_every_file_hash_recorded_and_sidecar_sha256(built):
    files = read_zip(built.archive)
    lines = files[SHA256SUMS].decode().splitlines()
    expected = [f"{hashlib.sha256(files[n]).hexdigest()}  {n}" for n in sorted(files) if n != SHA256SUMS]
    assert lines == expected
    digest = hashlib.sha256(built.archive.read_bytes()).hexdigest()
    assert built.sha256_file.read_text() == f"{digest}  squeezenet_v1.1.mar\n"


def test_signature_in_archive_records_engine_and_model_file(built):
    signature = json.loads(read_zip(built.archive)["signature.json"])
    source = json.loads((ROOT / "signature.json").read_text())
    assert signature["engine"] == {
        "name": "mxnet",
        "model_files": {"mxnet": "squeezenet1.1-symbol.json", "onnxruntime": "squeezenet1.1.onnx"},
    }
    assert {k: v for k, v in signature.items() if k != "engine"} == {
        k: v for k, v in source.items() if k != "engine"
    }


@pytest.mark.parametrize("fmt", ["both", "onnx", "mxnet"])
def test_building_twice_gives_identical_bytes(tmp_path, onnx_model, fmt):
    inputs = [ROOT / "signature.json", ROOT / "synset.txt", onnx_model]
    before = [p.read_bytes() for p in inputs]
    first = build_archive(
        BuildOptions(model_file=onnx_model, output=tmp_path / "a.mar", format=fmt, progress=False)
    )
    second = build_archive(
        BuildOptions(model_file=onnx_model, output=tmp_path / "b.mar", format=fmt, progress=False)
    )
    assert first.archive.read_bytes() == second.archive.read_bytes()
    assert [p.read_bytes() for p in inputs] == before  # the user's files are never rewritten


def test_mxnet_format_ships_a_checkpoint_that_answers_like_the_onnx_file(tmp_path, onnx_model, built):
    result = build_archive(
        BuildOptions(model_file=onnx_model, output=tmp_path / "mx.mar", format="mxnet", progress=False)
    )
    names = list(read_zip(result.archive))
    assert "squeezenet1.1-symbol.json" in names and "squeezenet1.1-0000.params" in names
    assert not any(n.endswith(".onnx") for n in names)
    verify_archive(result.archive)
    photo = images.jpeg(500, 375, 3)
    answers = []
    for archive in (built.archive, result.archive):
        unpacked = tmp_path / archive.stem
        with zipfile.ZipFile(archive) as z:
            z.extractall(unpacked)
        [answer] = InProcessService(unpacked).predict_bytes([photo], topk=1000)
        answers.append({row["class"]: row["probability"] for row in answer.body})
    classes = sorted(answers[0])
    assert np.abs(np.array([answers[0][c] - answers[1][c] for c in classes])).max() <= 1e-5


def test_onnx_format_ships_the_onnx_file_alone(tmp_path, onnx_model):
    result = build_archive(
        BuildOptions(model_file=onnx_model, output=tmp_path / "o.mar", format="onnx", progress=False)
    )
    files = read_zip(result.archive)
    assert not any(name.startswith("squeezenet1.1-") for name in files)
    engine = json.loads(files["signature.json"])["engine"]
    assert engine == {"name": "mxnet", "model_file": "squeezenet1.1.onnx"}


def test_verify_names_a_missing_model_file_of_either_engine(tmp_path, built):
    for missing in ("squeezenet1.1-0000.params", "squeezenet1.1.onnx"):
        broken = rezip(built.archive, tmp_path / f"no-{missing}.mar", {missing: None}, resum=True)
        problems = dict(problems_of(broken))
        named = "squeezenet1.1-symbol.json" if missing.endswith(".params") else missing
        assert "missing" in problems[named], problems


def test_label_count_must_match_the_model(tmp_path, onnx_model):
    synset = tmp_path / "synset.txt"
    synset.write_text("".join((ROOT / "synset.txt").read_text().splitlines(keepends=True)[:999]))
    with pytest.raises(ModelCheckError, match="synset.txt has 999 labels"):
        build_archive(BuildOptions(model_file=onnx_model, synset=synset, output=tmp_path / "x.mar"))
    assert not (tmp_path / "x.mar").exists()


def test_corrupt_or_wrong_model_is_refused_before_packing(tmp_path, onnx_model):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_model.read_bytes()[:100_000])
    with pytest.raises(ModelCheckError, match="broken.onnx: not a valid ONNX model"):
        build_archive(BuildOptions(model_file=broken, output=tmp_path / "x.mar"))
    ten = build_squeezenet11(tmp_path / "ten.onnx", num_classes=10)
    with pytest.raises(ModelCheckError, match="ten.onnx: output .* but synset.txt has 1000 labels"):
        build_archive(BuildOptions(model_file=ten, output=tmp_path / "x.mar"))
    assert not (tmp_path / "x.mar").exists()


# ------------------------------------------------------------------------------------------- verify
def test_verify_accepts_the_built_archive_in_zip_tgz_and_folder_form(built, tmp_path):
    files = read_zip(built.archive)
    tgz = tmp_path / "squeezenet_v1.1.tgz.mar"
    with tarfile.open(tgz, "w:gz") as archive:  # model-archiver --archive-format tgz layout
        for name, data in files.items():
            info = tarfile.TarInfo(f"squeezenet_v1.1/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(built.archive) as archive:
        archive.extractall(folder)
    for form in (built.archive, tgz, folder):
        report = verify_archive(form)
        assert report.ok and report.top5 == []  # reading an archive never runs it
    ran = verify_archive(built.archive, run=True)
    assert [row["class"] for row in ran.top5] == [row["class"] for row in built.smoke_top5]


def test_verify_runs_nothing_from_the_archive_unless_asked_and_then_in_a_child(built, tmp_path):
    """A handler that leaves a mark when imported, with consistent SHA256SUMS: plain verify passes
    without importing it; --run imports it in a child process, never in the verifier's own."""
    mark = tmp_path / "imported-by-pid"
    handler = read_zip(built.archive)["squeezenet_service.py"]
    planted = f"import os, pathlib\npathlib.Path({str(mark)!r}).write_text(str(os.getpid()))\n".encode()
    archive = rezip(
        built.archive, tmp_path / "planted.mar", {"squeezenet_service.py": handler + planted}, resum=True
    )
    assert verify_archive(archive).ok
    assert not mark.exists()
    assert verify_archive(archive, run=True).top5
    assert mark.read_text() != str(os.getpid())


def test_one_changed_byte_of_the_model_fails(built, tmp_path):
    model = bytearray(read_zip(built.archive)["squeezenet1.1.onnx"])
    model[len(model) // 2] ^= 0x01
    tampered = rezip(built.archive, tmp_path / "t.mar", {"squeezenet1.1.onnx": bytes(model)})
    [(name, problem)] = problems_of(tampered)
    assert name == "squeezenet1.1.onnx" and "sha256" in problem


def test_a_flipped_byte_in_the_file_itself_fails(built, tmp_path):
    data = bytearray(built.archive.read_bytes())
    with zipfile.ZipFile(built.archive) as archive:
        entry = archive.getinfo("squeezenet1.1.onnx")
    data[entry.header_offset + 100 + entry.compress_size // 2] ^= 0xFF  # inside the compressed model
    tampered = tmp_path / "flipped.mar"
    tampered.write_bytes(bytes(data))
    [(name, problem)] = problems_of(tampered)
    assert name == "squeezenet1.1.onnx"
    assert problem.startswith("refused entry: corrupt entry (") and "listed" not in problem, problem


@pytest.mark.parametrize(
    ("change", "resum", "name", "words"),
    [
        ({"../evil.py": b"print('pwned')"}, True, "../evil.py", "escapes"),
        ({"/etc/cron.d/evil": b"* * * * * root sh"}, True, "/etc/cron.d/evil", "absolute"),
        ({SHA256SUMS: None}, False, SHA256SUMS, "missing"),
        ({"extra.bin": b"\x00"}, False, "extra.bin", "not listed"),
        ({"synset.txt": b"n0 only one label\n"}, True, "synset.txt", "1 labels"),
        ({"squeezenet1.1.onnx": None}, True, "squeezenet1.1.onnx", "missing"),
    ],
)
def test_unsafe_or_inconsistent_archives_fail_naming_the_file(built, tmp_path, change, resum, name, words):
    problems = problems_of(rezip(built.archive, tmp_path / "bad.mar", change, resum=resum))
    assert any(file == name and words in problem for file, problem in problems), problems


def test_what_is_unpacked_is_what_was_checked(built, tmp_path):
    """``verify --run`` and ``evaluate`` unpack the files they verified: an archive replaced meanwhile,
    by another consistent archive or by a bomb, is refused while unpacking, its files never used."""
    import hostile
    from squeezenet_mar.layout import extract_checked, read_archive

    archive = tmp_path / "swapped.mar"
    archive.write_bytes(built.archive.read_bytes())
    contents = read_archive(archive)
    rezip(built.archive, archive, {"squeezenet_service.py": b"raise SystemExit('swapped')\n"}, resum=True)
    with pytest.raises(ValueError, match="changed since the archive was checked"):
        extract_checked(contents, tmp_path / "first")
    hostile.zip_with_many_entries(archive, 400_000)
    with pytest.raises(ValueError, match="changed since the archive was checked"):
        extract_checked(contents, tmp_path / "second")

    tgz = tmp_path / "swapped.tgz.mar"
    with tarfile.open(tgz, "w:gz") as packed:
        for name, data in read_zip(built.archive).items():
            info = tarfile.TarInfo(f"squeezenet_v1.1/{name}")
            info.size = len(data)
            packed.addfile(info, io.BytesIO(data))
    contents = read_archive(tgz)
    assert contents.prefix == "squeezenet_v1.1/" and not contents.refused
    hostile.bzip2_tar_of_zeros(tgz, [("squeezenet_v1.1/MAR-INF/MANIFEST.json", 40 << 30)])
    with pytest.raises(ValueError, match="changed since the archive was checked: .* is larger than"):
        extract_checked(contents, tmp_path / "third")


@pytest.mark.parametrize(
    "handler", ["../outside:handle", "/tmp/evil:handle", "os.path:join", "missing_mod:handle"]
)
def test_manifest_handler_must_be_a_module_inside_the_archive(built, tmp_path, handler):
    manifest = json.loads(read_zip(built.archive)[MANIFEST])
    manifest["model"]["handler"] = handler
    bad = rezip(built.archive, tmp_path / "h.mar", {MANIFEST: json.dumps(manifest).encode()}, resum=True)
    problems = problems_of(bad)
    assert any("handler" in problem for _, problem in problems), problems


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_verify_says_what_it_checked_and_exit_codes(built, tmp_path, capsys):
    assert main(["verify", str(built.archive)]) == 0
    lines = capsys.readouterr().out.splitlines()
    files, handler = len(EXPECTED_ENTRIES), "squeezenet_service:handle"
    assert lines[0] == f"OK {built.archive}: squeezenet_v1.1 1.1, {files} files, handler {handler}"
    assert "every file matches MAR-INF/SHA256SUMS" in lines[1] and "not who made it" in lines[2]
    assert len(lines) == 3
    assert main(["verify", "--run", str(built.archive)]) == 0
    out = capsys.readouterr().out
    assert "child process" in out and built.smoke_top5[0]["class"] in out
    model = bytearray(read_zip(built.archive)["squeezenet1.1.onnx"])
    model[-10] ^= 0x01
    tampered = rezip(built.archive, tmp_path / "t.mar", {"squeezenet1.1.onnx": bytes(model)})
    assert main(["verify", str(tampered)]) == 5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL squeezenet1.1.onnx: sha256 is ")
    assert lines[-1] == f"{tampered}: 1 problem(s)"


def test_cli_build_writes_the_default_output(onnx_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--model-file", str(onnx_model), "-q"]) == 0
    assert (tmp_path / "model_store/squeezenet_v1.1.mar").is_file()
    assert (tmp_path / "model_store/squeezenet_v1.1.mar.sha256").is_file()
    assert "smoke test" in capsys.readouterr().out


# -------------------------------------------------------------------------------------- downloading
class ZooHandler(BaseHTTPRequestHandler):
    """Answers like the model zoo, or fails the way networks fail."""

    model = b""
    mode = "ok"
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        if self.mode == "404":
            self.send_error(404)
            return
        if self.path.endswith("-md5.txt"):
            body = f"{hashlib.md5(self.model).hexdigest()}  squeezenet1.1.onnx\n".encode()
        elif self.mode == "wrong_body":
            body = b"<html>captive portal</html>" + self.model[:1000]
        else:
            body = self.model
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "drop" and not self.path.endswith("-md5.txt"):
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def zoo_server(model: bytes, mode: str) -> Iterator[str]:
    handler = type("H", (ZooHandler,), {"model": model, "mode": mode, "hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/squeezenet/squeezenet1.1/squeezenet1.1.onnx"
    finally:
        server.shutdown()
        server.server_close()


def test_download_checks_the_published_md5_and_caches(onnx_model, tmp_path):
    model = onnx_model.read_bytes()
    with zoo_server(model, "ok") as url:
        path = fetch_model(url, tmp_path / "cache", progress=False)
        assert path.read_bytes() == model
        again = fetch_model(url, tmp_path / "cache", progress=False)
    assert again == path
    assert not list((tmp_path / "cache").glob("*.part"))


@pytest.mark.parametrize(
    ("mode", "words"),
    [("404", "404"), ("wrong_body", "checksum mismatch"), ("drop", "")],
)
def test_download_failures_stop_with_a_clear_message(onnx_model, tmp_path, mode, words):
    with zoo_server(onnx_model.read_bytes(), mode) as url, pytest.raises(DownloadError) as caught:
        fetch_model(url, tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert words in message and "--model-file" in message and url in message
    assert not (tmp_path / "cache" / "squeezenet1.1.onnx").exists()


def test_an_unreachable_zoo_fails_the_build_and_names_the_fix(tmp_path, capsys):
    url = "http://127.0.0.1:9/squeezenet1.1.onnx"  # discard port: nothing listens
    assert (
        main(["build", "--url", url, "--cache-dir", str(tmp_path), "--output", str(tmp_path / "x.mar")]) == 3
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot download {url}") and "--model-file" in err
    assert not (tmp_path / "x.mar").exists()


def test_given_sha256_is_enforced(onnx_model, tmp_path):
    with zoo_server(onnx_model.read_bytes(), "ok") as url, pytest.raises(DownloadError, match="sha256 is"):
        fetch_model(url, tmp_path / "cache", sha256="0" * 64, progress=False)


PACKED_HANDLER_ALONE = """
import json, sys
root, image = sys.argv[1], sys.argv[2]
# As on an MMS that never saw this repository: no editable install to fall back on, the model folder
# first on the path (MMS puts it on the worker's PYTHONPATH).
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path.insert(0, root)
import mms
from mms.context import Context, RequestProcessor
import squeezenet_service
context = Context("squeezenet", root, None, 1, None, mms.__version__)
squeezenet_service.handle(None, context)
context.request_processor = [RequestProcessor({})]
answer = squeezenet_service.handle([{"body": bytearray(open(image, "rb").read())}], context)
modules = {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.startswith("squeezenet")}
print(json.dumps({"answer": answer, "modules": modules}))
"""


def test_the_packed_handler_imports_nothing_but_what_the_archive_holds(built, tmp_path):
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(built.archive) as archive:
        archive.extractall(folder)
    image = tmp_path / "photo.jpg"
    image.write_bytes(images.jpeg(320, 240, 90))
    done = subprocess.run(
        [sys.executable, "-c", PACKED_HANDLER_ALONE, str(folder), str(image)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    [text] = result["answer"]  # the answer as the server sends it: JSON text
    answer = json.loads(text)
    assert len(answer) == 5 and {"class", "probability"} == set(answer[0])
    lazy = {"signing.py"}  # imported only when a trusted key asks for a signature check
    modules = [f"squeezenet_handler.{n[:-3]}" for n in HANDLER_PACKAGE[1:] if n not in lazy]
    assert sorted(result["modules"]) == sorted(["squeezenet_service", "squeezenet_handler", *modules])
    outside = {
        n: f for n, f in result["modules"].items() if not Path(f).resolve().is_relative_to(folder.resolve())
    }
    assert outside == {}
