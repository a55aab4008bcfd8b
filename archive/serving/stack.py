"""The server as this project runs it (``squeezenet-mar serve`` and the container): MMS on private
addresses, nginx in front on the public one, and this process supervising both until SIGTERM.

    client -> nginx (front.py: public address, /ping, limits, drain)
                -> MMS frontend (127.0.0.1, a free or given port) -> Python workers (the handler)
    this process: starts both, warms each model up, watches the workers' locks and MMS (health.py),
                  publishes /ping, restarts MMS after an outage, drains on SIGTERM/SIGINT,
                  serves GET /metrics (metrics.py) when asked to

:meth:`ServingStack.run` returns the exit code: 0 after a requested stop (every request that nginx
had accepted answered first), 8 when MMS cannot start or load a model, exits by itself, or does not
recover after ``max_restarts`` restarts.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from ..server import ModelServer, Registration, ServerError
from .front import Front, FrontSettings
from .health import HealthBoard, Observation, Verdict, Watchdog, loaded_workers, prepare_health_dir
from .metrics import MetricsSettings, metrics_endpoint
from .reaper import reap_orphans

logger = logging.getLogger(__name__)

SERVER_FAILED = 8  # squeezenet-mar's exit code for "the model server failed to start or register"
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class ServedModel:
    name: str  # /predictions/NAME
    entry: str  # its archive in the model store
    batch_size: int = 1
    max_batch_delay_ms: int = 0
    workers: int = 1


@dataclass
class StackOptions:
    register: bool  # True: through the management API (batching); False: MMS's --models at start-up
    startup_timeout: float = 300.0
    drain_seconds: float = 25.0  # SIGTERM waits this long for the requests in flight
    stop_timeout: float = 5.0  # then MMS gets this long between SIGTERM and SIGKILL
    outage_grace: float = 5.0
    max_restarts: int = 3
    warm_up_image: bytes = b""
    on_ready: Callable[[float], None] | None = None  # called with the seconds start-up took
    stop_signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)
    metrics: MetricsSettings | None = None  # GET /metrics (serving.metrics); None: no endpoint


@dataclass
class _Events:
    stop: threading.Event = field(default_factory=threading.Event)
    signal_name: str = ""
    load_failure: str | None = None


class ServingStack:
    """MMS (a :class:`ModelServer`), nginx (a :class:`Front`) and the supervision of both."""

    def __init__(
        self,
        server: ModelServer,
        front: FrontSettings,
        models: Sequence[ServedModel],
        options: StackOptions,
        output: IO[bytes],
        reap_orphans: bool = False,
    ) -> None:
        """``output``: where MMS's and nginx's lines go (a log file, or the container's stdout).
        ``reap_orphans``: this process is the container's subreaper (see ``reaper``)."""
        self.server = server
        self.front = Front(front, output)
        self.models = list(models)
        self.options = options
        self.output = output
        self.health_dir = front.health
        self.board = HealthBoard(self.health_dir)
        entries = {m.name: m.entry for m in self.models}
        self.metrics = (
            metrics_endpoint(options.metrics, self.health_dir, server.model_store, entries, self.front.status)
            if options.metrics
            else None
        )
        names = [m.name for m in self.models]
        self.watchdog = Watchdog(names, outage_grace=options.outage_grace, max_restarts=options.max_restarts)
        self._events = _Events()
        self._failed = re.compile(
            rb"Load model failed: (" + b"|".join(re.escape(n.encode()) for n in names) + rb"),"
        )
        self._lock = threading.Lock()
        self.reap_orphans = reap_orphans
        self._pinged_at, self._frontend_answers = 0.0, False
        server.on_output = self._mms_line

    # ------------------------------------------------------------------------------------ output
    def _mms_line(self, line: bytes) -> None:
        """Every line MMS prints: copied to ``output``, and watched during start-up. A model MMS failed
        to load would be retried forever with ``/ping`` still 200, so it ends the start-up at once."""
        with self._lock:
            try:
                self.output.write(line)
                self.output.flush()
            except (OSError, ValueError):
                pass
        match = self._failed.search(line)
        if match and self._events.load_failure is None and not self.watchdog.started:
            text = line.decode(errors="replace").strip()
            self._events.load_failure = f"MMS failed to load model {match.group(1).decode()!r}: {text}"

    # ------------------------------------------------------------------------------------- run
    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._request_stop) for sig in self.options.stop_signals}
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.front.stop(timeout=self.options.stop_timeout)
            self.server.stop(timeout=self.options.stop_timeout)
            self.board.show(Verdict("Draining", "stopped"))
            if self.metrics:
                self.metrics.stop()

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self._events.stop.is_set():
            self._events.signal_name = signal.Signals(signum).name
            self._events.stop.set()

    def _run(self) -> int:
        prepare_health_dir(self.health_dir)
        if self.metrics:
            self.metrics.start()  # empties the workers' metrics folder before MMS starts
        self.board.show(Verdict("Starting", "loading the model"))
        self.front.start()
        began = time.monotonic()
        try:
            self._start_mms()
        except ServerError as exc:
            logger.error("%s", exc)
            return SERVER_FAILED
        failure = self._warm_up(began)
        if failure:
            logger.error("%s; stopping", failure)
            return SERVER_FAILED
        if self._events.stop.is_set():
            return self._drain()
        self.watchdog.started = True
        self._publish(self.watchdog.observe(self._observe()))  # /ping 200 before anyone is told
        if self.options.on_ready:
            self.options.on_ready(time.monotonic() - began)
        return self._supervise()

    def _publish(self, verdict: Verdict) -> None:
        if self.board.show(verdict):
            log = logger.info if verdict.healthy else logger.warning
            log("health: %s%s", verdict.status, f" ({verdict.reason})" if verdict.reason else "")

    def _start_mms(self) -> None:
        if self.options.register:
            self.server.start(timeout=self.options.startup_timeout)
            for model in self.models:
                self.server.register(
                    Registration(
                        url=model.entry,
                        name=model.name,
                        batch_size=model.batch_size,
                        max_batch_delay_ms=model.max_batch_delay_ms,
                        workers=model.workers,
                    )
                )
        else:
            models = [f"{model.name}={model.entry}" for model in self.models]
            self.server.start(models=models, timeout=self.options.startup_timeout)

    def _warm_up(self, began: float) -> str | None:
        """Each model answers a warm-up image through MMS (a 4xx counts: the handler ran). None when
        all did; else why start-up failed. A stop request ends it early (None)."""
        for model in self.models:
            while not self._events.stop.is_set():
                if self._events.load_failure:
                    return self._events.load_failure
                if not self.server.running():
                    return f"MMS exited during start-up: {self.server.output_tail()}"
                if time.monotonic() - began > self.options.startup_timeout:
                    return (
                        f"the models did not answer within {self.options.startup_timeout:.0f} s of start-up"
                    )
                status = warm_up(self.server.inference_url, model.name, self.options.warm_up_image, 10.0)
                if model_answered(status):
                    break
                self._events.stop.wait(0.2)
        return None

    def _supervise(self) -> int:
        while not self._events.stop.wait(POLL_SECONDS):
            if self.reap_orphans:
                reap_orphans(keep={self.server.pid(), self.front.pid()})
            if not self.front.alive():
                logger.error("nginx exited by itself; stopping")
                return SERVER_FAILED
            if not self.server.running():
                verdict = Verdict("Unhealthy", "the model server exited", restart=True)
            else:
                verdict = self.watchdog.observe(self._observe())
            self._publish(verdict)
            if verdict.give_up:
                logger.error("giving up: %s", verdict.reason)
                return SERVER_FAILED
            if verdict.restart and not self._restart():
                return SERVER_FAILED
        return self._drain()

    def _observe(self) -> Observation:
        """The workers' locks every poll (cheap); MMS's own /ping once a second."""
        now = time.monotonic()
        loaded = {m.name: loaded_workers(self.health_dir, m.name) for m in self.models}
        if now - self._pinged_at >= 1.0 or not self._frontend_answers:
            self._frontend_answers = self.server.answers_ping(timeout=2.0)
            self._pinged_at = now
        return Observation(now, loaded, self._frontend_answers)

    def _restart(self) -> bool:
        logger.warning("restarting MMS")
        self.server.stop(timeout=self.options.stop_timeout)
        began = time.monotonic()
        try:
            self._start_mms()
        except ServerError as exc:
            logger.error("restarting MMS failed: %s", exc)
            return False
        failure = self._warm_up(began)
        if failure:
            logger.error("%s", failure)
            return False
        self.watchdog.started = True
        self._publish(self.watchdog.observe(self._observe()))
        logger.info("MMS restarted in %.1f s", time.monotonic() - began)
        return True

    def _drain(self) -> int:
        """Stop taking requests, answer those accepted, then stop MMS: the exit code 0."""
        began = time.monotonic()
        self.watchdog.draining = True  # first: /ping 503 and new predictions refused at once
        self.board.show(self.watchdog.observe(Observation(began, {}, True)))
        self.front.drain()
        logger.info(
            "%s: draining (up to %.0f s for the requests in flight)",
            self._events.signal_name or "stop",
            self.options.drain_seconds,
        )
        if not self.front.wait(self.options.drain_seconds):
            logger.warning(
                "requests still in flight after %.0f s: stopping anyway", self.options.drain_seconds
            )
        self.front.stop(timeout=1.0)
        self.server.stop(timeout=self.options.stop_timeout)
        logger.info("stopped, %.1f s after the stop began", time.monotonic() - began)
        return 0


def warm_up(inference_url: str, name: str, image: bytes, timeout: float) -> int:
    """POST ``image`` to the model; the HTTP status, or 0 when nothing answered within ``timeout``."""
    request = urllib.request.Request(
        f"{inference_url}/predictions/{name}",
        data=image,
        headers={"Content-Type": "application/octet-stream"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def model_answered(status: int) -> bool:
    """Whether a warm-up answer comes from a loaded model: anything but no answer, 404 (no such model
    yet), 503 (no worker) and 5xx. A 4xx means the handler ran and refused the image."""
    return 200 <= status < 500 and status not in (404, 503)
