"""What GET /metrics costs (issue 21): ``python -m benchmarks.metrics_overhead`` serves the same archive
twice with the real ``squeezenet-mar serve`` (nginx, MMS with its default 2 workers and batches of 2,
the supervisor), once with ``--metrics-port`` and scraped every second (a harsher cadence than
Prometheus's usual 15-30 s), once with ``--metrics-port 0`` (no endpoint, no recording in the
workers). Both are up at once; bursts of ``ab -k`` at concurrency 8 alternate between them over
several cycles, the order reversed every other cycle, so that the drift of a shared machine falls on
both alike (as in ``comparison``). The result is the paired ratio per cycle, metrics on / off, of
requests per second; the target is an overhead of at most 2 %.

Per burst it also notes the CPU the workers and the supervisor (the ``serve`` process, which renders
the scrapes) spent per answered request. Writes JSON (``--output``), prints one line per burst and
a summary. Numbers only: nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

from .common import ROOT, photo
from .comparison import ab_available, ab_burst, python_burst

TARGET_OVERHEAD = 0.02
SCRAPE_SECONDS = 1.0


@dataclass
class Stack:
    name: str
    process: subprocess.Popen[bytes]
    url: str  # .../predictions/squeezenet
    metrics: str | None  # .../metrics, or None (off)
    log: Path

    def workers(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if any(part.endswith("model_service_worker.py") for part in proc.cmdline()):
                    found.append(proc)
        return found

    def cpu_seconds(self) -> tuple[float, float, float]:
        """User + system CPU seconds so far of the workers, of the supervisor, and of the whole stack
        (supervisor, nginx, MMS's frontend and workers)."""

        def cpu(processes: list[psutil.Process]) -> float:
            total = 0.0
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
            return total

        supervisor = psutil.Process(self.process.pid)
        return cpu(self.workers()), cpu([supervisor]), cpu([supervisor, *supervisor.children(recursive=True)])


def start_stack(name: str, archive: Path, home: Path, metrics: bool, timeout: float = 180.0) -> Stack:
    from squeezenet_mar.server import free_port, read_properties, write_properties

    home.mkdir(parents=True)
    config = home / "config.properties"
    ports = {f"{api}_address": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management")}
    write_properties(config, {**read_properties(ROOT / "config.properties"), **ports})
    metrics_port = free_port() if metrics else 0
    command = [str(Path(sys.executable).with_name("squeezenet-mar")), "serve", str(archive)]
    command += ["--config", str(config), "--home", str(home / ".mms"), "--log-dir", str(home / "logs")]
    command += ["--metrics-port", str(metrics_port)]
    log = home / "serve.out"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    stack = Stack(
        name,
        process,
        f"{ports['inference_address']}/predictions/squeezenet",
        f"http://127.0.0.1:{metrics_port}/metrics" if metrics else None,
        log,
    )
    deadline = time.monotonic() + timeout
    while "serving " not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_stack(stack)
            raise RuntimeError(f"{name}: serve did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return stack


def stop_stack(stack: Stack) -> None:
    """SIGTERM (serve drains and stops MMS and nginx), then SIGKILL of whatever is left, by PID."""
    if stack.process.poll() is None:
        tree = [psutil.Process(stack.process.pid), *psutil.Process(stack.process.pid).children(True)]
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(tree, timeout=10)


@contextlib.contextmanager
def scraping(url: str | None, every: float = SCRAPE_SECONDS) -> Iterator[list[int]]:
    """GET ``url`` every ``every`` seconds in a thread while the block runs (what Prometheus does);
    yields the list of response sizes, one per scrape."""
    sizes: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            with contextlib.suppress(requests.RequestException):
                sizes.append(len(requests.get(url, timeout=5).content))

    thread = threading.Thread(target=loop, daemon=True) if url else None
    if thread:
        thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        if thread:
            thread.join(timeout=10)


def measure(
    archive: Path, work: Path, concurrency: int, seconds: float, cycles: int, progress: Any = print
) -> dict[str, Any]:
    body = work / "photo_500x375.jpg"
    body.write_bytes(photo(500, 375, seed=100))
    burst = ab_burst if ab_available() else python_burst
    stacks: list[Stack] = []
    rows: list[dict[str, Any]] = []
    try:
        stacks = [
            start_stack("metrics_on", archive, work / "on", metrics=True),
            start_stack("metrics_off", archive, work / "off", metrics=False),
        ]
        for stack in stacks:  # warm-up: every executor created, every code path run once
            with scraping(stack.metrics):
                burst(stack.url, body, concurrency, min(3.0, seconds))
        for cycle in range(cycles):
            for stack in stacks if cycle % 2 == 0 else stacks[::-1]:
                before = stack.cpu_seconds()
                with scraping(stack.metrics) as scrapes:
                    result = burst(stack.url, body, concurrency, seconds)
                after = stack.cpu_seconds()
                answers = max(1, result["answers"])
                spent = [round(1e3 * (a - b) / answers, 3) for a, b in zip(after, before, strict=True)]
                row = {
                    "cycle": cycle + 1,
                    "config": stack.name,
                    **result,
                    "worker_cpu_ms_per_request": spent[0],
                    "supervisor_cpu_ms_per_request": spent[1],
                    "stack_cpu_ms_per_request": spent[2],
                    "scrapes": len(scrapes),
                    "scrape_bytes": scrapes[-1] if scrapes else 0,
                }
                rows.append(row)
                progress(
                    f"cycle {cycle + 1} {stack.name:11} c={concurrency}: {row['requests_per_s']:6.1f} req/s, "
                    f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, errors {row['errors']}, worker CPU "
                    f"{row['worker_cpu_ms_per_request']:.2f} ms/req, supervisor CPU "
                    f"{row['supervisor_cpu_ms_per_request']:.3f} ms/req, whole stack "
                    f"{row['stack_cpu_ms_per_request']:.2f} ms/req, {row['scrapes']} scrapes"
                )
    finally:
        for stack in stacks:
            stop_stack(stack)
    return summarise(rows, concurrency, seconds, cycles, "ab -k" if burst is ab_burst else "python")


def summarise(
    rows: list[dict[str, Any]], concurrency: int, seconds: float, cycles: int, client: str
) -> dict[str, Any]:
    def of(config: str, key: str) -> list[float]:
        return [row[key] for row in rows if row["config"] == config]

    on, off = of("metrics_on", "requests_per_s"), of("metrics_off", "requests_per_s")
    ratios = [a / b for a, b in zip(on, off, strict=True) if b]
    mean_ratio = statistics.fmean(ratios)
    spread = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else None
    overhead = 1 - mean_ratio
    # CPU per request: on a CPU-bound machine throughput is its inverse, and it is far less sensitive
    # than throughput to what other processes do meanwhile (paired per cycle too).
    cpu_ratios = [
        a / b
        for a, b in zip(
            of("metrics_on", "stack_cpu_ms_per_request"),
            of("metrics_off", "stack_cpu_ms_per_request"),
            strict=True,
        )
        if b
    ]
    return {
        "client": client,
        "concurrency": concurrency,
        "burst_s": seconds,
        "cycles": cycles,
        "scrape_every_s": SCRAPE_SECONDS,
        "requests_per_s": {
            "metrics_on": round(statistics.fmean(on), 1),
            "metrics_off": round(statistics.fmean(off), 1),
        },
        "paired_ratios_on_over_off": [round(r, 4) for r in ratios],
        "mean_ratio": round(mean_ratio, 4),
        "standard_error_of_mean_ratio": None if spread is None else round(spread, 4),
        "overhead": round(overhead, 4),
        "target_overhead": TARGET_OVERHEAD,
        "passed": overhead <= TARGET_OVERHEAD,
        "worker_cpu_ms_per_request": {
            "metrics_on": round(statistics.fmean(of("metrics_on", "worker_cpu_ms_per_request")), 3),
            "metrics_off": round(statistics.fmean(of("metrics_off", "worker_cpu_ms_per_request")), 3),
        },
        "supervisor_cpu_ms_per_request": {
            "metrics_on": round(statistics.fmean(of("metrics_on", "supervisor_cpu_ms_per_request")), 3),
            "metrics_off": round(statistics.fmean(of("metrics_off", "supervisor_cpu_ms_per_request")), 3),
        },
        "stack_cpu_ms_per_request": {
            "metrics_on": round(statistics.fmean(of("metrics_on", "stack_cpu_ms_per_request")), 3),
            "metrics_off": round(statistics.fmean(of("metrics_off", "stack_cpu_ms_per_request")), 3),
        },
        "paired_stack_cpu_ratios_on_over_off": [round(r, 4) for r in cpu_ratios],
        "cpu_overhead": round(statistics.fmean(cpu_ratios) - 1, 4),
        "errors": sum(row["errors"] for row in rows),
        "bursts": rows,
    }


def build_test_archive(work: Path) -> Path:
    """The test model (the zoo file's graph with seeded weights) as ``squeezenet-mar build`` packs it."""
    from squeezenet_mar.build import BuildOptions, build_archive
    from squeezenet_onnx import build_squeezenet11

    model = build_squeezenet11(work / "squeezenet1.1.onnx", seed=0)
    options = BuildOptions(model_file=model, output=work / "store" / "squeezenet_v1.1.mar", progress=False)
    return build_archive(options).archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.metrics_overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--archive", type=Path, help="the .mar to serve (default: built from the test model)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="per burst (%(default)s)")
    parser.add_argument("--cycles", type=int, default=6, help="bursts per configuration (%(default)s)")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "metrics_overhead.json"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="squeezenet-metrics-bench-") as tmp:
        work = Path(tmp)
        archive = args.archive.resolve() if args.archive else build_test_archive(work)
        result = measure(archive, work, args.concurrency, args.seconds, args.cycles)
    result["duration_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    error = result["standard_error_of_mean_ratio"]
    print(
        f"metrics on/off at c={args.concurrency} ({result['client']}, {args.cycles} paired cycles of "
        f"{args.seconds:g} s, scraped every {SCRAPE_SECONDS:g} s): "
        f"{result['requests_per_s']['metrics_on']} / {result['requests_per_s']['metrics_off']} req/s, "
        f"ratio {result['mean_ratio']:.4f}"
        + (f" ± {error:.4f} (standard error)" if error is not None else "")
        + f", overhead {100 * result['overhead']:.2f} % (target <= {100 * TARGET_OVERHEAD:.0f} %: "
        + ("met" if result["passed"] else "missed")
        + f"); worker CPU {result['worker_cpu_ms_per_request']['metrics_on']:.2f} / "
        f"{result['worker_cpu_ms_per_request']['metrics_off']:.2f} ms per request; supervisor CPU "
        f"{result['supervisor_cpu_ms_per_request']['metrics_on']:.3f} / "
        f"{result['supervisor_cpu_ms_per_request']['metrics_off']:.3f} ms per request; whole stack CPU "
        f"{result['stack_cpu_ms_per_request']['metrics_on']:.2f} / "
        f"{result['stack_cpu_ms_per_request']['metrics_off']:.2f} ms per request "
        f"({100 * result['cpu_overhead']:+.2f} %)"
    )
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
