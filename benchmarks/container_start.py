"""Container start-up: ``python -m benchmarks.container_start NAME=IMAGE ... [--rounds N]``.

For each image (built by ``deploy/image.py``, an archive baked in): ``podman run`` with the inference
port published on 127.0.0.1, from the launch of ``podman run`` to the first ``200`` for a 500x375 JPEG
(polled every 20 ms), then the container stopped and removed by its id. The images one after the
other, the order alternated over ``--rounds`` rounds; prints each start, the medians and, per round,
the ratio of each image's start to the first one's. Numbers only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from .common import ROOT, photo


def start_once(image: str, body: bytes, timeout: float = 120.0) -> float:
    """Seconds from ``podman run`` to the first 200; the container is removed before returning."""
    from squeezenet_mar.server import free_port

    port = free_port()
    began = time.monotonic()
    container = subprocess.run(
        ["podman", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080", image],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    ).stdout.strip()
    try:
        while time.monotonic() - began < timeout:
            with contextlib.suppress(requests.RequestException):
                url = f"http://127.0.0.1:{port}/predictions/squeezenet"
                if requests.post(url, data=body, timeout=10).status_code == 200:
                    return time.monotonic() - began
            time.sleep(0.02)
        raise RuntimeError(f"{image}: no 200 within {timeout:.0f} s")
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "10", container], capture_output=True, check=False)


def measure(images: dict[str, str], rounds: int) -> dict[str, Any]:
    body = photo(500, 375, seed=100)
    starts: dict[str, list[float]] = {name: [] for name in images}
    for round_index in range(rounds):
        for name in list(images) if round_index % 2 == 0 else list(images)[::-1]:
            seconds = start_once(images[name], body)
            starts[name].append(seconds)
            print(f"round {round_index + 1} {name:12} first 200 after {seconds:.2f} s", flush=True)
    first = next(iter(images))
    return {
        name: {
            "image": images[name],
            "median_s": round(statistics.median(values), 2),
            "min_s": round(min(values), 2),
            "max_s": round(max(values), 2),
            "runs_s": [round(v, 2) for v in values],
            f"ratios_to_{first}": [round(a / b, 3) for a, b in zip(values, starts[first], strict=True)],
        }
        for name, values in starts.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.container_start", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("images", nargs="+", help="NAME=IMAGE")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "container_start.json"
    )
    args = parser.parse_args(argv)
    result = measure(dict(item.split("=", 1) for item in args.images), args.rounds)
    for name, row in result.items():
        ratios = next(v for k, v in row.items() if k.startswith("ratios_to_"))
        print(
            f"{name:12} median {row['median_s']:.2f} s [{row['min_s']:.2f}-{row['max_s']:.2f}], "
            f"paired ratio {statistics.fmean(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
