"""The worker's Prometheus series, recorded when a supervisor asks for them.

When ``SQUEEZENET_METRICS_DIR`` names a folder (``squeezenet-mar serve`` and the container set it, with
``SQUEEZENET_HEALTH_DIR``), each worker records its stages in ``prometheus_client``'s multiprocess mode:
one set of memory-mapped files per worker pid in that folder, which the supervisor merges at every
scrape of ``GET /metrics`` (``squeezenet_mar.serving.metrics``). Counters and histograms of a worker
that died stay in its files, so a restarted worker neither loses nor doubles the counts; its
``live*`` gauges (requests in progress, signature verified) are removed by the supervisor once the
worker's lock (``worker-<pid>.lock``, held for the life of the process) is free.

Without the variable (a plain MMS, the in-process tools) nothing is recorded and nothing is imported.
With it but without ``prometheus_client`` installed, the worker serves as usual and logs one line.

Series (all labelled ``model`` and ``version``, the archive's manifest ``modelVersion``):

    squeezenet_requests_total{code}            requests the handler answered, by HTTP status
    squeezenet_request_duration_seconds        nginx handing the request to MMS -> the handler's answer
    squeezenet_queue_wait_seconds              nginx handing the request to MMS -> its batch starts
    squeezenet_decode_seconds                  image bytes -> RGB (per request)
    squeezenet_preprocess_seconds              resize, centre crop, normalise (per request)
    squeezenet_inference_seconds               the forward pass (per batch)
    squeezenet_postprocess_seconds             softmax and top k (per batch)
    squeezenet_handler_seconds                 the whole handler call (per batch)
    squeezenet_batch_size                      requests per handler call
    squeezenet_requests_in_progress            requests the workers are handling now (gauge, livesum)
    squeezenet_model_load_seconds              one observation per worker that loaded the model
    squeezenet_signature_verified              1 when every live worker verified the archive's signature

The two ``*_wait``/``*_duration`` series need the time nginx handed the request on: the front sets
``X-Request-Start: t=<seconds since the epoch>`` (``$msec``, millisecond resolution), which MMS passes
to the handler with the other request headers. Requests without it (MMS reached directly) are left
out of those two series only.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .trust import own_folder

logger = logging.getLogger(__name__)

METRICS_DIR_ENV = "SQUEEZENET_METRICS_DIR"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # what prometheus_client's multiprocess mode reads
REQUEST_START_HEADER = "X-Request-Start"
WORKER_LOCK = "worker-{pid}.lock"  # held by a live worker; free once it died

# Seconds. About 1.5x apart from 5 ms to 0.5 s, where a request's stages and its latency lie, so that a
# quantile read from the buckets is within a step of the truth; coarser up to MMS's response timeout.
SECONDS_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
LOAD_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
STAGES = ("decode", "preprocess", "inference", "postprocess")


class _NoTimer:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_TIMER = _NoTimer()


class Metrics:
    """Records nothing: a plain MMS, or no ``prometheus_client``. :class:`PrometheusMetrics` records."""

    enabled = False

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Time one of :data:`STAGES` (``with metrics.stage("decode"): ...``)."""
        return _NO_TIMER

    def handling(self, data: Sequence[Any], context: Any) -> contextlib.AbstractContextManager[None]:
        """Around one handler call: in progress, batch size, the call's time, each request's status
        (read from ``context`` afterwards), queue wait and duration from nginx's hand-off."""
        return _NO_TIMER

    def loaded(self, seconds: float, signature_verified: bool) -> None:
        """The worker loaded the model in ``seconds``; whether it verified a signature doing so."""


NO_METRICS = Metrics()


class _Timer:
    __slots__ = ("histogram", "began")

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self.began = 0.0

    def __enter__(self) -> None:
        self.began = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.histogram.observe(time.perf_counter() - self.began)


class _Handling:
    """One handler call (see :meth:`Metrics.handling`)."""

    __slots__ = ("metrics", "data", "context", "began", "wall", "starts")

    def __init__(self, metrics: PrometheusMetrics, data: Sequence[Any], context: Any) -> None:
        self.metrics, self.data, self.context = metrics, data, context
        self.began = self.wall = 0.0
        self.starts: list[float] = []

    def __enter__(self) -> None:
        m, size = self.metrics, len(self.data)
        self.began, self.wall = time.perf_counter(), time.time()
        m.in_progress.inc(size)
        self.starts = [s for s in (_request_start(self.context, i) for i in range(size)) if s is not None]
        for start in self.starts:
            m.queue_wait.observe(max(0.0, self.wall - start))

    def __exit__(
        self, kind: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        m, size = self.metrics, len(self.data)
        m.in_progress.dec(size)
        m.handler.observe(time.perf_counter() - self.began)
        m.batch_size.observe(size)
        ended = time.time()
        for start in self.starts:
            m.request_duration.observe(max(0.0, ended - start))
        for idx in range(size):
            # handle() raising: MMS answers every request of the batch 503 "Prediction failed"
            m.answered(503 if kind is not None else _status(self.context, idx))


class PrometheusMetrics(Metrics):
    """The series of the module docstring for one model, in the multiprocess files of ``folder``."""

    enabled = True

    def __init__(self, model: str, version: str) -> None:
        series = _series()
        labels = (model, version)
        self.model, self.version = model, version
        self._requests = series["requests"]
        self._codes: dict[int, Any] = {}
        self.request_duration = series["request_duration"].labels(*labels)
        self.queue_wait = series["queue_wait"].labels(*labels)
        self.stages = {name: series[name].labels(*labels) for name in (*STAGES, "handler")}
        self.handler = self.stages["handler"]
        self.batch_size = series["batch_size"].labels(*labels)
        self.in_progress = series["in_progress"].labels(*labels)
        self.load = series["load"].labels(*labels)
        self.verified = series["verified"].labels(*labels)
        self.in_progress.set(0)  # the series exists (0) from load on

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        return _Timer(self.stages[name])

    def handling(self, data: Sequence[Any], context: Any) -> contextlib.AbstractContextManager[None]:
        return _Handling(self, data, context)

    def answered(self, code: int) -> None:
        self._requests_with(code).inc()

    def loaded(self, seconds: float, signature_verified: bool) -> None:
        self.load.observe(seconds)
        self.verified.set(1 if signature_verified else 0)
        self._requests_with(200)  # the series exists from load on, at 0: increase() sees its start

    def _requests_with(self, code: int) -> Any:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._requests.labels(self.model, self.version, str(code))
        return child


def start_metrics(model: str, version: str, env: Mapping[str, str] | None = None) -> Metrics:
    """This worker's :class:`PrometheusMetrics` when ``SQUEEZENET_METRICS_DIR`` asks for them and can
    be used; :data:`NO_METRICS` otherwise (with one log line saying why, unless nobody asked)."""
    env = os.environ if env is None else env
    root = env.get(METRICS_DIR_ENV, "").strip()
    if not root:
        return NO_METRICS
    folder = Path(root)
    if not own_folder(folder):
        logger.warning("%s=%s: not a folder of this user's; no metrics recorded", METRICS_DIR_ENV, root)
        return NO_METRICS
    os.environ[MULTIPROCESS_ENV] = str(folder)  # read by prometheus_client whenever it opens a file
    try:
        from prometheus_client import values
    except ImportError as exc:
        logger.warning(
            "squeezenet: %s is set but prometheus_client is missing (%s): no metrics", METRICS_DIR_ENV, exc
        )
        return NO_METRICS
    if not getattr(values.ValueClass, "_multiprocess", False):
        # imported earlier in this process without the variable: metrics made now must use the files
        values.ValueClass = values.MultiProcessValue()
    _hold_worker_lock(folder)
    metrics = PrometheusMetrics(model, version)
    logger.info("squeezenet: metrics recorded in %s (pid %d)", folder, os.getpid())
    return metrics


# ----------------------------------------------------------------------------------------- internals
_SERIES: dict[str, Any] = {}
_held: list[int] = []  # the worker lock's descriptor, kept open (and locked) for the life of the process


def _series() -> dict[str, Any]:
    """The metric families, made once per process (prometheus_client refuses a name twice in a
    registry; these are in none: multiprocess mode reads them from the files)."""
    if _SERIES:
        return _SERIES
    from prometheus_client import Counter, Gauge, Histogram

    labels = ("model", "version")

    def seconds(name: str, what: str) -> Any:
        return Histogram(f"squeezenet_{name}_seconds", what, labels, registry=None, buckets=SECONDS_BUCKETS)

    _SERIES.update(
        requests=Counter(
            "squeezenet_requests",
            "Requests the handler answered, by HTTP status",
            (*labels, "code"),
            registry=None,
        ),
        request_duration=Histogram(
            "squeezenet_request_duration_seconds",
            "From nginx handing the request to MMS to the handler's answer (MMS's queue included)",
            labels,
            registry=None,
            buckets=SECONDS_BUCKETS,
        ),
        queue_wait=seconds("queue_wait", "From nginx handing the request to MMS to the start of its batch"),
        decode=seconds("decode", "Decoding one request's image bytes to RGB"),
        preprocess=seconds("preprocess", "Resize, centre crop and normalisation of one request's image"),
        inference=seconds("inference", "The forward pass of one batch"),
        postprocess=seconds("postprocess", "Softmax and top k of one batch"),
        handler=seconds("handler", "One call of the handler (one batch), every stage included"),
        batch_size=Histogram(
            "squeezenet_batch_size", "Requests per handler call", labels, registry=None, buckets=BATCH_BUCKETS
        ),
        in_progress=Gauge(
            "squeezenet_requests_in_progress",
            "Requests the workers are handling now",
            labels,
            registry=None,
            multiprocess_mode="livesum",
        ),
        load=Histogram(
            "squeezenet_model_load_seconds",
            "Time a worker took to load the model (one observation per worker start)",
            labels,
            registry=None,
            buckets=LOAD_BUCKETS,
        ),
        verified=Gauge(
            "squeezenet_signature_verified",
            "1 when every live worker verified the archive's signature against a trusted key at load, else 0",
            labels,
            registry=None,
            multiprocess_mode="livemin",
        ),
    )
    return _SERIES


def _hold_worker_lock(folder: Path) -> None:
    """Hold ``worker-<pid>.lock`` for the life of this process, then drop what a dead process that had
    this pid left of its ``live*`` gauges (its counters stay: this process continues them)."""
    if _held:
        return
    pid = os.getpid()
    path = folder / WORKER_LOCK.format(pid=pid)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # the supervisor holds it only while sweeping a dead pid
        try:
            same = os.fstat(descriptor).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(descriptor)  # the supervisor removed a dead pid's file meanwhile: make a new one
    _held.append(descriptor)
    for stale in glob.glob(str(folder / f"gauge_live*_{pid}.db")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)


def _request_start(context: Any, idx: int) -> float | None:
    """When nginx handed request ``idx`` on (``X-Request-Start: t=<epoch seconds>``), or None."""
    try:
        value = context.get_request_header(idx, REQUEST_START_HEADER)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    if not isinstance(value, str) or not value.startswith("t="):
        return None
    try:
        start = float(value[2:])
    except ValueError:
        return None
    return start if math.isfinite(start) else None


def _status(context: Any, idx: int) -> int:
    """The status the handler set for request ``idx`` (MMS's default: 200)."""
    try:
        code = context.get_response_status(idx)[0]
    except (AttributeError, IndexError, KeyError, TypeError):
        return 200
    return int(code) if isinstance(code, int) else 200


def manifest_version(context: Any) -> str:
    """The archive's ``modelVersion`` from MMS's context (its manifest), or ""."""
    manifest = getattr(context, "manifest", None)
    model = manifest.get("model") if isinstance(manifest, dict) else None
    version = model.get("modelVersion") if isinstance(model, dict) else None
    return str(version) if version is not None else ""
