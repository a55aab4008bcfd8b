"""What an image's bytes declare, read before Pillow opens them: the format (only those the service
accepts), the size, and what decoding will hold besides the image.

Each reader walks only what Pillow would walk in Python before or while it decodes (JPEG segments,
PNG chunks, GIF extension blocks, TIFF strips and tiles), stops at its limit and refuses:

- 413 for more segments, chunks, blocks or pixels than the limits allow (a CPU cost before decoding);
- 415 for a format the service does not accept (ICO, ICNS, AVIF, DDS, ...: never opened);
- 400 for a header that is not one (truncated, impossible).

The numbers it returns (``Header.held_bytes``, ``Header.decoder_bytes``) feed the memory estimate in
``decode_memory``; they are upper bounds of what the decoders allocate, read from their sources
(Pillow 13's plugins and ``TiffDecode.c``, libjpeg-turbo, libwebp) and checked by
``tests/test_decode_memory.py`` against measured peaks.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from PIL import ImageFile, PngImagePlugin

from .errors import BadInput, PayloadTooLarge, UnsupportedMediaType
from .signature import Preprocessing

ACCEPTED = "JPEG, PNG, GIF, BMP, TIFF, WebP, XPM, PBM/PGM/PPM or XBM"


@dataclass(frozen=True)
class Header:
    """What an image declares. ``format`` is the one Pillow plugin allowed to open it."""

    format: str
    width: int
    height: int
    held_bytes: int = 0  # kept by Pillow from opening to the end: metadata, private chunks, comments
    decoder_bytes: int = 0  # the decoder's own buffers while it decodes, besides the image
    transposed: bool = False  # the decoder itself turns the image upright (a TIFF's orientation)
    may_rotate: bool = False  # orientation known only after decoding (a PNG's EXIF or XMP chunks)


# Leading bytes of image formats the service does not accept, to name them in the 415.
_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\x01\x00", "ICO (Windows icon)"),
    (b"\x00\x00\x02\x00", "CUR (Windows cursor)"),
    (b"icns", "ICNS (macOS icon)"),
    (b"DDS ", "DDS (DirectDraw surface)"),
    (b"BLP1", "BLP (Blizzard texture)"),
    (b"BLP2", "BLP (Blizzard texture)"),
    (b"8BPS", "PSD (Photoshop document)"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"SIMPLE  =", "FITS"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"\x01\xda", "SGI"),
    (b"gimp xcf", "XCF (GIMP document)"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"\xd7\xcd\xc6\x9a", "WMF (Windows metafile)"),
)
_ISO_MEDIA_BRANDS = {
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
}


class Malformed(ValueError):
    """A header that is not one; ``read_header`` answers it 400 naming the format."""


def image_format(data: bytes) -> str:
    """The Pillow format of an accepted image, from its leading bytes; 415 naming any other image
    format recognised, 400 for bytes that start like no image at all."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if len(data) > 2 and data[0:1] == b"P" and data[1] in b"123456f":
        return "PPM"
    if data.startswith(b"/* XPM */"):
        return "XPM"
    if data[:4096].lstrip()[:7] == b"#define":
        return "XBM"
    other = _other_format(data)
    if other is not None:
        raise UnsupportedMediaType(
            f"the body is an image in a format the service does not accept ({other}); "
            f"the accepted formats are {ACCEPTED}"
        )
    raise BadInput(
        f"cannot decode the body as an image ({len(data)} bytes): unknown format "
        f"(the accepted formats are {ACCEPTED})"
    )


def _other_format(data: bytes) -> str | None:
    if data[4:8] == b"ftyp":
        return _ISO_MEDIA_BRANDS.get(data[8:12], "ISO media (MP4, MOV, ...)")
    if data[:4] == b"\x01\x00\x00\x00" and data[40:44] == b" EMF":
        return "EMF (Windows metafile)"
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return name
    return None


def read_header(data: bytes, pre: Preprocessing) -> Header:
    """The header of an accepted image, its pixel and side limits checked, its CPU costs bounded."""
    fmt = image_format(data)
    try:
        header = _READERS[fmt](data, pre)
    except Malformed as exc:
        raise BadInput(f"cannot decode the {_NAMES[fmt]} image ({len(data)} bytes): {exc}") from exc
    except (IndexError, struct.error, ValueError) as exc:
        raise BadInput(
            f"cannot decode the {_NAMES[fmt]} image ({len(data)} bytes): its header is truncated or malformed"
        ) from exc
    check_size(header.width, header.height, pre)
    return header


def check_size(width: int, height: int, pre: Preprocessing) -> None:
    if width * height > pre.max_image_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {pre.max_image_pixels} pixels"
        )
    if max(width, height) > pre.max_image_side:
        raise PayloadTooLarge(
            f"image is {width}x{height} pixels; the limit is {pre.max_image_side} pixels a side"
        )
    if min(width, height) < 1:
        raise BadInput(f"image has no pixels ({width}x{height})")


def _slow(fmt: str, width: int, height: int, pre: Preprocessing) -> None:
    """Refuse more pixels than ``max_python_decoded_pixels`` for a decoder Pillow runs in Python."""
    if width * height > pre.max_python_decoded_pixels:
        raise PayloadTooLarge(
            f"{fmt} image is {width}x{height} = {width * height} pixels; Pillow decodes it in Python, "
            f"a pixel at a time: the limit for it is {pre.max_python_decoded_pixels} pixels"
        )


# --------------------------------------------------------------------------------------------- JPEG
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_NO_LENGTH = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # after a scan's data: not stuffing, not RSTn
MAX_JPEG_JUNK = 4096  # bytes that are not markers before the first scan (Pillow skips them one by one)


def read_jpeg(data: bytes, pre: Preprocessing) -> Header:
    """Segments are walked by their lengths up to the first scan (Pillow reads each in Python and
    keeps every APPn and COM), then marker by marker to the end of the image (EOI), where every scan
    is a full pass of libjpeg over the image: both counts are limited. A progressive or multi-scan
    JPEG makes libjpeg hold every DCT coefficient of the image (2 bytes a sample)."""
    position, segments, junk, frame, kept = 2, 0, 0, None, 0
    while True:
        if position + 4 > len(data):
            raise Malformed(f"JPEG ends before its image data ({len(data)} bytes)")
        if data[position] != 0xFF or data[position + 1] in (0x00, 0xFF):
            following = data.find(b"\xff", position + 1)
            junk += (following if following >= 0 else len(data)) - position
            if junk > MAX_JPEG_JUNK:
                raise Malformed(
                    f"JPEG has over {MAX_JPEG_JUNK} bytes between its segments that are no marker"
                )
            position = following if following >= 0 else len(data)
            continue
        marker = data[position + 1]
        if marker in _NO_LENGTH:
            position += 2
            continue
        if marker == 0xD9:
            raise Malformed("JPEG ends (EOI) before its first scan")
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < 2:
            raise Malformed(f"JPEG segment 0xFF{marker:02X} has an impossible length {length}")
        segments += 1
        if segments > pre.max_jpeg_segments:
            raise PayloadTooLarge(
                f"JPEG has over {pre.max_jpeg_segments} segments before its image data; "
                f"the limit is {pre.max_jpeg_segments} (a camera's JPEG has about 15)"
            )
        if marker in _SOF:
            frame = (marker, data[position + 4 : position + 2 + length])
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            kept += 2 * length + 100  # Pillow keeps each (a bytes object in a list and in a dict)
        if marker == 0xDA:
            break
        position += 2 + length
    if frame is None:
        raise Malformed("JPEG has no frame header (SOF) before its first scan")
    marker, sof = frame
    height, width, components = struct.unpack(">HHB", sof[1:6])
    limit = jpeg_scan_limit(width, height, pre)
    scans = _jpeg_scans(data, position + 2 + length, marker in _PROGRESSIVE, limit, pre.max_jpeg_segments)
    sampling = [(sof[7 + 3 * i] >> 4, sof[7 + 3 * i] & 15) for i in range(components)]
    if not sampling or min(min(h, v) for h, v in sampling) < 1:
        raise Malformed("JPEG frame header has a component without sampling factors")
    decoder = 0
    if marker in _PROGRESSIVE or scans > 1:  # libjpeg keeps the whole image's coefficients
        h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
        mcu_columns, mcu_rows = -(-width // (8 * h_max)), -(-height // (8 * v_max))
        decoder += sum(mcu_columns * h * mcu_rows * v * 128 for h, v in sampling)
    # Working rows: an MCU row of every component, context rows for upsampling, the colour converter.
    decoder += 48 * width * components + (1 << 20)
    return Header("JPEG", width, height, held_bytes=kept, decoder_bytes=decoder)


def jpeg_scan_limit(width: int, height: int, pre: Preprocessing) -> int:
    """Scans allowed: every scan is a pass of libjpeg over the whole image (25 ms at 40 megapixels
    here), so ``max_jpeg_scans`` up to 10 megapixels, fewer above (25 at 40), never under 10."""
    return max(10, min(pre.max_jpeg_scans, pre.max_jpeg_scans * 10_000_000 // max(1, width * height)))


def _jpeg_scans(data: bytes, position: int, progressive: bool, limit: int, max_segments: int) -> int:
    """Scans from the first one to the end of the image. Counting 0xFFDA to the end of the file is
    enough when it finds one scan, or a few in a progressive JPEG; else the image is walked as libjpeg
    reads it: markers after scan data found by their leading 0xFF (entropy-coded data holds none but
    0xFF00 and restarts), segments skipped by their lengths, up to EOI. What follows the image (the
    other pictures of an MPO, a motion photo's video) is not decoded, so not counted."""
    rough = 1 + data.count(b"\xff\xda", position)
    if rough == 1 or (progressive and rough <= limit):
        return rough
    scans = markers = 1
    while True:
        found = _NEXT_MARKER.search(data, position)
        if found is None or data[found.start() + 1] in (0xD8, 0xD9):
            return scans
        at = found.start()
        if data[at + 1] == 0xDA:
            scans += 1
            if scans > limit:
                raise PayloadTooLarge(
                    f"JPEG has over {limit} scans; the limit is {limit} at its size, each scan a pass "
                    "over the whole image (a progressive JPEG has about 10)"
                )
        markers += 1
        if markers > max_segments:
            raise PayloadTooLarge(
                f"JPEG has over {max_segments} segments among its scans; the limit is {max_segments}"
            )
        position = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")


# ---------------------------------------------------------------------------------------------- PNG
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ZLIB_RATIO = 1032  # the most deflate can expand


def read_png(data: bytes, pre: Preprocessing) -> Header:
    """Chunks Pillow reads for the first frame: up to IEND, or for an animated PNG up to the next
    frame's control chunk after the image data. Their number is limited (each is a Python step, in
    ``Image.open`` before the image data and after it in ``load``); what Pillow keeps of them is
    counted: text inflated up to its own limits, private chunks, the ICC profile."""
    if data[12:16] != b"IHDR":
        raise Malformed("PNG does not start with its header chunk (IHDR)")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise Malformed(f"PNG header has an impossible colour type {colour} or bit depth {depth}")
    position, chunks, text, kept, animated, seen_image, may_rotate = 8, 0, 0, 0, False, False, False
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        chunks += 1
        if chunks > pre.max_png_chunks:
            raise PayloadTooLarge(
                f"PNG has over {pre.max_png_chunks} chunks; the limit is {pre.max_png_chunks} "
                "(a PNG written in 8 KiB blocks has 2,560 at the 20 MiB size limit)"
            )
        if kind == b"IEND" or (kind == b"fcTL" and animated and seen_image):
            break
        if kind == b"IDAT":
            seen_image = True
        elif kind == b"acTL":
            animated = True
        elif kind in (b"tEXt", b"iTXt", b"zTXt"):
            payload = data[position + 8 : position + 8 + length]
            text += _text_bytes(kind, payload)
            may_rotate = may_rotate or _may_hold_orientation(kind, payload)
        elif kind == b"iCCP":
            text += min(PngImagePlugin.MAX_TEXT_CHUNK, _ZLIB_RATIO * length)
        elif kind == b"eXIf":
            may_rotate = True
            kept += length
        elif kind not in (b"fdAT", b"PLTE", b"tRNS"):
            kept += length
        position += 12 + length
    text = min(text, PngImagePlugin.MAX_TEXT_MEMORY + PngImagePlugin.MAX_TEXT_CHUNK)
    row = 1 + -(-width * depth * _PNG_CHANNELS[colour] // 8)
    held = 2 * text + kept + 64 * chunks
    # Two rows (this one and the one its filter refers to), zlib's window; an animated PNG's canvas
    # copy for the next frame's disposal is counted by the estimate as a second image.
    # Pillow reads the chunks after the image data only when it decodes, and with them an EXIF or XMP
    # orientation: a PNG that may hold one is counted as turned upright after decoding.
    return Header(
        "PNG", width, height, held_bytes=held, decoder_bytes=4 * row + (1 << 20), may_rotate=may_rotate
    )


def _compressed_text(kind: bytes, payload: bytes) -> bool:
    key_end = payload.find(b"\0")
    return kind == b"zTXt" or (kind == b"iTXt" and payload[key_end + 1 : key_end + 2] == b"\x01")


def _text_bytes(kind: bytes, payload: bytes) -> int:
    """Text Pillow keeps for a text chunk (a compressed one counted at deflate's largest expansion)."""
    if _compressed_text(kind, payload):
        return min(PngImagePlugin.MAX_TEXT_CHUNK, _ZLIB_RATIO * len(payload))
    return len(payload)


def _may_hold_orientation(kind: bytes, payload: bytes) -> bool:
    """A text chunk Pillow reads an orientation from: ImageMagick's raw EXIF profile or XMP."""
    keyword = payload[: payload.find(b"\0")]
    if keyword not in (b"Raw profile type exif", b"XML:com.adobe.xmp"):
        return False
    return _compressed_text(kind, payload) or b"Orientation" in payload


# ---------------------------------------------------------------------------------------------- GIF
def read_gif(data: bytes, pre: Preprocessing) -> Header:
    """Blocks up to the first frame's image data: Pillow reads every extension and its sub-blocks in
    Python (and keeps every comment sub-block), so their number is limited. The canvas is the
    logical screen, grown to the first frame if that lies outside it (Pillow does so)."""
    screen_w, screen_h, flags = struct.unpack("<HHB", data[6:11])
    position = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    blocks, disposal, kept = 0, 0, 0
    while True:
        introducer = data[position]
        if introducer == 0x21:  # extension: label, then sub-blocks up to an empty one
            label = data[position + 1]
            position += 2
            while True:
                size = data[position]
                blocks += 1
                if blocks > pre.max_gif_blocks:
                    raise PayloadTooLarge(
                        f"GIF has over {pre.max_gif_blocks} extension blocks before its first image; "
                        f"the limit is {pre.max_gif_blocks}"
                    )
                if label == 0xF9 and size >= 4:
                    disposal = (data[position + 1] >> 2) & 7
                if label == 0xFE:
                    kept += size + 64  # Pillow keeps every comment sub-block as an object
                position += 1 + size
                if size == 0:
                    break
        elif introducer == 0x2C:  # the first frame
            left, top, width, height = struct.unpack("<HHHH", data[position + 1 : position + 9])
            canvas_w, canvas_h = max(screen_w, left + width), max(screen_h, top + height)
            # Disposal 2 or 3: Pillow prepares a fill of the frame's extent for the next frame.
            dispose = width * height if disposal in (2, 3) else 0
            return Header("GIF", canvas_w, canvas_h, held_bytes=2 * kept, decoder_bytes=dispose + (1 << 16))
        elif introducer == 0x3B:
            raise Malformed("GIF ends (trailer) before its first image")
        else:  # Pillow skips a byte that starts no block, one at a time: counted as a block
            blocks += 1
            if blocks > pre.max_gif_blocks:
                raise PayloadTooLarge(
                    f"GIF has over {pre.max_gif_blocks} extension blocks before its first image; "
                    f"the limit is {pre.max_gif_blocks}"
                )
            position += 1


# --------------------------------------------------------------------------------------------- TIFF
_TIFF_VALUE = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}


def read_tiff(data: bytes, pre: Preprocessing) -> Header:
    """The first directory (the image Pillow decodes). Its strips or tiles are limited in number
    (Pillow makes a Python object of each, inside ``Image.open``); a compressed or YCbCr image goes
    through libtiff, which decodes one strip or one tile at a time into a buffer of that strip's or
    tile's size: a 64 x 64 image stored as one tile of 32768 x 32768 makes it allocate 1 GiB."""
    endian = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")
    if big:
        (ifd,) = struct.unpack(endian + "Q", data[8:16])
        (count,) = struct.unpack(endian + "Q", data[ifd : ifd + 8])
        entry_at, entry_size, inline = ifd + 8, 20, 8
    else:
        (ifd,) = struct.unpack(endian + "I", data[4:8])
        (count,) = struct.unpack(endian + "H", data[ifd : ifd + 2])
        entry_at, entry_size, inline = ifd + 2, 12, 4
    if count > 4096:
        raise Malformed(f"TIFF directory has {count} entries")
    tags: dict[int, tuple[int, int, int]] = {}  # tag -> (type, count, where the values are)
    for i in range(count):
        at = entry_at + i * entry_size
        tag, kind, number = struct.unpack(endian + ("HHQ" if big else "HHI"), data[at : at + 4 + inline])
        size = number * struct.calcsize(_TIFF_VALUE.get(kind, "B"))
        where = at + 4 + inline
        if size > inline:
            (where,) = struct.unpack(endian + ("Q" if big else "I"), data[where : where + inline])
        tags[tag] = (kind, number, where)

    def values(tag: int, default: tuple[int, ...] = (), most: int = 8) -> tuple[int, ...]:
        if tag not in tags:
            return default
        kind, number, where = tags[tag]
        code = _TIFF_VALUE.get(kind)
        if code is None:
            return default
        taken = min(number, most)
        return struct.unpack(f"{endian}{taken}{code}", data[where : where + taken * struct.calcsize(code)])

    width, height = values(256, (0,))[0], values(257, (0,))[0]
    samples = values(277, (1,))[0]
    if not 1 <= samples <= 16:
        raise Malformed(f"TIFF has {samples} samples a pixel")
    bits = list(values(258, (1,), most=16)) or [1]
    bits = (bits * samples)[:samples] if len(bits) == 1 else bits[:samples]
    compression = values(259, (1,))[0]
    photometric = values(262, (0,))[0]
    planar = values(284, (1,))[0]
    orientation = values(274, (1,))[0]
    blocks = max(tags.get(273, (0, 0, 0))[1], tags.get(324, (0, 0, 0))[1])
    if blocks > pre.max_tiff_blocks:
        raise PayloadTooLarge(
            f"TIFF has {blocks} strips or tiles; the limit is {pre.max_tiff_blocks} "
            "(Pillow makes a Python object of each while it opens the file)"
        )
    bits_per_pixel = sum(bits) if planar != 2 else max(bits)
    tiled = 322 in tags or 323 in tags
    if tiled:
        block_w, block_h = values(322, (width,))[0], values(323, (height,))[0]
    else:
        block_w, block_h = width, min(values(278, (height,))[0], height)
    block_bytes = block_h * -(-block_w * bits_per_pixel // 8)
    held = 96 * blocks  # the offsets and byte counts as Python ints, and a tile object for each strip
    decoder = 0
    if compression != 1:  # libtiff: a block's buffer (the file is handed over without a copy)
        decoder = block_bytes + (1 << 20)
        if photometric == 6 and not (compression == 7 and planar == 1):
            rows = block_h if tiled else min(values(278, (height,))[0], height)
            decoder += rows * width * 4  # read as RGBA: libtiff's raster of the block's rows
    return Header(
        "TIFF",
        width,
        height,
        held_bytes=held,
        decoder_bytes=decoder,
        transposed=orientation in range(2, 9),
    )


# --------------------------------------------------------------------------------------------- WebP
def read_webp(data: bytes, pre: Preprocessing) -> Header:
    """The canvas size (VP8X) or the image's (VP8, VP8L). Pillow opens every WebP with libwebp's
    animation decoder, which keeps two canvases of 4 bytes a pixel and a copy of the file, and hands
    Pillow a bytes copy of the frame (a lossless bitstream's own 4-byte-a-pixel buffer, or a lossy
    one's YUV planes, live only while the frame decodes, with the canvases)."""
    kind = data[12:16]
    if kind == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise Malformed("WebP (VP8) frame header has no start code")
        width, height = (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    elif kind == b"VP8L":
        if data[20] != 0x2F:
            raise Malformed("WebP (VP8L) header has no signature byte")
        bits = int.from_bytes(data[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8X":
        width, height = int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    else:
        raise Malformed(f"WebP starts with an unknown chunk {kind!r}")
    # Two canvases and the frame as bytes at the peak, when Pillow copies the frame into its image (the
    # decoder's own ARGB or YUV buffer is freed by then): 3 x 4 bytes a pixel besides the image.
    return Header(
        "WEBP", width, height, held_bytes=2 * len(data), decoder_bytes=12 * width * height + (2 << 20)
    )


# ---------------------------------------------------------------------------------------------- BMP
def read_bmp(data: bytes, pre: Preprocessing) -> Header:
    """A run-length BMP (RLE8, RLE4) is decoded by Pillow in Python, pixel by pixel for RLE4 and byte
    by byte at every line end: its pixels are limited, and the decoder holds two copies of them."""
    size = int.from_bytes(data[14:18], "little")
    if size == 12:
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
        compression = 0
    elif size in (40, 52, 56, 64, 108, 124):
        width, height, _, bits, compression = struct.unpack("<iiHHI", data[18:34])
        height = abs(height)
    else:
        raise Malformed(f"BMP has an unknown header size {size}")
    width = abs(width)
    decoder = 1 << 16
    if compression in (1, 2):
        _slow("run-length BMP", width, height, pre)
        decoder += 2 * width * height
    return Header("BMP", width, height, decoder_bytes=decoder)


# -------------------------------------------------------------------------------------- PBM/PGM/PPM
_PNM_TOKEN = re.compile(rb"(?:\s|#[^\r\n]*[\r\n])*([^\s#]+)")
_TOKEN_BYTES = 42  # a one-digit bytes object and its list slot; a token takes 2 bytes of the file


def read_pnm(data: bytes, pre: Preprocessing) -> Header:
    """Pillow decodes the ASCII variants (P1-P3), and binary samples whose maximum is neither 255 nor
    (for grey) 65535, in Python, value by value: their pixels are limited, and that decoder holds
    two copies of the decoded samples."""
    magic = data[:2]
    wanted = 2 if magic in (b"P1", b"P4") else 3  # width, height, then the maximum (or a PFM's scale)
    tokens: list[bytes] = []
    position = 2
    while len(tokens) < wanted:
        found = _PNM_TOKEN.match(data, position, min(len(data), position + 4096))
        if found is None:
            raise Malformed(f"{magic.decode()} image header is truncated or malformed")
        tokens.append(found.group(1))
        position = found.end()
    width, height = int(tokens[0]), int(tokens[1])
    maxval = int(tokens[2]) if magic[1:2] in b"2356" else 255
    bands = 3 if magic in (b"P3", b"P6") else 1
    plain = magic in (b"P1", b"P2", b"P3")
    slow = plain or (magic in (b"P5", b"P6") and maxval != 255 and not (maxval == 65535 and bands == 1))
    decoder = 1 << 16
    if slow:
        _slow("PBM/PGM/PPM (ASCII, or a maximum value other than 255)", width, height, pre)
        decoder += 2 * width * height * bands * (4 if maxval > 255 and bands == 1 else 1)
    if plain:  # the ASCII decoder splits 1 MiB blocks into a list of bytes objects, 2 at a time
        decoder += _TOKEN_BYTES * min(len(data), 2 * ImageFile.SAFEBLOCK) // 2
    return Header("PPM", width, height, decoder_bytes=decoder)


# ------------------------------------------------------------------------------------------ XPM, XBM
_XPM_VALUES = re.compile(rb'"([0-9]*) ([0-9]*) ([0-9]*) ([0-9]*)')  # Pillow's, matched on each line


def read_xpm(data: bytes, pre: Preprocessing) -> Header:
    """Pillow decodes XPM in Python, a pixel at a time: its pixels are limited."""
    found = next(filter(None, map(_XPM_VALUES.match, data[:65536].splitlines())), None)
    if found is None:
        raise Malformed("XPM has no values line (width height colours characters) in its first 64 KiB")
    width, height, colours = int(found.group(1)), int(found.group(2)), int(found.group(3))
    _slow("XPM", width, height, pre)
    channels = 1 if colours <= 256 else 4
    return Header("XPM", width, height, decoder_bytes=2 * width * height * channels + (1 << 16))


_XBM_SIZE = re.compile(rb"#define[ \t]+\S*_(width|height)[ \t]+(\d+)")


def read_xbm(data: bytes, pre: Preprocessing) -> Header:
    sizes = {name: int(value) for name, value in _XBM_SIZE.findall(data[:4096])}
    if b"width" not in sizes or b"height" not in sizes:
        raise Malformed("XBM has no width or height definition")
    return Header("XBM", sizes[b"width"], sizes[b"height"], decoder_bytes=1 << 16)


_READERS = {
    "JPEG": read_jpeg,
    "PNG": read_png,
    "GIF": read_gif,
    "TIFF": read_tiff,
    "WEBP": read_webp,
    "BMP": read_bmp,
    "PPM": read_pnm,
    "XPM": read_xpm,
    "XBM": read_xbm,
}
_NAMES = {"WEBP": "WebP", "PPM": "PBM/PGM/PPM"} | {
    name: name for name in _READERS if name not in ("WEBP", "PPM")
}
