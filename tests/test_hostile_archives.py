"""Hostile archives (issues 11 and 20), built here from the real built archive: what Python's zipfile
and MMS's Java ZipInputStream would see differently, entry names MMS unpacks elsewhere than the
signature and the checksums describe, and bombs (zip and tar) whose cost is bounded before anything
is inflated. ``verify``, ``publish``, ``sagemaker``, the container's check and ``serve`` refuse them
all; test_robustness.py shows on a real MMS that the first one is a real attack."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import hostile
from keys import KeyPair, make_key
from squeezenet_mar.build import sign_archive
from squeezenet_mar.container import check_archive
from squeezenet_mar.errors import PublishError, VerifyError
from squeezenet_mar.layout import MAX_ARCHIVE_BYTES, MAX_ENTRIES, read_archive
from squeezenet_mar.sagemaker import write_model_tar
from squeezenet_mar.signatures import SigningKey, Trust
from squeezenet_mar.verify import verify_archive
from squeezenet_mar.zoo import publish_archive

HANDLER = "squeezenet_service.py"
# The genuine handler with its load-time hash check switched off, answering "pwned" to everything.
TAIL = b"""
import squeezenet_handler.service as _genuine

_genuine.check_archive_hashes = lambda model_dir: 0
_genuine_handle = handle


def handle(data, context):
    answers = _genuine_handle(data, context)
    return answers if data is None else ["pwned"] * len(data)
"""


def evil_handler(archive: Path) -> bytes:
    with zipfile.ZipFile(archive) as opened:
        return opened.read(HANDLER) + TAIL


def zip_files(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as opened:
        return {info.filename: opened.read(info) for info in opened.infolist()}


# name -> (builder of the hostile bytes from the genuine archive, a word the refusal contains)
ATTACKS = {
    "hidden_local_entry": (
        lambda genuine: hostile.zip_with_hidden_entry(genuine.read_bytes(), HANDLER, evil_handler(genuine)),
        "between the last entry and the central directory",
    ),
    "duplicate_with_reversed_directory": (
        lambda genuine: hostile.zip_with_reversed_duplicate(
            zip_files(genuine), HANDLER, evil_handler(genuine)
        ),
        "duplicate entry",
    ),
    "entry_inside_deflate_padding": (
        lambda genuine: hostile.zip_with_entry_hidden_in_padding(
            genuine.read_bytes(), HANDLER, evil_handler(genuine)
        ),
        "the stream does not end where its recorded size does",
    ),
    "bytes_before_the_first_entry": (
        lambda genuine: b"#!/bin/sh\nexec something\n" + genuine.read_bytes(),
        "before the first entry",
    ),
}


@pytest.fixture(scope="module")
def attacks(built, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("attacks")
    written = {}
    for name, (build, _) in ATTACKS.items():
        written[name] = folder / f"{name}.mar"
        written[name].write_bytes(build(built.archive))
    return written


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_zipfile_alone_sees_a_consistent_archive(attacks, built, name):
    """Why the layout check is needed: by the central directory, every hash still matches."""
    with zipfile.ZipFile(attacks[name]) as opened:
        listed = {info.filename for info in opened.infolist()}
        assert opened.read(HANDLER) == zip_files(built.archive)[HANDLER]
    assert listed >= set(zip_files(built.archive))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_verify_refuses_an_archive_that_readers_see_differently(attacks, name):
    with pytest.raises(VerifyError) as refused:
        verify_archive(attacks[name])
    assert any(ATTACKS[name][1] in problem for _, problem in refused.value.problems), refused.value.problems


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_publish_refuses_what_verify_refuses(attacks, name, tmp_path):
    with pytest.raises(PublishError, match="fails verification"):
        publish_archive(attacks[name], tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()


# Runs the CLI, then reports the process's peak resident memory (VmHWM belongs to the process's own
# address space: unlike ru_maxrss it does not include the parent's memory at fork time).
# The CPU seconds it took are printed too, for the record (never asserted).
PEAK = (
    "import sys, time\n"
    "from squeezenet_mar.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
    "print('cpu', round(time.process_time(), 2), 's')\n"
    "print('peak', int(peak.split()[1]) // 1024, 'MB')\n"
    "sys.exit(code)\n"
)


def peak_memory_of(arguments: list[str]) -> tuple[int, int, str]:
    """Exit code, peak resident memory in MB and output of ``squeezenet-mar ARGUMENTS``."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *arguments], capture_output=True, text=True, timeout=120
    )
    peak = int(done.stdout.rsplit("peak ", 1)[1].split()[0])
    return done.returncode, peak, done.stdout + done.stderr


def test_a_zip_bomb_is_refused_from_its_directory_without_inflating(tmp_path):
    """4 x 300 MB of zeros in 5.5 MB (verify used 2.6 GB on a 4 x 500 MB bomb before the total cap)."""
    bomb = hostile.zip_bomb(tmp_path / "bomb.mar")
    code, peak_mb, output = peak_memory_of(["verify", str(bomb)])
    assert code == 5 and "uncompressed in all; the limit is" in output, output
    assert peak_mb < 200, peak_mb
    assert read_archive(bomb).entries == {}


def test_a_large_entry_is_hashed_streaming(tmp_path):
    """One 300 MB entry, under every cap: hashed in 1 MiB blocks, never held whole."""
    big = hostile.zip_bomb(tmp_path / "big.mar", entries=1)
    code, peak_mb, output = peak_memory_of(["verify", str(big)])
    assert code == 5 and "MAR-INF/MANIFEST.json: missing" in output, output
    assert peak_mb < 200, peak_mb
    assert read_archive(big).entries["zeros0.bin"].size == 300 * 1024 * 1024


# ------------------------------------------------------------------------- names MMS unpacks elsewhere
@pytest.fixture(scope="module")
def publisher(tmp_path_factory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("keys"), "publisher")


@pytest.fixture(scope="module")
def signed(built, publisher, tmp_path_factory) -> Path:
    """The built archive signed by ``publisher``: what a zoo requiring signatures accepts."""
    archive = tmp_path_factory.mktemp("signed") / "squeezenet_v1.1.mar"
    shutil.copyfile(built.archive, archive)
    sign_archive(archive, SigningKey(publisher.private))
    return archive


TRUSTED_HANDLER_MODULE = "squeezenet_handler/trust.py"
# name -> (how the signed archive is rewritten, the entry refused, what the refusal says). The files and
# their bytes stay those signed: the signature alone would accept every one of them.
NAME_ATTACKS = {
    # MMS's FileUtils.forceMkdir creates <tmp>/x beside the folder it unpacks into.
    "directory_outside_the_folder": ({"directories": ("../x/",)}, "../x/", "path escapes the archive folder"),
    # The container's readiness file /tmp/squeezenet/ready made a directory: the container died
    # with IsADirectoryError when it came to write it.
    "directory_over_the_ready_file": (
        {"directories": ("../../ready/",)},
        "../../ready/",
        "path escapes the archive folder",
    ),
    # Java on Linux unpacks a file literally named so at the root; squeezenet_handler/trust.py, the
    # load-time signature check, is then missing from the package MMS imports.
    "backslash_in_a_file_name": (
        {"rename": {TRUSTED_HANDLER_MODULE: TRUSTED_HANDLER_MODULE.replace("/", "\\")}},
        TRUSTED_HANDLER_MODULE.replace("/", "\\"),
        "backslash in the name",
    ),
    "backslash_in_a_directory_name": (
        {"directories": ("squeezenet_handler\\x/",)},
        "squeezenet_handler\\x/",
        "backslash in the name",
    ),
    "directory_that_holds_no_file": (
        {"directories": ("plugins/",)},
        "plugins/",
        "holds no file of the archive",
    ),
}


@pytest.fixture(scope="module")
def name_attacks(signed, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("name_attacks")
    written = {}
    for name, (change, _, _) in NAME_ATTACKS.items():
        written[name] = folder / f"{name}.mar"
        written[name].write_bytes(hostile.zip_rewritten(signed.read_bytes(), **change))
    return written


def assert_refused(refused: VerifyError, name: str) -> None:
    _, entry, words = NAME_ATTACKS[name]
    assert any(file == entry and words in problem for file, problem in refused.problems), refused.problems


@pytest.mark.parametrize("name", sorted(NAME_ATTACKS))
def test_the_signed_files_are_all_still_there_unchanged(signed, name_attacks, name):
    """Why the signature does not catch these: only what MMS unpacks changes, not the signed bytes."""
    with zipfile.ZipFile(signed) as genuine, zipfile.ZipFile(name_attacks[name]) as attack:
        original = sorted(genuine.read(info) for info in genuine.infolist())
        files = sorted(attack.read(info) for info in attack.infolist() if not info.is_dir())
    assert files == original


@pytest.mark.parametrize("name", sorted(NAME_ATTACKS))
@pytest.mark.parametrize("trusted", [False, True], ids=["no_trust", "trusted_key"])
def test_verify_refuses_names_mms_unpacks_elsewhere(name_attacks, publisher, name, trusted):
    trust = Trust(public_key=publisher.public) if trusted else None
    with pytest.raises(VerifyError) as refused:
        verify_archive(name_attacks[name], trust=trust)
    assert_refused(refused.value, name)


@pytest.mark.parametrize("name", sorted(NAME_ATTACKS))
def test_a_zoo_requiring_signatures_refuses_them(name_attacks, publisher, name, tmp_path):
    trust = Trust(public_key=publisher.public)
    with pytest.raises(PublishError, match="fails verification") as refused:
        publish_archive(name_attacks[name], tmp_path / "zoo", trust=trust, require_signature=True)
    assert NAME_ATTACKS[name][2] in str(refused.value)
    assert not (tmp_path / "zoo").exists()


@pytest.mark.parametrize("name", sorted(NAME_ATTACKS))
def test_sagemaker_refuses_them_and_writes_nothing(name_attacks, publisher, name, tmp_path):
    output = tmp_path / "out" / "model.tar.gz"
    with pytest.raises(VerifyError) as refused:
        write_model_tar(name_attacks[name], output, trust=Trust(public_key=publisher.public))
    assert_refused(refused.value, name)
    assert list(output.parent.iterdir()) == []


@pytest.mark.parametrize("name", sorted(NAME_ATTACKS))
def test_the_container_refuses_them_before_mms_sees_them(name_attacks, publisher, name):
    with pytest.raises(VerifyError) as refused:
        check_archive(name_attacks[name], Trust(public_key=publisher.public))
    assert_refused(refused.value, name)


def test_the_folders_of_the_archives_files_may_be_listed(signed, publisher, tmp_path):
    """Directory entries for the folders MMS creates anyway (model-archiver's zips may carry them)."""
    listed = tmp_path / "with_folders.mar"
    listed.write_bytes(
        hostile.zip_rewritten(signed.read_bytes(), directories=("MAR-INF/", "squeezenet_handler/", "./"))
    )
    report = verify_archive(listed, trust=Trust(public_key=publisher.public))
    assert report.signature is not None and "MAR-INF" not in report.files


def test_a_directory_entry_with_data_is_refused(signed, tmp_path):
    archive = tmp_path / "folder_with_data.mar"
    with zipfile.ZipFile(archive, "w") as out, zipfile.ZipFile(signed) as genuine:
        for info in genuine.infolist():
            out.writestr(info, genuine.read(info))
        out.writestr("squeezenet_handler/", b"#!/bin/sh\n")
    with pytest.raises(VerifyError) as refused:
        verify_archive(archive)
    assert ("squeezenet_handler/", "refused entry: directory entry with data") in refused.value.problems


def test_names_that_differ_only_in_case_are_refused(built, tmp_path):
    """On a case-insensitive file system (macOS, Windows) MMS would unpack one over the other."""
    from squeezenet_mar.layout import SHA256SUMS, sha256sums, write_zip

    files = zip_files(built.archive)
    files["SYNSET.txt"] = b"n00000000 not the labels\n"
    files[SHA256SUMS] = sha256sums({k: v for k, v in files.items() if k != SHA256SUMS})
    write_zip(tmp_path / "case.mar", files)
    with pytest.raises(VerifyError) as refused:
        verify_archive(tmp_path / "case.mar")
    assert refused.value.problems == [("synset.txt", "refused entry: differs from SYNSET.txt only in case")]


def tgz(files: dict[str, bytes], path: Path, folders: tuple[str, ...]) -> Path:
    """A gzipped tar in model-archiver's layout: ``folders`` first, then every file under ``model/``."""
    with tarfile.open(path, "w:gz") as archive:
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"model/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_a_tgz_with_its_folders_verifies_and_one_escaping_is_refused(signed, publisher, tmp_path):
    files = zip_files(signed)
    trust = Trust(public_key=publisher.public)
    good = tgz(files, tmp_path / "good.tgz.mar", ("model", "model/MAR-INF", "model/squeezenet_handler"))
    assert verify_archive(good, trust=trust).signature is not None
    evil = tgz(files, tmp_path / "evil.tgz.mar", ("model", "model/../../ready"))
    with pytest.raises(VerifyError) as refused:
        verify_archive(evil, trust=trust)
    assert (
        "model/../../ready",
        "refused entry: path escapes the archive folder ('..')",
    ) in refused.value.problems


# --------------------------------------------------------------------------- bombs, refused cheaply
GIB = 1 << 30

# name -> (builder, what the refusal says). Each is refused at the first limit, with a bounded cost.
BOMBS = {
    # 40 GiB of zeros in about 50 KB: tarfile.getmembers() decompressed it all (over 60 s of CPU)
    "bzip2_tar_of_40_gib": (
        lambda path: hostile.bzip2_tar_of_zeros(path, [("zeros.bin", 40 * GIB)]),
        f"zeros.bin: entry of {40 * GIB} bytes is larger than",
    ),
    # every member under the entry limit: refused at the third header, after 800 MiB (the bound)
    "bzip2_tar_over_the_total": (
        lambda path: hostile.bzip2_tar_of_zeros(path, [(f"zeros{i}.bin", 400 << 20) for i in range(3)]),
        f"more than {MAX_ARCHIVE_BYTES} bytes uncompressed in all",
    ),
    # a pax header tarfile would read into memory whole
    "bzip2_tar_with_a_1_gib_pax_header": (
        lambda path: hostile.bzip2_tar_of_zeros(path, [("././@PaxHeader", GIB)], kind=tarfile.XHDTYPE),
        "extended header of 1073741824 bytes",
    ),
    # zipfile parsed its whole 36 MB directory (250 MB of ZipInfo) before the count was checked
    "zip_of_400000_entries": (
        lambda path: hostile.zip_with_many_entries(path, 400_000),
        f"400000 entries; the limit is {MAX_ENTRIES}",
    ),
    "zip_directory_longer_than_its_end_record_says": (
        lambda path: hostile.zip_with_many_entries(path, 20_000, declared=100),
        f"more than {MAX_ENTRIES} entries in the central directory",
    ),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_is_refused_at_the_first_limit(name, tmp_path):
    build, words = BOMBS[name]
    bomb = build(tmp_path / f"{name}.mar")
    code, peak_mb, output = peak_memory_of(["verify", str(bomb)])
    assert code == 5 and words in output, output
    assert peak_mb < 200, peak_mb
    contents = read_archive(bomb)
    assert contents.entries == {} and [words in reason for _, reason in contents.refused] == [True]


def test_publish_and_the_container_refuse_the_tar_bomb(tmp_path, publisher):
    bomb = BOMBS["bzip2_tar_of_40_gib"][0](tmp_path / "bomb.mar")
    with pytest.raises(PublishError, match="entry of 42949672960 bytes"):
        publish_archive(bomb, tmp_path / "zoo")
    with pytest.raises(VerifyError, match="entry of 42949672960 bytes"):
        check_archive(bomb, Trust(public_key=publisher.public))
