"""The ``.mar`` layout: what model-archiver writes, read and written without surprises.

A model archive is a zip (``.mar``), a tar (gzip, bzip2, xz or none) whose entries sit under one
``<model>/`` folder (``model-archiver --archive-format tgz``) or a plain folder (``no-archive``). Each
holds the model files at its root and ``MAR-INF/MANIFEST.json``. This project adds
``MAR-INF/SHA256SUMS``: one ``<sha256>  <name>`` line per other file, in ``sha256sum`` format.

Reading never extracts and never runs anything. Every entry is hashed while it streams through, so
memory stays small whatever the archive declares; only the few small files the tools read
(:data:`KEPT`) are kept as bytes. Limits: :data:`MAX_ENTRY_BYTES` an entry, :data:`MAX_ARCHIVE_BYTES`
in all, :data:`MAX_ENTRIES` entries. Each is checked before the bytes it concerns are read, so that a
small hostile file costs little time and memory:

- a zip: its end-of-central-directory record (entry count, directory size) and then the directory's
  records one by one, stopping at the first limit, before ``zipfile`` parses anything
  (:func:`_zip_directory_problems`); then every entry's declared size, before anything is inflated;
- a tar: member by member as the stream goes (never ``getmembers()``, which decompresses the whole
  archive first), each header checked before its data is read (:class:`_TarLimits`), and the
  decompressed bytes read in all, skipped ones included, bounded by :data:`MAX_TAR_STREAM_BYTES`.

Names. MMS 1.1.11 unpacks a zip with Java's ``ZipInputStream`` into ``new File(folder, name)``:
``FileUtils.forceMkdir`` for a directory entry (a name ending in ``/``), the parent folders and the file
for any other. Every entry, directory or file, is therefore name-checked (:func:`unsafe_reason`): an
absolute name or a ``..`` part would land outside the folder, and a backslash is refused outright
because the readers disagree on it (Java on Linux keeps ``a\\b`` as one file name at the root, Python
and Windows see folder ``a``). Only regular files are hashed, listed in ``SHA256SUMS`` and signed, so
nothing else may add to what MMS unpacks: a directory entry is accepted only when it is the folder of
a file of the archive (which MMS creates anyway), a file may not share its name with a folder, and no
two names may differ only in case (a case-insensitive file system would unpack one over the other).

A zip has two readers that must see the same files. Python's ``zipfile`` (and this module) reads
the central directory at the end; MMS 1.1.11 unpacks with Java's ``ZipInputStream``, which walks
the local headers from the first byte. An archive whose two views could differ is refused
(:func:`_zip_layout_problems`): data before the first entry or between entries, a local header that
disagrees with its directory record, duplicate names, data descriptors, encryption, zip64,
compression other than stored/deflate, a deflate stream that ends before or after its recorded size.

Writing is deterministic: sorted entries, fixed timestamp, fixed permissions, fixed compression.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import posixpath
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

MANIFEST = "MAR-INF/MANIFEST.json"
SHA256SUMS = "MAR-INF/SHA256SUMS"
SIGNATURE_BUNDLE = "MAR-INF/model.sig"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
MAX_ENTRY_BYTES = 512 * 1024 * 1024  # one entry, uncompressed
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024  # all entries together, uncompressed
MAX_ENTRIES = 10_000  # entries of any kind: files, directories, links
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024  # a zip's central directory (about 100 bytes a record)
MAX_EXTENDED_HEADER_BYTES = 64 * 1024  # a tar's pax or GNU long-name header (a path, a few fields)
MAX_HEADERS_PER_MEMBER = 8  # a tar member's header blocks, extended headers included
# Decompressed bytes a tar walk may read, skipped data included: every entry's data plus headers and
# padding (at most 2 KiB an entry in practice).
MAX_TAR_STREAM_BYTES = MAX_ARCHIVE_BYTES + 64 * 1024 * 1024
KEPT_BYTES = 16 * 1024 * 1024  # a kept file larger than this is only hashed
KEPT = frozenset({MANIFEST, SHA256SUMS, SIGNATURE_BUNDLE, "signature.json", "synset.txt"})
ARCHIVE = "(archive)"  # the name problems of the archive as a whole are reported under
_BLOCK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # signature ... name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"
_CENTRAL_RECORD = struct.Struct("<4s24xHHH12x")  # signature; name, extra, comment lengths at 28
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_END_RECORD = struct.Struct("<4sHHHHIIH")  # end of central directory: ... entries, size, offset
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_END = struct.Struct("<4sQHHIIQQQQ")  # ... entries on this disk, entries, size, offset
_ENCRYPTED, _DATA_DESCRIPTOR = 0x1, 0x8
_EXTENDED_HEADERS = {
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
}
# What a damaged or truncated compressed tar raises, from the decompressors or from tarfile itself.
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error)


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
    prefix: str = ""  # a tar's one top folder (``<model>/``), stripped from every name

    def read(self, name: str) -> bytes:
        """A kept file's bytes; KeyError when the archive has no such file or it was not kept."""
        return self.kept[name]

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.read(MANIFEST).decode("utf-8"))


class _Refused(Exception):
    """The archive as a whole is refused (a limit, a corrupt stream): nothing more is read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blocks(handle: IO[bytes]) -> Iterator[bytes]:
    while block := handle.read(_BLOCK):
        yield block


def content_digest(entries: dict[str, Entry]) -> str:
    """SHA-256 over every file's name and SHA-256 but the signature bundle's: the archive's content.
    Signing an archive leaves it unchanged (it only adds the bundle); any other change alters it. An
    evaluation records it, so that it can be published with the archive it measured, signed or not."""
    lines = "".join(
        f"{e.sha256}  {name}\n" for name, e in sorted(entries.items()) if name != SIGNATURE_BUNDLE
    )
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in _blocks(handle):
            digest.update(block)
    return digest.hexdigest()


def unsafe_reason(name: str) -> str | None:
    """Why an entry name (a file's or a directory's) must not be unpacked, or None when MMS and every
    other reader put it at the same place inside the archive folder."""
    if not name or "\x00" in name:
        return "empty name or NUL byte in the name"
    if not name.isascii() or not name.isprintable():
        return "name with non-ASCII or control characters (readers decode them differently)"
    if "\\" in name:
        return (
            "backslash in the name: MMS (Java on Linux) unpacks it as one file name at the archive's "
            "root, Python and Windows as a folder separator"
        )
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.split("/"):
        return "path escapes the archive folder ('..')"
    return None


def _normalise(name: str) -> str:
    """``a//b``, ``./a`` and ``a/`` all name ``a/b``, ``a`` (only called on names already judged
    safe, which Java's ``File`` resolves to the same place)."""
    return posixpath.normpath(name)


def _folders_of(name: str) -> Iterator[str]:
    """The folders ``a/b/c`` lies in: ``a``, ``a/b``."""
    parts = name.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


def _folder_problems(files: Iterable[str], directories: dict[str, str]) -> list[tuple[str, str]]:
    """Directory entries (normalised name -> name in the archive) that are not the folder of a file,
    files that share their name with a folder (MMS cannot create both), and names that differ only in
    case (a case-insensitive file system unpacks one over the other)."""
    files = set(files)
    folders = {folder for name in files for folder in _folders_of(name)}
    problems = [
        (
            raw,
            "directory entry that holds no file of the archive (only the folders of its files may be listed)",
        )
        for name, raw in sorted(directories.items())
        if name != "." and name not in folders
    ]
    problems += [(name, "a file and a folder of the same name") for name in sorted(files & folders)]
    seen: dict[str, str] = {}
    for name in sorted(files | folders):
        if seen.setdefault(name.lower(), name) != name:
            problems.append((name, f"differs from {seen[name.lower()]} only in case"))
    return problems


def read_archive(path: Path, keep: frozenset[str] = KEPT) -> ArchiveContents:
    """Read a zip ``.mar``, a tar ``.mar`` or a folder: hashes, kept files, refusals."""
    if path.is_dir():
        return _read_folder(path, keep)
    if zipfile.is_zipfile(path):
        return _read_zip(path, keep)
    if _tar_compression(path) is not None:
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


def _hash_chunks(chunks: Iterator[bytes], hold: bool) -> tuple[str, int, bytes | None]:
    """SHA-256 and size of an entry's data as it streams by; its bytes too when ``hold`` and they
    are at most :data:`KEPT_BYTES`."""
    digest, size = hashlib.sha256(), 0
    held: io.BytesIO | None = io.BytesIO() if hold else None
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if held is not None and size <= KEPT_BYTES:
            held.write(chunk)
        else:
            held = None
    return digest.hexdigest(), size, held.getvalue() if held is not None else None


def _add(
    contents: ArchiveContents, name: str, hashed: tuple[str, int, bytes | None], keep: frozenset[str]
) -> None:
    digest, size, held = hashed
    if name in contents.entries:
        contents.refused.append((name, "duplicate entry: the archive holds two files of this name"))
        return
    contents.entries[name] = Entry(name, size, digest)
    if name in keep and held is not None:
        contents.kept[name] = held


# ------------------------------------------------------------------------------------------------ zip
class _CorruptEntry(Exception):
    pass


def _zip_end_record(handle: IO[bytes]) -> tuple[int, bytes] | None:
    """Where the end-of-central-directory record is and its 22 bytes, found as ``zipfile`` finds it:
    at the very end, or else the last signature within the 64 KiB a comment may take."""
    handle.seek(0, io.SEEK_END)
    size = handle.tell()
    if size < _END_RECORD.size:
        return None
    handle.seek(size - _END_RECORD.size)
    record = handle.read(_END_RECORD.size)
    if record[:4] == _END_SIGNATURE and record[-2:] == b"\x00\x00":
        return size - _END_RECORD.size, record
    start = max(size - (1 << 16) - _END_RECORD.size, 0)
    handle.seek(start)
    tail = handle.read()
    found = tail.rfind(_END_SIGNATURE)
    if found < 0 or len(tail) - found < _END_RECORD.size:
        return None
    return start + found, tail[found : found + _END_RECORD.size]


def _zip_directory_problems(handle: IO[bytes]) -> list[tuple[str, str]]:
    """The entry count and directory size the zip declares, then its directory records one by one,
    against the limits: read before ``zipfile.ZipFile`` parses (and holds) the whole directory."""
    found = _zip_end_record(handle)
    if found is None:
        return [(ARCHIVE, "no end-of-central-directory record: not a zip")]
    position, record = found
    _, _, _, on_disk, count, size, _, _ = _END_RECORD.unpack(record)
    zip64 = False
    if position >= _ZIP64_LOCATOR.size + _ZIP64_END.size:
        handle.seek(position - _ZIP64_LOCATOR.size)
        if handle.read(4) == b"PK\x06\x07":  # zipfile then reads the zip64 record just before it
            zip64 = True
            handle.seek(position - _ZIP64_LOCATOR.size - _ZIP64_END.size)
            end64 = _ZIP64_END.unpack(handle.read(_ZIP64_END.size))
            if end64[0] == b"PK\x06\x06":
                on_disk, count, size = end64[6], end64[7], end64[8]
    if max(count, on_disk) > MAX_ENTRIES:
        return [(ARCHIVE, f"{max(count, on_disk)} entries; the limit is {MAX_ENTRIES}")]
    if size > MAX_DIRECTORY_BYTES:
        return [(ARCHIVE, f"central directory of {size} bytes; the limit is {MAX_DIRECTORY_BYTES}")]
    if zip64 or 0xFFFF in (count, on_disk) or size == 0xFFFFFFFF:
        return [(ARCHIVE, "zip64 end record: not accepted in a model archive")]
    if size > position:
        return [(ARCHIVE, "the central directory would start before the file does")]
    handle.seek(position - size)  # where zipfile reads it from
    directory = handle.read(size)
    records, at = 0, 0
    while at < size:
        if at + _CENTRAL_RECORD.size > size:
            return [(ARCHIVE, "central directory cut short inside a record")]
        signature, name_length, extra_length, comment_length = _CENTRAL_RECORD.unpack_from(directory, at)
        if signature != _CENTRAL_SIGNATURE:
            return [(ARCHIVE, f"no central directory record at byte {position - size + at}")]
        records += 1
        if records > MAX_ENTRIES:
            return [
                (
                    ARCHIVE,
                    f"more than {MAX_ENTRIES} entries in the central directory; the limit is {MAX_ENTRIES}",
                )
            ]
        at += _CENTRAL_RECORD.size + name_length + extra_length + comment_length
    if records != count:
        return [(ARCHIVE, f"the central directory holds {records} entries, its end record says {count}")]
    return []


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


def _open_zip(handle: IO[bytes]) -> zipfile.ZipFile:
    """``zipfile``'s view of a zip whose directory passed :func:`_zip_directory_problems`."""
    try:
        return zipfile.ZipFile(handle)
    except NotImplementedError as exc:  # a version "needed to extract" zipfile does not know
        raise zipfile.BadZipFile(str(exc)) from exc


def _zip_problems(handle: IO[bytes], archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """Layout (both readers see the same entries) and the declared sizes against the limits."""
    infos = archive.infolist()
    problems = _zip_layout_problems(handle, infos, archive.start_dir)
    return problems + _over_limits([(info.filename, info.file_size) for info in infos])


def _zip_entry_problem(info: zipfile.ZipInfo) -> str | None:
    reason = unsafe_reason(info.orig_filename)  # zipfile's own ``filename`` stops at a NUL byte
    if reason is None and info.is_dir() and info.file_size:
        reason = "directory entry with data"
    if reason is None and not info.is_dir() and (info.external_attr >> 16) & 0o170000 == 0o120000:
        reason = "symbolic link"
    return reason


def _read_zip(path: Path, keep: frozenset[str]) -> ArchiveContents:
    contents = ArchiveContents(path)
    with path.open("rb") as handle:
        contents.refused = _zip_directory_problems(handle)
        if contents.refused:
            return contents  # zipfile has not parsed anything of it
        with _open_zip(handle) as archive:
            contents.refused = _zip_problems(handle, archive)
            if contents.refused:
                return contents  # nothing is inflated from an archive whose layout or size is refused
            directories: dict[str, str] = {}
            for info in archive.infolist():
                reason = _zip_entry_problem(info)
                if reason:
                    contents.refused.append((info.filename, reason))
                    continue
                name = _normalise(info.filename)
                try:
                    hashed = _hash_chunks(_zip_chunks(handle, info), name in keep)  # CRC checked
                except _CorruptEntry as exc:
                    contents.refused.append((info.filename, str(exc)))
                    continue
                if info.is_dir():
                    directories[name] = info.filename
                else:
                    _add(contents, name, hashed, keep)
    contents.refused += _folder_problems(contents.entries, directories)
    return contents


# ------------------------------------------------------------------------------------------------ tar
def _tar_compression(path: Path) -> str | None:
    """``gz``, ``bz2``, ``xz`` or ``""`` (a plain ustar/GNU tar) from the file's first bytes; None when
    it is none of them."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if len(head) == 512 and head[257:262] == b"ustar":
        return ""
    return None


class _Budget:
    """A file object that refuses to give more than ``limit`` bytes in all: the decompressed stream a
    tar walk reads, skipped data included, so that decompression time is bounded too."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner, self.limit, self.used = inner, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size if 0 <= size <= _BLOCK else _BLOCK)
        self.used += len(data)
        if self.used > self.limit:
            raise _Refused(f"more than {self.limit} bytes once decompressed; the limit is {self.limit}")
        return data


def _too_large(name: str, size: int) -> str:
    return f"{name[:200]}: entry of {size} bytes is larger than {MAX_ENTRY_BYTES}"


def _too_much() -> str:
    return f"more than {MAX_ARCHIVE_BYTES} bytes uncompressed in all; the limit is {MAX_ARCHIVE_BYTES}"


class _TarLimits:
    """Each tar header block checked as ``tarfile`` parses it, before the data it announces is read
    (``tarinfo_class`` plugs :meth:`check` into ``TarInfo.frombuf``)."""

    def __init__(self) -> None:
        self.headers = 0  # header blocks of the member being read, extended headers included
        self.total = 0  # data bytes announced so far

    def check(self, header: tarfile.TarInfo) -> None:
        self.headers += 1
        name = header.name[:200]
        if self.headers > MAX_HEADERS_PER_MEMBER:
            raise _Refused(f"{name}: a chain of more than {MAX_HEADERS_PER_MEMBER} headers for one member")
        if header.type in _EXTENDED_HEADERS and header.size > MAX_EXTENDED_HEADER_BYTES:
            raise _Refused(
                f"{name}: extended header of {header.size} bytes; the limit is {MAX_EXTENDED_HEADER_BYTES}"
            )
        if header.size > MAX_ENTRY_BYTES:
            raise _Refused(_too_large(header.name, header.size))
        self.total += header.size
        if self.total > MAX_ARCHIVE_BYTES:
            raise _Refused(_too_much())

    def tarinfo_class(self) -> type[tarfile.TarInfo]:
        limits = self

        class CheckedTarInfo(tarfile.TarInfo):
            @classmethod
            def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
                header = super().frombuf(buf, encoding, errors)
                limits.check(header)
                return header

        return CheckedTarInfo


def _decompressor(handle: IO[bytes], compression: str) -> IO[bytes]:
    if compression == "gz":
        return gzip.GzipFile(fileobj=handle, mode="rb")
    if compression == "bz2":
        return bz2.BZ2File(handle)
    if compression == "xz":
        return lzma.LZMAFile(handle)
    return handle


def _guarded(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A member's data; a damaged stream is a refusal of the archive, whatever the decompressor raises."""
    try:
        yield from chunks
    except _TAR_ERRORS as exc:
        raise _Refused(f"corrupt tar: {exc}") from exc


def _tar_walk(path: Path) -> Iterator[tuple[tarfile.TarInfo, Iterator[bytes] | None]]:
    """Every member of a tar in stream order, with its data (regular files only) as chunks to be read
    before the next member is asked for. Raises :class:`_Refused` at the first limit: the entry count,
    a header's size (checked before its data is read), the total, the decompressed bytes read."""
    compression = _tar_compression(path)
    if compression is None:
        raise _Refused("not a tar archive")
    limits = _TarLimits()
    try:
        with path.open("rb") as raw, closing(_decompressor(raw, compression)) as plain:
            stream = _Budget(plain, MAX_TAR_STREAM_BYTES)
            with tarfile.open(
                fileobj=stream,
                mode="r|",
                tarinfo=limits.tarinfo_class(),  # type: ignore[arg-type]
            ) as archive:
                declared = 0
                for count, member in enumerate(archive, start=1):
                    limits.headers = 0
                    declared += member.size  # a pax header may have set it after frombuf saw the header
                    if count > MAX_ENTRIES:
                        raise _Refused(f"more than {MAX_ENTRIES} entries; the limit is {MAX_ENTRIES}")
                    if member.size > MAX_ENTRY_BYTES:
                        raise _Refused(_too_large(member.name, member.size))
                    if declared > MAX_ARCHIVE_BYTES:
                        raise _Refused(_too_much())
                    data = archive.extractfile(member) if _is_tar_file(member) else None
                    yield member, _guarded(_blocks(data)) if data is not None else None
    except _TAR_ERRORS as exc:
        raise _Refused(f"corrupt tar: {exc}") from exc


def _is_tar_file(member: tarfile.TarInfo) -> bool:
    """A regular file: not a link, device, fifo, contiguous or sparse file."""
    return member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and member.sparse is None


def _tar_member_problem(member: tarfile.TarInfo) -> str | None:
    reason = unsafe_reason(member.name)
    if reason is None and not (member.isdir() or _is_tar_file(member)):
        reason = "not a regular file or folder (link, device, fifo or sparse file)"
    return reason


def _tar_prefix(names: list[str]) -> str:
    """model-archiver's tgz puts everything under ``<model_name>/``; that one folder is stripped."""
    roots = {name.split("/")[0] for name in names if name != "."}
    return f"{roots.pop()}/" if len(roots) == 1 and any("/" in name for name in names) else ""


def _strip(name: str, prefix: str) -> str:
    if not prefix:
        return name
    return name[len(prefix) :] if name.startswith(prefix) else "."  # the top folder itself


def _read_tar(path: Path, keep: frozenset[str]) -> ArchiveContents:
    """Members hashed as they stream by, under their names in the tar; the one top folder, known only
    at the end, is stripped then."""
    contents = ArchiveContents(path)
    files: list[tuple[str, tuple[str, int, bytes | None]]] = []
    directories: dict[str, str] = {}
    root: str | None = None  # the first member's top folder: its kept files are held while streaming
    held: set[str] = set()  # names whose bytes are held: each at most once (duplicates are refused)
    try:
        with closing(_tar_walk(path)) as members:
            for member, chunks in members:
                reason = _tar_member_problem(member)
                if reason:
                    contents.refused.append((member.name, reason))
                    continue
                name = _normalise(member.name)
                if root is None and name != ".":
                    root = name.split("/")[0]
                if chunks is None:
                    directories[name] = member.name
                    continue
                kept = name in keep or (name.startswith(f"{root}/") and name[len(root) + 1 :] in keep)
                hold = kept and name not in held
                held.add(name)
                files.append((name, _hash_chunks(chunks, hold)))
    except _Refused as exc:
        return ArchiveContents(path, refused=[(ARCHIVE, exc.reason)])
    contents.refused += _folder_problems([name for name, _ in files], directories)
    contents.prefix = _tar_prefix([name for name, _ in files] + list(directories))
    for name, hashed in files:
        _add(contents, _strip(name, contents.prefix), hashed, keep)
    return contents


# ---------------------------------------------------------------------------------------------- folder
def _folder_files(path: Path) -> Iterator[tuple[str, Path]]:
    """Every file, ``__pycache__`` included: Python would run a planted ``.pyc`` in place of its source."""
    for item in sorted(path.rglob("*")):
        if item.is_file():
            yield item.relative_to(path).as_posix(), item


def _read_folder(path: Path, keep: frozenset[str]) -> ArchiveContents:
    contents = ArchiveContents(path)
    root = path.resolve()
    files = list(_folder_files(path))
    for name, item in files:
        reason = unsafe_reason(name)
        if reason is None and item.is_symlink() and not item.resolve().is_relative_to(root):
            reason = "symbolic link pointing outside the archive folder"
        if reason:
            contents.refused.append((name, reason))
    contents.refused += _over_limits([(name, item.stat().st_size) for name, item in files])
    if contents.refused:
        return contents
    for name, item in files:
        with item.open("rb") as handle:
            _add(contents, name, _hash_chunks(_blocks(handle), name in keep), keep)
    return contents


# ----------------------------------------------------------------------------------------- extracting
def _entry_streams(contents: ArchiveContents) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, chunks) of every file of the archive, read from it again with the same checks and
    limits (the file may have been replaced since it was read)."""
    path = contents.path
    if path.is_dir():
        for name, item in _folder_files(path):
            with item.open("rb") as handle:
                yield name, _blocks(handle)
    elif zipfile.is_zipfile(path):
        with path.open("rb") as handle:
            if _zip_directory_problems(handle):
                raise ValueError(f"{path.name}: changed since the archive was checked")
            with _open_zip(handle) as archive:
                if _zip_problems(handle, archive):
                    raise ValueError(f"{path.name}: changed since the archive was checked")
                for info in archive.infolist():
                    if not info.is_dir() and _zip_entry_problem(info) is None:
                        yield _normalise(info.filename), _zip_chunks(handle, info)
    else:
        try:
            with closing(_tar_walk(path)) as members:
                for member, chunks in members:
                    if chunks is not None and _tar_member_problem(member) is None:
                        yield _strip(_normalise(member.name), contents.prefix), chunks
        except _Refused as exc:
            raise ValueError(f"{path.name}: changed since the archive was checked: {exc.reason}") from exc


def extract_checked(contents: ArchiveContents, target: Path) -> None:
    """Write every entry ``contents`` accepted into ``target``, streaming, each checked against the
    name, size and SHA-256 it was read with (so what lands on disk is what was checked, even if the
    archive file changed since). Only call it on contents with nothing refused."""
    if contents.refused:
        raise ValueError(f"{contents.path.name}: refusing to extract an archive with refused entries")
    written = set()
    try:
        for name, chunks in _entry_streams(contents):
            expected = contents.entries.get(name)
            if expected is None or name in written:
                raise ValueError(f"{name}: not in the archive as it was checked")
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            digest, size = hashlib.sha256(), 0
            with destination.open("wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > expected.size:
                        raise ValueError(f"{name}: larger than when the archive was checked")
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected.sha256:
                raise ValueError(f"{name}: changed since the archive was checked")
            written.add(name)
    except (_CorruptEntry, _Refused) as exc:
        raise ValueError(f"{contents.path.name}: changed since the archive was checked: {exc}") from exc
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
