"""The frontend's JVM options side by side: ``python -m benchmarks.jvm_options [--cycles N] NAME=OPTIONS ...``
(default: MMS's own JVM against ``server.JVM_OPTIONS``).

For each set of options: MMS (``squeezenet_mar.server.ModelServer``, the repository's config, the
default archive registered as ``serve`` registers it: 2 workers, batches of 2) started alone, from
``start()`` to the first 200 (the JVM binding its API, then the workers loading), the order alternated
over ``--starts`` rounds; then all of them up at once, ``ab -k`` bursts at ``--concurrency`` alternated
over ``--cycles``, with the Java frontend's CPU per answered request. Prints medians and the paired
ratios of requests/s to the first set. Numbers only.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from .common import ROOT, environment_kept, photo
from .comparison import _cpu_seconds, ab_burst
from .parity import first_200

START_TIMEOUT_S = 120.0  # bounded: a frontend that never answers fails the run instead of hanging it


def start(options: str, store: Path, home: Path, body: bytes) -> tuple[Any, float]:
    """MMS with ``options`` as its ``vmargs`` ("" : none, MMS's own JVM), the archive registered;
    (the server, seconds from start() to its first 200)."""
    from squeezenet_mar.server import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, ModelServer, Registration

    server = ModelServer.on_free_ports(
        home, store, config=ROOT / "config.properties", overrides={"vmargs": options} if options else None
    )
    if not options:
        server.properties.pop("vmargs", None)
    began = time.monotonic()
    server.start()
    try:
        server.register(
            Registration(
                url="m.mar",
                name="m",
                batch_size=DEFAULT_BATCH_SIZE,
                max_batch_delay_ms=0,
                workers=DEFAULT_WORKERS,
            )
        )
        url = f"{server.inference_url}/predictions/m"
        return server, first_200(url, body, began, server.running, START_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise


def main(argv: list[str] | None = None) -> int:
    from squeezenet_mar.build import BuildOptions, build_archive
    from squeezenet_mar.server import JVM_OPTIONS
    from squeezenet_onnx import build_squeezenet11

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.jvm_options", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("variants", nargs="*", help="NAME=OPTIONS (NAME= : MMS's own JVM)")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variants) or {"mms_own": "", "serve": JVM_OPTIONS}
    with tempfile.TemporaryDirectory(prefix="squeezenet-jvm-") as tmp:
        work = Path(tmp)
        model = build_squeezenet11(work / "squeezenet1.1.onnx", seed=0)
        with environment_kept():  # the smoke test's variables stay out of the servers' environment
            build_archive(
                BuildOptions(
                    model_file=model, output=work / "store" / "m.mar", model_name="m", progress=False
                )
            )
        body_path = work / "photo.jpg"
        body_path.write_bytes(photo(500, 375, seed=100))
        body = body_path.read_bytes()
        starts: dict[str, list[float]] = {name: [] for name in variants}
        for round_index in range(args.starts):
            order = list(variants) if round_index % 2 == 0 else list(variants)[::-1]
            for name in order:
                server, seconds = start(variants[name], work / "store", work / f"start-{name}", body)
                server.stop()
                starts[name].append(seconds)
                print(f"start {round_index + 1} {name:12} first 200 after {seconds:.2f} s", flush=True)
        servers = {}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        try:
            for name, options in variants.items():
                server, _ = start(options, work / "store", work / f"serve-{name}", body)
                java = [p for p in server.processes() if p.name() == "java"]
                servers[name] = (server, java)
                ab_burst(f"{server.inference_url}/predictions/m", body_path, args.concurrency, 3)
            for cycle in range(args.cycles):
                for name in list(servers) if cycle % 2 == 0 else list(servers)[::-1]:
                    server, java = servers[name]
                    before = _cpu_seconds(java)
                    burst = ab_burst(
                        f"{server.inference_url}/predictions/m", body_path, args.concurrency, args.seconds
                    )
                    java_ms = 1e3 * (_cpu_seconds(java) - before) / max(1, burst["answers"])
                    results[name].append((burst["requests_per_s"], java_ms))
                    print(
                        f"cycle {cycle + 1} {name:12} {burst['requests_per_s']:6.1f} req/s, "
                        f"Java CPU {java_ms:.2f} ms/request, p99 {burst['p99_ms']} ms",
                        flush=True,
                    )
        finally:
            for server, _ in servers.values():
                with contextlib.suppress(psutil.Error):
                    server.stop()
    first = next(iter(variants))
    for name in variants:
        ratios = [a[0] / b[0] for a, b in zip(results[name], results[first], strict=True)]
        print(
            f"{name:12} start median {statistics.median(starts[name]):.2f} s "
            f"[{min(starts[name]):.2f}-{max(starts[name]):.2f}]; c={args.concurrency} "
            f"{statistics.fmean(r[0] for r in results[name]):.1f} req/s (paired ratio to {first} "
            f"{statistics.fmean(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]), Java CPU "
            f"{statistics.fmean(r[1] for r in results[name]):.2f} ms/request"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
