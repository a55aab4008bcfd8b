"""Served configurations side by side, the way the performance issue measured them: every server up at
once, short closed-loop bursts of the same 500x375 JPEG alternated between the servers at each
concurrency, over two cycles (the second in reverse order) so that drift of a noisy machine cancels.

The configurations:

- ``default``: what ``make serve`` / ``squeezenet-mar serve`` runs today (``server.DEFAULT_*``, the
  repository's ``config.properties``, its log configuration);
- ``baseline_workers2`` and ``baseline_default``: the code before the performance work (commit
  :data:`BASELINE_COMMIT`: its handler, ``signature.json`` and ``config.properties`` taken from git
  history), served the way its ``serve`` ran it, with ``--workers 2`` and with its defaults.

For each burst: requests per second, latency percentiles, errors, and the CPU the Python workers and
the Java frontend used per answered request (``psutil``, their own process times); the servers' total
RSS after the c=16 bursts. The load comes from ApacheBench (``ab -k``, ``make bench-setup`` installs
it), else from a Python client (which then competes with the servers for the cores: noted as
``client``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .common import ROOT, photo

BASELINE_COMMIT = "e1c1d2d"  # the last commit before the performance work (issue 14's "today")
BASELINE_NAME = "baseline.mar"
MODEL_NAME = "m"  # every server serves its archive under this name


@dataclass(frozen=True)
class Served:
    name: str
    what: str
    archive: str  # file name in the model store
    workers: int
    batch_size: int
    max_batch_delay_ms: int
    config: Path
    env: dict[str, str] = field(default_factory=dict)
    lean_logging: bool = True  # the repository's log4j2.xml; False: MMS's own


def configurations(default_archive: str, baseline_config: Path | None) -> list[Served]:
    from squeezenet_mar.server import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_DELAY_MS, DEFAULT_WORKERS

    served = [
        Served(
            "default",
            "this project, `make serve` defaults",
            default_archive,
            DEFAULT_WORKERS,
            DEFAULT_BATCH_SIZE,
            DEFAULT_MAX_BATCH_DELAY_MS,
            ROOT / "config.properties",
        )
    ]
    if baseline_config is None:
        return served
    # The baseline's `serve`: batching off, MMS's own logging, the handler told the worker count.
    for name, workers in (("baseline_workers2", 2), ("baseline_default", 1)):
        served.append(
            Served(
                name,
                f"before ({BASELINE_COMMIT}), `serve" + (" --workers 2`" if workers > 1 else "` defaults"),
                BASELINE_NAME,
                workers,
                1,
                50,
                baseline_config,
                {"MMS_DECODE_INPUT_REQUEST": "false", "SQUEEZENET_WORKERS": str(workers)},
                lean_logging=False,
            )
        )
    return served


# ------------------------------------------------------------------------------------------ baseline
def _git_show(commit: str, path: str) -> bytes | None:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{path}"], capture_output=True, check=False
    )
    return result.stdout if result.returncode == 0 else None


def baseline_archive(model: Path, store: Path, work: Path) -> tuple[Path, Path] | str:
    """The baseline's archive (its handler, signature.json and labels around ``model``, in the layout
    its builder wrote) and its config.properties; or why they cannot be made (no git history)."""
    files = {
        "squeezenet_service.py": _git_show(BASELINE_COMMIT, "handler/squeezenet_service.py"),
        "signature.json": _git_show(BASELINE_COMMIT, "signature.json"),
        "synset.txt": _git_show(BASELINE_COMMIT, "synset.txt"),
    }
    config = _git_show(BASELINE_COMMIT, "config.properties")
    if config is None or None in files.values():
        return f"commit {BASELINE_COMMIT} is not in this clone's history (a shallow clone?)"
    files[model.name] = model.read_bytes()
    manifest = {
        "runtime": "python",
        "model": {"modelName": "baseline", "handler": "squeezenet_service:handle", "modelVersion": "1.1"},
        "specificationVersion": "1.0",
        "implementationVersion": "1.0",
        "modelServerVersion": "1.0",
    }
    files["MAR-INF/MANIFEST.json"] = json.dumps(manifest, indent=2).encode()
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    files["MAR-INF/SHA256SUMS"] = sums.encode()
    path = store / BASELINE_NAME
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    config_path = work / "baseline-config.properties"
    config_path.write_bytes(config)
    return path, config_path


# ---------------------------------------------------------------------------------------------- load
def ab_available() -> bool:
    return shutil.which("ab") is not None


def ab_burst(url: str, body: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """``ab -k`` for ``seconds``: requests per second, answers, failures, latency percentiles (ms: from
    ab's ``-e`` table, to the microsecond; its text rounds them to whole milliseconds)."""
    with tempfile.TemporaryDirectory(prefix="squeezenet-ab-") as tmp:
        table = Path(tmp) / "percentiles.csv"
        command = ["ab", "-k", "-q", "-t", f"{seconds:g}", "-n", "1000000", "-c", str(concurrency)]
        command += ["-e", str(table), "-p", str(body), "-T", "image/jpeg", url]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120).stdout
        percentiles = _ab_percentiles(table)

    def number(pattern: str) -> float | None:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else None

    answered = number(r"Complete requests:\s+(\d+)")
    if answered is None:
        raise RuntimeError(f"ab printed no result for {url}: {out[-500:]}")
    failed = (number(r"Failed requests:\s+(\d+)") or 0) + (number(r"Non-2xx responses:\s+(\d+)") or 0)
    return {
        "requests_per_s": number(r"Requests per second:\s+([\d.]+)") or 0.0,
        "answers": int(answered),
        "errors": int(failed),
        "p50_ms": percentiles.get(50, number(r"\n\s+50%\s+(\d+)")),
        "p99_ms": percentiles.get(99, number(r"\n\s+99%\s+(\d+)")),
    }


def _ab_percentiles(table: Path) -> dict[int, float]:
    """ab's ``-e`` file: one ``percent,milliseconds`` line per percent; {} when it wrote none."""
    found = {}
    try:
        for line in table.read_text().splitlines()[1:]:
            percent, _, millis = line.partition(",")
            found[int(percent)] = round(float(millis), 3)
    except (OSError, ValueError):
        return {}
    return found


def python_burst(url: str, body: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    from . import serving

    base, _, model = url.rpartition("/predictions/")
    result = serving.closed_loop(base, model, [body.read_bytes()], concurrency, seconds, 0.0)
    return {
        "requests_per_s": result["requests_per_s"],
        "answers": result["answers"],
        "errors": result["errors"],
        "p50_ms": result["latency"].get("p50_ms"),
        "p99_ms": result["latency"].get("p99_ms"),
    }


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class Running:
    """One started server of a configuration, with its processes found once its workers are ready."""

    def __init__(self, served: Served, server: Any) -> None:
        self.served, self.server = served, server
        self.url = f"{server.inference_url}/predictions/{MODEL_NAME}"
        self.workers = [psutil.Process(pid) for pid in server.worker_pids(MODEL_NAME)]
        self.frontend = [p for p in server.processes() if p.name() == "java"]

    def rss_mb(self) -> float:
        total = 0
        for process in self.server.processes():
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return round(total / 2**20, 1)

    def burst(self, burst: Callable[..., dict[str, Any]], body: Path, concurrency: int, seconds: float):
        worker_cpu, frontend_cpu = _cpu_seconds(self.workers), _cpu_seconds(self.frontend)
        result = burst(self.url, body, concurrency, seconds)
        answers = max(1, result["answers"])
        worker_ms = 1e3 * (_cpu_seconds(self.workers) - worker_cpu) / answers
        frontend_ms = 1e3 * (_cpu_seconds(self.frontend) - frontend_cpu) / answers
        result["worker_cpu_ms_per_request"] = round(worker_ms, 2)
        result["frontend_cpu_ms_per_request"] = round(frontend_ms, 2)
        return result


def start(served: Served, store: Path, home: Path) -> Running:
    from squeezenet_mar.server import ModelServer, Registration

    server = ModelServer.on_free_ports(
        home, store, config=served.config, env=served.env, lean_logging=served.lean_logging
    )
    server.start()
    try:
        server.register(
            Registration(
                url=served.archive,
                name=MODEL_NAME,
                batch_size=served.batch_size,
                max_batch_delay_ms=served.max_batch_delay_ms,
                workers=served.workers,
            )
        )
        server.wait_for_workers(MODEL_NAME, served.workers)
        return Running(served, server)
    except BaseException:
        server.stop()
        raise


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 2) if present else None


def compare(
    model: Path,
    default_archive: Path,
    work: Path,
    concurrency: tuple[int, ...],
    seconds: float,
    cycles: int,
    progress: Callable[[str, str], None],
) -> dict[str, Any]:
    """Start every configuration, alternate bursts between them, stop them; the table's rows."""
    store = default_archive.parent
    baseline = baseline_archive(model, store, work)
    served = configurations(default_archive.name, None if isinstance(baseline, str) else baseline[1])
    if isinstance(baseline, str):
        progress("serving", f"baseline skipped: {baseline}")
    body = work / "photo_500x375.jpg"
    body.write_bytes(photo(500, 375, seed=100))
    burst = ab_burst if ab_available() else python_burst
    running: list[Running] = []
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    rss: dict[str, float] = {}
    try:
        for config in served:
            running.append(start(config, store, work / f"server-{config.name}"))
            running[-1].burst(burst, body, 4, min(2.0, seconds))  # warm-up: every executor created
            progress(
                "serving", f"{config.name}: {config.workers} worker(s), batch <= {config.batch_size}, up"
            )
        for cycle in range(cycles):
            for clients in concurrency:
                for server in running if cycle % 2 == 0 else running[::-1]:
                    result = server.burst(burst, body, clients, seconds)
                    runs.setdefault((server.served.name, clients), []).append(result)
                    if clients == max(concurrency):
                        rss[server.served.name] = max(rss.get(server.served.name, 0.0), server.rss_mb())
                    progress(
                        "serving",
                        f"cycle {cycle + 1} c={clients:<2} {server.served.name:18} "
                        f"{result['requests_per_s']:6.1f} req/s, p50 {result['p50_ms']} ms, worker CPU "
                        f"{result['worker_cpu_ms_per_request']:.2f} ms/request, errors {result['errors']}",
                    )
    finally:
        for server in running:
            server.server.stop()
    rows = []
    for (name, clients), results in runs.items():
        rows.append(
            {
                "config": name,
                "concurrency": clients,
                "requests_per_s": _mean([r["requests_per_s"] for r in results]),
                "runs_requests_per_s": [r["requests_per_s"] for r in results],
                "p50_ms": _mean([r["p50_ms"] for r in results]),
                "p99_ms": _mean([r["p99_ms"] for r in results]),
                "errors": sum(r["errors"] for r in results),
                "worker_cpu_ms_per_request": _mean([r["worker_cpu_ms_per_request"] for r in results]),
                "frontend_cpu_ms_per_request": _mean([r["frontend_cpu_ms_per_request"] for r in results]),
            }
        )
    return {
        "client": "ab -k" if burst is ab_burst else "python closed loop (shares the cores)",
        "image_bytes": len(body.read_bytes()),
        "burst_s": seconds,
        "cycles": cycles,
        "configurations": {s.name: {**asdict(s), "config": str(s.config)} for s in served},
        "baseline_skipped": baseline if isinstance(baseline, str) else None,
        "rows": sorted(rows, key=lambda r: (r["concurrency"], [s.name for s in served].index(r["config"]))),
        "rss_mb_after_max_concurrency": rss,
    }


def row(comparison: dict[str, Any], config: str, concurrency: int) -> dict[str, Any] | None:
    for candidate in comparison.get("rows", []):
        if candidate["config"] == config and candidate["concurrency"] == concurrency:
            return candidate
    return None
