"""Bytes one request holds at its peak while the handler turns its image into the model's input,
from the image's header (``image_headers.Header``) and what Pillow says once it has opened the file
(the mode, the size after a JPEG draft, the EXIF orientation). The stages do not all live at once;
the peak is the largest of::

    decode      the decoder's own buffers and the image (and its upright copy, for a TIFF that
                Pillow turns while it loads)
    upright     the image and its turned copy (EXIF orientation)
    to 8 bits   the image and its 8-bit grey or RGB copy (and the temporaries of one band of rows)
    resize      the 8-bit image, the resampler's intermediate (new width x source height) and its
                output

plus, all along, what Pillow keeps of the file's metadata, two copies of the request body (MMS's
and the handler's) and a fixed allowance for Python's and Pillow's small objects and the tensor.

Pillow stores a pixel in 1 byte for modes 1, L and P, 2 for 16-bit grey, and 4 for every other mode
(RGB included). Grey images (1, L, LA, 16- and 32-bit integer, float) stay 8-bit grey through the
resize: the RGB copy of a grey image would hold the same value three times.
"""

from __future__ import annotations

from dataclasses import dataclass

from .image_headers import Header

MiB = 1024 * 1024
OVERHEAD = 4 * MiB  # Python objects, Pillow's decoder state, the crop, the tensor: measured 1-2 MiB
BAND_PIXELS = 1 << 18  # pixels of one band when 16/32-bit grey is scaled to 8 bits with numpy
BAND_BYTES = 24 * BAND_PIXELS  # its crop, the crop's bytes, numpy's temporaries (up to 16 bytes a pixel)

_STORAGE = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
NUMPY_GREY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})  # scaled to 8 bits in bands
GREY = frozenset({"1", "L", "LA"}) | NUMPY_GREY  # kept 8-bit grey up to the model's input


def storage_bytes(mode: str) -> int:
    """Bytes a pixel of ``mode`` takes in a Pillow image."""
    return _STORAGE.get(mode, 4)


@dataclass(frozen=True)
class Estimate:
    """The peak and its parts, to name the largest stage in a 413."""

    peak: int
    stage: str
    stages: dict[str, int]


def resize_bytes(width: int, height: int, pixel: int, resized: tuple[int, int], box: bool, crop: int) -> int:
    """The resampler's intermediate and output for ``images.resize_and_crop`` at ``pixel`` bytes a
    pixel: its horizontal pass makes (new width) x (the source rows the vertical pass needs)."""
    new_w, new_h = resized
    if not box:
        intermediate = new_w * height if new_w != width else 0
        return pixel * (intermediate + new_w * new_h + crop * crop)
    rows = min(height, -(-crop * height // new_h) + 2)  # only the region under the crop is resampled
    return pixel * (crop * rows + crop * crop)


def estimate_peak(
    header: Header,
    mode: str,
    size: tuple[int, int],
    rotated: bool,
    body_bytes: int,
    resized: tuple[int, int],
    box: bool,
    crop: int,
) -> Estimate:
    """The estimate above for an image Pillow opened as ``mode`` at ``size`` (after any draft)."""
    width, height = size
    pixels = width * height
    image = storage_bytes(mode) * pixels
    eight = (1 if mode in GREY else 4) * pixels  # the 8-bit grey or RGB image
    stages = {
        "decode": header.decoder_bytes + image * (2 if header.transposed else 1),
        "upright": 2 * image if rotated and not header.transposed else 0,
        "to 8 bits": 0 if mode in ("L", "RGB") else image + eight + (BAND_BYTES if mode in NUMPY_GREY else 0),
        "resize": eight + resize_bytes(width, height, 1 if mode in GREY else 4, resized, box, crop),
    }
    stage = max(stages, key=lambda name: stages[name])
    return Estimate(stages[stage] + header.held_bytes + 2 * body_bytes + OVERHEAD, stage, stages)
