"""What GET /metrics costs (issue 21): ``python -m benchmarks.metrics_overhead`` serves the same archive
twice with the real ``squeezenet-mar serve`` (nginx, MMS with its default 2 workers and batches of 2,
the supervisor), once with ``--metrics-port`` and scraped every second (a harsher cadence than
Prometheus's usual 15-30 s), once with ``--metrics-port 0`` (no endpoint, no recording in the
workers). Both are up at once; bursts of ``ab -k`` at concurrency 8 alternate between them over
several cycles, the order reversed every other cycle, so that the drift of a shared machine falls on
both alike (as in ``comparison``). The result is the paired ratio per cycle, metrics on / off, of
requests per second; the target is an overhead of at most 2 %.

Per burst it also notes the CPU the workers, the supervisor (the ``serve`` process, which renders
the scrapes) and the whole stack spent per answered request. On a shared machine the paired ratio
can be noisier than 2 %, so the cost is also measured part by part, each with little noise: the
CPU the handler spends recording one request (in a child process, a batch of 2, as served), and the
supervisor's CPU per scrape (50 scrapes of the idle "on" stack after the bursts, gzip as Prometheus
asks). Their sum per request, at the measured request rate and one scrape a second, over the whole
stack's CPU per request without metrics, is the overhead on a CPU-bound machine. Writes JSON
(``--output``), prints one line per burst and a summary. Numbers only: nothing asserts a timing.
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
SCRAPES_TIMED = 50

# What one batch of 2 costs the handler to record, against the same calls with recording off: the
# calls service.py makes (handling, decode and preprocess per request, inference, postprocess).
RECORDING_COST = """
import json, os, shutil, sys, tempfile, time
folder = tempfile.mkdtemp()  # mode 0700, this user's: what the handler requires
os.environ["SQUEEZENET_METRICS_DIR"] = folder
from mms.context import Context, RequestProcessor
from squeezenet_handler.metrics import NO_METRICS, start_metrics
on = start_metrics("squeezenet", "1.1")
context = Context("squeezenet", folder, {"model": {"modelVersion": "1.1"}}, 2, None, "1.1.11")
data = [{}, {}]
def batch(metrics):
    context.request_processor = [RequestProcessor({"X-Request-Start": f"t={time.time():.3f}"}) for _ in data]
    with metrics.handling(data, context):
        for _ in data:
            with metrics.stage("decode"):
                pass
            with metrics.stage("preprocess"):
                pass
        with metrics.stage("inference"):
            pass
        with metrics.stage("postprocess"):
            pass
out = {}
for name, metrics in (("off", NO_METRICS), ("on", on)):
    for _ in range(500):
        batch(metrics)
    began = time.process_time()
    for _ in range(20000):
        batch(metrics)
    out[name] = (time.process_time() - began) / 20000 / len(data) * 1e6
print(json.dumps(out))
shutil.rmtree(folder)
"""


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

    thread = threading.Thread(target=loop, daemon=True) if url and every > 0 else None
    if thread:
        thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        if thread:
            thread.join(timeout=10)


def recording_cost() -> dict[str, float]:
    """CPU microseconds per request the handler spends recording (on) and in the same calls off."""
    done = subprocess.run([sys.executable, "-c", RECORDING_COST], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"recording cost: {done.stderr[-2000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "us_per_request_on": round(measured["on"], 2),
        "us_per_request_off": round(measured["off"], 2),
        "us_per_request": round(measured["on"] - measured["off"], 2),
    }


def scrape_cost(stack: Stack, scrapes: int = SCRAPES_TIMED) -> dict[str, float]:
    """The supervisor's CPU per GET /metrics (gzip, as Prometheus asks), the idle stack scraped
    ``scrapes`` times in a row."""
    if stack.metrics is None:
        raise ValueError(f"{stack.name} has no metrics endpoint")
    _, before, _ = stack.cpu_seconds()
    sizes = []
    for _ in range(scrapes):
        answer = requests.get(stack.metrics, headers={"Accept-Encoding": "gzip"}, timeout=10)
        sizes.append(len(answer.content))
    _, after, _ = stack.cpu_seconds()
    return {"ms_per_scrape": round(1e3 * (after - before) / scrapes, 3), "bytes": sizes[-1]}


def measure(
    archive: Path,
    work: Path,
    concurrency: int,
    seconds: float,
    cycles: int,
    progress: Any = print,
    off_first: bool = False,
    scrape_every: float = SCRAPE_SECONDS,
) -> dict[str, Any]:
    body = work / "photo_500x375.jpg"
    body.write_bytes(photo(500, 375, seed=100))
    burst = ab_burst if ab_available() else python_burst
    stacks: list[Stack] = []
    rows: list[dict[str, Any]] = []
    try:
        for metrics in (False, True) if off_first else (True, False):  # worker numbers follow the order
            name = "metrics_on" if metrics else "metrics_off"
            stacks.append(start_stack(name, archive, work / name, metrics=metrics))
        stacks.sort(key=lambda stack: stack.name != "metrics_on")
        for stack in stacks:  # warm-up: every executor created, every code path run once
            with scraping(stack.metrics, scrape_every):
                burst(stack.url, body, concurrency, min(3.0, seconds))
        for cycle in range(cycles):
            for stack in stacks if cycle % 2 == 0 else stacks[::-1]:
                before = stack.cpu_seconds()
                with scraping(stack.metrics, scrape_every) as scrapes:
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
        scraped = scrape_cost(stacks[0])
        progress(f"supervisor CPU per scrape: {scraped['ms_per_scrape']:.2f} ms ({scraped['bytes']} bytes)")
    finally:
        for stack in stacks:
            stop_stack(stack)
    recorded = recording_cost()
    progress(f"handler CPU to record a request: {recorded['us_per_request']:.1f} us")
    result = summarise(rows, concurrency, seconds, cycles, "ab -k" if burst is ab_burst else "python")
    result["scrape_every_s"] = scrape_every
    rate = result["requests_per_s"]["metrics_on"]
    per_scrape = scraped["ms_per_scrape"] / (scrape_every or SCRAPE_SECONDS)  # not scraped: as at 1 s
    per_request_ms = recorded["us_per_request"] / 1e3 + per_scrape / rate
    result["parts"] = {
        "recording": recorded,
        "scrape": scraped,
        "added_cpu_ms_per_request": round(per_request_ms, 4),
        "overhead": round(per_request_ms / result["stack_cpu_ms_per_request"]["metrics_off"], 4),
    }
    return result


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
        "--scrape-every", type=float, default=SCRAPE_SECONDS, help="seconds (%(default)s; 0: never)"
    )
    parser.add_argument("--off-first", action="store_true", help="start the stack without metrics first")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "metrics_overhead.json"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="squeezenet-metrics-bench-") as tmp:
        work = Path(tmp)
        archive = args.archive.resolve() if args.archive else build_test_archive(work)
        result = measure(
            archive,
            work,
            args.concurrency,
            args.seconds,
            args.cycles,
            off_first=args.off_first,
            scrape_every=args.scrape_every,
        )
    result["duration_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    error = result["standard_error_of_mean_ratio"]
    print(
        f"metrics on/off at c={args.concurrency} ({result['client']}, {args.cycles} paired cycles of "
        f"{args.seconds:g} s, scraped every {args.scrape_every:g} s): "
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
    parts = result["parts"]
    print(
        f"part by part: recording {parts['recording']['us_per_request']:.1f} us CPU per request + "
        f"{parts['scrape']['ms_per_scrape']:.2f} ms per scrape ({parts['scrape']['bytes']} bytes of text) at "
        f"{result['requests_per_s']['metrics_on']} req/s = {parts['added_cpu_ms_per_request']:.3f} ms per "
        f"request of {result['stack_cpu_ms_per_request']['metrics_off']:.2f}: overhead "
        f"{100 * parts['overhead']:.2f} % (target <= {100 * TARGET_OVERHEAD:.0f} %)"
    )
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
