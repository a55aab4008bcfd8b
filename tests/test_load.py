"""A bounded load test through a real Multi Model Server on 127.0.0.1 (issue 5, part 4).

16 clients send continuously to a dedicated server registered as ``squeezenet-mar serve`` registers
by default (one worker per core, batches of at most 2, no batch delay): 10 s of warm-up, then 60 s
measured. Every answer must be the in-process handler's answer for its image, no request may fail,
and the workers' resident memory after the run must be within 10 % of what it was after warm-up.
Throughput, latency percentiles and memory are printed and written as JSON.

Memory reaches its steady state during the warm-up: each worker binds at most two executors, one
per thread count it runs with (see ``squeezenet_handler.engines.MXNetEngine``). The absolute figure
depends on the page cache as much as on the code: the pages of ``libmxnet.so`` a worker maps count
in its RSS, 52 MB in a long-used virtualenv and 88 MB in a freshly installed one (measured).
Speed is measured by ``benchmarks/`` (never asserted here).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psutil
import pytest
import requests

import images
from harness import ROOT
from squeezenet_mar.server import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_DELAY_MS,
    DEFAULT_WORKERS,
    ModelServer,
    Registration,
)
from test_serving import same_prediction

pytestmark = [pytest.mark.integration, pytest.mark.load]

CONCURRENCY = 16
WORKERS = DEFAULT_WORKERS  # what `squeezenet-mar serve` runs: one per core, sharing the cores
WARMUP_SECONDS = 10.0
RUN_SECONDS = 60.0
REQUEST_TIMEOUT = 30.0
MEMORY_TOLERANCE = 0.10
# Eight different JPEGs (sizes, orientations, contents): every answer is checked against its own image.
POOL = {
    f"jpeg_{w}x{h}": images.jpeg(w, h, seed)
    for seed, (w, h) in enumerate(
        [(500, 375), (375, 500), (640, 480), (320, 240), (800, 600), (224, 224), (1024, 768), (300, 300)],
        start=50,
    )
}


@pytest.fixture(scope="module")
def expected(inprocess) -> dict[str, list[dict]]:
    """The archive's own handler in this process: the top 5 for every image of the pool."""
    answers = {name: inprocess.predict_bytes([body])[0] for name, body in POOL.items()}
    assert all(answer.status == 200 for answer in answers.values())
    assert len({answer.body[0]["class"] for answer in answers.values()}) > 1  # answers tell images apart
    return {name: answer.body for name, answer in answers.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory, built):
    """A server of its own, registered as `squeezenet-mar serve` registers by default."""
    server = ModelServer.on_free_ports(
        tmp_path_factory.mktemp("mms_load"),
        built.archive.parent,
        config=ROOT / "config.properties",
    )
    server.start()
    try:
        registration = Registration(
            url=built.archive.name,
            batch_size=DEFAULT_BATCH_SIZE,
            max_batch_delay_ms=DEFAULT_MAX_BATCH_DELAY_MS,
            workers=WORKERS,
        )
        server.register(registration)
        server.wait_for_workers("squeezenet", WORKERS)
        yield server
    finally:
        server.stop()
        assert not server.processes()


@dataclass
class LoadRun:
    seconds: float = 0.0
    requests: int = 0  # sent
    latencies: list[float] = field(default_factory=list)  # seconds, of the answered requests
    errors: list[str] = field(default_factory=list)  # one line per request without a 200
    wrong: list[str] = field(default_factory=list)  # images whose 200 was not their answer

    def figures(self) -> dict[str, float | int]:
        ms = np.asarray(self.latencies) * 1000.0
        return {
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "errors": len(self.errors),
            "wrong_answers": len(self.wrong),
            "throughput_rps": round(len(self.latencies) / self.seconds, 2),
            "latency_ms_p50": round(float(np.percentile(ms, 50)), 1),
            "latency_ms_p90": round(float(np.percentile(ms, 90)), 1),
            "latency_ms_p99": round(float(np.percentile(ms, 99)), 1),
            "latency_ms_max": round(float(ms.max()), 1),
        }


def run_load(url: str, seconds: float, expected: dict[str, list[dict]]) -> LoadRun:
    """CONCURRENCY clients, each with its own keep-alive session, cycling through the pool until
    ``seconds`` have passed (the last requests finish after that, within their timeout)."""
    run = LoadRun()
    names = sorted(POOL)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        with requests.Session() as session:
            sent = 0
            while time.monotonic() < stop_at:
                name = names[(offset + sent) % len(names)]
                sent += 1
                started = time.perf_counter()
                try:
                    response = session.post(url, data=POOL[name], timeout=REQUEST_TIMEOUT)
                except requests.RequestException as exc:
                    with lock:
                        run.requests += 1
                        run.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    continue
                latency = time.perf_counter() - started
                with lock:
                    run.requests += 1
                    run.latencies.append(latency)
                    if response.status_code != 200:
                        run.errors.append(f"HTTP {response.status_code} {name}: {response.text[:200]}")
                    elif not same_prediction(response.json(), expected[name]):
                        run.wrong.append(name)

    began = time.monotonic()
    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CONCURRENCY)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=seconds + 2 * REQUEST_TIMEOUT)
    if any(thread.is_alive() for thread in clients):
        raise AssertionError("a client thread did not finish within its time limit")
    run.seconds = time.monotonic() - began
    return run


def resident_mb(pids: list[int]) -> list[float]:
    return [round(psutil.Process(pid).memory_info().rss / 2**20, 1) for pid in pids]


def test_sixteen_clients_for_a_minute_against_two_workers(server, expected, tmp_path, capsys):
    url = f"{server.inference_url}/predictions/squeezenet"
    pids = server.worker_pids("squeezenet")
    warmup = run_load(url, WARMUP_SECONDS, expected)
    memory_warm = resident_mb(pids)
    measured = run_load(url, RUN_SECONDS, expected)
    memory_after = resident_mb(pids)
    pids_after = server.worker_pids("squeezenet")

    growth = sum(memory_after) / sum(memory_warm) - 1.0
    figures = {
        "setup": {
            "concurrency": CONCURRENCY,
            "workers": WORKERS,
            "batch_size": DEFAULT_BATCH_SIZE,
            "max_batch_delay_ms": DEFAULT_MAX_BATCH_DELAY_MS,
            "images": len(POOL),
            "cpu_count": os.cpu_count(),
            "clients_share_the_machine": True,
        },
        "warmup": warmup.figures(),
        "run": measured.figures(),
        "memory": {
            "worker_pids": pids,
            "rss_mb_after_warmup": memory_warm,
            "rss_mb_after_run": memory_after,
            "total_mb_after_warmup": round(sum(memory_warm), 1),
            "total_mb_after_run": round(sum(memory_after), 1),
            "growth_percent": round(100 * growth, 2),
        },
        "errors_sample": measured.errors[:5],
    }
    report = tmp_path / "load.json"
    report.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    with capsys.disabled():
        run, memory = figures["run"], figures["memory"]
        print(
            f"\nload: {CONCURRENCY} clients, {WORKERS} workers, batch <= {DEFAULT_BATCH_SIZE}, "
            f"{run['seconds']} s: "
            f"{run['requests']} requests, {run['errors']} errors, {run['wrong_answers']} wrong, "
            f"{run['throughput_rps']} req/s, p50 {run['latency_ms_p50']} ms, p90 {run['latency_ms_p90']} ms, "
            f"p99 {run['latency_ms_p99']} ms; workers' RSS {memory['total_mb_after_warmup']} MB "
            f"after warm-up, {memory['total_mb_after_run']} MB after the run "
            f"({memory['growth_percent']:+.2f} %)\n"
            f"  written to {report}"
        )

    assert pids_after == pids  # no worker was restarted (a restart would also hide a leak)
    assert warmup.errors == [] and measured.errors == []
    assert warmup.wrong == [] and measured.wrong == []
    assert measured.requests >= CONCURRENCY * 10  # the run really was under load
    assert abs(growth) <= MEMORY_TOLERANCE, figures["memory"]
