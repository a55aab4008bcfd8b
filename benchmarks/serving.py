"""A real Multi Model Server for the benchmarks: worker start-up through the management API, and a
closed-loop HTTP client (used when ApacheBench is not installed, see ``comparison``)."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import requests

from squeezenet_mar.server import ModelServer, Registration

from .common import ROOT, stats_ms


def start_server(home: Path, model_store: Path) -> ModelServer:
    """MMS with the repository's config.properties and log configuration, on free ports."""
    server = ModelServer.on_free_ports(home, model_store, config=ROOT / "config.properties")
    server.start()
    return server


def predict(server: ModelServer, model: str, body: bytes) -> requests.Response:
    return requests.post(f"{server.inference_url}/predictions/{model}", data=body, timeout=120)


def timed_registration(
    server: ModelServer,
    archive: Path,
    name: str,
    image: bytes,
    batch_size: int = 1,
    delay_ms: int = 100,
    workers: int = 1,
) -> dict[str, Any]:
    """Register (synchronous), wait until the frontend reports the workers READY, ask once."""
    started = time.perf_counter()
    server.register(
        Registration(
            url=archive.name, name=name, batch_size=batch_size, max_batch_delay_ms=delay_ms, workers=workers
        )
    )
    registered = time.perf_counter()
    server.wait_for_workers(name, workers)
    ready = time.perf_counter()
    response = predict(server, name, image)
    answered = time.perf_counter()
    if response.status_code != 200:
        raise RuntimeError(f"{name}: first prediction {response.status_code}: {response.text[:200]}")
    return {
        "register_s": round(registered - started, 3),
        "ready_s": round(ready - started, 3),
        "first_answer_s": round(answered - ready, 4),
        "total_s": round(answered - started, 3),
    }


def closed_loop(
    url: str, model: str, bodies: list[bytes], concurrency: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    """``concurrency`` clients, each sending the next image as soon as it has its answer (one kept-alive
    connection each). Counts the answers that arrive within the measured window after the warm-up."""
    address = urllib.parse.urlsplit(url)
    path = f"/predictions/{model}"
    records: list[tuple[float, int]] = []
    barrier = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def client(index: int) -> None:
        def connect() -> http.client.HTTPConnection:
            return http.client.HTTPConnection(address.hostname, address.port, timeout=120)

        connection = connect()
        sent = index
        barrier.wait()
        while True:
            begin = time.perf_counter()
            if begin >= window["end"]:
                break
            body = bodies[sent % len(bodies)]
            sent += concurrency
            try:
                connection.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = connect()
            done = time.perf_counter()
            if window["start"] <= done <= window["end"]:
                records.append((done - begin, status))
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    window.update(start=now + warmup_s, end=now + warmup_s + duration_s)
    cpu_before = time.process_time()
    barrier.wait()
    for thread in threads:
        thread.join()
    client_cpu = time.process_time() - cpu_before
    latencies = np.array([latency for latency, _ in records])
    ok = [latency for latency, status in records if status == 200]
    return {
        "concurrency": concurrency,
        "requests_per_s": round(len(ok) / duration_s, 1),
        "answers": len(records),
        "errors": len(records) - len(ok),
        "latency": stats_ms(latencies if len(latencies) else []),
        "client_cpu_share": round(client_cpu / (duration_s + warmup_s), 3),  # of one core
    }
