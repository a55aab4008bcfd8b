"""An independent implementation of the model zoo's preprocessing (torchvision's Resize(256) +
CenterCrop(224) + ToTensor + Normalize), written from the zoo page and not from the handler."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

ZOO_MEAN = np.array([0.485, 0.456, 0.406])
ZOO_STD = np.array([0.229, 0.224, 0.225])


def reference_tensor(image: bytes | Image.Image) -> np.ndarray:
    """float32 (3, 224, 224) for one 8-bit image (no draft decoding: images here are small)."""
    if isinstance(image, bytes):
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(image)))
    rgb = image.convert("RGB")
    w, h = rgb.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    rgb = rgb.resize(size, Image.BILINEAR)
    left, top = round((size[0] - 224) / 2), round((size[1] - 224) / 2)
    rgb = rgb.crop((left, top, left + 224, top + 224))
    x = np.asarray(rgb, dtype=np.float64) / 255.0
    x = (x - ZOO_MEAN) / ZOO_STD
    return x.transpose(2, 0, 1).astype(np.float32)
