"""Where the ONNX model comes from: a local file, or the model zoo URL, downloaded once into a cache
and checked against the checksum the zoo publishes beside it. Never another model in its place."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import requests
from tqdm import tqdm

from .errors import DownloadError

logger = logging.getLogger(__name__)

ZOO_URL = "https://s3.amazonaws.com/onnx-model-zoo/squeezenet/squeezenet1.1/squeezenet1.1.onnx"
LOCAL_HINT = (
    "No other model was substituted. Download squeezenet1.1.onnx yourself and pass it with "
    "--model-file PATH (make serve MODEL=PATH), or give the expected checksum with --md5/--sha256."
)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "squeezenet-mar"


def checksum_url(url: str) -> str:
    """The zoo publishes ``<stem>-md5.txt`` beside ``<stem>.onnx``."""
    folder, _, name = url.rpartition("/")
    return f"{folder}/{name.rsplit('.', 1)[0]}-md5.txt"


def file_digests(path: Path) -> dict[str, str]:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _fail(url: str, what: str) -> DownloadError:
    return DownloadError(f"cannot download {url}: {what}. {LOCAL_HINT}")


def fetch_published_md5(url: str, timeout: float) -> str:
    md5_url = checksum_url(url)
    try:
        response = requests.get(md5_url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise _fail(url, f"its checksum file {md5_url} is unavailable ({exc})") from exc
    match = re.search(r"\b[0-9a-fA-F]{32}\b", response.text)
    if not match:
        raise _fail(url, f"{md5_url} holds no MD5 checksum")
    return match.group(0).lower()


def _matches(digests: dict[str, str], md5: str | None, sha256: str | None) -> str | None:
    """None when the file matches every given checksum, else what differs."""
    for name, expected in (("md5", md5), ("sha256", sha256)):
        if expected and digests[name] != expected.lower():
            return f"{name} is {digests[name]}, expected {expected.lower()}"
    return None


def fetch_model(
    url: str = ZOO_URL,
    cache_dir: Path | None = None,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """The model file in the cache, downloaded (streamed, with a progress bar) only when missing."""
    cache_dir = cache_dir or default_cache_dir()
    if not md5 and not sha256:
        md5 = fetch_published_md5(url, timeout)
    target = cache_dir / url.rstrip("/").rsplit("/", 1)[-1]
    if target.is_file() and _matches(file_digests(target), md5, sha256) is None:
        logger.info("using cached %s", target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length") or 0) or None
            received = 0
            with (
                partial.open("wb") as out,
                tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar,
            ):
                for block in response.iter_content(1 << 16):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise _fail(url, f"connection closed after {received} of {total} bytes")
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise _fail(url, str(exc)) from exc
    except DownloadError:
        partial.unlink(missing_ok=True)
        raise
    mismatch = _matches(file_digests(partial), md5, sha256)
    if mismatch:
        partial.unlink()
        raise _fail(url, f"checksum mismatch: {mismatch}")
    os.replace(partial, target)
    logger.info("downloaded %s (%d bytes)", target, target.stat().st_size)
    return target
