"""Shared by the benchmark stages: test inputs, timing statistics and child processes."""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:  # the test model builder and image generator live with the tests
    sys.path.insert(0, str(TESTS))

RESULT_PREFIX = "BENCH-RESULT "
MARK = "BENCH-MEASURING"
CROP = 224
# As the benchmark found it: building archives in this process loads the handler, which sets MXNet's
# variables in os.environ; children and MMS must start from the caller's environment instead.
ORIGINAL_ENV = dict(os.environ)


class BenchmarkError(Exception):
    """A stage could not be measured (a child failed, MMS did not start, ...)."""


# ---------------------------------------------------------------------------------------- statistics
def stats_ms(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """Count, mean and percentiles in milliseconds of durations given in seconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    if values.size == 0:
        return {"n": 0}
    return {
        "n": int(values.size),
        "mean_ms": round(float(values.mean()), 3),
        "min_ms": round(float(values.min()), 3),
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p90_ms": round(float(np.percentile(values, 90)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
    }


def time_calls(call: Callable[[], Any], warmup: int, iterations: int) -> list[float]:
    """Durations in seconds of ``iterations`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return durations


# -------------------------------------------------------------------------------------------- inputs
def engine_batch(batch_size: int, seed: int = 1) -> np.ndarray:
    """Normalised NCHW float32 images that look like photos (smooth colour fields with grain)."""
    from squeezenet_onnx import smooth_images

    return smooth_images(batch_size, seed=seed, size=CROP).astype(np.float32)


def photo(width: int, height: int, seed: int = 0, fmt: str = "JPEG") -> bytes:
    """A photo-like picture: ``images.scene`` plus sensor-like grain, so that the file has the size of a
    camera picture (JPEG q90: ~60 KiB at 500x375, ~4 MiB at 12 MP), not of a flat drawing (decoding
    time grows with the compressed size)."""
    import images

    base = np.asarray(images.scene(width, height, seed), dtype=np.int16)
    rng = np.random.default_rng(seed)
    grain = rng.normal(0.0, 6.0, (height, width, 1)) + rng.normal(0.0, 3.0, (height, width, 3))
    picture = Image.fromarray(np.clip(base + grain.astype(np.int16), 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    if fmt == "JPEG":
        picture.save(buffer, format="JPEG", quality=90)
    else:
        picture.save(buffer, format=fmt)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------- child processes
def child_env(**extra: str) -> dict[str, str]:
    """The caller's environment for a benchmark child, plus ``extra``."""
    env = dict(ORIGINAL_ENV)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    env.update(extra)
    return env


def run_child(task: str, args: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 600.0):
    """Run ``python -m benchmarks.worker task`` in a fresh process; its result and its stdout."""
    command = [sys.executable, "-m", "benchmarks.worker", task, json.dumps(args, sort_keys=True)]
    try:
        proc = subprocess.run(
            command, cwd=ROOT, env=env or child_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{task}: no result within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise BenchmarkError(f"{task} {args}: child exited with {proc.returncode}:\n{tail}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :]), proc.stdout
    raise BenchmarkError(f"{task}: the child printed no result")


def emit(result: dict[str, Any]) -> None:
    """The child's answer: one line on stdout, after whatever the libraries printed."""
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)


def top_functions(profiler: cProfile.Profile, iterations: int, count: int = 10) -> list[dict[str, Any]]:
    """The functions with the most own time, per iteration, from a cProfile run."""
    stats = pstats.Stats(profiler)
    rows = []
    for (path, line, name), (_cc, calls, own, total, _callers) in stats.stats.items():
        where = f"{Path(path).name}:{line}({name})" if line else name
        rows.append(
            {
                "function": where,
                "calls_per_iteration": round(calls / iterations, 2),
                "own_ms_per_iteration": round(own * 1e3 / iterations, 3),
                "cumulative_ms_per_iteration": round(total * 1e3 / iterations, 3),
            }
        )
    rows.sort(key=lambda row: row["own_ms_per_iteration"], reverse=True)
    return rows[:count]


class LoadMonitor:
    """What the rest of the machine does meanwhile: every ``interval`` seconds, the CPU time all
    processes used (``/proc/stat``, steal included) minus what this process and its descendants used,
    summed per process from one sample to the next (a process that ends loses its last interval). Other
    people's test runs on a shared machine show up here, so a reader can tell which numbers they may
    have skewed."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (time, cores used by other processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
        self._seen: dict[tuple[int, float], float] = {}  # (pid, start time) -> CPU seconds so far

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        total = sum(times)
        idle = times.idle + getattr(times, "iowait", 0.0)
        guests = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # already in user
        return total - idle - guests

    def _ours(self) -> float:
        """CPU seconds this process tree used since the previous call."""
        me = psutil.Process()
        seen: dict[tuple[int, float], float] = {}
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    seen[(proc.pid, proc.create_time())] = times.user + times.system
            except psutil.Error:
                continue
        used = sum(cpu - self._seen.get(key, 0.0) for key, cpu in seen.items())
        self._seen = seen
        return used

    def _run(self) -> None:
        busy, last = self._busy(), time.monotonic()
        self._ours()
        while not self._stop.wait(self.interval):
            now_busy, ours, now = self._busy(), self._ours(), time.monotonic()
            others = max(0.0, (now_busy - busy) - ours) / max(now - last, 1e-6)
            self.samples.append((now, others))
            busy, last = now_busy, now

    def __enter__(self) -> LoadMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def others(self, start: float, end: float | None = None) -> float:
        """Mean cores used by other processes between two ``time.monotonic()`` readings."""
        end = time.monotonic() if end is None else end
        values = [v for t, v in self.samples if start <= t <= end + self.interval]
        return round(float(np.mean(values)), 2) if values else 0.0

    def wait_until_idle(self, limit_s: float, threshold: float = 0.15, settle_s: float = 2.0) -> float:
        """Wait at most ``limit_s`` until other processes used < ``threshold`` cores for ``settle_s``;
        the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            recent = [v for t, v in self.samples if t >= time.monotonic() - settle_s]
            if len(recent) >= settle_s / self.interval - 1 and max(recent) < threshold:
                break
            time.sleep(self.interval)
        return round(time.monotonic() - started, 1)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
        isa = sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "amx_tile"))
    except (OSError, IndexError):
        isa = []
    return {
        "nproc": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "isa": isa,
        "python": sys.version.split()[0],
    }


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """``os.environ`` as the block found it: the builder's smoke test loads the handler in this process,
    which sets its variables there (``MMS_DECODE_INPUT_REQUEST``, ``MXNET_SUBGRAPH_VERBOSE``, ...); the
    servers start from the caller's environment, as a user's shell starts them."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
