"""Who answers: a :data:`Predictor` turns image files into one :class:`Outcome` each, in order.

:func:`load_handler` loads the archive's own handler in this process (:class:`HandlerPredictor`, fed
batches as an MMS worker would be); :class:`ServerPredictor` asks a running server over HTTP. Both ask
for the top :data:`TOPK` classes. A file that cannot be read is an outcome with status 0, not an error.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..layout import unpacked
from .archive_files import ArchiveFiles
from .errors import EvaluationError

TOPK = 5  # classes asked for: top-1 and top-5 are both scored from one answer


@dataclass(frozen=True)
class Outcome:
    """The answer for one image file."""

    status: int  # HTTP status; 0 when the file could not be read (nothing was sent)
    classes: list[str]  # returned synset lines, best first (empty without a prediction)
    error: str | None = None


# Answers for the given image files, one per file, in their order.
Predictor = Callable[[Sequence[Path]], Iterator[Outcome]]


def _read(path: Path) -> bytes | Outcome:
    try:
        return path.read_bytes()
    except OSError as exc:
        return Outcome(0, [], f"cannot read the file: {exc.strerror or exc}")


def _classes(top: Any, source: str) -> list[str]:
    if not isinstance(top, list) or not all(isinstance(item, dict) and "class" in item for item in top):
        raise EvaluationError(f"{source} answered 200 with something that is not a top-k list: {top!r:.200}")
    return [str(item["class"]) for item in top]


def _error_text(body: Any) -> str:
    try:
        parsed = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return str(body)
    return str(parsed.get("message", parsed)) if isinstance(parsed, dict) else str(parsed)


class HandlerPredictor:
    """The archive's own handler in this process, fed batches as an MMS worker would be."""

    def __init__(self, service: Any, batch_size: int, name: str) -> None:
        self.service, self.batch_size, self.name = service, batch_size, name

    def __call__(self, paths: Sequence[Path]) -> Iterator[Outcome]:
        for start in range(0, len(paths), self.batch_size):
            read = [_read(path) for path in paths[start : start + self.batch_size]]
            bodies = [data for data in read if isinstance(data, bytes)]
            answers = iter(self.service.predict_bytes(bodies, topk=TOPK) if bodies else [])
            for data in read:
                if isinstance(data, Outcome):
                    yield data
                    continue
                answer = next(answers)
                if answer.status == 200:
                    yield Outcome(200, _classes(answer.body, f"the handler of {self.name}"))
                else:
                    yield Outcome(answer.status, [], _error_text(answer.body))


@contextlib.contextmanager
def load_handler(archive: ArchiveFiles, batch_size: int = 8) -> Iterator[HandlerPredictor]:
    """Write the archive's files to a temporary folder and load its handler there; the folder is
    removed when the block ends."""
    from ..inprocess import InProcessService

    if batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1, got {batch_size}")
    with unpacked(archive.contents, "squeezenet-evaluate-") as root:
        try:
            service = InProcessService(root, archive.handler, batch_size=batch_size)
        except Exception as exc:  # whatever the archive's own code raises while loading
            raise EvaluationError(f"{archive.path.name}: the handler failed to load: {exc}") from exc
        yield HandlerPredictor(service, batch_size, archive.path.name)


class ServerPredictor:
    """``POST URL/predictions/MODEL`` with a ``topk`` field, ``concurrency`` requests in flight."""

    def __init__(self, url: str, model: str, concurrency: int = 8, timeout: float = 60.0) -> None:
        if concurrency < 1:
            raise EvaluationError(f"--concurrency must be at least 1, got {concurrency}")
        self.url, self.model, self.concurrency, self.timeout = url, model, concurrency, timeout

    def __call__(self, paths: Sequence[Path]) -> Iterator[Outcome]:
        import requests

        with requests.Session() as session, ThreadPoolExecutor(self.concurrency) as pool:
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.concurrency)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            pending: deque[Future[Outcome]] = deque()
            for path in paths:  # a bounded window: files are read as they are sent, never all at once
                pending.append(pool.submit(self._one, path, session))
                if len(pending) >= 2 * self.concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _one(self, path: Path, session: Any) -> Outcome:
        from ..client import predict_one

        data = _read(path)
        if isinstance(data, Outcome):
            return data
        answer = predict_one(data, path.name, self.url, self.model, TOPK, self.timeout, session)
        if answer.status == 200:
            return Outcome(200, _classes(answer.top, f"{self.url}/predictions/{self.model}"))
        return Outcome(answer.status, [], answer.error)
