"""The ``.mar`` layout: what model-archiver writes, read and written without surprises.

A model archive is a zip (``.mar``), a gzipped tar whose entries sit under one ``<model>/`` folder
(``model-archiver --archive-format tgz``) or a plain folder (``no-archive``). Each holds the model
files at its root and ``MAR-INF/MANIFEST.json``. This project adds ``MAR-INF/SHA256SUMS``: one
``<sha256>  <name>`` line per other file, in ``sha256sum`` format.

Reading never extracts and never runs anything. Every entry is hashed while it streams through, so
memory stays small whatever the archive declares; only the few small files the tools read
(:data:`KEPT`) are kept as bytes. Limits: :data:`MAX_ENTRY_BYTES` an entry, :data:`MAX_ARCHIVE_BYTES`
in all, :data:`MAX_ENTRIES` entries, checked from the zip's directory before anything is inflated.

A zip has two readers that must see the same files. Python's ``zipfile`` (and this module) reads
the central directory at the end; MMS 1.1.11 unpacks with Java's ``ZipInputStream``, which walks
the local headers from the first byte. An archive whose two views could differ is refused
(:func:`_zip_layout_problems`): data before the first entry or between entries, a local header that
disagrees with its directory record, duplicate names, data descriptors, encryption, zip64,
compression other than stored/deflate, a deflate stream that ends before or after its recorded size.

Writing is deterministic: sorted entries, fixed timestamp, fixed permissions, fixed compression.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

MANIFEST = "MAR-INF/MANIFEST.json"
SHA256SUMS = "MAR-INF/SHA256SUMS"
SIGNATURE_BUNDLE = "MAR-INF/model.sig"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
MAX_ENTRY_BYTES = 512 * 1024 * 1024  # one entry, uncompressed
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024  # all entries together, uncompressed
MAX_ENTRIES = 10_000
KEPT_BYTES = 16 * 1024 * 1024  # a kept file larger than this is only hashed
KEPT = frozenset({MANIFEST, SHA256SUMS, SIGNATURE_BUNDLE, "signature.json", "synset.txt"})
ARCHIVE = "(archive)"  # the name problems of the archive as a whole are reported under
_BLOCK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # signature ... name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"
_ENCRYPTED, _DATA_DESCRIPTOR = 0x1, 0x8


@dataclass(frozen=True)
class Entry:
    name: str  # normalised: ``a/b``, never ``./a/b`` or ``a//b``
    size: int
    sha256: str


@dataclass
class ArchiveContents:
    """Every regular file's size and SHA-256, the bytes of the small files in ``keep``, and the
    entries (or the archive as a whole, under :data:`ARCHIVE`) refused and why."""

    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def read(self, name: str) -> bytes:
        """A kept file's bytes; KeyError when the archive has no such file or it was not kept."""
        return self.kept[name]

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.read(MANIFEST).decode("utf-8"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blocks(handle: IO[bytes]) -> Iterator[bytes]:
    while block := handle.read(_BLOCK):
        yield block


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in _blocks(handle):
            digest.update(block)
    return digest.hexdigest()


def unsafe_reason(name: str) -> str | None:
    """Why an entry name must not be extracted, or None when it stays inside the archive folder."""
    if not name or "\x00" in name:
        return "empty name or NUL byte in the name"
    if not name.isascii() or not name.isprintable():
        return "name with non-ASCII or control characters (readers decode them differently)"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "path escapes the archive folder ('..')"
    return None


def _normalise(name: str) -> str:
    """``a//b``, ``./a`` and ``a\\b`` all name ``a/b`` (only called on names already judged safe)."""
    return posixpath.normpath(name.replace("\\", "/"))


def read_archive(path: Path, keep: frozenset[str] = KEPT) -> ArchiveContents:
    """Read a zip ``.mar``, a tgz ``.mar`` or a folder: hashes, kept files, refusals."""
    if path.is_dir():
        return _read_folder(path, keep)
    if zipfile.is_zipfile(path):
        return _read_zip(path, keep)
    if tarfile.is_tarfile(path):
        return _read_tar(path, keep)
    raise ValueError(f"{path.name}: not a zip, tgz or folder model archive")


def _over_limits(sizes: list[tuple[str, int]]) -> list[tuple[str, str]]:
    """Entry count, entry sizes and the total, from what the archive declares, before reading."""
    if len(sizes) > MAX_ENTRIES:
        return [(ARCHIVE, f"{len(sizes)} entries; the limit is {MAX_ENTRIES}")]
    problems = [
        (name, f"entry of {size} bytes is larger than {MAX_ENTRY_BYTES}")
        for name, size in sizes
        if size > MAX_ENTRY_BYTES
    ]
    total = sum(size for _, size in sizes)
    if total > MAX_ARCHIVE_BYTES:
        problems.append((ARCHIVE, f"{total} bytes uncompressed in all; the limit is {MAX_ARCHIVE_BYTES}"))
    return problems


def _take(contents: ArchiveContents, name: str, chunks: Iterator[bytes], keep: frozenset[str]) -> None:
    """Hash one entry's data as it streams by; keep its bytes when ``keep`` names it and it is small."""
    digest, size, held = hashlib.sha256(), 0, io.BytesIO()
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if name in keep and size <= KEPT_BYTES:
            held.write(chunk)
    if name in contents.entries:
        contents.refused.append((name, "duplicate entry: the archive holds two files of this name"))
        return
    contents.entries[name] = Entry(name, size, digest.hexdigest())
    if name in keep and size <= KEPT_BYTES:
        contents.kept[name] = held.getvalue()


# ------------------------------------------------------------------------------------------------ zip
class _CorruptEntry(Exception):
    pass


def _zip_layout_problems(
    handle: IO[bytes], infos: list[zipfile.ZipInfo], directory: int
) -> list[tuple[str, str]]:
    """What ``ZipInputStream`` (walking local headers from byte 0) would see differently from the
    central directory; empty when both see the same entries, in the same order, with the same bytes."""
    names: dict[str, int] = {}
    for info in infos:
        normalised = _normalise(info.filename) if unsafe_reason(info.filename) is None else info.filename
        names[normalised] = names.get(normalised, 0) + 1
    duplicates = sorted(name for name, count in names.items() if count > 1)
    if duplicates:
        return [(name, "duplicate entry: readers disagree on which copy is the file") for name in duplicates]
    position = 0
    for info in infos:
        name = info.filename
        if info.header_offset != position:
            where = "before the first entry" if position == 0 else "between this entry and the previous one"
            return [
                (name, f"{abs(info.header_offset - position)} bytes {where}: only MMS's reader sees them")
            ]
        handle.seek(position)
        header = handle.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size:
            return [(name, "local header cut short")]
        signature, _, flags, method, _, _, crc, packed, size, name_length, extra_length = (
            _LOCAL_HEADER.unpack(header)
        )
        local_name = handle.read(name_length)
        if signature != _LOCAL_SIGNATURE:
            return [(name, f"no local header at byte {position}")]
        if local_name != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"):
            return [(name, f"its local header names another file ({local_name[:80]!r})")]
        if (crc, packed, size, method) != (info.CRC, info.compress_size, info.file_size, info.compress_type):
            return [(name, "local header and central directory disagree on its CRC, size or compression")]
        if flags & (_ENCRYPTED | _DATA_DESCRIPTOR) or 0xFFFFFFFF in (packed, size):
            return [(name, "encrypted, data-descriptor or zip64 entry: not accepted in a model archive")]
        if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            return [(name, f"compression method {method}: only stored and deflate are accepted")]
        position += _LOCAL_HEADER.size + name_length + extra_length + packed
    if position != directory:
        handle.seek(position)
        hidden = handle.read(4) == _LOCAL_SIGNATURE
        what = ": an entry the directory does not list, which MMS would unpack" if hidden else ""
        gap = abs(directory - position)
        return [(ARCHIVE, f"{gap} bytes between the last entry and the central directory{what}")]
    return []


def _zip_chunks(handle: IO[bytes], info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The entry's data, inflated from exactly its recorded compressed bytes in blocks of at most
    1 MiB (a megabyte of deflated zeros inflates to a gigabyte), CRC and size checked."""
    handle.seek(info.header_offset + 26)
    name_length, extra_length = struct.unpack("<HH", handle.read(4))
    handle.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    left, crc, size = info.compress_size, 0, 0
    while left > 0:
        raw = handle.read(min(_BLOCK, left))
        if not raw:
            raise _CorruptEntry("corrupt entry (truncated): the file ends inside its data")
        left -= len(raw)
        while raw:
            try:
                data = inflater.decompress(raw, _BLOCK) if inflater else raw
            except zlib.error as exc:
                raise _CorruptEntry(f"corrupt entry (deflate): {exc}") from exc
            raw = inflater.unconsumed_tail if inflater else b""
            size += len(data)
            if size > info.file_size:
                raise _CorruptEntry(
                    f"corrupt entry (size): it inflates to more than its recorded {info.file_size} bytes"
                )
            crc = zlib.crc32(data, crc)
            yield data
    if inflater is not None and (not inflater.eof or inflater.unused_data):
        raise _CorruptEntry("corrupt entry (deflate): the stream does not end where its recorded size does")
    if size != info.file_size:
        raise _CorruptEntry(f"corrupt entry (size): {size} bytes, the archive records {info.file_size}")
    if crc != info.CRC:
        raise _CorruptEntry(
            f"corrupt entry (CRC): its data has CRC-32 {crc:08x}, the archive records {info.CRC:08x}"
        )


def _read_zip(path: Path, keep: frozenset[str]) -> ArchiveContents:
    contents = ArchiveContents(path)
    with path.open("rb") as handle, zipfile.ZipFile(handle) as archive:
        infos = archive.infolist()
        contents.refused = _zip_layout_problems(handle, infos, archive.start_dir)
        contents.refused += _over_limits([(info.filename, info.file_size) for info in infos])
        if contents.refused:
            return contents  # nothing is inflated from an archive whose layout or size is refused
        for info in infos:
            if info.is_dir():
                continue
            reason = unsafe_reason(info.filename)
            if reason is None and (info.external_attr >> 16) & 0o170000 == 0o120000:
                reason = "symbolic link"
            if reason:
                contents.refused.append((info.filename, reason))
                continue
            try:
                _take(contents, _normalise(info.filename), _zip_chunks(handle, info), keep)
            except _CorruptEntry as exc:
                contents.refused.append((info.filename, str(exc)))
    return contents


# ------------------------------------------------------------------------------------ tar and folders
def _tar_prefix(members: list[tarfile.TarInfo]) -> str:
    """model-archiver's tgz puts everything under ``<model_name>/``; that one folder is stripped."""
    roots = {m.name.replace("\\", "/").split("/")[0] for m in members if m.name}
    return f"{roots.pop()}/" if len(roots) == 1 and any("/" in m.name for m in members) else ""


def _read_tar(path: Path, keep: frozenset[str]) -> ArchiveContents:
    contents = ArchiveContents(path)
    with tarfile.open(path) as archive:
        members = archive.getmembers()
        contents.refused = _over_limits([(m.name, m.size) for m in members if m.isfile()])
        if contents.refused:
            return contents
        prefix = _tar_prefix(members)
        for member in members:
            if member.isdir():
                continue
            reason = unsafe_reason(member.name)
            if reason is None and not member.isfile():
                reason = "not a regular file (link or device)"
            extracted = archive.extractfile(member) if reason is None else None
            if extracted is None:
                contents.refused.append((member.name, reason or "unreadable entry"))
                continue
            name = member.name[len(prefix) :] if member.name.startswith(prefix) else member.name
            _take(contents, _normalise(name), _blocks(extracted), keep)
    return contents


def _folder_files(path: Path) -> Iterator[tuple[str, Path]]:
    """Every file, ``__pycache__`` included: Python would run a planted ``.pyc`` in place of its source."""
    for item in sorted(path.rglob("*")):
        if item.is_file():
            yield item.relative_to(path).as_posix(), item


def _read_folder(path: Path, keep: frozenset[str]) -> ArchiveContents:
    contents = ArchiveContents(path)
    root = path.resolve()
    files = list(_folder_files(path))
    contents.refused = [
        (name, "symbolic link pointing outside the archive folder")
        for name, item in files
        if item.is_symlink() and not item.resolve().is_relative_to(root)
    ]
    contents.refused += _over_limits([(name, item.stat().st_size) for name, item in files])
    if contents.refused:
        return contents
    for name, item in files:
        with item.open("rb") as handle:
            _take(contents, name, _blocks(handle), keep)
    return contents


# ----------------------------------------------------------------------------------------- extracting
def _entry_streams(contents: ArchiveContents) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, chunks) of every accepted entry, read from the archive again."""
    path = contents.path
    if path.is_dir():
        for name, item in _folder_files(path):
            with item.open("rb") as handle:
                yield name, _blocks(handle)
    elif zipfile.is_zipfile(path):
        with path.open("rb") as handle, zipfile.ZipFile(handle) as archive:
            for info in archive.infolist():
                if not info.is_dir() and unsafe_reason(info.filename) is None:
                    yield _normalise(info.filename), _zip_chunks(handle, info)
    else:
        with tarfile.open(path) as archive:
            members = archive.getmembers()
            prefix = _tar_prefix(members)
            for member in members:
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None and unsafe_reason(member.name) is None:
                    name = member.name[len(prefix) :] if member.name.startswith(prefix) else member.name
                    yield _normalise(name), _blocks(extracted)


def extract_checked(contents: ArchiveContents, target: Path) -> None:
    """Write every entry ``contents`` accepted into ``target``, streaming, each checked against the
    SHA-256 it was read with (so what lands on disk is what was checked, even if the archive file
    changed since). Only call it on contents with nothing refused."""
    if contents.refused:
        raise ValueError(f"{contents.path.name}: refusing to extract an archive with refused entries")
    written = set()
    for name, chunks in _entry_streams(contents):
        expected = contents.entries.get(name)
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with destination.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if expected is None or digest.hexdigest() != expected.sha256:
            raise ValueError(f"{name}: changed since the archive was checked")
        written.add(name)
    if written != set(contents.entries):
        raise ValueError(f"{contents.path.name}: entries changed since the archive was checked")


@contextmanager
def unpacked(contents: ArchiveContents, prefix: str) -> Iterator[Path]:
    """The archive's checked files in a temporary folder, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        extract_checked(contents, Path(tmp))
        yield Path(tmp)


# -------------------------------------------------------------------------------------------- writing
def sha256sums(files: dict[str, bytes]) -> bytes:
    """``sha256sum`` lines for every file but the sums themselves, sorted by name."""
    return sha256sums_of({name: sha256_hex(data) for name, data in files.items()})


def sha256sums_of(digests: dict[str, str]) -> bytes:
    skipped = {SHA256SUMS, SIGNATURE_BUNDLE}
    lines = [f"{digest}  {name}\n" for name, digest in sorted(digests.items()) if name not in skipped]
    return "".join(lines).encode("utf-8")


def parse_sha256sums(text: bytes) -> dict[str, str]:
    sums: dict[str, str] = {}
    for number, line in enumerate(text.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"line {number} is not '<sha256>  <name>': {line!r}")
        sums[name] = digest
    return sums


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_zip(path: Path, files: dict[str, bytes]) -> None:
    """A byte-for-byte reproducible zip: sorted names, 1980-01-01 timestamps, mode 0644, deflate-6."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so that external_attr means st_mode
            info.external_attr = (0o100644 & 0xFFFF) << 16
            archive.writestr(info, files[name], compresslevel=6)
    path.write_bytes(buffer.getvalue())
