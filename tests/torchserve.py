"""A real TorchServe 0.12 (Java frontend, Python workers) for the tests, from ``.venv-torchserve``
(``make torchserve-setup``: CPU torch, ONNX Runtime, no MXNet), run like ``squeezenet_mar.server``'s
``ModelServer`` runs MMS: on free 127.0.0.1 ports, in a private ``TMPDIR``/``TEMP``, in the foreground as
our child in a process group of its own, and stopped by that group (PIDs we started, nothing else).

TorchServe 0.12 facts this relies on (measured, or read in ``ts/`` of the installed package):

- ``torchserve --start --foreground`` runs ``java ... org.pytorch.serve.ModelServer``; the pid file
  ``$TMPDIR/.model_server.pid``, the worker sockets and the unpacked models (``$TEMP/models/<id>/``)
  live in the temporary folders, the logs in ``$LOG_LOCATION`` (``ts_log.log``, ``model_log.log``:
  the workers' output, ``model_metrics.log``, ``access_log.log``).
- Token authorisation is on by default (a key file in the working folder); the minimal config turns
  it off with ``disable_token_authorization=true``. Besides the inference and management APIs it
  listens on a metrics port (8082) and two gRPC ports (7070, 7071, on 127.0.0.1): all on free ports,
  or a second server fails to start ("Failed to bind to address /127.0.0.1:7070"). ``--ncs``: no
  config snapshots written under ``logs/config``.
- Registering and unregistering through the management API needs ``enable_model_api=true`` (off by
  default since 0.11); a stock server only loads the models named at start.
- Each worker is a ``ts/model_service_worker.py`` process of its own (no fork, unlike MMS); the
  management API lists every worker's ``pid``.
- The workers inherit the launcher's environment (``SQUEEZENET_TRUSTED_KEY``, ...).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from harness import ROOT
from squeezenet_mar.server import (
    Registration,
    ServerError,
    free_port,
    fresh_private_folder,
    group_members,
    stop_group,
    write_properties,
)

TS_VENV = ROOT / ".venv-torchserve"
TS_BIN = TS_VENV / "bin"
DEFAULT_MAX_REQUEST_SIZE = 6553500  # TorchServe 0.12's max_request_size, like MMS 1.1.11's


def torchserve_missing() -> str | None:
    """Why TorchServe cannot run here (for a skip message that says what to do), or None."""
    if not (TS_BIN / "torchserve").is_file():
        return f"no TorchServe in {TS_VENV}: run `make torchserve-setup`"
    if shutil.which("java") is None:
        return "java not found on PATH: TorchServe's frontend is Java"
    return None


def minimal_properties(**extra: str) -> dict[str, str]:
    """The smallest config a TorchServe on this machine needs: its addresses and ports (free ones) and
    token authorisation off; ``extra`` settings on top."""
    return {
        "inference_address": f"http://127.0.0.1:{free_port()}",
        "management_address": f"http://127.0.0.1:{free_port()}",
        "metrics_address": f"http://127.0.0.1:{free_port()}",
        "grpc_inference_port": str(free_port()),  # gRPC (127.0.0.1) too: 7070 and 7071 by default
        "grpc_management_port": str(free_port()),
        "disable_token_authorization": "true",
        **extra,
    }


class TorchServe:
    """One TorchServe in ``home`` (config, tmp, logs), started in the foreground as our child."""

    def __init__(
        self,
        home: Path,
        model_store: Path,
        properties: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = home.resolve()
        self.model_store = model_store.resolve()
        self.properties = properties or minimal_properties()
        self.inference_url = self.properties["inference_address"].rstrip("/")
        self.management_url = self.properties["management_address"].rstrip("/")
        self.extra_env = env or {}
        self.log_dir = self.home / "logs"
        self.tmp = self.home / "tmp"
        self.process: subprocess.Popen[bytes] | None = None
        self._group: int | None = None
        self.started_at: float | None = None  # time.monotonic() just before the launcher started

    @property
    def model_log(self) -> Path:
        """The workers' output (the handler's log lines), as TorchServe's log4j2 writes it."""
        return self.log_dir / "model_log.log"

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self, models: list[str] | None = None, timeout: float = 120.0) -> None:
        """Start and wait for ``/ping``; ``models`` are ``name=archive`` pairs loaded at start-up."""
        missing = torchserve_missing()
        if missing:
            raise ServerError(missing)
        for folder in (self.home, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        tmp = fresh_private_folder(self.tmp)
        config = self.home / "config.properties"
        write_properties(config, self.properties)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("TS_", "PYTHON"))}
        env.update(
            PATH=f"{TS_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            TMPDIR=str(tmp),
            TEMP=str(tmp),
            LOG_LOCATION=str(self.log_dir),
            METRICS_LOCATION=str(self.log_dir),
            **self.extra_env,
        )
        command = [str(TS_BIN / "torchserve"), "--start", "--foreground", "--ncs"]
        command += ["--ts-config", str(config), "--model-store", str(self.model_store)]
        if models:
            command += ["--models", *models]
        self._stdout = (self.home / "torchserve.out").open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            command,
            cwd=self.home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every descendant
        )
        self._group = self.process.pid
        try:
            self._wait_for_ping(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_for_ping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise ServerError(f"TorchServe exited with code {code}: {self.output_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.inference_url}/ping", timeout=2).status_code in (200, 500):
                    return  # 500: up, but a model's workers are not (yet) healthy
            time.sleep(0.3)
        raise ServerError(f"TorchServe did not answer /ping within {timeout:.0f} s: {self.output_tail()}")

    def output_tail(self, lines: int = 15) -> str:
        text = ""
        for path in (self.home / "torchserve.out", self.log_dir / "ts_log.log"):
            if path.is_file():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text.strip()

    def processes(self) -> list[Any]:
        """Every live process of this server's process group (all started by us)."""
        return group_members(self._group)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL to what is still alive after ``timeout``."""
        stop_group(self._group, timeout)
        if self.process is not None:
            self.process.wait(timeout=5)
            self.process = None
        self._group = None
        if getattr(self, "_stdout", None):
            self._stdout.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------------------- management API
    def describe(self, name: str = "squeezenet") -> dict[str, Any]:
        response = requests.get(f"{self.management_url}/models/{name}", timeout=10)
        response.raise_for_status()
        body = response.json()
        return body[0] if isinstance(body, list) else body

    def register(self, registration: Registration, timeout: float = 180.0) -> requests.Response:
        """POST /models (needs ``enable_model_api=true``), synchronous; the reply, whatever it says."""
        params = {
            "url": registration.url,
            "model_name": registration.name,
            "batch_size": registration.batch_size,
            "max_batch_delay": registration.max_batch_delay_ms,
            "initial_workers": registration.workers,
            "synchronous": "true",
        }
        return requests.post(f"{self.management_url}/models", params=params, timeout=timeout)

    def unregister(self, name: str, timeout: float = 60.0) -> requests.Response:
        return requests.delete(f"{self.management_url}/models/{name}", timeout=timeout)

    def worker_pids(self, name: str = "squeezenet") -> list[int]:
        """PIDs of the model's worker processes (the management API's, checked against our group)."""
        ours = {proc.pid for proc in self.processes()}
        try:
            workers = self.describe(name).get("workers", [])
        except requests.RequestException:
            return []
        return sorted(int(w["pid"]) for w in workers if int(w.get("pid", -1)) in ours)

    def wait_for_workers(self, name: str, count: int | None = None, timeout: float = 120.0) -> list[int]:
        """Wait until ``count`` workers (None: as many as TorchServe started, at least one) are READY
        and their processes exist; their PIDs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                workers = self.describe(name).get("workers", [])
            except requests.RequestException:
                workers = []
            ready = [w for w in workers if str(w.get("status", "")).upper() == "READY"]
            wanted = len(workers) if count is None else count
            pids = self.worker_pids(name)
            if wanted >= 1 and len(ready) == len(pids) == wanted:
                return pids
            time.sleep(0.3)
        wanted = count or "its"
        raise ServerError(f"{name}: {wanted} ready TorchServe worker(s) not seen within {timeout:.0f} s")

    def model_log_lines(self, text: str) -> list[str]:
        """Lines of the workers' log containing ``text``."""
        log = self.model_log
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        return [line for line in lines if text in line]
