"""Request bytes to the model's input: sniffing non-images, limits checked from the header before
Pillow opens the file, the decode's memory checked against the budget before it runs, decoding (any
mode to 8-bit grey or RGB, EXIF orientation), the zoo's resize and centre crop, normalisation.

Pipeline (numbers from ``signature.json``)::

    bytes -> header (format, size, segments/chunks/blocks: image_headers) -> open (Pillow, that
          format only) -> memory estimate <= budget (decode_memory, memory) -> decode (EXIF
          orientation, any mode -> 8-bit grey or RGB) -> shorter side to 256 (bilinear)
          -> centre crop 224x224 -> [0, 1] -> (x - mean) / std -> CHW float32 (grey: one band, thrice)
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .decode_memory import BAND_PIXELS, NUMPY_GREY, Estimate, estimate_peak
from .errors import BadInput, PayloadTooLarge, ServiceError, UnsupportedMediaType
from .image_headers import Header, read_header
from .memory import process_budget
from .signature import Preprocessing

logger = logging.getLogger(__name__)


_SVG = "SVG (vector image; send a raster image)"


# Leading bytes of formats people send by mistake: answered 415, not "undecodable" 400.
_NON_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"<svg", _SVG),
    (b"<!doctype html", "HTML document"),
    (b"<html", "HTML document"),
    (b"<?xml", "XML document"),
    (b"{", "JSON"),
    (b"[", "JSON"),
)


SEND_AN_IMAGE = (
    "send the bytes of a JPEG, PNG, GIF, BMP, TIFF or WebP file as the request body "
    "(Content-Type: application/octet-stream or image/*) or as the multipart field 'data'; "
    "JSON and base64 are not accepted"
)


# Image formats that are text, which Pillow reads: XPM, ASCII PBM/PGM/PPM, XBM.
_TEXT_IMAGE = re.compile(rb"(/\* xpm \*/|p[123]\s|#define\s)")  # matched on lower-cased bytes


_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _as_text(data: bytes) -> str | None:
    """The first 4 KiB as text (a byte-order mark says which encoding; else UTF-8), or None."""
    head = data[:4096]
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, "ignore")  # "ignore": a cut multi-byte tail
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else None


def sniff_non_image(data: bytes) -> str | None:
    """Name a recognisable non-image payload, or None (for images, including text-based ones)."""
    text = _as_text(data)
    head = (text.encode("utf-8") if text is not None else data[:512]).lstrip().lower()
    if _TEXT_IMAGE.match(head):
        return None
    for magic, name in _NON_IMAGE_SIGNATURES:
        if head.startswith(magic.lower()):
            if magic == b"<?xml" and b"<svg" in head[:4096]:
                return _SVG
            return name
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "plain text"
    return None


def png_is_complete(data: bytes, image: Image.Image) -> bool:
    """True when the PNG's image data (every IDAT chunk, inflated) fills every row its header declares.

    Pillow fills the missing rows of a PNG whose compressed stream ends early without an error, so a
    98-byte file can declare 6324x6324 pixels. Deflate expands at most 1032 times, so too little
    data is refused without inflating; else the data is inflated 1 MiB at a time, up to the
    declared size (the chunks were counted by ``image_headers.read_png``)."""
    width, height = image.size
    depth = _png_bits_per_pixel(data)
    if depth is None:
        return True  # a header Pillow read but this function cannot: let Pillow decide
    passes = _ADAM7 if image.info.get("interlace") else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            expected += rows * (1 + -(-(columns * depth) // 8))
    chunks = list(_idat_chunks(data))
    if 1032 * sum(stop - start for start, stop in chunks) < expected:
        return False
    inflater = zlib.decompressobj()
    produced = 0
    view = memoryview(data)
    for start, stop in chunks:
        pending: bytes | memoryview = view[start:stop]
        while pending and not inflater.eof:
            try:
                produced += len(inflater.decompress(pending, 1 << 20))
            except zlib.error:
                return False
            if produced > expected:
                return True  # more data than rows: Pillow ignores the rest
            pending = inflater.unconsumed_tail
        if inflater.eof:
            break
    return produced >= expected


def _idat_chunks(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, stop) of every IDAT chunk's payload, up to IEND."""
    position = 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            yield position + 8, min(len(data), position + 8 + length)
        elif kind == b"IEND":
            return
        position += 12 + length


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_bits_per_pixel(data: bytes) -> int | None:
    """Bits per pixel from the IHDR chunk (bit depth x channels of the colour type)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    bit_depth, colour_type = data[24], data[25]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type)
    return None if channels is None else bit_depth * channels


def prepare_decoding(pre: Preprocessing) -> Preprocessing:
    """At load: the process's memory budget (``memory.process_budget``) in the preprocessing, and
    Pillow's own limits set to ours:

    - ``Image.MAX_IMAGE_PIXELS``: Pillow checks it in ``Image.open`` after the plugin has read the
      header (the WebP plugin before it creates its decoder), and again for a TIFF's image, a GIF's
      grown canvas and disposal, warning above it and raising only above twice it;
      ``decode_image`` turns the warning into the error, so it fires at our limit.
    - ``PngImagePlugin.MAX_TEXT_MEMORY``: the text Pillow inflates from a PNG's text chunks inside
      ``Image.open`` (64 MiB by default; a 90 KB file reaches it)."""
    Image.MAX_IMAGE_PIXELS = pre.max_image_pixels
    PngImagePlugin.MAX_TEXT_MEMORY = pre.max_png_text_bytes
    return pre.with_budget(process_budget(pre.max_decode_bytes))


def _resample_plan(width: int, height: int, pre: Preprocessing) -> tuple[tuple[int, int], bool]:
    """The size the shorter side goes to ``resize`` at, and whether only the box under the crop is
    resampled (``resize_and_crop``)."""
    resize = pre.resize_shorter_side
    new_w, new_h = resized_size(width, height, resize)
    return (new_w, new_h), new_w * new_h > 16 * resize * resize


def check_memory(header: Header, image: Image.Image, body_bytes: int, pre: Preprocessing) -> Estimate:
    """413 when decoding ``image`` (opened, not yet loaded) would hold more than the budget. (A PNG's
    ``getexif`` decodes the image first: its header says whether it may be turned.)"""
    if image.format == "PNG":
        rotated = header.may_rotate
    else:
        rotated = image.getexif().get(0x0112, 1) in range(2, 9)
    resized, box = _resample_plan(*image.size, pre)
    estimate = estimate_peak(header, image.mode, image.size, rotated, body_bytes, resized, box, pre.crop_size)
    budget = pre.memory_budget
    if estimate.peak > budget.bytes:
        width, height = image.size
        raise PayloadTooLarge(
            f"decoding this {width}x{height} {_format_name(image)} image ({image.mode}) needs about "
            f"{estimate.peak} bytes (largest stage: {estimate.stage}); the limit is {budget.bytes} bytes "
            f"(memory budget: {budget.source})"
        )
    return estimate


def _format_name(image: Image.Image) -> str:
    return {"WEBP": "WebP", "PPM": "PBM/PGM/PPM", "MPO": "JPEG"}.get(image.format or "", image.format or "")


def _check_body(data: bytes, pre: Preprocessing) -> None:
    if not data:
        raise BadInput("empty request body: POST the image bytes as the body or as the multipart field")
    if len(data) > pre.max_image_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {pre.max_image_bytes} bytes")
    kind = sniff_non_image(data)
    if kind is not None:
        raise UnsupportedMediaType(f"the body is {kind}, not an image: {SEND_AN_IMAGE}")


@contextlib.contextmanager
def pillow_errors(body_bytes: int) -> Iterator[None]:
    """Pillow's errors as the request's ServiceError, Pillow's size warning as an error.

    Whatever Pillow raises while reading one image (its plugins raise OSError, SyntaxError,
    ValueError, but also NotImplementedError, RuntimeError and their own types) is that request's
    400: an attacker's bytes never fail anything but their own request."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the limits are ours, checked before decoding
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ServiceError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image has too many pixels: {exc}") from exc
    except MemoryError as exc:
        raise PayloadTooLarge(f"not enough memory to decode the image ({body_bytes} bytes)") from exc
    except UnidentifiedImageError as exc:
        raise BadInput(f"cannot decode the body as an image ({body_bytes} bytes): unknown format") from exc
    except Exception as exc:
        raise BadInput(f"cannot decode the image ({body_bytes} bytes): {type(exc).__name__}: {exc}") from exc


def _open(data: bytes, pre: Preprocessing) -> tuple[Image.Image, Header, Estimate]:
    """The image opened by its format's plugin alone (drafted, for a JPEG), not decoded, with its
    header read and its memory estimate checked."""
    header = read_header(data, pre)
    image = Image.open(io.BytesIO(data), formats=[header.format])
    if image.size not in ((header.width, header.height), (header.height, header.width)):
        # Every limit was checked on the header's size: a plugin reading another one is refused.
        raise BadInput(
            f"cannot decode the image ({len(data)} bytes): its header declares {header.width}x"
            f"{header.height} pixels, Pillow reads {image.size[0]}x{image.size[1]}"
        )
    if pre.draft and image.format in ("JPEG", "MPO"):
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale; keep the shorter side >= 2x the resize
        # target so the bilinear reduction still averages, and small images are untouched.
        image.draft("RGB", _draft_size(*image.size, 2 * pre.resize_shorter_side))
    return image, header, check_memory(header, image, len(data), pre)


def estimate_request(data: bytes, pre: Preprocessing) -> Estimate:
    """What decoding ``data`` would hold at its peak, or the ServiceError it would be refused with
    before decoding (nothing is decoded)."""
    _check_body(data, pre)
    with pillow_errors(len(data)):
        return _open(data, pre)[2]


def decode_image(data: bytes, pre: Preprocessing) -> Image.Image:
    """Bytes to an upright 8-bit image, grey ("L") or "RGB", or a ServiceError naming what is wrong
    with them. Every limit is checked before decoding: the header's (size, segments, chunks, blocks)
    before Pillow opens the file, the memory estimate before it decodes it."""
    _check_body(data, pre)
    with pillow_errors(len(data)):
        image, _, _ = _open(data, pre)
        if image.format == "PNG" and not png_is_complete(data, image):
            raise BadInput(f"PNG is truncated: its image data ends before the {image.size[1]} rows")
        image.load()
        if min(image.size) < 1:
            raise BadInput(f"image has no pixels ({image.size[0]}x{image.size[1]})")
        try:  # in place: without it Pillow copies every image, rotated or not (0.37 ms at 500x375)
            ImageOps.exif_transpose(image, in_place=True)
        except Exception as exc:  # a broken EXIF block: the pixels are still good
            logger.debug("EXIF orientation ignored: %s", exc)
        return to_8bit(image)


def to_8bit(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit grey ("L") or RGB: grey stays grey (1, L, LA, 16/32-bit integer,
    float), everything else becomes RGB."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in NUMPY_GREY:
        return _grey_to_8bit(image)
    if image.mode in ("1", "LA"):
        return image.convert("L")
    return image.convert("RGB")


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer grey scaled (not clipped) to 8 bits in integer arithmetic, float clipped to
    [0, 1] and scaled: a band of rows at a time, so that the temporaries stay small."""
    width, height = image.size
    wide = image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255)
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        band = np.asarray(image.crop((0, top, width, min(height, top + rows))))
        if image.mode == "F":
            scaled = np.rint(np.clip(band.astype(np.float32, copy=False), 0.0, 1.0) * np.float32(255.0))
            out[top : top + rows] = scaled
        elif wide:
            out[top : top + rows] = (np.clip(band, 0, 65535).astype(np.uint32) + 128) // 257
        else:
            out[top : top + rows] = np.clip(band, 0, 255)
    return Image.fromarray(out, "L")


def _draft_size(width: int, height: int, min_shorter_side: int) -> tuple[int, int]:
    """The smallest (w, h) that keeps the shorter side >= ``min_shorter_side`` at this aspect ratio."""
    short = min(width, height)
    if short <= min_shorter_side:
        return width, height
    factor = min_shorter_side / short
    return max(1, int(width * factor)), max(1, int(height * factor))


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """The model zoo's ``imagenet_preprocess.py``: the shorter side becomes ``resize`` and the longer
    side ``int(round(ratio * side))``, with ratio = resize / shorter side."""
    if width <= height:
        return resize, int(round(resize / width * height))
    return int(round(resize / height * width)), resize


def resize_and_crop(image: Image.Image, resize: int, crop: int) -> Image.Image:
    """Shorter side to ``resize`` (bilinear), then ``crop`` x ``crop`` from ``(w // 2 - crop // 2,
    h // 2 - crop // 2)``: the sizes and offsets of the zoo's ``imagenet_preprocess.py``.

    For extreme aspect ratios (a 5000x1 strip would become 1,280,000 x 256) only the region under the
    crop is resampled, through Pillow's ``box`` argument: same filter, at most 1 LSB different on a
    few pixels. Not for ordinary photos: those 1-LSB differences move the random-weight test model's
    probabilities by up to 1.8e-3 (measured), more than the 1e-3 allowed against the zoo's recipe.
    """
    width, height = image.size
    new_w, new_h = resized_size(width, height, resize)
    left, top = new_w // 2 - crop // 2, new_h // 2 - crop // 2
    if new_w * new_h <= 16 * resize * resize:  # the same test as _resample_plan
        return image.resize((new_w, new_h), Image.BILINEAR).crop((left, top, left + crop, top + crop))
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return image.resize((crop, crop), Image.BILINEAR, box=box)


def normalize(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    """RGB or grey uint8 to CHW float32: scale to [0, 1], subtract mean, divide by std, folded into
    one multiply-add per channel with constants built once from the signature. Pillow splits the
    bands, so every numpy pass is contiguous (0.1 ms for 224x224 instead of 0.7 ms through an
    HWC->CHW transpose). A grey image's one band is each of the three channels, as in its RGB copy."""
    width, height = image.size
    out = np.empty((3, height, width), dtype=np.float32)
    bands = image.split()
    for channel, band in enumerate(bands * 3 if len(bands) == 1 else bands):
        np.multiply(np.asarray(band), pre.gain[channel, 0, 0], out=out[channel])
        out[channel] += pre.offset[channel, 0, 0]
    return out


def preprocess_image(data: bytes, pre: Preprocessing) -> np.ndarray:
    image = decode_image(data, pre)
    return normalize(resize_and_crop(image, pre.resize_shorter_side, pre.crop_size), pre)
