"""The ``.mar`` layout: what model-archiver writes, read and written without surprises.

A model archive is a zip (``.mar``), a gzipped tar whose entries sit under one ``<model>/`` folder
(``model-archiver --archive-format tgz``) or a plain folder (``no-archive``). Each holds the model
files at its root and ``MAR-INF/MANIFEST.json``. This project adds ``MAR-INF/SHA256SUMS``: one
``<sha256>  <name>`` line per other file, in ``sha256sum`` format.

Reading never extracts: entries come back as bytes in memory, with unsafe names reported instead.
Writing is deterministic: sorted entries, fixed timestamp, fixed permissions, fixed compression.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "MAR-INF/MANIFEST.json"
SHA256SUMS = "MAR-INF/SHA256SUMS"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
MAX_ENTRY_BYTES = 512 * 1024 * 1024  # refuse to read a single entry larger than this into memory


@dataclass
class ArchiveContents:
    """Regular files of an archive by name, plus the entries refused (unsafe or corrupt) and why."""

    files: dict[str, bytes] = field(default_factory=dict)
    unsafe: list[tuple[str, str]] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.files[MANIFEST].decode("utf-8"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unsafe_reason(name: str) -> str | None:
    """Why an entry name must not be extracted, or None when it stays inside the archive folder."""
    if not name or "\x00" in name:
        return "empty name or NUL byte in the name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "path escapes the archive folder ('..')"
    return None


def _normalise(name: str) -> str:
    """``a//b``, ``./a`` and ``a\\b`` all name ``a/b`` (only called on names already judged safe)."""
    return posixpath.normpath(name.replace("\\", "/"))


def read_archive(path: Path) -> ArchiveContents:
    """Read a zip ``.mar``, a tgz ``.mar`` or a folder into memory, reporting unsafe entries."""
    if path.is_dir():
        return _read_folder(path)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    if tarfile.is_tarfile(path):
        return _read_tar(path)
    raise ValueError(f"{path.name}: not a zip, tgz or folder model archive")


def _read_zip(path: Path) -> ArchiveContents:
    contents = ArchiveContents()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            reason = unsafe_reason(info.filename)
            if reason is None and (info.external_attr >> 16) & 0o170000 == 0o120000:
                reason = "symbolic link"
            if reason is None and info.file_size > MAX_ENTRY_BYTES:
                reason = f"entry of {info.file_size} bytes is larger than {MAX_ENTRY_BYTES}"
            if reason:
                contents.unsafe.append((info.filename, reason))
                continue
            try:
                contents.files[_normalise(info.filename)] = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # bad CRC, broken deflate stream
                contents.unsafe.append((info.filename, f"corrupt entry: {exc}"))
    return contents


def _read_tar(path: Path) -> ArchiveContents:
    contents = ArchiveContents()
    with tarfile.open(path) as archive:
        members = archive.getmembers()
        roots = {m.name.replace("\\", "/").split("/")[0] for m in members if m.name}
        # model-archiver's tgz puts everything under "<model_name>/"; strip that one folder.
        prefix = f"{roots.pop()}/" if len(roots) == 1 and any("/" in m.name for m in members) else ""
        for member in members:
            if member.isdir():
                continue
            reason = unsafe_reason(member.name)
            if reason is None and not member.isfile():
                reason = "not a regular file (link or device)"
            if reason is None and member.size > MAX_ENTRY_BYTES:
                reason = f"entry of {member.size} bytes is larger than {MAX_ENTRY_BYTES}"
            if reason:
                contents.unsafe.append((member.name, reason))
                continue
            extracted = archive.extractfile(member)
            if extracted is None:
                contents.unsafe.append((member.name, "unreadable entry"))
                continue
            name = member.name[len(prefix) :] if member.name.startswith(prefix) else member.name
            contents.files[_normalise(name)] = extracted.read()
    return contents


def _read_folder(path: Path) -> ArchiveContents:
    contents = ArchiveContents()
    root = path.resolve()
    for item in sorted(path.rglob("*")):
        name = item.relative_to(path).as_posix()
        if "__pycache__" in item.parts:
            continue
        if item.is_symlink() and not item.resolve().is_relative_to(root):
            contents.unsafe.append((name, "symbolic link pointing outside the archive folder"))
        elif item.is_file():
            contents.files[name] = item.read_bytes()
    return contents


@contextmanager
def unpacked(files: dict[str, bytes], prefix: str) -> Iterator[Path]:
    """``files`` (from ``read_archive``, so every name already passed ``unsafe_reason``) written to a
    temporary folder that is removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        for name, data in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        yield root


def sha256sums(files: dict[str, bytes]) -> bytes:
    """``sha256sum`` lines for every file but the manifest and the sums themselves, sorted by name."""
    lines = [f"{sha256_hex(data)}  {name}\n" for name, data in sorted(files.items()) if name != SHA256SUMS]
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
