"""Hostile archives (issue 11), built here from the real built archive: what Python's zipfile and
MMS's Java ZipInputStream would see differently, and bombs. ``verify``, ``publish`` and ``serve``
refuse them all; test_robustness.py shows on a real MMS that the first one is a real attack."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import hostile
import pytest
from squeezenet_mar.errors import PublishError, VerifyError
from squeezenet_mar.layout import read_archive
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
PEAK = (
    "import sys\n"
    "from squeezenet_mar.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
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
