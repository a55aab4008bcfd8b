"""Run an unpacked archive's own handler the way an MMS worker does: import the module named by the
manifest from the archive folder, call ``handle(None, context)`` with MMS's own ``Context``, then
``handle(requests, context)`` with one ``RequestProcessor`` per request.

:class:`InProcessService` does it in this process (the builder's smoke test of its own staged files,
``evaluate``, the tests); :func:`run_handler_in_child` in a child process, for an archive that came
from elsewhere (``verify --run``): ``python -m squeezenet_mar.inprocess FOLDER HANDLER ANSWER``."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
    """One handler module loaded from ``model_dir`` under a private module name, with the modules it
    imports taken from ``model_dir`` (see :func:`archive_imports`)."""

    def __init__(
        self, model_dir: Path, handler: str = "squeezenet_service:handle", batch_size: int = 1
    ) -> None:
        import mms
        from mms.context import Context

        module_name, _, function = handler.partition(":")
        source = model_dir / f"{module_name}.py"
        with archive_imports(model_dir) as self.modules:
            self.module = _import_file(source, f"{module_name}_inprocess_{next(_counter)}")
        self._handle = getattr(self.module, function or "handle")
        self.context = Context(model_dir.name, str(model_dir), None, batch_size, None, mms.__version__)
        self._handle(None, self.context)

    def handler_module(self, name: str) -> ModuleType:
        """The archive's own ``squeezenet_handler.<name>`` module, as this service imported it."""
        return self.modules[f"squeezenet_handler.{name}"]

    def predict(
        self, requests: list[dict[str, Any]], headers: list[dict[str, str]] | None = None
    ) -> list[Answer]:
        """One batch, as an MMS worker gets it; ``headers``: each request's HTTP headers."""
        from mms.context import RequestProcessor

        headers = headers or [{} for _ in requests]
        self.context.request_processor = [RequestProcessor(dict(h)) for h in headers]
        self.context.request_ids = {i: f"inprocess-{i}" for i in range(len(requests))}
        bodies = self._handle(requests, self.context)
        if not isinstance(bodies, list) or len(bodies) != len(requests):
            raise RuntimeError(
                f"handler broke the batch contract: {len(requests)} requests, answer {bodies!r}"
            )
        answers = []
        for idx, body in enumerate(bodies):
            status, _phrase = self.context.get_response_status(idx)
            status = status or 200
            if status == 200 and isinstance(body, (str, bytes)):  # the prediction, as JSON text
                body = json.loads(body)
            answers.append(Answer(status, dict(self.context.get_response_headers(idx)), body))
        return answers

    def predict_bytes(self, images: list[bytes], topk: int | None = None) -> list[Answer]:
        extra = {} if topk is None else {"topk": str(topk).encode()}
        return self.predict([{"body": bytearray(image), **extra} for image in images])


@contextmanager
def archive_imports(model_dir: Path) -> Iterator[dict[str, ModuleType]]:
    """Imports in the block find the archive's own modules first, as in an MMS worker whose
    ``PYTHONPATH`` is the model folder: ``model_dir`` goes first on ``sys.path``, and modules already
    imported under the archive's top-level names (the tool's own ``squeezenet_handler``) are set aside.
    Afterwards ``sys.path`` and those modules are restored; the archive's modules, which the loaded
    handler keeps using, are yielded (filled in when the block ends)."""
    tops = {p.stem for p in model_dir.glob("*.py")}
    tops |= {p.name for p in model_dir.iterdir() if (p / "__init__.py").is_file()}
    aside = {name: module for name, module in sys.modules.items() if name.split(".")[0] in tops}
    for name in aside:
        del sys.modules[name]
    sys.path.insert(0, str(model_dir))
    loaded: dict[str, ModuleType] = {}
    try:
        yield loaded
    finally:
        sys.path.remove(str(model_dir))
        loaded.update({name: module for name, module in sys.modules.items() if name.split(".")[0] in tops})
        for name in loaded:
            del sys.modules[name]
        sys.modules.update(aside)


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


def run_handler_in_child(model_dir: Path, handler: str, timeout: float = 300.0) -> Answer:
    """Load ``handler`` from ``model_dir`` in a child Python and answer :func:`smoke_image`; whatever
    goes wrong (an exception at load, a crash, a hang) comes back as a 5xx Answer naming it."""
    with tempfile.TemporaryDirectory(prefix="squeezenet-child-") as tmp:
        answer_file = Path(tmp) / "answer.json"
        command = [
            sys.executable,
            "-m",
            "squeezenet_mar.inprocess",
            str(model_dir),
            handler,
            str(answer_file),
        ]
        try:
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Answer(504, {}, f"the handler did not answer within {timeout:.0f} s")
        if done.returncode != 0 or not answer_file.is_file():
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            return Answer(500, {}, f"the child process exited with {done.returncode}: {tail}")
        saved = json.loads(answer_file.read_text())
        return Answer(saved["status"], {}, saved["body"])


def main(argv: list[str] | None = None) -> int:
    """Child process entry point of :func:`run_handler_in_child`."""
    model_dir, handler, answer_file = argv or sys.argv[1:]
    [answer] = InProcessService(Path(model_dir), handler).predict_bytes([smoke_image()])
    Path(answer_file).write_text(json.dumps({"status": answer.status, "body": answer.body}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
