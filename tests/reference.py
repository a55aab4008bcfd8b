"""The model zoo's preprocessing, written from the recipe its page points to (``imagenet_preprocess.py``
in the ONNX model zoo), independently of the handler's code, as the tests' numerical reference:

1. read the image as RGB (EXIF orientation applied);
2. resize with Pillow's bilinear filter so that the shorter side is 256: ``ratio = 256 / shorter``,
   the longer side becomes ``int(round(ratio * longer))``;
3. crop 224x224 whose top-left corner is ``(w // 2 - 112, h // 2 - 112)`` of the resized image;
4. scale to [0, 1], subtract mean (0.485, 0.456, 0.406), divide by std (0.229, 0.224, 0.225), CHW.

No JPEG draft decoding here: the handler's draft decoding of large JPEGs is compared against this
full decode with its own tolerance.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

ZOO_MEAN = np.array([0.485, 0.456, 0.406])
ZOO_STD = np.array([0.229, 0.224, 0.225])
SHORTER_SIDE = 256
CROP = 224


def zoo_resize(rgb: Image.Image) -> Image.Image:
    width, height = rgb.size
    shorter, longer = sorted((width, height))
    ratio = SHORTER_SIDE / shorter
    longer = int(round(ratio * longer))
    size = (SHORTER_SIDE, longer) if width < height else (longer, SHORTER_SIDE)
    return rgb.resize(size, Image.BILINEAR)


def zoo_center_crop(rgb: Image.Image) -> Image.Image:
    width, height = rgb.size
    left, top = width // 2 - CROP // 2, height // 2 - CROP // 2
    return rgb.crop((left, top, left + CROP, top + CROP))


def reference_tensor(image: bytes | Image.Image) -> np.ndarray:
    """float32 (3, 224, 224) for one 8-bit image."""
    if isinstance(image, bytes):
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(image)))
    pixels = np.asarray(zoo_center_crop(zoo_resize(image.convert("RGB"))), dtype=np.float64) / 255.0
    return ((pixels - ZOO_MEAN) / ZOO_STD).transpose(2, 0, 1).astype(np.float32)
