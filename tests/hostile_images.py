"""Hostile images against decode memory and CPU (issue 20 items 8 and 10, issue 19 item 3), built here
and never checked in. Each builder says what the bytes did to the handler before it bounded decoding
(stock MMS 1.1.11, the worker's peak RSS): small files, all answered 200, that cost a worker most of a
gigabyte or seconds of CPU.

The accepted images of the largest kinds, for measuring a container under load, are built by
:func:`largest_accepted` (``python tests/hostile_images.py OUTDIR``)."""

from __future__ import annotations

import io
import struct
import sys
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

import images

# --------------------------------------------------------------------------------------------- TIFF
_TIFF_TYPES = {"SHORT": (3, "H"), "LONG": (4, "I"), "RATIONAL": (5, "II")}


def tiff(width: int, height: int, tags: dict[int, tuple[str, list[int]]], data: bytes) -> bytes:
    """A little-endian classic TIFF: one IFD holding ``tags`` (tag -> (type, values)) plus the image
    size, then ``data``. The value ``-1`` in a tag stands for the offset of ``data``."""
    entries = {256: ("LONG", [width]), 257: ("LONG", [height]), **tags}
    count = len(entries)
    ifd_size = 2 + 12 * count + 4
    extra = bytearray()
    data_offset = 8 + ifd_size  # out-of-line values go after the data, whose offset is fixed here
    tail_offset = data_offset + len(data)
    ifd = bytearray(struct.pack("<H", count))
    for tag in sorted(entries):
        kind, values = entries[tag]
        code, fmt = _TIFF_TYPES[kind]
        values = [data_offset if value == -1 else value for value in values]
        packed = struct.pack("<" + fmt * len(values), *values)
        if kind == "RATIONAL":
            packed = struct.pack("<" + "I" * len(values), *values)
            number = len(values) // 2
        else:
            number = len(values)
        if len(packed) <= 4:
            ifd += struct.pack("<HHI", tag, code, number) + packed.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, code, number, tail_offset + len(extra))
            extra += packed
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + bytes(ifd) + data + bytes(extra)


def deflated_zeros(size: int, level: int = 9) -> bytes:
    """zlib data that inflates to ``size`` zero bytes (about size / 1030), built 1 MiB at a time."""
    stream = zlib.compressobj(level)
    block = bytes(min(size, 1 << 20))
    parts = []
    left = size
    while left:
        parts.append(stream.compress(block[: min(left, len(block))]))
        left -= min(left, len(block))
    parts.append(stream.flush())
    return b"".join(parts)


def tiff_one_huge_tile(width: int = 64, height: int = 64, tile: int = 32768) -> bytes:
    """1 MB: 64 x 64 grey pixels stored as ONE deflated tile of 32768 x 32768. libtiff decodes the
    whole tile into a buffer of tile x tile bytes: a 1 GB allocation for 4096 pixels (worker peak
    1071 MB, answered 200)."""
    packed = deflated_zeros(tile * tile)
    tags = {
        258: ("SHORT", [8]),
        259: ("SHORT", [8]),  # Adobe deflate
        262: ("SHORT", [1]),  # black is zero
        277: ("SHORT", [1]),
        322: ("LONG", [tile]),
        323: ("LONG", [tile]),
        324: ("LONG", [-1]),
        325: ("LONG", [len(packed)]),
    }
    return tiff(width, height, tags, packed)


def tiff_one_huge_strip(width: int = 64, height: int = 64, rows: int = 1 << 20) -> bytes:
    """The same with strips: 64 x 64 pixels whose one strip declares a million rows. libtiff clamps a
    strip to the image's height, so this one costs nothing: the handler must not refuse it."""
    packed = zlib.compress(bytes(width * height), 9)
    tags = {
        258: ("SHORT", [8]),
        259: ("SHORT", [8]),
        262: ("SHORT", [1]),
        273: ("LONG", [-1]),
        277: ("SHORT", [1]),
        278: ("LONG", [rows]),
        279: ("LONG", [len(packed)]),
    }
    return tiff(width, height, tags, packed)


def tiff_many_strips(width: int = 1, height: int = 1_000_000) -> bytes:
    """A 1 x 1,000,000 uncompressed grey TIFF with one row per strip: Pillow builds a million tile
    descriptors inside ``Image.open`` and reads them one by one in Python."""
    offsets_at = 8 + 2 + 12 * 9 + 4
    counts_at = offsets_at + 4 * height
    data_at = counts_at + 4 * height
    offsets = struct.pack(f"<{height}I", *range(data_at, data_at + height))
    counts = struct.pack("<I", 1) * height
    ifd = struct.pack("<H", 9)
    for tag, code, count, value in (
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, height, offsets_at),
        (277, 3, 1, 1),
        (278, 4, 1, 1),
        (279, 4, height, counts_at),
    ):
        ifd += struct.pack("<HHII", tag, code, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + offsets + counts + bytes(height)


def tiff_float(width: int = 6324, height: int = 6324) -> bytes:
    """240 KB: a deflated 40-megapixel 32-bit float (mode F) TIFF, mostly zeros. Decoding it to 8-bit
    RGB went through float copies of the whole image (worker peak 703 MB, answered 200)."""
    values = np.zeros((height, width), dtype=np.float32)
    values[:256, :256] = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :]
    return images.encode(Image.fromarray(values, "F"), "TIFF", compression="tiff_adobe_deflate")


# --------------------------------------------------------------------------------------------- WebP
def webp_flat(side: int = 6300) -> bytes:
    """38 bytes: a lossless WebP of one colour, side x side (every pixel costs 0 bits). libwebp's
    animation decoder (Pillow opens every WebP with it) holds two canvases, Pillow a copy and the
    image: worker peak 652 MB at 6300 x 6300, answered 200."""
    return images.encode(Image.new("RGB", (side, side), (10, 20, 30)), "WEBP", lossless=True, method=0)


# ------------------------------------------------------------------------------- embedded images
def png_flat(side: int, mode: str = "1") -> bytes:
    """A one-colour PNG (a few KB even at 13000 x 13000)."""
    return images.encode(Image.new(mode, (side, side)), "PNG", optimize=False, compress_level=9)


def ico_holding_png(side: int = 13000) -> bytes:
    """An ICO whose one entry is a side x side PNG: Pillow's ICO plugin decodes the entry inside
    ``Image.open`` (692 MB at 13000 x 13000), before any check of the handler could run."""
    png = png_flat(side)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def icns_holding_png(side: int = 13000) -> bytes:
    """An ICNS whose 'ic10' (1024 x 1024 @2x) entry is a side x side PNG."""
    png = png_flat(side)
    body = b"ic10" + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


# -------------------------------------------------------------------------- segments, chunks, blocks
def jpeg_many_markers(total: int = 20_000_000, marker: bytes = b"\xff\xfe") -> bytes:
    """``total`` bytes of a small JPEG with empty segments (4 bytes each; comments by default) after
    its start: Pillow's JPEG plugin reads every segment in Python and keeps each one in a list
    (20 MB: 11.3 s of CPU and 729 MB)."""
    small = images.jpeg(64, 48, 70)
    count = max(0, (total - len(small)) // 4)
    return small[:2] + (marker + b"\x00\x02") * count + small[2:]


def jpeg_junk_between_segments(junk: int = 20_000_000) -> bytes:
    """A small JPEG with ``junk`` zero bytes after its first segment: Pillow skips them one byte at a
    time in Python."""
    small = images.jpeg(64, 48, 71)
    first_end = 4 + int.from_bytes(small[4:6], "big")
    return small[:first_end] + b"\x00" * junk + small[first_end:]


def jpeg_many_tables_among_scans(total: int = 20_000_000) -> bytes:
    """A progressive JPEG with empty comment segments between its first and second scans: libjpeg
    reads them (in C) while it decodes."""
    body = images.encode(images.scene(64, 48, 72), "JPEG", progressive=True)
    first = body.index(b"\xff\xda")
    second = body.index(b"\xff\xda", first + 2)
    count = max(0, (total - len(body)) // 4)
    return body[:second] + b"\xff\xfe\x00\x02" * count + body[second:]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_many_chunks(total: int = 20_000_000, kind: bytes = b"prVt") -> bytes:
    """``total`` bytes: a small PNG with empty private chunks (12 bytes each) before its image data.
    Pillow reads each in Python and keeps each private chunk (7.3 s of CPU)."""
    small = images.png(64, 48, 73)
    idat = small.index(b"IDAT") - 4
    count = max(0, (total - len(small)) // 12)
    return small[:idat] + png_chunk(kind, b"") * count + small[idat:]


def png_many_idat_chunks(total: int = 20_000_000) -> bytes:
    """A PNG whose image data is split into one-byte IDAT chunks (13 bytes each): Pillow's decoder
    reads chunk after chunk in Python."""
    raw = images.scene(64, 48, 74).tobytes()
    rows = b"".join(b"\x00" + raw[y * 64 * 3 : (y + 1) * 64 * 3] for y in range(48))
    packed = zlib.compress(rows, 9)
    head = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0))
    count = max(0, (total - len(head) - 12 * 2 - len(packed) * 13) // 12)
    filler = png_chunk(b"IDAT", b"") * count  # empty IDAT chunks first, then one byte per chunk
    data = b"".join(png_chunk(b"IDAT", packed[i : i + 1]) for i in range(len(packed)))
    return head + filler + data + png_chunk(b"IEND", b"")


def png_text_bomb(chunks: int = 80) -> bytes:
    """A PNG with ``chunks`` zTXt chunks of 1 KB, each inflating to 1 MB of text: Pillow inflates
    them inside ``Image.open`` (up to its 64 MB text limit)."""
    text = zlib.compress(b"a" * (1 << 20), 9)
    small = images.png(64, 48, 75)
    idat = small.index(b"IDAT") - 4
    texts = b"".join(png_chunk(b"zTXt", b"k%d\0\0" % i + text) for i in range(chunks))
    return small[:idat] + texts + small[idat:]


def gif_many_extensions(total: int = 20_000_000) -> bytes:
    """``total`` bytes: a small GIF with empty graphic control extensions before its image. Pillow
    reads each in Python (3 s of CPU)."""
    small = images.encode(images.scene(64, 48, 76).quantize(colors=16), "GIF")
    image = small.index(b"\x2c", 13 + 3 * 16)  # after the header and the 16-colour palette
    extension = b"\x21\xf9\x04\x00\x00\x00\x00\x00"
    count = max(0, (total - len(small)) // len(extension))
    return small[:image] + extension * count + small[image:]


def gif_comment_of_tiny_blocks(total: int = 20_000_000) -> bytes:
    """A GIF whose comment is ``total`` bytes of one-byte sub-blocks: Pillow keeps one bytes object
    per sub-block (about 40 bytes of memory for every 2 bytes of file)."""
    small = images.encode(images.scene(64, 48, 77).quantize(colors=16), "GIF")
    image = small.index(b"\x2c", 13 + 3 * 16)
    count = max(0, (total - len(small)) // 2)
    return small[:image] + b"\x21\xfe" + b"\x01x" * count + b"\x00" + small[image:]


def gif_canvas_from_frame(side: int = 65535) -> bytes:
    """A 16 x 16 GIF whose first frame is placed at (side - 16, side - 16): Pillow grows the canvas
    to the frame (side x side pixels) before decoding."""
    small = bytearray(images.encode(Image.new("P", (16, 16)), "GIF"))
    image = small.index(b"\x2c", 13)
    struct.pack_into("<HH", small, image + 1, side - 16, side - 16)
    return bytes(small)


# ------------------------------------------------------------------------- formats decoded in Python
def bmp_rle4_runs(width: int = 20000, height: int = 2000) -> bytes:
    """A 4-bit run-length BMP: every row is 79 runs of 255 pixels and an end of line. Pillow decodes
    RLE BMPs in Python, one pixel at a time for RLE4 (40 Mpx: 0.5 MB of runs)."""
    runs = (b"\xff\x12" * (width // 255) + b"\x00\x00") * height + b"\x00\x01"
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00" + bytes(4 * 14)
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 4, 2, len(runs), 2835, 2835, 16, 0)
    offset = 14 + len(header) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + header + palette + runs


def ascii_pgm(width: int = 3000, height: int = 3000) -> bytes:
    """An ASCII PGM (P2) of width x height zeros: Pillow parses every number in Python."""
    return f"P2\n{width} {height}\n255\n".encode() + b"0 " * (width * height)


def xpm_large(width: int = 4000, height: int = 2000, colours: int = 200) -> bytes:
    """An XPM of ``colours`` colours: Pillow looks every pixel up in a tuple, in Python."""
    keys = [chr(33 + i // 90) + chr(33 + i % 90) for i in range(colours)]
    keys = [key.replace('"', "~").replace("\\", "}") for key in keys]
    palette = [f'"{key} c #{i:06X}",' for i, key in enumerate(keys)]
    row = '"' + keys[-1] * width + '",'
    lines = ["/* XPM */", "static char *big[] = {", f'"{width} {height} {colours} 2",', *palette]
    return ("\n".join(lines + [row] * height) + "\n};\n").encode()


def ppm_16bit(width: int = 2000, height: int = 1500) -> bytes:
    """A binary 16-bit PPM (P6, maxval 65535): Pillow converts every sample in Python."""
    return f"P6\n{width} {height}\n65535\n".encode() + bytes(6 * width * height)


# ---------------------------------------------------------------------------- within the old limits
def png_rgba16(width: int = 6310, height: int = 6307) -> bytes:
    """A 39.8-megapixel 16-bit RGBA PNG within every old limit (3 MB; SRE: 8 clients posting it to a
    1 GB container with 2 workers: peak 1074 MB, 13 OOM kills)."""
    return images.png_written(width, height, "RGBA", 16)


# ------------------------------------------------------------------- the largest accepted images
def largest_kinds() -> dict[str, Callable[[int], bytes]]:
    """name -> builder(side) of a square image of that kind, for :func:`largest_accepted`."""
    deflate = {"compression": "tiff_adobe_deflate"}
    return {
        "png_rgb8": lambda side: images.png_written(side, side, "RGB"),
        "png_rgba16": lambda side: images.png_written(side, side, "RGBA", 16),
        "png_grey16": lambda side: images.png_written(side, side, "L", 16),
        "tiff_rgb_deflate": lambda side: images.encode(
            images.gradient_image(side, side, "RGB", 16), "TIFF", **deflate
        ),
        "jpeg_baseline": lambda side: images.encode(
            images.gradient_image(side, side, "RGB"), "JPEG", quality=90
        ),
        "jpeg_progressive": lambda side: images.encode(
            images.gradient_image(side, side, "RGB"), "JPEG", quality=90, progressive=True
        ),
        "webp_lossy": lambda side: images.encode(
            images.gradient_image(side, side, "RGB"), "WEBP", quality=80, method=0
        ),
    }


def largest_side(accepted: Callable[[bytes], bool], build: Callable[[int], bytes], step: int = 16) -> int:
    """The largest side (a multiple of ``step``, up to the 6324 of 40 megapixels) for which
    ``accepted(build(side))`` is true: a binary search, the estimate growing with the side."""
    low, high = 1, images.LIMIT_SIDE // step
    while low < high:
        middle = (low + high + 1) // 2
        if accepted(build(middle * step)):
            low = middle
        else:
            high = middle - 1
    return low * step


def largest_accepted(
    accepted: Callable[[bytes], bool], kinds: Iterable[str] | None = None
) -> dict[str, bytes]:
    """The largest square image of each kind that ``accepted(body) -> bool`` takes (the handler's
    checks under a given memory budget), and a 12-megapixel camera-sized JPEG: what a load test of a
    memory-limited container should send. Each candidate is built, so this takes a few minutes."""
    builders = largest_kinds()
    found = {}
    for name in kinds or builders:
        found[name] = builders[name](largest_side(accepted, builders[name]))
    found["jpeg_12mp"] = images.encode(images.gradient_image(4000, 3000, "RGB"), "JPEG", quality=92)
    return found


def main(argv: list[str]) -> int:
    """``python tests/hostile_images.py OUTDIR [LIMIT_BYTES WORKERS]``: write the largest image of
    each kind the handler accepts, under the budget its rule gives for a memory limit shared by
    that many workers (default: 1.5 GiB and 2, the Kubernetes pod), with the estimate of each."""
    from squeezenet_handler.errors import ServiceError
    from squeezenet_handler.images import estimate_request
    from squeezenet_handler.memory import decode_budget
    from squeezenet_handler.signature import read_signature

    out = Path(argv[0])
    limit, workers = (int(argv[1]), int(argv[2])) if len(argv) > 2 else (1536 << 20, 2)
    pre = read_signature(Path(__file__).resolve().parents[1] / "signature.json").preprocessing
    pre = pre.with_budget(decode_budget(pre.max_decode_bytes, (limit, "memory limit"), (workers, "workers")))
    print(f"budget {pre.memory_budget.bytes} bytes ({pre.memory_budget.source})")

    def accepted(body: bytes) -> bool:
        try:
            estimate_request(body, pre)
        except ServiceError:
            return False
        return True

    out.mkdir(parents=True, exist_ok=True)
    for name, body in largest_accepted(accepted).items():
        with Image.open(io.BytesIO(body)) as image:
            width, height = image.size
        path = out / f"{name}_{width}x{height}.{name.split('_')[0]}"
        path.write_bytes(body)
        print(f"{path}  {len(body)} bytes, estimate {estimate_request(body, pre).peak} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
