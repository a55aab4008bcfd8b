"""``signature.json`` (MMS's signature, extended with ``preprocessing``, ``postprocessing``, ``limits``
and ``engine``) and ``synset.txt``, validated at load: every number the pipeline uses comes from here."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError
from .memory import MemoryBudget, signature_budget

SIGNATURE_FILE = "signature.json"


SYNSET_FILE = "synset.txt"


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
    max_jpeg_segments: int  # segments before the first scan (and among the scans)
    max_png_chunks: int
    max_png_text_bytes: int  # text Pillow inflates from a PNG's tEXt/zTXt/iTXt chunks, in Image.open
    max_gif_blocks: int  # extension sub-blocks before the first frame
    max_tiff_blocks: int  # strips or tiles
    max_python_decoded_pixels: int  # formats Pillow decodes in Python (XPM, ASCII PNM, RLE BMP)
    draft: bool
    memory_budget: MemoryBudget  # max_decode_bytes, or less for this process (memory.process_budget)

    def with_budget(self, budget: MemoryBudget) -> Preprocessing:
        return replace(self, memory_budget=budget)


@dataclass(frozen=True)
class Signature:
    preprocessing: Preprocessing
    num_classes: int
    topk: int
    engine: str
    model_file: str | None
    model_files: dict[str, str]  # engine name -> its model file, when the archive ships several


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
    max_decode_bytes = int(limits.get("max_decode_bytes", 512 * 1024 * 1024))
    out_shape = list(_require(outputs[0], "data_shape", source))
    post = raw.get("postprocessing", {})
    engine = raw.get("engine", {})
    model_files = engine.get("model_files", {})
    if not isinstance(model_files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in model_files.items()
    ):
        raise ModelLoadError(f"{source}: engine.model_files must map engine names to file names")
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
            max_decode_bytes=max_decode_bytes,
            max_jpeg_scans=int(limits.get("max_jpeg_scans", 100)),
            max_jpeg_segments=int(limits.get("max_jpeg_segments", 1000)),
            max_png_chunks=int(limits.get("max_png_chunks", 25_000)),
            max_png_text_bytes=int(limits.get("max_png_text_bytes", 8 * 1024 * 1024)),
            max_gif_blocks=int(limits.get("max_gif_blocks", 10_000)),
            max_tiff_blocks=int(limits.get("max_tiff_blocks", 65_536)),
            max_python_decoded_pixels=int(limits.get("max_python_decoded_pixels", 262_144)),
            draft=bool(pre.get("jpeg_draft", True)),
            memory_budget=signature_budget(max_decode_bytes),
        ),
        num_classes=int(out_shape[-1]),
        topk=int(post.get("topk", 5)),
        engine=str(engine.get("name", "mxnet")),
        model_file=engine.get("model_file"),
        model_files=dict(model_files),
    )


def read_signature(path: Path) -> Signature:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelLoadError(f"{path.name}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path.name}: not valid JSON: {exc}") from exc
    return parse_signature(raw, path.name)


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
