"""A real Prometheus server for the tests: Debian's ``prometheus`` (``scripts/system-setup.sh``
installs it), on a free 127.0.0.1 port, with its own storage in a temporary folder, scraping the
given targets every second; always stopped by PID. Queried through its HTTP API."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from squeezenet_mar.server import free_port

JOB = "squeezenet"
SCRAPE_SECONDS = 1


def find_prometheus() -> str | None:
    return shutil.which("prometheus") or next(
        (p for p in ("/usr/bin/prometheus",) if Path(p).is_file()), None
    )


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result vector (``at``: seconds since the epoch; default now)."""
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        answer = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body = answer.json()
        if answer.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"PromQL {promql!r} failed: {answer.status_code} {body}")
        return body["data"]["result"]

    def value(self, promql: str, at: float | None = None) -> float | None:
        """The one value of an instant query, or None when its vector is empty."""
        result = self.query(promql, at)
        if len(result) > 1:
            raise AssertionError(f"PromQL {promql!r} gave {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1]) if result else None

    def last_scrape(self, job: str = JOB) -> tuple[float, bool] | None:
        """When the latest scrape of ``job`` started (its samples' timestamp), and whether it worked."""
        selector = f'up{{job="{job}"}}'
        at, up = self.value(f"timestamp({selector})"), self.value(selector)
        return None if at is None else (at, up == 1)

    def scrape_after(self, moment: float, timeout: float = 30.0, job: str = JOB) -> float:
        """The timestamp of the first successful scrape of ``job`` that started after ``moment``."""
        deadline = time.monotonic() + timeout
        while True:
            scraped = self.last_scrape(job)
            if scraped is not None and scraped[0] > moment and scraped[1]:
                return scraped[0]
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"no scrape after {moment:.3f} within {timeout:.0f} s:\n{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def running_prometheus(
    home: Path, targets: list[str], jobs: Sequence[dict[str, Any]] = (), timeout: float = 60.0
) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (HOST:PORT, path /metrics) as job ``squeezenet`` and the scrape
    jobs ``jobs`` every second, ready; stopped after."""
    binary = find_prometheus()
    if binary is None:
        raise AssertionError(
            "prometheus is not installed: run `sudo make system-setup` (apt-get install prometheus)"
        )
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    every = f"{SCRAPE_SECONDS}s"
    settings = {
        "global": {"scrape_interval": every, "scrape_timeout": every, "evaluation_interval": every},
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": targets}]},
            *({**job, "scrape_interval": every, "scrape_timeout": every} for job in jobs),
        ],
    }
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    port = free_port()
    log = home / "prometheus.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(server.url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not get ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False
