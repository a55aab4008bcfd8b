"""A small client for the MMS inference API: several images at once, answers or clear errors."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .errors import ClientError, UsageError

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_MODEL = "squeezenet"


@dataclass(frozen=True)
class Prediction:
    image: str
    status: int
    top: list[dict[str, Any]] | None  # [{"class", "probability"}, ...] when status is 200
    error: str | None  # the server's message otherwise
    seconds: float
    request_id: str | None = None  # MMS's x-request-id, as in its logs

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.top is not None


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return response.text.strip()


def predict_one(
    image: bytes,
    name: str = "image",
    url: str = DEFAULT_URL,
    model: str = DEFAULT_MODEL,
    topk: int | None = None,
    timeout: float = 60.0,
    session: requests.Session | None = None,
) -> Prediction:
    """POST one image (raw body; multipart with a ``topk`` field when topk is given)."""
    endpoint = f"{url.rstrip('/')}/predictions/{model}"
    http = session or requests
    started = time.perf_counter()
    try:
        if topk is None:
            response = http.post(endpoint, data=image, timeout=timeout)
        else:
            files = {"data": (name, image, "application/octet-stream")}
            response = http.post(endpoint, files=files, data={"topk": str(topk)}, timeout=timeout)
    except requests.ConnectionError as exc:
        raise ClientError(f"cannot reach {endpoint}: is the model server running? ({exc})") from exc
    except requests.Timeout as exc:
        raise ClientError(f"{endpoint} did not answer within {timeout:.0f} s") from exc
    seconds = time.perf_counter() - started
    request_id = response.headers.get("x-request-id")
    if response.status_code == 200:
        try:
            top = response.json()
        except ValueError as exc:
            raise ClientError(
                f"{endpoint} answered 200 with a body that is not JSON: {response.text[:200]}"
            ) from exc
        return Prediction(name, 200, top, None, seconds, request_id)
    return Prediction(name, response.status_code, None, _error_message(response), seconds, request_id)


def predict_files(
    paths: Sequence[str | Path],
    url: str = DEFAULT_URL,
    model: str = DEFAULT_MODEL,
    topk: int | None = None,
    concurrency: int = 8,
    timeout: float = 60.0,
) -> list[Prediction]:
    """Every file sent concurrently; answers in the order of ``paths`` (strings or paths)."""
    paths = [Path(path) for path in paths]
    bodies = [_read_image_file(path) for path in paths]  # all of them before the first request
    with requests.Session() as session, ThreadPoolExecutor(max(1, concurrency)) as pool:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(1, concurrency))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        futures = [
            pool.submit(predict_one, body, str(path), url, model, topk, timeout, session)
            for path, body in zip(paths, bodies, strict=True)
        ]
        return [future.result() for future in futures]


def _read_image_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
