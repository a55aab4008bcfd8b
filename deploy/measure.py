"""Measure the serving image: its size, the start-up time to the first 200 prediction, the memory
after a burst of requests, and how long SIGTERM takes to stop it.

    python deploy/measure.py [--image squeezenet-mms:latest] [--requests 200] [--json FILE]

The container runs with the archive baked in, on a free 127.0.0.1 port, and is removed (by its id)
whatever happens. Start-up is timed from just before ``podman run`` to the first 200 answer of
``POST /predictions/squeezenet``; "podman run" itself (creating the container) is part of it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import image as deploy_image  # noqa: E402  (deploy/image.py, beside this script)

from squeezenet_mar.inprocess import smoke_image  # noqa: E402
from squeezenet_mar.server import free_port  # noqa: E402

UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


@dataclass(frozen=True)
class Measurement:
    image: str
    image_size_bytes: int
    startup_to_first_200_s: float
    requests: int
    requests_per_second: float
    memory_after_requests_bytes: int
    sigterm_to_exit_s: float
    exit_code: int | None


def parse_size(text: str) -> int:
    """``273.8MB`` (podman stats) in bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmg]?i?b)\s*", text.lower())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def container_memory(container: str) -> int:
    result = deploy_image.podman("stats", "--no-stream", "--format", "json", container)
    [stats] = json.loads(result.stdout)
    return parse_size(stats["mem_usage"].split("/")[0])


def wait_for_first_200(url: str, body: bytes, container: str, started: float, timeout: float) -> float:
    """Seconds from ``started`` (a ``time.monotonic()``) until ``url`` answers 200 to ``body``; raises
    if the container exits or ``timeout`` runs out."""
    while time.monotonic() - started < timeout:
        try:
            if requests.post(url, data=body, timeout=30).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        if not deploy_image.container_state(container).get("Running"):
            raise deploy_image.ImageError(
                f"the container exited:\n{deploy_image.container_logs(container)[-3000:]}"
            )
        time.sleep(0.05)
    raise deploy_image.ImageError(f"no 200 from {url} within {timeout:.0f} s")


def measure(image: str, count: int = 200, concurrency: int = 4, timeout: float = 180.0) -> Measurement:
    size = deploy_image.image_size(image)
    body = smoke_image(500, 375)
    port = free_port()
    url = f"http://127.0.0.1:{port}/predictions/squeezenet"
    started = time.monotonic()
    container = deploy_image.run_container(image, "--publish", f"127.0.0.1:{port}:8080")
    try:
        startup = wait_for_first_200(url, body, container, started, timeout)
        burst = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            codes = list(
                pool.map(lambda _: requests.post(url, data=body, timeout=60).status_code, range(count))
            )
        rate = count / (time.monotonic() - burst)
        if codes.count(200) != count:
            raise deploy_image.ImageError(f"{count - codes.count(200)} of {count} requests failed")
        memory = container_memory(container)
        stop = time.monotonic()
        deploy_image.podman("kill", "--signal", "TERM", container)
        code = deploy_image.wait_for_exit(container, timeout=30)
        stopped = time.monotonic() - stop
    finally:
        deploy_image.remove_container(container)
    return Measurement(
        image=image,
        image_size_bytes=size,
        startup_to_first_200_s=round(startup, 3),
        requests=count,
        requests_per_second=round(rate, 1),
        memory_after_requests_bytes=memory,
        sigterm_to_exit_s=round(stopped, 3),
        exit_code=code,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/measure.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=deploy_image.DEFAULT_TAG, help="(default %(default)s)")
    parser.add_argument("--requests", type=int, default=200, help="burst after start-up (%(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="(default %(default)s)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    try:
        result = measure(args.image, args.requests, args.concurrency)
    except (deploy_image.ImageError, requests.RequestException, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"image                       {result.image}")
    print(f"image size                  {result.image_size_bytes / 1e6:.0f} MB")
    print(f"start-up to first 200       {result.startup_to_first_200_s:.2f} s (podman run included)")
    print(f"{result.requests} requests, {args.concurrency} at a time  {result.requests_per_second:.1f} req/s")
    print(f"memory after them           {result.memory_after_requests_bytes / 1e6:.0f} MB")
    print(f"SIGTERM to exit             {result.sigterm_to_exit_s:.2f} s (exit code {result.exit_code})")
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
