"""Run an unpacked archive's own handler in this process, the way an MMS worker does: import the
module named by the manifest from the archive folder, call ``handle(None, context)`` with MMS's own
``Context``, then ``handle(requests, context)`` with one ``RequestProcessor`` per request."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

_counter = itertools.count()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # per-request response headers the handler set (MMS would send them)
    body: Any  # the prediction (list of {"class", "probability"}) or the handler's JSON error text

    @property
    def json(self) -> Any:
        return json.loads(self.body) if isinstance(self.body, (str, bytes)) else self.body


class InProcessService:
    """One handler module loaded from ``model_dir`` under a private module name."""

    def __init__(
        self, model_dir: Path, handler: str = "squeezenet_service:handle", batch_size: int = 1
    ) -> None:
        import mms
        from mms.context import Context

        module_name, _, function = handler.partition(":")
        source = model_dir / f"{module_name}.py"
        self.module = _import_file(source, f"{module_name}_inprocess_{next(_counter)}")
        self._handle = getattr(self.module, function or "handle")
        self.context = Context(model_dir.name, str(model_dir), None, batch_size, None, mms.__version__)
        self._handle(None, self.context)

    def predict(self, requests: list[dict[str, Any]]) -> list[Answer]:
        from mms.context import RequestProcessor

        self.context.request_processor = [RequestProcessor({}) for _ in requests]
        self.context.request_ids = {i: f"inprocess-{i}" for i in range(len(requests))}
        bodies = self._handle(requests, self.context)
        if not isinstance(bodies, list) or len(bodies) != len(requests):
            raise RuntimeError(
                f"handler broke the batch contract: {len(requests)} requests, answer {bodies!r}"
            )
        answers = []
        for idx, body in enumerate(bodies):
            status, _phrase = self.context.get_response_status(idx)
            answers.append(Answer(status or 200, dict(self.context.get_response_headers(idx)), body))
        return answers

    def predict_bytes(self, images: list[bytes], topk: int | None = None) -> list[Answer]:
        extra = {} if topk is None else {"topk": str(topk).encode()}
        return self.predict([{"body": bytearray(image), **extra} for image in images])


def _import_file(path: Path, name: str) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(f"{path.name}: handler module not found in {path.parent}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot import")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def smoke_image(width: int = 320, height: int = 240) -> bytes:
    """A deterministic JPEG (colour gradient with a disc) for smoke tests of an archive."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, 96)], -1)
    inside = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 4) ** 2
    rgb[inside] = (230, 40, 40)
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
