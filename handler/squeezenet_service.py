"""SqueezeNet 1.1 (ONNX model zoo) as a Multi Model Server custom service.

MMS imports this module by its bare name from the unpacked archive, so it imports nothing from the
rest of the repository. Handler spec: ``squeezenet_service:handle``.

Pipeline (numbers from ``signature.json``, never from code constants)::

    bytes -> decode (Pillow, EXIF orientation, any mode -> RGB) -> shorter side to 256 (bilinear)
          -> centre crop 224x224 -> [0, 1] -> (x - mean) / std -> NCHW float32
          -> one forward pass for the whole batch -> softmax -> top k
          -> [{"class": "<synset line>", "probability": p}, ...] per request

Errors (the status code lives on the class; ``handle`` converts them in exactly one place)::

    ServiceError                 500
    +-- BadInput                 400  undecodable, empty, truncated, missing field, bad parameter
    +-- PayloadTooLarge          413  too many bytes or too many pixels (decompression bomb)
    +-- UnsupportedMediaType     415  a recognisable non-image (PDF, HTML, SVG, JSON, text, ...)
    +-- InferenceError           500  the engine failed on a batch (every request of it gets this)
    +-- ModelLoadError           503  the archive's files are missing or inconsistent (raised at load)

A bad request gets its own 4xx with a JSON body naming the cause; the rest of the batch is answered.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

SIGNATURE_FILE = "signature.json"
SYNSET_FILE = "synset.txt"


# --------------------------------------------------------------------------------------------- errors
class ServiceError(Exception):
    """Root of the service's errors; ``status`` is the HTTP status the request is answered with."""

    status = 500
    reason = "Internal Server Error"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.status, "type": type(self).__name__, "message": str(self)}


class BadInput(ServiceError):
    status = 400
    reason = "Bad Request"


class PayloadTooLarge(ServiceError):
    status = 413
    reason = "Payload Too Large"


class UnsupportedMediaType(ServiceError):
    status = 415
    reason = "Unsupported Media Type"


class InferenceError(ServiceError):
    status = 500
    reason = "Internal Server Error"


class ModelLoadError(ServiceError):
    status = 503
    reason = "Service Unavailable"


# ------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class Preprocessing:
    input_name: str
    resize_shorter_side: int
    crop_size: int
    gain: np.ndarray  # scale / std, shape (3, 1, 1), float32: x * gain + offset == (x * scale - mean) / std
    offset: np.ndarray  # -mean / std, shape (3, 1, 1), float32
    max_image_bytes: int
    max_image_pixels: int
    max_image_side: int
    max_decode_bytes: int
    max_jpeg_scans: int
    draft: bool


@dataclass(frozen=True)
class Signature:
    preprocessing: Preprocessing
    num_classes: int
    topk: int
    engine: str
    model_file: str | None


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise ModelLoadError(f"{where}: missing key {key!r}")
    return mapping[key]


def parse_signature(raw: dict[str, Any], source: str = SIGNATURE_FILE) -> Signature:
    """Validate an MMS ``signature.json`` extended with ``preprocessing``/``postprocessing``/``limits``."""
    inputs = _require(raw, "inputs", source)
    outputs = _require(raw, "outputs", source)
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise ModelLoadError(f"{source}: 'inputs' must list exactly one input")
    if not isinstance(outputs, list) or len(outputs) != 1:
        raise ModelLoadError(f"{source}: 'outputs' must list exactly one output")
    data_shape = list(_require(inputs[0], "data_shape", source))
    pre = _require(raw, "preprocessing", source)
    crop = int(_require(pre, "crop_size", source))
    if data_shape[1:] != [3, crop, crop]:
        raise ModelLoadError(f"{source}: input data_shape {data_shape} is not [N, 3, {crop}, {crop}]")
    resize = int(_require(pre, "resize_shorter_side", source))
    if resize < crop:
        raise ModelLoadError(f"{source}: resize_shorter_side {resize} is smaller than crop_size {crop}")
    mean = np.asarray(_require(pre, "mean", source), dtype=np.float32)
    std = np.asarray(_require(pre, "std", source), dtype=np.float32)
    if mean.shape != (3,) or std.shape != (3,) or np.any(std <= 0):
        raise ModelLoadError(f"{source}: mean and std need three values each, std > 0")
    if pre.get("interpolation", "bilinear") != "bilinear" or pre.get("color_mode", "RGB") != "RGB":
        raise ModelLoadError(f"{source}: only bilinear interpolation and RGB input are implemented")
    limits = raw.get("limits", {})
    out_shape = list(_require(outputs[0], "data_shape", source))
    post = raw.get("postprocessing", {})
    engine = raw.get("engine", {})
    return Signature(
        preprocessing=Preprocessing(
            input_name=str(_require(inputs[0], "data_name", source)),
            resize_shorter_side=resize,
            crop_size=crop,
            gain=(np.float64(pre.get("scale", 1.0 / 255.0)) / std.astype(np.float64))
            .astype(np.float32)
            .reshape(3, 1, 1),
            offset=(-mean.astype(np.float64) / std.astype(np.float64)).astype(np.float32).reshape(3, 1, 1),
            max_image_bytes=int(limits.get("max_image_bytes", 20 * 1024 * 1024)),
            max_image_pixels=int(limits.get("max_image_pixels", 40_000_000)),
            max_image_side=int(limits.get("max_image_side", 20_000)),
            max_decode_bytes=int(limits.get("max_decode_bytes", 512 * 1024 * 1024)),
            max_jpeg_scans=int(limits.get("max_jpeg_scans", 100)),
            draft=bool(pre.get("jpeg_draft", True)),
        ),
        num_classes=int(out_shape[-1]),
        topk=int(post.get("topk", 5)),
        engine=str(engine.get("name", "mxnet")),
        model_file=engine.get("model_file"),
    )


def read_labels(path: Path) -> list[str]:
    """One label per line, ``nXXXXXXXX name, other names``, in class-index order."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelLoadError(f"{path.name}: cannot read labels: {exc}") from exc
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ModelLoadError(f"{path.name}: no labels")
    return labels


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_archive_hashes(model_dir: Path) -> int:
    """Refuse a tampered or incomplete archive: every file in ``MAR-INF/SHA256SUMS`` must exist inside
    ``model_dir`` with that SHA-256. Archives without the file (built by other tools) pass unchecked.
    Returns the number of files checked."""
    sums = model_dir / "MAR-INF" / "SHA256SUMS"
    if not sums.is_file():
        logger.warning("%s: no MAR-INF/SHA256SUMS, archive integrity not checked", model_dir)
        return 0
    root = model_dir.resolve()
    checked = 0
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        path = (model_dir / name).resolve()
        if not path.is_relative_to(root):
            raise ModelLoadError(f"MAR-INF/SHA256SUMS: {name!r} points outside the archive")
        if not path.is_file():
            raise ModelLoadError(f"{name}: listed in MAR-INF/SHA256SUMS but missing from the archive")
        digest = _sha256_file(path)
        if digest != expected:
            raise ModelLoadError(f"{name}: sha256 {digest} does not match MAR-INF/SHA256SUMS ({expected})")
        checked += 1
    return checked


def read_signature(path: Path) -> Signature:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelLoadError(f"{path.name}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path.name}: not valid JSON: {exc}") from exc
    return parse_signature(raw, path.name)


# ------------------------------------------------------------------------------------ preprocessing
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


def jpeg_scan_count(data: bytes) -> int:
    """Start-of-scan markers of a JPEG: 1 for a baseline image, about 10 for a progressive one.

    The header segments before the first scan are skipped by their lengths (an EXIF thumbnail holds
    markers of its own); after it, entropy-coded data cannot hold 0xFFDA (a 0xFF byte is followed by
    0x00 there), so every 0xFFDA is a scan."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return 0  # not a marker: malformed, let the decoder say so
        marker = data[position + 1]
        if marker == 0xDA:
            return data.count(b"\xff\xda", position)
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return 0


def png_is_complete(data: bytes, image: Image.Image) -> bool:
    """True when the PNG's image data (every IDAT chunk, inflated) fills every row its header declares.

    Pillow fills the missing rows of a PNG whose compressed stream ends early without an error, so a
    98-byte file can declare 6324x6324 pixels. Inflating is bounded by the declared size."""
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
    inflater = zlib.decompressobj()
    produced = 0
    position = 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            chunk = data[position + 8 : position + 8 + length]
            try:
                produced += len(inflater.decompress(chunk, max(1, expected + 1 - produced)))
            except zlib.error:
                return False
            if produced > expected:
                return True  # more data than rows: Pillow ignores the rest
        elif kind == b"IEND":
            break
        position += 12 + length
    return produced >= expected


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_bits_per_pixel(data: bytes) -> int | None:
    """Bits per pixel from the IHDR chunk (bit depth x channels of the colour type)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    bit_depth, colour_type = data[24], data[25]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type)
    return None if channels is None else bit_depth * channels


# Bytes per pixel Pillow allocates for a decoded image of each mode (RGB is stored as 4 bytes).
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


def decode_bytes(mode: str, width: int, height: int) -> int:
    """Bytes a decode to 8-bit RGB allocates at its peak: the decoded image, the numpy copy that
    16/32-bit greyscale goes through, and the RGB result (4 bytes a pixel in Pillow)."""
    storage = _STORAGE_BYTES.get(mode, 4)
    copy = storage if mode in ("I", "F") or mode.startswith("I;16") else 0
    result = 4 if mode != "RGB" else 0
    return width * height * (storage + copy + result)


def check_limits(image: Image.Image, data: bytes, pre: Preprocessing) -> None:
    """Refuse from the header alone what would cost too much to decode: too many pixels, a side too
    long, too many bytes to allocate, a JPEG with an absurd number of scans."""
    width, height = image.size
    if width * height > pre.max_image_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {pre.max_image_pixels} pixels"
        )
    if max(width, height) > pre.max_image_side:
        raise PayloadTooLarge(
            f"image is {width}x{height} pixels; the limit is {pre.max_image_side} pixels a side"
        )
    needed = decode_bytes(image.mode, width, height)
    if needed > pre.max_decode_bytes:
        raise PayloadTooLarge(
            f"decoding this {width}x{height} {image.mode} image needs {needed} bytes; "
            f"the limit is {pre.max_decode_bytes} bytes"
        )
    if image.format == "JPEG":
        scans = jpeg_scan_count(data)
        if scans > pre.max_jpeg_scans:
            raise PayloadTooLarge(
                f"JPEG has {scans} scans; the limit is {pre.max_jpeg_scans} (a progressive JPEG has about 10)"
            )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB. 16/32-bit integer greyscale is scaled, not clipped, in integer
    arithmetic (no float64 copy of a 40-megapixel image)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image)
        wide = image.mode.startswith("I;16") or int(values.max(initial=0)) > 255
        flat = values.reshape(-1)
        out = np.empty(flat.shape, dtype=np.uint8)
        for start in range(0, flat.size, 1 << 20):  # in blocks: the temporaries stay small
            block = np.clip(flat[start : start + (1 << 20)], 0, 65535 if wide else 255).astype(np.uint32)
            out[start : start + block.size] = (block + 128) // 257 if wide else block
        return Image.fromarray(out.reshape(values.shape), "L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        scaled = np.rint(np.clip(values, 0.0, 1.0) * np.float32(255.0))
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def decode_image(data: bytes, pre: Preprocessing) -> Image.Image:
    """Bytes to an upright RGB image, or a ServiceError naming what is wrong with them.

    Whatever Pillow raises while reading one image (its plugins raise OSError, SyntaxError,
    ValueError, but also NotImplementedError, RuntimeError and their own types) is that request's
    400: an attacker's bytes never fail anything but their own request."""
    if not data:
        raise BadInput("empty request body: POST the image bytes as the body or as the multipart field")
    if len(data) > pre.max_image_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {pre.max_image_bytes} bytes")
    kind = sniff_non_image(data)
    if kind is not None:
        raise UnsupportedMediaType(f"the body is {kind}, not an image: {SEND_AN_IMAGE}")
    try:
        with warnings.catch_warnings():
            # The limits are ours (checked from the header, before decoding), not Pillow's warnings.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            check_limits(image, data, pre)
            if pre.draft and image.format == "JPEG":
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale; keep the shorter side >= 2x the resize
                # target so the bilinear reduction still averages, and small images are untouched.
                image.draft("RGB", _draft_size(*image.size, 2 * pre.resize_shorter_side))
            if image.format == "PNG" and not png_is_complete(data, image):
                raise BadInput(f"PNG is truncated: its image data ends before the {image.size[1]} rows")
            image.load()
            if min(image.size) < 1:
                raise BadInput(f"image has no pixels ({image.size[0]}x{image.size[1]})")
            try:
                image = ImageOps.exif_transpose(image)
            except Exception as exc:  # a broken EXIF block: the pixels are still good
                logger.debug("EXIF orientation ignored: %s", exc)
            return _to_rgb(image)
    except ServiceError:
        raise
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image has too many pixels: {exc}") from exc
    except MemoryError as exc:
        raise PayloadTooLarge(f"not enough memory to decode the image ({len(data)} bytes)") from exc
    except UnidentifiedImageError as exc:
        raise BadInput(f"cannot decode the body as an image ({len(data)} bytes): unknown format") from exc
    except Exception as exc:
        raise BadInput(f"cannot decode the image ({len(data)} bytes): {type(exc).__name__}: {exc}") from exc


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
    few pixels.
    """
    width, height = image.size
    new_w, new_h = resized_size(width, height, resize)
    left, top = new_w // 2 - crop // 2, new_h // 2 - crop // 2
    if new_w * new_h <= 16 * resize * resize:
        return image.resize((new_w, new_h), Image.BILINEAR).crop((left, top, left + crop, top + crop))
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return image.resize((crop, crop), Image.BILINEAR, box=box)


def normalize(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    """RGB HWC uint8 to CHW float32: scale to [0, 1], subtract mean, divide by std, folded into one
    multiply-add with constants built once from the signature."""
    chw = np.asarray(image).transpose(2, 0, 1).astype(np.float32)
    chw *= pre.gain
    chw += pre.offset
    return chw


def preprocess_image(data: bytes, pre: Preprocessing) -> np.ndarray:
    image = decode_image(data, pre)
    return normalize(resize_and_crop(image, pre.resize_shorter_side, pre.crop_size), pre)


# ----------------------------------------------------------------------------------- postprocessing
def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    shifted = scores.astype(np.float64) - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """Most probable first; equal probabilities keep class-index order."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class": labels[i], "probability": float(probabilities[i])} for i in order]


def parse_topk(value: Any, default: int, num_classes: int) -> int:
    """The ``topk`` field: ASCII digits only (``int()`` would also take "1_0" and Arabic-Indic digits)."""
    if value is None:
        return default
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]{1,9}", text) or not 1 <= int(text) <= num_classes:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise BadInput(f"topk must be a whole number from 1 to {num_classes}, got {shown!r}")
    return int(text)


# ------------------------------------------------------------------------------------------ engines
class Engine(Protocol):
    """Scores for a batch: float32 (N, 3, H, W) in, float32 (N, classes) out."""

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under ``taskset``), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _positive_env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ModelLoadError(f"environment variable {name}={value!r} is not a whole number") from None
    if number < 1:
        raise ModelLoadError(f"environment variable {name} must be at least 1, got {number}")
    return number


def default_threads() -> int:
    """Inference threads per worker: ``SQUEEZENET_THREADS``, else usable cores // ``SQUEEZENET_WORKERS``
    (default 1 worker), at least 1.

    MMS runs each worker as its own process with its own thread pool, so by default workers x threads
    = cores: more threads than cores make OpenMP's barriers wait for descheduled threads (a batch-1
    forward pass has ~40 of them). Both engines take this number: MXNet as ``OMP_NUM_THREADS`` (see
    ``import_mxnet``), ONNX Runtime as ``intra_op_num_threads``.
    """
    threads = _positive_env_int("SQUEEZENET_THREADS")
    if threads is not None:
        return threads
    workers = _positive_env_int("SQUEEZENET_WORKERS") or 1
    return max(1, usable_cores() // workers)


def find_model_files(model_dir: Path, model_file: str | None) -> tuple[str, Path]:
    """('onnx', file.onnx) or ('mxnet', prefix) for ``prefix-symbol.json`` + ``prefix-0000.params``."""
    if model_file:
        path = model_dir / model_file
        if model_file.endswith("-symbol.json"):
            prefix = model_dir / model_file[: -len("-symbol.json")]
            if not path.is_file() or not Path(f"{prefix}-0000.params").is_file():
                raise ModelLoadError(f"{model_file}: MXNet symbol or its -0000.params is missing")
            return "mxnet", prefix
        if not path.is_file():
            raise ModelLoadError(f"{model_file}: model file named in {SIGNATURE_FILE} is missing")
        return "onnx", path
    onnx_files = sorted(model_dir.glob("*.onnx"))
    symbols = sorted(model_dir.glob("*-symbol.json"))
    if len(onnx_files) + len(symbols) != 1:
        found = [p.name for p in onnx_files + symbols] or "none"
        raise ModelLoadError(
            f"{model_dir}: expected exactly one *.onnx or *-symbol.json model, found {found}"
        )
    if onnx_files:
        return "onnx", onnx_files[0]
    return find_model_files(model_dir, symbols[0].name)


def import_mxnet(threads: int) -> Any:
    """MXNet set up for a serving worker: one forward pass at a time on ``threads`` OpenMP threads.

    - ``OMP_NUM_THREADS`` is read once, when MXNet loads libgomp; oneDNN's kernels run on that many
      threads. It is overwritten, not defaulted: a value inherited from the parent (the MMS frontend,
      a test process) would otherwise beat ``SQUEEZENET_WORKERS``/``SQUEEZENET_THREADS``.
    - ``MXNET_ENGINE_TYPE=NaiveEngine`` (unless set): operators run in the calling thread. The default
      threaded engine hands every operator to an engine thread and back; on 2 cores that is about half
      of a batch-1 forward pass (6.5 ms -> 3.4 ms), and a worker gains nothing from its asynchrony: each
      batch is one forward pass whose result is awaited at once.
    - ``GOMP_SPINCOUNT=10000`` (unless it or ``OMP_WAIT_POLICY`` is set): how long an idle OpenMP thread
      spins before it sleeps. libgomp's 300000 suits an idle machine, but when another process takes a
      core (the MMS frontend, a neighbour), the spinning thread keeps the preempted one from running and
      every one of a forward pass's barriers waits for a time slice. Measured on 2 cores with one core
      kept busy, batch-1 p50 / p90: 12-57 / 117-167 ms with 300000, 16 / 17 ms with 10000 (3000: 9 ms,
      1000: 7 ms, ONNX Runtime 7 ms); on an idle machine 10000 costs ~5% at batch 8, 3000 ~9%, 1000 35%
      at batch 1.
    - ``MXSetNumOMPThreads`` also applies ``threads`` to the calling thread when MXNet was imported
      before (the archive builder, in-process use); the engine type is then whatever that import chose.
    """
    import ctypes
    import sys

    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # read at each bind: no "MKLDNN is activated"
    if "mxnet" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
        os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")  # used only by the threaded engines
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    try:
        import mxnet as mx
    except ImportError as exc:
        raise ModelLoadError(
            f"engine 'mxnet' needs the mxnet package: pip install mxnet==1.9.1 ({exc})"
        ) from exc
    mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(threads)))
    return mx


def _passes_through(node: dict[str, Any]) -> bool:
    """True for an operator that returns its first input unchanged when not training."""
    attrs = node.get("attrs", {})
    if node["op"] == "Pad":
        widths = attrs.get("pad_width", "").strip("()[] ").split(",")
        return all(int(width) == 0 for width in widths if width.strip())
    if node["op"] == "Dropout":
        return attrs.get("mode", "training") == "training"  # mode "always" drops at inference too
    return False


def optimize_symbol(sym: Any) -> Any:
    """The graph MXNet's ONNX importer returns, rewritten so that oneDNN (MKLDNN) runs all of it.

    On binding, MXNet's MKLDNN subgraph pass fuses ``Convolution`` + ``Activation(act_type='relu')``
    into one oneDNN convolution with a ReLU post-op, and oneDNN operators hand each other tensors in
    its blocked memory layout. The imported SqueezeNet 1.1 defeats both:

    - ONNX ``Relu`` becomes the bare ``relu`` operator, which the pass does not fuse and which has no
      oneDNN kernel: 26 extra operators, each converting its input back to plain NCHW and its output
      back to blocked. Rewritten to ``Activation(act_type='relu')``: the same function.
    - Every ONNX ``MaxPool``/``AveragePool`` becomes ``Pad`` + ``Pooling``, even when the pads are all
      zero (here: all four). ``Pad`` has no oneDNN kernel either, so each one costs two layout
      conversions and a copy. A ``Pad`` whose ``pad_width`` is all zeros is dropped, its consumers
      reading its input instead.
    - ``Dropout`` (mode ``training``) is the identity when not training, but the executor still runs a
      copy for it: dropped the same way. ``mode='always'`` is kept.

    Left alone: ``Flatten`` at the end (a reshape of N x 1000 scores, the output has to be plain NCHW
    anyway) and ``Concat`` (oneDNN has it). Batch-1 p50 on 2 cores (Xeon, AVX-512), MXNet's default
    threaded engine: 19 ms as imported, 16 ms with the Pads dropped only, 9.4 ms with the ReLU rewrite
    only, 6.8 ms with both; with the handler's NaiveEngine (see :func:`import_mxnet`) 11 ms -> 3.7 ms,
    faster than MXNet Gluon's own model_zoo SqueezeNet 1.1 (4.3 ms; ``python -m benchmarks.run``).
    Scores are unchanged up to float rounding. Idempotent: applying it to its own result (a converted
    checkpoint) changes nothing.
    """
    import mxnet as mx

    graph = json.loads(sym.tojson())
    nodes: list[dict[str, Any]] = graph["nodes"]
    read = {(entry[0], entry[1]) for node in nodes for entry in node["inputs"]}
    read |= {(head[0], head[1]) for head in graph["heads"]}
    replaced: dict[int, list[int]] = {}  # index of a dropped node -> the entry it passed through
    kept: list[int] = []
    for index, node in enumerate(nodes):  # topological order: inputs are resolved before their readers
        node["inputs"] = [replaced.get(entry[0], entry) for entry in node["inputs"]]
        extra_outputs_read = any(i == index and output > 0 for i, output in read)  # e.g. a dropout mask
        if _passes_through(node) and not extra_outputs_read:
            replaced[index] = node["inputs"][0]
            continue
        if node["op"] == "relu":
            hidden = {k: v for k, v in node.get("attrs", {}).items() if k.startswith("__")}
            node["op"], node["attrs"] = "Activation", {**hidden, "act_type": "relu"}
        kept.append(index)
    position = {old: new for new, old in enumerate(kept)}

    def renumber(entry: list[int]) -> list[int]:
        return [position[entry[0]], entry[1], entry[2] if len(entry) > 2 else 0]

    graph["nodes"] = [dict(nodes[i], inputs=[renumber(e) for e in nodes[i]["inputs"]]) for i in kept]
    graph["arg_nodes"] = [position[i] for i in graph["arg_nodes"]]  # variables are never dropped
    graph["heads"] = [renumber(replaced.get(head[0], head)) for head in graph["heads"]]
    graph.pop("node_row_ptr", None)  # recomputed by the loader
    return mx.sym.load_json(json.dumps(graph))


def load_mxnet_params(kind: str, path: Path, threads: int, optimize: bool = True) -> tuple[Any, dict, dict]:
    """(symbol, arg_params, aux_params) from an ONNX file or an MXNet checkpoint; the symbol passed
    through :func:`optimize_symbol` unless ``optimize`` is False (benchmarks compare both)."""
    mx = import_mxnet(threads)
    try:
        if kind == "onnx":
            from mxnet.contrib import onnx as onnx_mxnet

            # A fresh NameManager: unnamed nodes get the same names on every import, so a converted
            # checkpoint is byte-for-byte reproducible. The importer's deprecation chatter goes to
            # stdout; keep it out of the CLI's output and the worker's log.
            with mx.name.NameManager(), contextlib.redirect_stdout(io.StringIO()) as chatter:
                sym, arg_params, aux_params = onnx_mxnet.import_model(str(path))
            logger.debug("onnx import: %s", chatter.getvalue().strip())
        else:
            sym, arg_params, aux_params = mx.model.load_checkpoint(str(path), 0)
    except Exception as exc:  # MXNet and onnx raise many unrelated types for a corrupt file
        raise ModelLoadError(f"{path.name}: cannot load the model: {type(exc).__name__}: {exc}") from exc
    if optimize:
        sym = optimize_symbol(sym)
    return sym, arg_params, aux_params


# Operators whose output channel c depends on input channel c only (Flatten: when the input is N x C x 1 x 1).
_CHANNELWISE_OPS = ("Activation", "relu", "Pooling", "Pad", "Dropout", "Flatten")


def pad_output_channels(
    sym: Any, arg_params: dict, input_name: str, input_shape: tuple[int, ...], multiple: int = 16
) -> tuple[Any, dict]:
    """Widen the classifier convolution to a multiple of ``multiple`` output channels with zero weights,
    and slice the extra scores off the output: the same scores, computed faster.

    oneDNN's fast AVX-512 convolutions (``brgconv``) take channel counts in multiples of 16. SqueezeNet's
    last convolution has 1000 (512 -> 1000, 1x1, on 13x13) and falls back to an AVX2 kernel with an 8-wide
    blocked layout, plus layout conversions around it: about 0.8 ms of a 3.4 ms batch-1 forward pass on 2
    cores, for a quarter of the network's multiply-adds. With 1008 channels it runs with the others:
    -10% at batch 1 and 8. Only a convolution followed by channel-wise operators up to the output (ReLU,
    pooling, flatten of a 1x1 map) is widened; the extra channels are zero before the slice, and are
    dropped by it whatever those operators make of them. Anything else is returned unchanged.
    """
    import mxnet as mx

    graph = json.loads(sym.tojson())
    nodes: list[dict[str, Any]] = graph["nodes"]
    if len(graph["heads"]) != 1:
        return sym, arg_params
    internals = sym.get_internals()
    _, shapes, _ = internals.infer_shape_partial(**{input_name: input_shape})
    shape_of = dict(zip(internals.list_outputs(), shapes, strict=True))
    index = graph["heads"][0][0]
    while nodes[index]["op"] in _CHANNELWISE_OPS:
        node, source = nodes[index], nodes[nodes[index]["inputs"][0][0]]
        if node["op"] == "Pad" and any(int(w) for w in node["attrs"]["pad_width"].strip("()").split(",")[:4]):
            return sym, arg_params  # pads the batch or channel axis
        if node["op"] == "Flatten" and tuple(shape_of.get(f"{source['name']}_output", ()))[2:] != (1, 1):
            return sym, arg_params  # would interleave channels with positions
        index = node["inputs"][0][0]
    conv = nodes[index]
    if conv["op"] != "Convolution" or conv["attrs"].get("num_group", "1") != "1":
        return sym, arg_params
    channels = int(conv["attrs"]["num_filter"])
    if channels % multiple == 0:
        return sym, arg_params
    wide = -(-channels // multiple) * multiple
    padded = dict(arg_params)
    for entry in conv["inputs"][1:]:  # weight (F, C, kh, kw), then bias (F,) unless no_bias
        variable = nodes[entry[0]]
        weights = arg_params[variable["name"]].asnumpy()
        zeros = np.zeros((wide - channels, *weights.shape[1:]), dtype=weights.dtype)
        padded[variable["name"]] = mx.nd.array(np.concatenate([weights, zeros]), dtype=weights.dtype)
        if "__shape__" in variable.get("attrs", {}):  # the ONNX importer records weight shapes
            variable["attrs"]["__shape__"] = str(padded[variable["name"]].shape)
    conv["attrs"]["num_filter"] = str(wide)
    graph.pop("node_row_ptr", None)
    widened = mx.sym.load_json(json.dumps(graph))
    name = f"{sym.list_outputs()[0].removesuffix('_output')}_classes"
    return mx.sym.slice_axis(widened, axis=1, begin=0, end=channels, name=name), padded


class MXNetEngine:
    """The symbol bound once per batch size (on demand), all executors sharing one set of weights.

    Binding runs MXNet's MKLDNN subgraph pass (convolution + ReLU fusion); the first batch of each size
    pays for it and for oneDNN's kernel creation (20-45 ms on 2 cores). The classifier is widened for
    oneDNN first (:func:`pad_output_channels`) unless ``pad_channels`` is False. Measured alternatives
    (2 cores, cleaned-up graph, batch 1 / batch 8): a hybridized ``SymbolBlock`` with static_alloc and
    static_shape 3.8 / 28 ms against 3.4 / 25 ms here; binding ``get_backend_symbol('MKLDNN')`` by hand
    changes nothing (bind already partitions the graph).
    """

    name = "mxnet"

    def __init__(
        self,
        sym: Any,
        arg_params: dict,
        aux_params: dict,
        input_name: str,
        crop: int,
        pad_channels: bool = True,
    ) -> None:
        import mxnet as mx

        self._mx = mx
        data_inputs = [n for n in sym.list_inputs() if n not in arg_params and n not in aux_params]
        if data_inputs != [input_name]:
            raise ModelLoadError(f"model data inputs are {data_inputs}, signature expects [{input_name!r}]")
        missing = [n for n in sym.list_arguments() if n != input_name and n not in arg_params]
        if missing:
            raise ModelLoadError(f"model weights missing for {missing}")
        if pad_channels:
            sym, arg_params = pad_output_channels(sym, arg_params, input_name, (1, 3, crop, crop))
        self._sym = sym
        self._input_name = input_name
        self._args = {k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
        self._aux = {k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()}
        self._crop = crop
        self._executors: dict[int, Any] = {}

    def _executor(self, batch_size: int) -> Any:
        if batch_size not in self._executors:
            mx = self._mx
            shape = (batch_size, 3, self._crop, self._crop)
            args = dict(self._args, **{self._input_name: mx.nd.zeros(shape)})
            arg_names = self._sym.list_arguments()
            aux_names = self._sym.list_auxiliary_states()
            self._executors[batch_size] = self._sym.bind(
                mx.cpu(),
                args=[args[n] for n in arg_names],
                aux_states=[self._aux[n] for n in aux_names],
                grad_req="null",
            )
        return self._executors[batch_size]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        executor = self._executor(batch.shape[0])
        outputs = executor.forward(is_train=False, **{self._input_name: batch})
        return outputs[0].asnumpy().reshape(batch.shape[0], -1)


class OnnxRuntimeEngine:
    """ONNX Runtime on the ONNX file; a batch larger than the model's fixed batch dim runs in slices."""

    name = "onnxruntime"

    def __init__(self, path: Path, input_name: str, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelLoadError(
                "engine 'onnxruntime' needs the onnxruntime package: pip install onnxruntime"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 1: no pool, runs in the calling thread
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # zoo files list weights as inputs: one warning per weight
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise ModelLoadError(f"{path.name}: onnxruntime cannot load the model: {exc}") from exc
        inputs = [i for i in self._session.get_inputs() if i.name == input_name]
        if not inputs:
            raise ModelLoadError(f"{path.name}: no input named {input_name!r}")
        dim0 = inputs[0].shape[0]
        self._fixed_batch = dim0 if isinstance(dim0, int) else None
        self._input_name = input_name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        step = self._fixed_batch or batch.shape[0]
        parts = [
            self._session.run(None, {self._input_name: batch[i : i + step]})[0]
            for i in range(0, batch.shape[0], step)
        ]
        return np.concatenate(parts).reshape(batch.shape[0], -1)


def load_engine(name: str, model_dir: Path, sig: Signature, threads: int) -> Engine:
    kind, path = find_model_files(model_dir, sig.model_file)
    pre = sig.preprocessing
    if name == "onnxruntime":
        if kind != "onnx":
            raise ModelLoadError(f"{path.name}: engine 'onnxruntime' needs an .onnx model file")
        return OnnxRuntimeEngine(path, pre.input_name, threads)
    if name != "mxnet":
        raise ModelLoadError(f"{SIGNATURE_FILE}: unknown engine {name!r} (mxnet or onnxruntime)")
    sym, arg_params, aux_params = load_mxnet_params(kind, path, threads)
    return MXNetEngine(sym, arg_params, aux_params, pre.input_name, pre.crop_size)


# ------------------------------------------------------------------------------------------ service
MAX_FIELDS_NAMED = 10  # an error lists at most this many of the request's field names


def request_payload(request: dict[str, Any], field: str) -> bytes:
    """The image bytes: the multipart field named like the model input, or the raw body.

    MMS parses ``application/json`` bodies and decodes ``text/*`` ones in the worker unless
    ``MMS_DECODE_INPUT_REQUEST=false``, which :func:`handle` sets for its own worker at load time;
    already-parsed values (a handler run some other way) are still answered 415, never crashed on.
    """
    for key in (field, "body"):
        value = request.get(key)
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            raise UnsupportedMediaType(f"the body is JSON, not an image: {SEND_AN_IMAGE}")
        if isinstance(value, str):
            value = value.encode("utf-8")
        return bytes(value)
    names = sorted(request)
    shown = ", ".join(repr(name[:40]) for name in names[:MAX_FIELDS_NAMED])
    more = f" and {len(names) - MAX_FIELDS_NAMED} more" if len(names) > MAX_FIELDS_NAMED else ""
    raise BadInput(
        f"no image in the request: send it as the raw body or as the multipart field {field!r}"
        + (f" (got fields {shown}{more})" if names else "")
    )


class SqueezeNetService:
    """State only: signature, labels, engine. The stages are the module-level functions above."""

    def __init__(self) -> None:
        self.signature: Signature | None = None
        self.labels: list[str] = []
        self.engine: Engine | None = None

    @property
    def initialized(self) -> bool:
        return self.engine is not None

    def initialize(self, context: Any) -> None:
        started = time.perf_counter()
        props = context.system_properties
        model_dir = Path(props["model_dir"])
        check_archive_hashes(model_dir)
        sig = read_signature(model_dir / SIGNATURE_FILE)
        labels = read_labels(model_dir / SYNSET_FILE)
        if len(labels) != sig.num_classes:
            raise ModelLoadError(
                f"{SYNSET_FILE}: {len(labels)} labels, "
                f"but {SIGNATURE_FILE} declares {sig.num_classes} classes"
            )
        engine_name = os.environ.get("SQUEEZENET_ENGINE", sig.engine)
        engine = load_engine(engine_name, model_dir, sig, default_threads())
        crop = sig.preprocessing.crop_size
        probe = engine(np.zeros((1, 3, crop, crop), dtype=np.float32))
        if probe.shape != (1, len(labels)):
            raise ModelLoadError(
                f"model answers {probe.shape[1]} classes, but {SYNSET_FILE} has {len(labels)} labels"
            )
        self.signature, self.labels, self.engine = sig, labels, engine
        logger.info(
            "squeezenet: engine %s, %d classes, batch <= %d, loaded in %.0f ms",
            engine.name,
            len(labels),
            max(1, int(props.get("batch_size") or 1)),
            (time.perf_counter() - started) * 1000,
        )

    def preprocess(self, request: dict[str, Any]) -> np.ndarray:
        pre = self._signature().preprocessing
        return preprocess_image(request_payload(request, pre.input_name), pre)

    def inference(self, batch: np.ndarray) -> np.ndarray:
        if self.engine is None:
            raise ModelLoadError("the model is not loaded")
        return self.engine(np.ascontiguousarray(batch, dtype=np.float32))

    def postprocess(self, scores: np.ndarray, topks: Sequence[int]) -> list[list[dict[str, Any]]]:
        probabilities = softmax(scores)
        return [top_k(p, self.labels, k) for p, k in zip(probabilities, topks, strict=True)]

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        """One answer per request; a failed request gets its own status, the others their predictions."""
        sig = self._signature()
        answers: list[Any] = [None] * len(data)
        tensors: list[np.ndarray] = []
        topks: list[int] = []
        good: list[int] = []
        for idx, request in enumerate(data):
            try:
                k = parse_topk(request.get("topk"), sig.topk, sig.num_classes)
                tensor = self.preprocess(request)
            except ServiceError as exc:
                logger.info("request %d rejected (%d): %s", idx, exc.status, exc)
                answers[idx] = _error_answer(context, idx, exc)
                continue
            except Exception as exc:  # a bug on one request's path fails that request alone
                logger.exception("request %d failed", idx)
                error = ServiceError(f"the service failed on this request: {type(exc).__name__}: {exc}")
                answers[idx] = _error_answer(context, idx, error)
                continue
            good.append(idx)
            topks.append(k)
            tensors.append(tensor)
        if good:
            try:
                predictions = self.postprocess(self.inference(np.stack(tensors)), topks)
            except ServiceError as exc:
                return _answer_all(context, answers, good, exc)
            except Exception as exc:  # an engine bug must not kill the worker (see handle)
                logger.exception("inference failed for a batch of %d", len(good))
                return _answer_all(context, answers, good, InferenceError(f"inference failed: {exc!r}"))
            for idx, prediction in zip(good, predictions, strict=True):
                answers[idx] = prediction
        return answers

    def _signature(self) -> Signature:
        if self.signature is None:
            raise ModelLoadError("the model is not loaded")
        return self.signature


def _error_answer(context: Any, idx: int, exc: ServiceError) -> str:
    """The request's own status and a JSON body naming the cause.

    No response headers (not even ``set_response_content_type``): MMS 1.1.11's frontend decodes the
    per-request header map without handling a reply split across socket reads
    (``ModelResponseDecoder`` -> ``CodecUtils.readMap``), so a batched reply carrying headers can fail
    every request of the batch with a 500. Bodies are always JSON.
    """
    context.set_response_status(exc.status, exc.reason, idx)
    return json.dumps(exc.to_json())


_service = SqueezeNetService()


def _answer_all(context: Any, answers: list[Any], indices: list[int], exc: ServiceError) -> list[Any]:
    for idx in indices:
        answers[idx] = _error_answer(context, idx, exc)
    return answers


def take_raw_request_bodies() -> None:
    """Make this worker hand every request body to the handler as bytes, whatever the server's config.

    MMS's worker parses ``application/json`` bodies and decodes ``text/*`` ones before the handler
    runs unless ``MMS_DECODE_INPUT_REQUEST`` is ``false``; the frontend sets that variable from its
    ``decode_input_request`` setting (default true), and a malformed body then kills the worker
    (``JSONDecodeError``/``UnicodeDecodeError`` in ``mms/protocol/otf_message_handler.py``). The
    worker reads the variable again for every request, in this process, so setting it here at load
    protects the archive on any MMS: a plain one, SageMaker's, a container's."""
    previous = os.environ.get("MMS_DECODE_INPUT_REQUEST")
    os.environ["MMS_DECODE_INPUT_REQUEST"] = "false"
    if previous != "false":
        logger.info("request bodies reach the handler as bytes (MMS_DECODE_INPUT_REQUEST was %r)", previous)


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """MMS entry point: ``data is None`` at load time, else one answer per request in ``data``.

    Never raises for a batch: when ``handle`` raises with more than one request, MMS 1.1.11 answers
    one request with the intended status and fails the others with 500 "Worker died" (a
    ConcurrentModificationException in the frontend), restarting the worker. Whole-batch failures
    are therefore answered per request too.
    """
    if data is None:
        take_raw_request_bodies()
        if not _service.initialized:
            _service.initialize(context)
        return None
    if not _service.initialized:
        return _answer_all(
            context, [None] * len(data), list(range(len(data))), ModelLoadError("model not loaded")
        )
    return _service.handle(data, context)


__all__: list[str] = [
    "BadInput",
    "Engine",
    "InferenceError",
    "ModelLoadError",
    "PayloadTooLarge",
    "Preprocessing",
    "ServiceError",
    "Signature",
    "SqueezeNetService",
    "UnsupportedMediaType",
    "decode_image",
    "handle",
    "normalize",
    "parse_signature",
    "preprocess_image",
    "resize_and_crop",
    "softmax",
    "top_k",
]
