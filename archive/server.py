"""Start, drive and stop a real Multi Model Server: the Java frontend with its Python workers.

Used by ``squeezenet-mar serve`` and by the integration tests, so both run MMS the same way.
Facts about MMS 1.1.11 this module relies on (measured, see README "Serving"):

- ``multi-model-server --start`` refuses to start while the pid file ``$TMPDIR/.model_server.pid``
  names a live process, and the frontend puts worker sockets and unpacked models in
  ``java.io.tmpdir`` (``$TEMP``). A private ``TMPDIR``/``TEMP`` per server keeps servers apart.
- Addresses must use ports below 32767 (the frontend refuses larger ones).
- Logs go to ``$LOG_LOCATION`` and ``$METRICS_LOCATION`` (default ``./logs``).
- Only models registered through the management API get ``batch_size``/``max_batch_delay``.
- Workers inherit the environment (``SQUEEZENET_THREADS``, ``SQUEEZENET_TRUSTED_KEY``, ...).

Only processes this module started are ever signalled: the launcher and its descendants, by PID.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

from squeezenet_handler.cores import usable_cores

from .errors import ArchiveToolError

logger = logging.getLogger(__name__)

MAX_PORT = 32766  # MMS's Connector refuses ports >= 32767


class ServerError(ArchiveToolError):
    exit_code = 8


# What `squeezenet-mar serve` registers by default (benchmarks/comparison.py measures these against the
# alternatives). One worker per core: a worker alone borrows every core for its forward pass, busy
# workers take one each (squeezenet_handler.cores). Batches of what is queued, waiting for nothing: MMS
# takes one more queued request when the delay is 0, which halves its frontend's cost per request under
# load and adds no latency to a lone request.
DEFAULT_WORKERS = usable_cores()
DEFAULT_BATCH_SIZE = 2
DEFAULT_MAX_BATCH_DELAY_MS = 0

# The frontend's JVM as this project runs it (a config's own ``vmargs`` wins). C1 only: the C2 compiler
# threads compete for the cores with the workers while they import MXNet (first answer 2.1 instead of
# 2.4-2.9 s after start on 2 cores) and keep compiling for minutes under load, where C1's code costs the
# frontend less CPU per request in all (0.7 against 1.0-2.3 ms at c=8, 1.10x the requests/s, paired).
# The serial collector: MMS's heap is small and short-lived garbage, no GC threads beside the workers.
# Measured with benchmarks/jvm_options.py.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

# MMS's own log4j2.xml writes most lines twice to mms_log.log and again to stdout, with a DEBUG line
# per request: a fifth of its frontend's CPU under load. This one writes each line once, at INFO, to
# the same files (access log, model metrics and MMS's own log: the tests and operators read them).
LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
    <Appenders>
        <RollingFile name="access_log" fileName="${env:LOG_LOCATION:-logs}/access_log.log"
                     filePattern="${env:LOG_LOCATION:-logs}/access_log.%d{dd-MMM}.log.gz">
            <PatternLayout pattern="%d{ISO8601} - %m%n"/>
            <Policies><SizeBasedTriggeringPolicy size="100 MB"/><TimeBasedTriggeringPolicy/></Policies>
            <DefaultRolloverStrategy max="5"/>
        </RollingFile>
        <RollingFile name="model_metrics" fileName="${env:METRICS_LOCATION:-logs}/model_metrics.log"
                     filePattern="${env:METRICS_LOCATION:-logs}/model_metrics.%d{dd-MMM}.log.gz">
            <PatternLayout pattern="%d{ISO8601} - %m%n"/>
            <Policies><SizeBasedTriggeringPolicy size="100 MB"/><TimeBasedTriggeringPolicy/></Policies>
            <DefaultRolloverStrategy max="5"/>
        </RollingFile>
        <RollingFile name="mms_metrics" fileName="${env:METRICS_LOCATION:-logs}/mms_metrics.log"
                     filePattern="${env:METRICS_LOCATION:-logs}/mms_metrics.%d{dd-MMM}.log.gz">
            <PatternLayout pattern="%d{ISO8601} - %m%n"/>
            <Policies><SizeBasedTriggeringPolicy size="100 MB"/><TimeBasedTriggeringPolicy/></Policies>
            <DefaultRolloverStrategy max="5"/>
        </RollingFile>
        <RollingFile name="mms_log" fileName="${env:LOG_LOCATION:-logs}/mms_log.log"
                     filePattern="${env:LOG_LOCATION:-logs}/mms_log.%d{dd-MMM}.log.gz">
            <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
            <Policies><SizeBasedTriggeringPolicy size="100 MB"/><TimeBasedTriggeringPolicy/></Policies>
            <DefaultRolloverStrategy max="5"/>
        </RollingFile>
    </Appenders>
    <Loggers>
        <!-- the supervisor's own health probes of MMS (GET /ping, every second) are not logged -->
        <Logger name="ACCESS_LOG" level="info" additivity="false">
            <RegexFilter regex=".*&quot;GET /ping HTTP/1[.]1&quot;.*" onMatch="DENY" onMismatch="NEUTRAL"/>
            <AppenderRef ref="access_log"/>
        </Logger>
        <Logger name="MODEL_METRICS" level="info" additivity="false">
            <AppenderRef ref="model_metrics"/>
        </Logger>
        <Logger name="MMS_METRICS" level="info" additivity="false"><AppenderRef ref="mms_metrics"/></Logger>
        <Logger name="MODEL_LOG" level="info" additivity="false"><AppenderRef ref="mms_log"/></Logger>
        <Logger name="io.netty" level="error"/>
        <Logger name="org.apache" level="off"/>
        <Root level="info"><AppenderRef ref="mms_log"/></Root>
    </Loggers>
</Configuration>
"""


def free_port(low: int = 20000, high: int = MAX_PORT) -> int:
    """A port on 127.0.0.1 that is free now and that MMS accepts."""
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ServerError(f"no free port between {low} and {high} on 127.0.0.1")


def _check_port_free(url: str) -> None:
    """Refuse to start on a taken port: ``/ping`` would be answered by whatever holds it."""
    host_port = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    with socket.socket() as probe:
        try:
            probe.bind((host or "127.0.0.1", int(port)))
        except OSError as exc:
            raise ServerError(
                f"{host_port} is already in use ({exc.strerror}); stop what holds it or "
                "change the address in config.properties"
            ) from exc


def with_port(address: str | None, port: int) -> str:
    """``address`` (``http://HOST:PORT``, default host 127.0.0.1) with another port."""
    if not 0 < port <= MAX_PORT:
        raise ServerError(f"port {port}: Multi Model Server takes ports from 1 to {MAX_PORT}")
    scheme, _, rest = (address or "http://127.0.0.1:0").partition("://")
    host = rest.split("/", 1)[0].rpartition(":")[0] or "127.0.0.1"
    return f"{scheme}://{host}:{port}"


def read_properties(path: Path) -> dict[str, str]:
    properties: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            properties[key.strip()] = value.strip()
    return properties


def write_properties(path: Path, properties: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))


@dataclass(frozen=True)
class Registration:
    """How a model is registered through the management API."""

    url: str  # archive file name in the model store, or an http(s) URL
    name: str = "squeezenet"
    batch_size: int = 1
    max_batch_delay_ms: int = 100
    workers: int = 1


def group_members(group: int | None) -> list[Any]:
    """The live (not zombie) psutil processes of process group ``group``; none for None."""
    import psutil

    if group is None:
        return []
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == group and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def stop_group(group: int | None, timeout: float) -> None:
    """SIGTERM to process group ``group`` (one we started), SIGKILL to what is still alive after
    ``timeout`` seconds, and wait (bounded) until its members are gone."""
    import psutil

    if group is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(group_members(group), timeout=timeout)
    if alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)


def is_model_worker(process: Any, name: str | None = None) -> bool:
    """A psutil process that loads and runs a model (``name``'s, when given): MMS 1.1.11 starts
    ``model_service_worker.py`` once per worker, and that process forks one child per frontend
    connection, with the same command line, which loads and runs the model."""
    import psutil

    try:
        command, parent = process.cmdline(), process.parent()
        if not any(part.endswith("model_service_worker.py") for part in command):
            return False
        if name is not None and _flag(command, "--model-name") != name:
            return False
        return parent is not None and parent.cmdline() == command
    except psutil.Error:
        return False


class ModelServer:
    """One MMS instance in ``home`` (config, tmp, logs), started in the foreground as our child."""

    def __init__(
        self,
        home: Path,
        model_store: Path,
        config: Path | None = None,
        inference_port: int | None = None,
        management_port: int | None = None,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        log_config: Path | None = None,
        lean_logging: bool = True,
        on_output: Callable[[bytes], None] | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        """``overrides``: config.properties settings that win over ``config``'s."""
        self.home = home.resolve()
        self.model_store = model_store.resolve()
        properties = {**(read_properties(config) if config else {}), **(overrides or {})}
        if lean_logging:  # this project's frontend; a stock one (lean_logging=False) keeps MMS's JVM
            properties.setdefault("vmargs", JVM_OPTIONS)
        for key, port in (("inference_address", inference_port), ("management_address", management_port)):
            if port is not None:  # the config's host, this port
                properties[key] = with_port(properties.get(key), port)
        properties.setdefault("inference_address", f"http://127.0.0.1:{free_port()}")
        properties.setdefault("management_address", f"http://127.0.0.1:{free_port()}")
        self.properties = properties
        self.inference_url = properties["inference_address"].rstrip("/")
        self.management_url = properties["management_address"].rstrip("/")
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._group: int | None = None  # the process group of the launcher and all it starts
        self.log_dir = (log_dir or self.home / "logs").resolve()
        # log4j2.xml: log_config, else LOG4J2_XML when lean_logging, else MMS's own (a stock server)
        self.log_config = log_config.resolve() if log_config else None
        self.lean_logging = lean_logging
        # None: MMS's output goes to home/mms.out; else each line of it is given to on_output
        self.on_output = on_output
        self.tmp = self.home / "tmp"  # TMPDIR of MMS and its workers: pid file, sockets, unpacked models

    @classmethod
    def on_free_ports(
        cls,
        home: Path,
        model_store: Path,
        config: Path | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> ModelServer:
        """Configured by ``config`` like ``serve`` runs it, but on free 127.0.0.1 ports whatever the
        config says: for tests and benchmarks that must not collide with a server already running.
        ``options``: the other keyword arguments of the constructor (``log_config``, ...)."""
        ports = {"inference_port": free_port(), "management_port": free_port()}
        return cls(home, model_store, config=config, env=env, **ports, **options)

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self, models: list[str] | None = None, timeout: float = 120.0) -> None:
        """Start and wait for ``/ping``; ``models`` are ``name=archive`` pairs loaded at start-up."""
        if shutil.which("java") is None:
            raise ServerError("java not found on PATH: Multi Model Server needs a Java 11+ runtime")
        for url in (self.inference_url, self.management_url):
            _check_port_free(url)
        for folder in (self.home, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        tmp = fresh_private_folder(self.tmp)
        config = self.home / "config.properties"
        write_properties(config, self.properties)
        if self.log_config is None and self.lean_logging:
            self.log_config = self.home / "log4j2.xml"
            self.log_config.write_text(LOG4J2_XML)
        env = dict(os.environ)
        env.update(
            TMPDIR=str(tmp),
            TEMP=str(tmp),
            LOG_LOCATION=str(self.log_dir),
            METRICS_LOCATION=str(self.log_dir),
            **self.extra_env,
        )
        launcher = Path(sys.executable).with_name("multi-model-server")
        command = [str(launcher), "--start", "--foreground", "--mms-config", str(config)]
        command += ["--model-store", str(self.model_store)]
        if self.log_config is not None:
            command += ["--log-config", str(self.log_config)]
        if models:
            command += ["--models", *models]
        logger.debug("starting MMS: %s", " ".join(command))
        self._stdout = None if self.on_output else (self.home / "mms.out").open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=self.home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout or subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every descendant
        )
        self._group = self.process.pid
        if self.on_output is not None and self.process.stdout is not None:
            threading.Thread(
                target=_pass_lines, args=(self.process.stdout, self.on_output), daemon=True
            ).start()
        try:
            self._wait_for_ping(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_for_ping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"MMS exited with code {self.process.returncode}: {self.output_tail()}")
            try:
                if requests.get(f"{self.inference_url}/ping", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)  # the JVM binds ~0.5 s after start: poll finely, a start waits less
        raise ServerError(f"MMS did not answer /ping within {timeout:.0f} s: {self.output_tail()}")

    def pid(self) -> int | None:
        """The launcher's pid while it runs (``subprocess`` reaps it)."""
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        """True while MMS's launcher (and so its frontend) runs."""
        return self.process is not None and self.process.poll() is None

    def answers_ping(self, timeout: float = 2.0) -> bool:
        """True when MMS's frontend answers its own ``/ping`` (whatever it says of the workers)."""
        try:
            return requests.get(f"{self.inference_url}/ping", timeout=timeout).status_code == 200
        except requests.RequestException:
            return False

    def wait(self) -> int:
        """Block until MMS exits by itself; its exit code."""
        if self.process is None:
            raise ServerError("MMS is not running")
        return self.process.wait()

    def output_tail(self, lines: int = 15) -> str:
        text = ""
        for path in (self.home / "mms.out", self.log_dir / "mms_log.log"):
            if path.is_file():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text.strip()

    def processes(self) -> list[Any]:
        """Every live process of this server: the launcher's process group (``start`` makes it a new
        session), so the frontend and its workers are found even after a dead frontend left the
        workers to PID 1. All were started by us; nothing outside the group is ever touched."""
        return group_members(self._group)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL to what is still alive after ``timeout``."""
        stop_group(self._group, timeout)
        if self.process is not None:
            self.process.wait(timeout=5)
            self.process = None
        self._group = None  # its id may be reused once every member is gone
        if getattr(self, "_stdout", None):
            self._stdout.close()
        shutil.rmtree(self.tmp, ignore_errors=True)  # unpacked models are never reused by a later start

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------- management API
    def register(self, registration: Registration, timeout: float = 180.0) -> dict[str, Any]:
        params = {
            "url": registration.url,
            "model_name": registration.name,
            "batch_size": registration.batch_size,
            "max_batch_delay": registration.max_batch_delay_ms,
            "initial_workers": registration.workers,
            "synchronous": "true",
        }
        log = self.log_dir / "mms_log.log"
        offset = log.stat().st_size if log.is_file() else 0
        response = requests.post(f"{self.management_url}/models", params=params, timeout=timeout)
        if not response.ok:
            cause = self.load_error(registration.name, offset)
            answer = f"HTTP {response.status_code} {_json_message(response)}"
            said = f"the worker said: {cause}" if cause else f"MMS logged no cause; see {log}"
            raise ServerError(f"registering {registration.url} failed: {answer}; {said}")
        return response.json()

    def load_error(self, model_name: str, offset: int = 0) -> str | None:
        """The exception a worker of ``model_name`` logged after byte ``offset`` of mms_log.log.

        MMS answers a failed load with only 'Failed to start workers'; the cause (e.g. the handler's
        ModelLoadError naming the file) is in the worker's output, which MMS 1.1.11 copies into its
        log only about two times in three. Lines of other models and earlier runs never count."""
        log = self.log_dir / "mms_log.log"
        if not log.is_file():
            return None
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
        pattern = re.compile(
            rf"W-\d+-{re.escape(model_name)}-stdout .*WorkerLifeCycle - "
            r"(\w+(?:\.\w+)*(?:Error|Exception): .*)$"
        )
        causes = [m.group(1) for line in text.splitlines() if (m := pattern.search(line))]
        return causes[-1] if causes else None

    def describe(self, name: str = "squeezenet") -> dict[str, Any]:
        response = requests.get(f"{self.management_url}/models/{name}", timeout=10)
        response.raise_for_status()
        body = response.json()
        return body[0] if isinstance(body, list) else body

    def scale(self, name: str, min_worker: int, timeout: float = 180.0) -> None:
        """Scale ``name`` to ``min_worker`` workers (at least 1: MMS 1.1.11 hangs the management call
        and every prediction of a model scaled to 0 and back; unregister it instead)."""
        if min_worker < 1:
            raise ServerError(
                f"refusing to scale {name} to {min_worker} workers: Multi Model Server 1.1.11 then hangs "
                "its predictions until the model is registered again; unregister it instead"
            )
        response = requests.put(
            f"{self.management_url}/models/{name}",
            params={"min_worker": min_worker, "max_worker": min_worker, "synchronous": "true"},
            timeout=timeout,
        )
        if not response.ok:
            raise ServerError(f"scaling {name} failed: HTTP {response.status_code} {response.text.strip()}")

    def unregister(self, name: str, timeout: float = 180.0) -> None:
        response = requests.delete(f"{self.management_url}/models/{name}", timeout=timeout)
        if not response.ok:
            raise ServerError(
                f"unregistering {name} failed: HTTP {response.status_code} {response.text.strip()}"
            )

    def worker_pids(self, name: str = "squeezenet") -> list[int]:
        """PIDs of the processes holding the model: each ``model_service_worker.py`` the frontend starts
        for ``name`` forks one child per frontend connection, and that child loads and runs the model."""
        return sorted(proc.pid for proc in self.processes() if is_model_worker(proc, name))

    def wait_for_workers(self, name: str, count: int | None = None, timeout: float = 120.0) -> list[int]:
        """Wait until the frontend reports ``count`` READY workers (None: as many as it started, at least
        one; a stock MMS starts one per core) and their processes exist; their PIDs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                workers = self.describe(name).get("workers", [])
            except requests.RequestException:
                workers = []
            ready = [w for w in workers if str(w.get("status", "")).upper() == "READY"]
            pids = self.worker_pids(name)
            wanted = len(workers) if count is None else count
            if wanted >= 1 and len(ready) == len(pids) == wanted:
                return pids
            time.sleep(0.3)
        raise ServerError(f"{name}: {count or 'its'} ready worker(s) not seen within {timeout:.0f} s")


def fresh_private_folder(folder: Path) -> Path:
    """``folder`` emptied (or made) and private (0700): MMS reuses an unpacked model it finds in its
    temporary folder ("model folder already exists"), so every start gets an empty one. Refused while
    another live MMS uses it (its pid file names a running process)."""
    pid = _live_model_server(folder / ".model_server.pid")
    if pid is not None:
        raise ServerError(f"{folder}: another Multi Model Server (pid {pid}) runs with this folder")
    if folder.is_symlink() or folder.exists():
        if folder.is_symlink() or not folder.is_dir():
            folder.unlink()
        else:
            shutil.rmtree(folder)
    folder.mkdir(mode=0o700, parents=True)
    return folder


def _live_model_server(pid_file: Path) -> int | None:
    """The pid an MMS pid file names, when that process runs and is MMS's frontend (a restarted
    container's leftover file may name a pid that now belongs to anything, tini included)."""
    import psutil

    try:
        pid = int(pid_file.read_text().strip())
        command = " ".join(psutil.Process(pid).cmdline())
    except (OSError, ValueError, psutil.Error):
        return None
    return pid if "com.amazonaws.ml.mms.ModelServer" in command else None


def _pass_lines(stream: IO[bytes], on_line: Callable[[bytes], None]) -> None:
    for line in iter(stream.readline, b""):
        on_line(line)
    stream.close()


def _json_message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", response.text.strip()))
    except ValueError:
        return response.text.strip()


def _flag(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command[:-1] else None
