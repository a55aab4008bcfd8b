"""Real image bytes, generated (never downloaded): photos-like scenes in every format the service
must read, and the bad inputs it must refuse with a clear 4xx."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image, ImageDraw


def scene(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic colourful RGB picture: a gradient background with a few shapes on it."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.rand(3) * 255, rng.rand(3) * 255
    t = (x / max(width - 1, 1) * rng.rand() + y / max(height - 1, 1) * rng.rand())[..., None]
    t = t / max(float(t.max()), 1e-6)
    base = (c0 * (1 - t) + c1 * t).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randint(0, max(width, 2)), rng.randint(0, max(height, 2))
        size = int(rng.randint(1, max(2, min(width, height) // 2 + 1)))
        colour = tuple(int(v) for v in rng.randint(0, 256, 3))
        if rng.rand() < 0.5:
            draw.ellipse((x0, y0, x0 + size, y0 + size), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + size, y0 + size // 2 + 1), fill=colour)
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 500, height: int = 375, seed: int = 0, quality: int = 90) -> bytes:
    return encode(scene(width, height, seed), "JPEG", quality=quality)


def png(width: int = 320, height: int = 240, seed: int = 1) -> bytes:
    return encode(scene(width, height, seed), "PNG")


def png16_gray(width: int = 300, height: int = 260, seed: int = 2) -> tuple[bytes, Image.Image]:
    """A 16-bit greyscale PNG and the 8-bit greyscale picture it should be read as."""
    gray8 = np.asarray(scene(width, height, seed).convert("L"), dtype=np.uint16)
    gray16 = gray8 * 257  # 0..255 -> 0..65535 exactly
    return encode(Image.fromarray(gray16.astype(np.uint16)), "PNG"), Image.fromarray(
        gray8.astype(np.uint8), "L"
    )


def cmyk_jpeg(width: int = 400, height: int = 300, seed: int = 3) -> tuple[bytes, Image.Image]:
    """A CMYK JPEG and the RGB picture it was made from."""
    rgb = scene(width, height, seed)
    return encode(rgb.convert("CMYK"), "JPEG", quality=95), rgb


def exif_rotated_jpeg(width: int = 400, height: int = 300, seed: int = 4) -> tuple[bytes, Image.Image]:
    """A JPEG stored sideways with EXIF orientation 6 (rotate 90 CW to view), and the upright picture
    (its decoded pixels turned by hand, without Pillow's EXIF code)."""
    stored = scene(width, height, seed).transpose(Image.Transpose.ROTATE_90)  # a camera held sideways
    exif = Image.Exif()
    exif[0x0112] = 6
    body = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    upright = Image.open(io.BytesIO(body)).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    return body, upright


def animated_gif(width: int = 260, height: int = 240) -> tuple[bytes, Image.Image]:
    """A three-frame GIF and its first frame."""
    frames = [scene(width, height, seed).quantize(colors=64) for seed in (5, 6, 7)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue(), frames[0].convert("RGB")


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG header claiming width x height pixels, with one tiny compressed row after it."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def good_images() -> dict[str, bytes]:
    """Decodable images of many kinds, each answered with a prediction."""
    gray = scene(300, 300, 8).convert("L")
    return {
        "jpeg_500x375": jpeg(500, 375, 0),
        "jpeg_portrait": jpeg(375, 500, 9),
        "jpeg_small_100x80": jpeg(100, 80, 10),
        "png_rgb": png(),
        "png_rgba": encode(scene(320, 240, 11).convert("RGBA"), "PNG"),
        "png_palette": encode(scene(300, 250, 12).quantize(colors=32), "PNG"),
        "png_gray": encode(gray, "PNG"),
        "png16_gray": png16_gray()[0],
        "jpeg_gray": encode(gray, "JPEG"),
        "jpeg_cmyk": cmyk_jpeg()[0],
        "jpeg_exif_rotated": exif_rotated_jpeg()[0],
        "gif_animated": animated_gif()[0],
        "webp": encode(scene(300, 240, 13), "WEBP", quality=90),
        "bmp": encode(scene(260, 230, 14), "BMP"),
        "tiff": encode(scene(270, 250, 15), "TIFF"),
        "one_pixel": encode(Image.new("RGB", (1, 1), (200, 30, 40)), "PNG"),
        "strip_5000x1": encode(scene(5000, 1, 16), "PNG"),
    }


def bad_inputs() -> dict[str, tuple[bytes, int, str]]:
    """name -> (body, expected status, a word the error message must contain)."""
    good_jpeg = jpeg(400, 300, 20)
    rng = np.random.RandomState(21)
    return {
        "empty": (b"", 400, "empty"),
        "text": (b"hello, this is not an image\n", 415, "text"),
        "json": (b'{"image": "kitten.jpg"}', 415, "JSON"),
        "html": (b"<!DOCTYPE html><html><body>hi</body></html>", 415, "HTML"),
        "pdf": (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", 415, "PDF"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 415, "SVG"),
        "random_bytes": (rng.bytes(4096).replace(b"%PDF", b"xxxx"), 400, "decode"),
        "zero_bytes": (b"\x00" * 4096, 400, "decode"),
        "jpeg_truncated": (good_jpeg[: len(good_jpeg) // 2], 400, "truncated"),
        "jpeg_header_garbage": (good_jpeg[:20] + rng.bytes(3000), 400, "decode"),
        "png_signature_garbage": (b"\x89PNG\r\n\x1a\n" + rng.bytes(2000), 400, "decode"),
        "png_bomb_60000x60000": (png_bomb(), 413, "pixels"),
    }


def more_bad_inputs() -> dict[str, tuple[bytes, int, str]]:
    """More refusals in the format of :func:`bad_inputs`: archives and markup sent by mistake, and
    image headers of the other formats followed by garbage."""
    rng = np.random.RandomState(22)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(zipfile.ZipInfo("kitten.jpg", (1980, 1, 1, 0, 0, 0)), jpeg(64, 48, 23))
    return {
        "gzip": (gzip.compress(jpeg(64, 48, 24), mtime=0), 415, "gzip"),
        "zip": (zipped.getvalue(), 415, "ZIP"),
        "xml": (b'<?xml version="1.0"?><image href="kitten.jpg"/>', 415, "XML"),
        "gif_header_garbage": (b"GIF89a" + rng.bytes(2000), 400, "decode"),
        "bmp_header_garbage": (b"BM" + rng.bytes(2000), 400, "decode"),
        "webp_header_garbage": (b"RIFF\x00\x10\x00\x00WEBPVP8 " + rng.bytes(2000), 400, "decode"),
        "tiff_header_garbage": (b"II*\x00" + rng.bytes(2000), 400, "decode"),
    }


# ------------------------------------------------------------------ accepted images near the limits
# Every accepted format, mode and bit depth, at the size limits (40 megapixels, 20 MiB) or as large as
# the default decode budget allows: what tests/test_decode_memory.py decodes in a child process to
# compare the handler's memory estimate with the measured peak.
LIMIT_SIDE = 6324  # 6324 x 6324 = 39,992,976 pixels, just under the 40-megapixel limit


def gradient(width: int, height: int, channels: int = 3, bits: int = 8) -> np.ndarray:
    """A smooth (height, width, channels) picture of ``bits``-bit samples, different in every channel
    and row, that compresses well (a 40-megapixel PNG of it is a few MB)."""
    top = (1 << bits) - 1
    dtype = np.uint16 if bits > 8 else np.uint8
    x = np.arange(width, dtype=np.uint32)[None, :]
    y = np.arange(height, dtype=np.uint32)[:, None]
    out = np.empty((height, width, channels), dtype=dtype)
    for channel in range(channels):
        out[..., channel] = ((x * (channel + 1) + y * (3 + channel) + (x * y >> 16)) & top).astype(dtype)
    return out


def gradient_image(width: int, height: int, mode: str, cell: int = 1) -> Image.Image:
    """A :func:`gradient` as a Pillow image of ``mode``; with ``cell`` > 1, in blocks of cell x cell
    pixels (a 40-megapixel TIFF of it deflates to a few MB without a predictor)."""
    if cell > 1:
        small = gradient_image(-(-width // cell), -(-height // cell), mode)
        return small.resize((small.width * cell, small.height * cell), Image.NEAREST).crop(
            (0, 0, width, height)
        )
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA"):
        array = gradient(width, height, len(mode) if mode != "YCbCr" else 3)
        return Image.fromarray(array, mode)
    grey = gradient(width, height, 1)[..., 0]
    if mode in ("L", "P"):
        return Image.fromarray(grey, "L") if mode == "L" else Image.fromarray(grey, "L").convert("P")
    if mode == "1":
        return Image.fromarray(((grey >> 5) & 1).astype(bool))
    if mode == "I;16":
        return Image.fromarray(gradient(width, height, 1, 16)[..., 0])
    if mode == "I":
        return Image.fromarray(gradient(width, height, 1, 16)[..., 0].astype(np.int32) * 7)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / np.float32(300.0))
    raise ValueError(mode)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_written(width: int, height: int, mode: str, bits: int = 8, interlaced: bool = False) -> bytes:
    """A PNG written here (Pillow writes neither 16-bit colour nor interlaced PNGs): ``mode`` one of
    1, L, LA, RGB, RGBA, P, at 8 or 16 bits a sample (1 for mode 1)."""
    channels = {"1": 1, "L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1}[mode]
    colour = {"1": 0, "L": 0, "LA": 4, "RGB": 2, "RGBA": 6, "P": 3}[mode]
    depth = 1 if mode == "1" else bits
    array = gradient(width, height, channels, 16 if bits == 16 else 8)
    if bits == 16:
        array = array.astype(">u2")
    stream = zlib.compressobj(3)
    parts = []
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    step = channels * (2 if bits == 16 else 1)  # bytes a pixel, for the 'Sub' filter
    for x0, y0, dx, dy in passes:
        sub = array[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            if mode == "1":
                parts.append(stream.compress(b"\x00" + np.packbits((row[:, 0] >> 6) & 1).tobytes()))
                continue
            line = np.frombuffer(row.tobytes(), dtype=np.uint8)
            filtered = line.copy()
            filtered[step:] -= line[:-step]  # 'Sub': each byte minus the same byte of the pixel before
            parts.append(stream.compress(b"\x01" + filtered.tobytes()))
    parts.append(stream.flush())
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, int(interlaced)))]
    if mode == "P":
        chunks.append(_chunk(b"PLTE", bytes(v for i in range(256) for v in (i, 255 - i, (i * 7) & 255))))
        chunks.append(_chunk(b"tRNS", bytes([0, 128])))
    chunks.append(_chunk(b"IDAT", b"".join(parts)))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _chunk(b"IEND", b"")


def tiff_tiled(width: int, height: int, tile: int = 256, channels: int = 3) -> bytes:
    """A deflated RGB(A) TIFF stored in ``tile`` x ``tile`` tiles (Pillow writes only strips)."""
    array = np.asarray(gradient_image(width, height, "RGB" if channels == 3 else "RGBA", 16))
    across, down = -(-width // tile), -(-height // tile)
    packed = []
    for ty in range(down):
        for tx in range(across):
            block = np.zeros((tile, tile, channels), dtype=np.uint8)
            part = array[ty * tile : (ty + 1) * tile, tx * tile : (tx + 1) * tile]
            block[: part.shape[0], : part.shape[1]] = part
            packed.append(zlib.compress(block.tobytes(), 6))
    count = len(packed)
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, channels, None),
        (259, 3, 1, 8),
        (262, 3, 1, 2),
        (277, 3, 1, channels),
        (284, 3, 1, 1),
        (322, 4, 1, tile),
        (323, 4, 1, tile),
        (324, 4, count, None),
        (325, 4, count, None),
    ]
    ifd_at = 8
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    bits_at, offsets_at = extra_at, extra_at + 2 * channels
    counts_at = offsets_at + 4 * count
    data_at = counts_at + 4 * count
    offsets, position = [], data_at
    for block in packed:
        offsets.append(position)
        position += len(block)
    values = {258: bits_at, 324: offsets_at, 325: counts_at}
    ifd = struct.pack("<H", len(entries))
    for tag, kind, number, value in entries:
        ifd += struct.pack("<HHII", tag, kind, number, values[tag] if value is None else value)
    ifd += struct.pack("<I", 0)
    extra = struct.pack(f"<{channels}H", *[8] * channels)
    extra += struct.pack(f"<{count}I", *offsets) + struct.pack(f"<{count}I", *(len(b) for b in packed))
    return b"II*\0" + struct.pack("<I", ifd_at) + ifd + extra + b"".join(packed)


def tiff_strips(array: np.ndarray, photometric: int = 2, planar: int = 1, rows: int = 64) -> bytes:
    """A deflated TIFF of ``array`` ((height, width, samples) of uint8 or uint16), written here for
    what Pillow does not write: 16-bit colour, planes stored separately (``planar`` 2)."""
    height, width, samples = array.shape
    bits = array.dtype.itemsize * 8
    planes = [array[..., i : i + 1] for i in range(samples)] if planar == 2 else [array]
    packed = [
        zlib.compress(np.ascontiguousarray(plane[top : top + rows]).astype(f"<u{bits // 8}").tobytes(), 6)
        for plane in planes
        for top in range(0, height, rows)
    ]
    count = len(packed)
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, samples, None),
        (259, 3, 1, 8),
        (262, 3, 1, photometric),
        (273, 4, count, None),
        (277, 3, 1, samples),
        (278, 4, 1, rows),
        (279, 4, count, None),
        (284, 3, 1, planar),
    ]
    extra_at = 8 + 2 + 12 * len(entries) + 4
    bits_at = extra_at
    offsets_at = bits_at + 2 * max(samples, 2)
    counts_at = offsets_at + 4 * count
    data_at = counts_at + 4 * count
    offsets, position = [], data_at
    for block in packed:
        offsets.append(position)
        position += len(block)
    values = {258: bits_at, 273: offsets_at, 279: counts_at}
    ifd = struct.pack("<H", len(entries))
    for tag, kind, number, value in entries:
        if tag == 258 and samples <= 2:
            value = struct.unpack("<I", struct.pack("<HH", bits, bits if samples == 2 else 0))[0]
        ifd += struct.pack("<HHII", tag, kind, number, values[tag] if value is None else value)
    ifd += struct.pack("<I", 0)
    extra = struct.pack(f"<{max(samples, 2)}H", *[bits] * max(samples, 2))
    extra += struct.pack(f"<{count}I", *offsets) + struct.pack(f"<{count}I", *(len(b) for b in packed))
    return b"II*\0" + struct.pack("<I", 8) + ifd + extra + b"".join(packed)


def blocky(width: int, height: int, channels: int, bits: int = 8, cell: int = 16) -> np.ndarray:
    """A :func:`gradient` in blocks of ``cell`` x ``cell`` pixels."""
    small = gradient(-(-width // cell), -(-height // cell), channels, bits)
    return np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)[:height, :width]


def bmp_rle8(width: int, height: int) -> bytes:
    """An 8-bit run-length BMP (Pillow writes none): rows of runs of 200 pixels."""
    row = b"".join(bytes([min(200, width - x), (x // 200) & 255]) for x in range(0, width, 200))
    runs = (row + b"\x00\x00") * height + b"\x00\x01"
    palette = bytes(v for i in range(256) for v in (i, 255 - i, i, 0))
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(runs), 2835, 2835, 256, 0)
    offset = 14 + len(header) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + header + palette + runs


def pnm_text(width: int, height: int, magic: str = "P2", maxval: int = 255) -> bytes:
    """An ASCII PBM/PGM/PPM of a gradient."""
    channels = 3 if magic == "P3" else 1
    values = gradient(width, height, channels).astype(np.uint32) * maxval // 255
    if magic == "P1":
        values = values & 1
    head = f"{magic}\n{width} {height}\n" + ("" if magic == "P1" else f"{maxval}\n")
    return head.encode() + b"\n".join(b" ".join(b"%d" % v for v in row.reshape(-1)) for row in values) + b"\n"


def pnm_binary(width: int, height: int, magic: str = "P6", maxval: int = 255) -> bytes:
    """A binary PBM/PGM/PPM/PFM of a gradient (P4 bits, P5/P6 bytes or 16-bit words, Pf floats)."""
    if magic == "P4":
        bits = gradient(width, height, 1)[..., 0] & 1
        return f"P4\n{width} {height}\n".encode() + np.packbits(bits, axis=1).tobytes()
    if magic == "Pf":
        values = gradient(width, height, 1)[..., 0].astype("<f4") / np.float32(255.0)
        return f"Pf\n{width} {height}\n-1.0\n".encode() + values[::-1].tobytes()
    channels = 3 if magic == "P6" else 1
    values = gradient(width, height, channels, 16 if maxval > 255 else 8).astype(np.uint32)
    values = values * maxval // (65535 if maxval > 255 else 255)
    raw = values.astype(">u2" if maxval > 255 else np.uint8).tobytes()
    return f"{magic}\n{width} {height}\n{maxval}\n".encode() + raw


def xpm_image(width: int, height: int, colours: int = 64) -> bytes:
    """An XPM of ``colours`` colours, two characters a pixel."""
    keys = [chr(35 + i // 64) + chr(35 + i % 64) for i in range(colours)]
    keys = [key.replace("\\", "!") for key in keys]
    palette = [f'"{key} c #{(i * 40503) & 0xFFFFFF:06X}",' for i, key in enumerate(keys)]
    grey = gradient(width, height, 1)[..., 0].astype(np.uint32) * colours // 256
    rows = ['"' + "".join(keys[v] for v in row) + '",' for row in grey]
    lines = ["/* XPM */", "static char *picture[] = {", f'"{width} {height} {colours} 2",', *palette, *rows]
    return ("\n".join(lines) + "\n};\n").encode()


def xbm_image(width: int, height: int) -> bytes:
    return encode(gradient_image(width, height, "1"), "XBM")


def apng(width: int, height: int, mode: str = "RGBA") -> bytes:
    """A two-frame animated PNG, the second frame disposed to the previous canvas."""
    first = gradient_image(width, height, mode)
    second = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    first.save(buffer, "PNG", save_all=True, append_images=[second], disposal=2, compress_level=1)
    return buffer.getvalue()


def gif_two_frames(width: int, height: int) -> bytes:
    """A two-frame GIF with transparency, its first frame disposed to the background."""
    first = gradient_image(width, height, "P")
    second = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[second], transparency=0, disposal=2)
    return buffer.getvalue()


def webp_animated(width: int, height: int) -> bytes:
    first = gradient_image(width, height, "RGB")
    second = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    first.save(buffer, "WEBP", save_all=True, append_images=[second], quality=60, method=0)
    return buffer.getvalue()


def exif_oriented(image: Image.Image, fmt: str, orientation: int = 6, **options: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    if fmt == "TIFF":
        return encode(image, fmt, tiffinfo={0x0112: orientation}, **options)
    return encode(image, fmt, exif=exif.tobytes(), **options)


def memory_matrix() -> dict[str, tuple[object, dict[str, object]]]:
    """name -> (builder of the bytes, preprocessing overrides): accepted images of every format,
    mode and bit depth, at the size limits (40 megapixels, 20 MiB of file) or as large as the
    default 512 MiB budget allows (WebP). A builder is called only when its case runs."""
    s = LIMIT_SIDE
    deflate = {"compression": "tiff_adobe_deflate"}
    return {
        # JPEG: drafted to 1/8 at 40 Mpx; a progressive one holds every DCT coefficient.
        "jpeg_baseline_420": (lambda: encode(gradient_image(s, s, "RGB"), "JPEG", quality=90), {}),
        "jpeg_baseline_no_draft": (
            lambda: encode(gradient_image(s, s, "RGB"), "JPEG"),
            {"jpeg_draft": False},
        ),
        "jpeg_progressive_420": (lambda: encode(gradient_image(s, s, "RGB"), "JPEG", progressive=True), {}),
        "jpeg_progressive_444": (
            lambda: encode(gradient_image(s, s, "RGB"), "JPEG", progressive=True, subsampling=0),
            {},
        ),
        "jpeg_progressive_grey": (lambda: encode(gradient_image(s, s, "L"), "JPEG", progressive=True), {}),
        "jpeg_progressive_cmyk": (
            lambda: encode(gradient_image(s, s, "CMYK", 16), "JPEG", progressive=True),
            {},
        ),
        "jpeg_strip_exif_rotated": (lambda: exif_oriented(gradient_image(20000, 2000, "RGB"), "JPEG"), {}),
        "jpeg_cmyk_no_draft_rotated": (
            lambda: exif_oriented(gradient_image(4000, 3000, "CMYK"), "JPEG"),
            {"jpeg_draft": False},
        ),
        # PNG: every colour type and depth Pillow reads, interlaced, animated.
        "png_1bit": (lambda: png_written(s, s, "1"), {}),
        "png_L8": (lambda: png_written(s, s, "L"), {}),
        "png_LA8": (lambda: png_written(s, s, "LA"), {}),
        "png_P8_trns": (lambda: png_written(s, s, "P"), {}),
        "png_RGB8": (lambda: png_written(s, s, "RGB"), {}),
        "png_RGBA8": (lambda: png_written(s, s, "RGBA"), {}),
        "png_L16": (lambda: png_written(s, s, "L", 16), {}),
        "png_LA16": (lambda: png_written(s, s, "LA", 16), {}),
        "png_RGB16": (lambda: png_written(s, s, "RGB", 16), {}),
        "png_RGBA16": (lambda: png_written(s, s, "RGBA", 16), {}),
        "png_RGB8_interlaced": (lambda: png_written(s, s, "RGB", interlaced=True), {}),
        "png_RGBA8_strip": (lambda: png_written(20000, 2000, "RGBA"), {}),
        "png_RGB8_exif_rotated": (
            lambda: exif_oriented(gradient_image(s, s, "RGB", 16), "PNG", compress_level=1),
            {},
        ),
        "apng_RGBA8": (lambda: apng(s, s, "RGBA"), {}),
        # GIF
        "gif_P": (lambda: encode(gradient_image(s, s, "P"), "GIF"), {}),
        "gif_two_frames_transparent": (lambda: gif_two_frames(s, s), {}),
        # BMP: 20 MiB of file at most.
        "bmp_1bit": (lambda: encode(gradient_image(s, s, "1"), "BMP"), {}),
        "bmp_P8": (lambda: encode(gradient_image(4500, 4500, "P"), "BMP"), {}),
        "bmp_RGB24": (lambda: encode(gradient_image(2600, 2600, "RGB"), "BMP"), {}),
        "bmp_RGBA32": (lambda: encode(gradient_image(2280, 2280, "RGBA"), "BMP"), {}),
        "bmp_rle8": (lambda: bmp_rle8(512, 512), {}),
        # TIFF: raw strips, deflate/LZW/JPEG/group 4 through libtiff, tiles, one strip, orientation.
        "tiff_raw_RGB": (lambda: encode(gradient_image(2600, 2600, "RGB"), "TIFF"), {}),
        "tiff_deflate_RGB": (lambda: encode(gradient_image(s, s, "RGB", 16), "TIFF", **deflate), {}),
        "tiff_lzw_L": (lambda: encode(gradient_image(s, s, "L", 16), "TIFF", compression="tiff_lzw"), {}),
        "tiff_deflate_RGBA": (lambda: encode(gradient_image(s, s, "RGBA", 16), "TIFF", **deflate), {}),
        "tiff_deflate_RGB16": (lambda: tiff_strips(blocky(s, s, 3, 16)), {}),
        "tiff_deflate_RGBA16_planar": (lambda: tiff_strips(blocky(s, s, 4, 16), planar=2), {}),
        "tiff_deflate_RGB_planar_one_strip": (lambda: tiff_strips(blocky(s, s, 3), planar=2, rows=s), {}),
        "tiff_deflate_YCbCr_one_strip": (
            lambda: encode(gradient_image(s, s, "YCbCr", 16), "TIFF", strip_size=1 << 30, **deflate),
            {},
        ),
        "tiff_deflate_LA": (lambda: encode(gradient_image(s, s, "LA", 16), "TIFF", **deflate), {}),
        "tiff_deflate_I16": (lambda: encode(gradient_image(s, s, "I;16", 16), "TIFF", **deflate), {}),
        "tiff_deflate_I32": (lambda: encode(gradient_image(s, s, "I", 16), "TIFF", **deflate), {}),
        "tiff_deflate_F": (lambda: encode(gradient_image(s, s, "F", 16), "TIFF", **deflate), {}),
        "tiff_deflate_CMYK": (lambda: encode(gradient_image(s, s, "CMYK", 16), "TIFF", **deflate), {}),
        "tiff_deflate_YCbCr": (lambda: encode(gradient_image(s, s, "YCbCr", 16), "TIFF", **deflate), {}),
        "tiff_jpeg_RGB": (lambda: encode(gradient_image(s, s, "RGB", 16), "TIFF", compression="jpeg"), {}),
        "tiff_group4_1bit": (lambda: encode(gradient_image(s, s, "1", 16), "TIFF", compression="group4"), {}),
        "tiff_deflate_RGB_one_strip": (
            lambda: encode(gradient_image(s, s, "RGB", 16), "TIFF", strip_size=1 << 30, **deflate),
            {},
        ),
        "tiff_deflate_RGB_tiled": (lambda: tiff_tiled(s, s), {}),
        "tiff_deflate_RGB_rotated": (
            lambda: exif_oriented(gradient_image(s, s, "RGB", 16), "TIFF", **deflate),
            {},
        ),
        # WebP: the animation decoder's canvases make it the costliest per pixel.
        "webp_lossy_RGB": (
            lambda: encode(gradient_image(4800, 4800, "RGB"), "WEBP", quality=80, method=0),
            {},
        ),
        "webp_lossy_RGBA": (
            lambda: encode(gradient_image(4800, 4800, "RGBA"), "WEBP", quality=80, method=0),
            {},
        ),
        "webp_lossless_RGB": (
            lambda: encode(gradient_image(4800, 4800, "RGB"), "WEBP", lossless=True, method=0),
            {},
        ),
        "webp_animated": (lambda: webp_animated(4000, 4000), {}),
        # PBM/PGM/PPM/PFM, XPM, XBM
        "pbm_P4": (lambda: pnm_binary(s, s, "P4"), {}),
        "pgm_P5_16bit": (lambda: pnm_binary(3200, 3200, "P5", 65535), {}),
        "ppm_P6": (lambda: pnm_binary(2600, 2600, "P6"), {}),
        "pfm_Pf": (lambda: pnm_binary(2280, 2280, "Pf"), {}),
        "pgm_P2_ascii": (lambda: pnm_text(512, 512, "P2"), {}),
        "ppm_P3_ascii_maxval_1000": (lambda: pnm_text(512, 512, "P3", 1000), {}),
        "ppm_P6_maxval_1000": (lambda: pnm_binary(512, 512, "P6", 1000), {}),
        "xpm": (lambda: xpm_image(512, 512), {}),
        "xbm": (lambda: xbm_image(4000, 4000), {}),
    }
