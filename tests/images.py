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
