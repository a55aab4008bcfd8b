"""``GET /metrics``: the Prometheus endpoint of ``squeezenet-mar serve`` and the container, served by
the supervisor process (a thread of it) with ``prometheus_client``.

Where each series comes from, merged at every scrape:

- the **workers** (``squeezenet_handler.metrics``): requests by status, the stage histograms, batch
  size, requests in progress, model load time, signature verified. Each worker writes memory-mapped
  files of its own (prometheus_client's multiprocess mode) in the folder named by
  ``SQUEEZENET_METRICS_DIR``, which the supervisor empties at start-up and gives to MMS's environment.
  A dead worker's counters and histograms stay (no count is lost or doubled when MMS replaces it);
  its ``live*`` gauges are dropped (``multiprocess.mark_process_dead``) once its lock is free.
- **nginx** (``front.front_status``, its stub_status on a private socket):
  ``squeezenet_nginx_requests_in_flight``, the requests nginx is answering (read, waiting for MMS,
  or being sent back).
- **this process**: ``squeezenet_queue_depth`` = nginx's requests in flight minus the requests the
  workers are handling (``squeezenet_requests_in_progress``): the requests waiting in MMS's job queue
  (plus, for a millisecond each, those on their way in or out). MMS 1.1.11 reports no queue size
  (``GET /models/NAME`` has no ``metrics``: ``handleDescribeModel`` never fills them in).
  ``squeezenet_workers_ready`` counts the workers that loaded the model and are alive (their locks,
  ``health.loaded_workers``).

Labels ``model`` and ``version`` (the archive's ``modelVersion``). nginx does not know which model a
waiting request is for: with one model (``serve``, the usual container) the queue depth carries its
labels; with several it carries none and counts them all.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import os
import re
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from squeezenet_handler.metrics import METRICS_DIR_ENV, WORKER_LOCK

from ..errors import ArchiveToolError
from .front import FrontStatus
from .health import loaded_workers

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 8082
IN_PROGRESS = "squeezenet_requests_in_progress"
MANIFEST = "MAR-INF/MANIFEST.json"
_LOCK_NAME = re.compile(re.escape(WORKER_LOCK).replace(re.escape("{pid}"), r"(\d+)"))
_DB_PID = re.compile(r"_(\d+)\.db$")


class MetricsError(ArchiveToolError):
    """The metrics endpoint cannot start (its port is taken, its folder unusable)."""

    exit_code = 8


@dataclass(frozen=True)
class MetricsSettings:
    listen: str  # HOST:PORT of GET /metrics
    folder: Path  # the workers' multiprocess files (SQUEEZENET_METRICS_DIR)
    required: bool = True  # False: a port that cannot be bound is a warning, and serving goes on

    def environment(self) -> dict[str, str]:
        """What MMS's workers need in their environment to record."""
        return {METRICS_DIR_ENV: str(self.folder.resolve())}


def prepare_metrics_dir(folder: Path) -> Path:
    """An empty private folder (mode 0700) for the workers' files: a new server starts from zero."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.is_symlink() or not folder.is_dir():
        raise MetricsError(f"{folder}: not a folder")
    folder.chmod(0o700)
    for item in folder.iterdir():
        if item.is_file() or item.is_symlink():
            item.unlink()
    return folder


def sweep_dead_workers(folder: Path) -> list[int]:
    """``mark_process_dead`` for every worker whose lock is free (it died); their lock files go too.
    Their counters and histograms stay. The pids swept."""
    from prometheus_client import multiprocess

    live_gauges = glob.glob(str(folder / "gauge_live*_*.db"))  # before the locks: a worker locks first
    swept = []
    for name in os.listdir(folder):
        match = _LOCK_NAME.fullmatch(name)
        if not match:
            continue
        pid, path = int(match.group(1)), folder / name
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live worker holds it
        else:
            multiprocess.mark_process_dead(pid, str(folder))
            with contextlib.suppress(OSError):
                path.unlink()  # while locked: a new process with this pid makes a new file
            swept.append(pid)
        finally:
            os.close(descriptor)
    # live gauges whose pid has no lock file (left by a process killed before this sweep saw its lock)
    locked = {int(m.group(1)) for m in map(_LOCK_NAME.fullmatch, os.listdir(folder)) if m}
    for path in live_gauges:
        match = _DB_PID.search(path)
        if match and int(match.group(1)) not in locked:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return swept


def model_versions(store: Path, entries: Mapping[str, str]) -> dict[str, str]:
    """model name -> ``modelVersion`` of its archive (``entries``: name -> file or folder in ``store``);
    "" when the manifest cannot be read (the archive was verified before: it can)."""
    versions = {}
    for name, entry in entries.items():
        path = store / entry
        try:
            if path.is_dir():
                manifest = json.loads((path / MANIFEST).read_text())
            else:
                with zipfile.ZipFile(path) as archive:
                    manifest = json.loads(archive.read(MANIFEST))
            versions[name] = str(manifest["model"]["modelVersion"])
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
            versions[name] = ""
    return versions


class ServingCollector:
    """A prometheus_client collector: the workers' files merged, and the series computed here."""

    def __init__(
        self,
        folder: Path,
        health_dir: Path,
        versions: Mapping[str, str],
        front_status: Callable[[], FrontStatus | None],
    ) -> None:
        self.folder = folder
        self.health_dir = health_dir
        self.versions = dict(versions)
        self.front_status = front_status
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.multiprocess import MultiProcessCollector

        with self._lock:  # scrapes may come in parallel: one sweep at a time
            sweep_dead_workers(self.folder)
            families = list(MultiProcessCollector.merge(glob.glob(str(self.folder / "*.db"))))
        status = self.front_status()  # read right after the files: the two describe one moment
        in_progress: dict[str, float] = {}
        for family in families:
            if family.name == IN_PROGRESS:
                for sample in family.samples:
                    model = sample.labels.get("model", "")
                    in_progress[model] = in_progress.get(model, 0.0) + sample.value
        yield from families
        labels = ["model", "version"]
        ready = GaugeMetricFamily(
            "squeezenet_workers_ready",
            "Workers that loaded the model and are alive (their locks)",
            labels=labels,
        )
        for model, version in self.versions.items():
            ready.add_metric([model, version], loaded_workers(self.health_dir, model))
        yield ready
        if status is None:
            return  # nginx does not answer (stopped, restarting): no queue series rather than a wrong one
        yield GaugeMetricFamily(
            "squeezenet_nginx_requests_in_flight",
            "Requests nginx is answering: reading their body, waiting for MMS or sending the answer",
            value=status.writing,
        )
        waiting = max(0.0, status.writing - sum(in_progress.values()))
        only = list(self.versions.items())[0] if len(self.versions) == 1 else None
        queue = GaugeMetricFamily(
            "squeezenet_queue_depth",
            "Requests waiting for a worker: nginx's requests in flight minus those the workers handle now",
            labels=labels if only else [],
        )
        queue.add_metric(list(only) if only else [], waiting)
        yield queue


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class MetricsEndpoint:
    """``GET /metrics`` on ``settings.listen``, in a daemon thread of this process."""

    def __init__(self, settings: MetricsSettings, collector: ServingCollector) -> None:
        self.settings = settings
        self.collector = collector
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Empty the workers' folder and listen. An address that cannot be bound: MetricsError, or
        one warning when the settings do not require the endpoint."""
        from prometheus_client import CollectorRegistry, make_wsgi_app
        from prometheus_client.exposition import ThreadingWSGIServer

        prepare_metrics_dir(self.settings.folder)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"the metrics are at GET /metrics\n"]
            return metrics_app(environ, start_response)

        host, _, port = self.settings.listen.rpartition(":")
        try:
            self._server = make_server(host, int(port), app, ThreadingWSGIServer, handler_class=_QuietHandler)
        except OSError as exc:
            problem = f"metrics endpoint: cannot listen on {self.settings.listen} ({exc.strerror})"
            if self.settings.required:
                raise MetricsError(f"{problem}: stop what holds it or choose another port") from exc
            logger.warning("%s: serving without GET /metrics", problem)
            return
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        logger.debug("metrics on http://%s/metrics", self.settings.listen)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def metrics_endpoint(
    settings: MetricsSettings,
    health_dir: Path,
    store: Path,
    entries: Mapping[str, str],
    front_status: Callable[[], FrontStatus | None],
) -> MetricsEndpoint:
    """The endpoint for a stack serving ``entries`` (model name -> archive in ``store``)."""
    collector = ServingCollector(settings.folder, health_dir, model_versions(store, entries), front_status)
    return MetricsEndpoint(settings, collector)
