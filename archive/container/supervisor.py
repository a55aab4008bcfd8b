"""MMS run in the foreground as the container's main process: start-up watched (warm-up answers,
``Load model failed`` lines), signals forwarded to its whole process group, orphans reaped, health."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from .launch import Launch
from .settings import ContainerError

logger = logging.getLogger(__name__)


SERVER_FAILED = 8  # squeezenet-mar's exit code for "MMS failed to start or register"


def _become_subreaper() -> None:
    """Orphaned MMS processes (the Java frontend once its launcher exits) become our children, so we
    reap them and know when the last one is gone, whether or not an init runs as PID 1."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_CHILD_SUBREAPER) unavailable")


def _reap() -> dict[int, int]:
    """Collect every exited child; pid -> exit code (negative: killed by that signal)."""
    exited: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return exited
        if pid == 0:
            return exited
        exited[pid] = os.waitstatus_to_exitcode(status)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _get_json(url: str, timeout: float = 5.0) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def warm_up(inference_url: str, name: str, image: bytes, timeout: float) -> int:
    """POST ``image`` to the model; the HTTP status, or 0 when nothing answered within ``timeout``.

    MMS 1.1.11 binds its ports (and answers ``/ping`` 200) once the worker processes have started,
    about a second before they have loaded the model; a request sent then waits in MMS's queue. So an
    answer to this request is what proves that the model is loaded."""
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


class StartupWatch:
    """Follows MMS's output during start-up. The frontend logs ``Load model failed: <name>, ...``
    when a worker cannot load a model; for a model loaded at start-up MMS then retries forever."""

    def __init__(self, names: Sequence[str]) -> None:
        alternatives = b"|".join(re.escape(name.encode()) for name in names)
        self._pattern = re.compile(rb"Load model failed: (" + alternatives + rb"),")
        self.failure: str | None = None

    def feed(self, line: bytes) -> None:
        if self.failure is None and (match := self._pattern.search(line)):
            text = line.decode(errors="replace").strip()
            self.failure = f"MMS failed to load model {match.group(1).decode()!r}: {text}"


def _forward_output(stream: IO[bytes], watch: StartupWatch) -> None:
    """Copy MMS's output to ours, line by line (container runtimes collect it there)."""
    sink = sys.stdout.buffer
    for line in iter(stream.readline, b""):
        watch.feed(line)
        try:
            sink.write(line)
            sink.flush()
        except (OSError, ValueError):
            pass


def run_model_server(launch: Launch, startup_timeout: float = 300.0, stop_timeout: float = 3.0) -> int:
    """Run MMS in its own process group until it exits or we get SIGTERM/SIGINT.

    Start-up ends when every model has answered a warm-up request (:func:`warm_up`); then
    ``launch.ready_file`` is written. SIGTERM/SIGINT are forwarded to the whole group (launcher, Java
    frontend, Python workers), and whatever is still alive ``stop_timeout`` seconds later is killed.
    Returns 0 after a requested stop; 8 when a model fails to load, start-up takes longer than
    ``startup_timeout`` or MMS exits by itself."""
    from ..inprocess import smoke_image

    _become_subreaper()
    launch.ready_file.unlink(missing_ok=True)
    image = smoke_image()
    watch = StartupWatch(list(launch.models))
    answered: dict[str, int] = {}
    stop_at: list[float] = []  # when the stop began: a signal, a failure, or MMS exiting
    started = time.monotonic()
    logger.info("starting MMS: %s", " ".join(launch.command))
    process = subprocess.Popen(
        launch.command,
        env=launch.env,
        start_new_session=True,  # its own process group, which we signal as a whole
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    group = process.pid

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if not stop_at:
            logger.info("%s: stopping MMS", signal.Signals(signum).name)
            stop_at.append(time.monotonic())
            _signal_group(group, signal.SIGTERM)

    def warm_all() -> None:
        for name in launch.models:
            while not stop_at and time.monotonic() - started < startup_timeout:
                status = warm_up(launch.inference_url, name, image, timeout=10.0)
                if model_answered(status):
                    answered[name] = status
                    break
                time.sleep(0.2)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    output = process.stdout
    if output is None:  # stdout=PIPE always gives one
        raise ContainerError("MMS started without an output stream")
    threading.Thread(target=_forward_output, args=(output, watch), daemon=True).start()
    threading.Thread(target=warm_all, daemon=True).start()
    ready = False
    failure: str | None = None
    killed = False
    try:
        while True:
            exited = _reap()
            now = time.monotonic()
            if group in exited:
                process.returncode = exited[group]  # reaped here, not by Popen
                if not stop_at:
                    failure = f"MMS exited by itself with code {exited[group]}"
            if not stop_at and not ready and not failure:
                if len(answered) == len(launch.models):
                    ready = True
                    launch.ready_file.write_text(f"{now - started:.3f}\n")
                    logger.info(
                        "ready after %.1f s: %s on %s (POST /predictions/NAME or /invocations, GET /ping)",
                        now - started,
                        ", ".join(launch.models),
                        launch.inference_url,
                    )
                elif watch.failure:
                    failure = watch.failure
                elif now - started > startup_timeout:
                    failure = f"the models did not answer within {startup_timeout:.0f} s of start-up"
            if failure and not stop_at:
                logger.error("%s; stopping MMS", failure)
                stop_at.append(now)
                _signal_group(group, signal.SIGTERM)
            if stop_at:
                if not _group_alive(group):
                    break
                if not killed and now - stop_at[0] > stop_timeout:
                    logger.warning("MMS still running %.0f s after SIGTERM: killing it", stop_timeout)
                    _signal_group(group, signal.SIGKILL)
                    killed = True
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        launch.ready_file.unlink(missing_ok=True)
    _reap()
    output.close()
    logger.info("MMS stopped, %.1f s after the stop began", time.monotonic() - stop_at[0])
    return SERVER_FAILED if failure else 0


def healthcheck(inference_url: str, ready_file: Path, timeout: float = 5.0) -> bool:
    """The image's HEALTHCHECK: the models have answered once (``ready_file``) and ``/ping`` answers
    200 with ``{"status": "Healthy"}`` (MMS says "Unhealthy", still with a 200, when no worker runs)."""
    if not ready_file.is_file():
        return False
    status, body = _get_json(f"{inference_url}/ping", timeout)
    return status == 200 and isinstance(body, dict) and body.get("status") == "Healthy"
