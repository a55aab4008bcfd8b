"""The front: nginx between the clients and MMS's inference API, wherever this project runs the
server (``squeezenet-mar serve``, the container).

What it owns, and why MMS 1.1.11 cannot do it itself (measured, README "Operations"):

- ``GET /ping`` from the supervisor's health files (200 only while every model has a worker that
  can answer; 503 with the reason otherwise). MMS answers 200 whatever its workers do.
- draining: on SIGQUIT nginx stops accepting connections and finishes every request it accepted
  (``worker_shutdown_timeout`` bounds it); MMS drops requests in flight when stopped.
- request cost before MMS: bodies are read whole (``proxy_request_buffering``), so slow or unfinished
  clients hold an nginx connection (cheap: thousands per worker, closed after ``header_timeout``
  seconds of silence) and never one of MMS's; bodies over ``max_body_bytes`` get 413 from here; a web
  form's content type is replaced by ``application/octet-stream`` (MMS's frontend would parse every
  field of a form before the handler sees the bytes: 2.3 M fields took 20 s and 1.7 GB);
  only POST reaches ``/predictions/`` and ``/invocations``.
- its own errors (413, 405, MMS unreachable) as JSON, like the handler's.
- a prediction whose worker died under it (MMS's 500 "Worker died.") is sent to MMS once more, where a
  live worker answers it; a second 500 reaches the client.

Everything nginx writes goes under ``home`` (temporary bodies, pid file), so it runs as any user on a
read-only root filesystem.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import ArchiveToolError

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "nginx is not installed: `serve` and the container put it in front of Multi Model Server "
    "(truthful /ping, draining, request limits). Install it with `sudo make system-setup` "
    "(or apt-get install nginx-light)"
)


class FrontError(ArchiveToolError):
    exit_code = 8


@dataclass(frozen=True)
class FrontSettings:
    listen: str  # HOST:PORT the clients use
    upstream: str  # HOST:PORT of MMS's inference API
    home: Path  # nginx's own writable folder
    health: Path  # the supervisor's health files: ``ready`` (flag) and ``status.json`` (body)
    max_body_bytes: int = 25 * 1024 * 1024
    response_timeout: int = 120  # seconds MMS may take for a batch
    drain_seconds: int = 25  # a stop waits this long for the requests in flight
    header_timeout: int = 10  # seconds a client may take to send its headers, or between body reads
    keepalive_timeout: int = 65
    max_connections: int = 8192
    access_log: bool = False  # one line per request on stderr


def find_nginx() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FrontError(INSTALL_HINT)


def _json(code: int, kind: str, message: str) -> str:
    """An nginx ``return`` text (single-quoted): the handler's error body, on one line."""
    if "'" in message or '"' in message or "\\" in message:
        raise ValueError(f"no quotes or backslashes in an nginx error message: {message!r}")
    return f'\'{{"code": {code}, "type": "{kind}", "message": "{message}"}}\\n\''


def nginx_config(s: FrontSettings) -> str:
    """The whole nginx.conf for ``s``: nothing else is read (no /etc/nginx)."""
    home, health = s.home.resolve(), s.health.resolve()
    access = "access_log /dev/stderr combined;" if s.access_log else "access_log off;"
    too_large = _json(
        413, "PayloadTooLarge", f"request body over {s.max_body_bytes} bytes, the limit of this server"
    )
    no_method = _json(405, "MethodNotAllowed", "predictions take POST with the image as the body")
    unreachable = _json(503, "ServiceUnavailable", "the model server is not answering; retry shortly")
    timed_out = _json(504, "GatewayTimeout", "the model server did not answer in time")
    not_ready = _json(503, "ServiceUnavailable", "no worker can answer now (see GET /ping); retry shortly")
    return f"""\
# Written by squeezenet_mar.serving.front for this run; nginx reads nothing else.
daemon off;
{_user_directive()}
worker_processes 1;
worker_rlimit_nofile {2 * s.max_connections + 64};
worker_shutdown_timeout {s.drain_seconds}s;
pid {home}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections {s.max_connections};
}}
http {{
    {access}
    server_tokens off;
    default_type application/json;
    client_body_temp_path {home}/client_body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;

    client_max_body_size {s.max_body_bytes};
    client_body_buffer_size 1m;
    client_header_buffer_size 4k;
    large_client_header_buffers 4 16k;
    client_header_timeout {s.header_timeout}s;
    client_body_timeout {s.header_timeout}s;
    send_timeout 60s;
    keepalive_timeout {s.keepalive_timeout}s;
    keepalive_requests 100000;
    reset_timedout_connection on;

    # MMS parses a web form field by field before the handler runs; the handler reads raw bytes.
    map $http_content_type $mms_content_type {{
        default $http_content_type;
        "~*^\\s*application/x-www-form-urlencoded" application/octet-stream;
    }}

    # MMS answers 500 "Worker died." to a request whose worker was killed before answering (one of
    # several, the others alive). A prediction has no side effects, so such a request is handed to MMS
    # once more, which gives it to a live worker. nginx retries only on another peer: the same MMS twice,
    # with no failure accounting (max_fails=0), so a dead worker never takes MMS out of the rotation.
    upstream mms {{
        server {s.upstream} max_fails=0;
        server {s.upstream} max_fails=0;
        keepalive 32;
    }}

    # Requests in flight and connections, for the supervisor (metrics, drain), on a private socket.
    server {{
        listen unix:{home}/status.sock;
        location = /status {{ stub_status; }}
    }}

    server {{
        listen {s.listen} backlog=4096;

        error_page 413 = @too_large;
        error_page 502 503 = @unreachable;
        error_page 504 = @timed_out;
        location @too_large {{ return 413 {too_large}; }}
        location @unreachable {{ return 503 {unreachable}; }}
        location @timed_out {{ return 504 {timed_out}; }}

        # 200 while every model has a worker that can answer (the supervisor's health files).
        location = /ping {{
            error_page 503 /_health;
            if (!-f "{health}/ready") {{ return 503; }}
            rewrite ^ /_health last;
        }}
        location = /_health {{
            internal;
            alias "{health}/status.json";
        }}

        location ~ ^/(predictions/|invocations) {{
            if ($request_method != POST) {{ return 405 {no_method}; }}
            # No worker can answer (starting, an outage, draining): at once, instead of MMS's queue.
            if (!-f "{health}/ready") {{ return 503 {not_ready}; }}
            proxy_pass http://mms;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Content-Type $mms_content_type;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # when nginx hands the request on (body read): the handler's queue wait and duration
            proxy_set_header X-Request-Start "t=${{msec}}";
            proxy_request_buffering on;
            proxy_buffering on;
            proxy_connect_timeout 5s;
            proxy_send_timeout 60s;
            proxy_read_timeout {s.response_timeout + 10}s;
            proxy_next_upstream error http_500 non_idempotent;
            proxy_next_upstream_tries 2;
        }}

        location / {{
            proxy_pass http://mms;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            proxy_next_upstream off;
        }}
    }}
}}
"""


def _user_directive() -> str:
    """Started by root, nginx's workers would switch to ``nobody`` and lose access to our private
    folders: keep them as the user that runs us. (Not root: nginx ignores the directive.)"""
    if os.geteuid() != 0:
        return "# not root: nginx's workers run as this user"
    import grp
    import pwd

    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


class Front:
    """One nginx process (master and worker) running :func:`nginx_config`, started as our child."""

    def __init__(self, settings: FrontSettings, output: IO[bytes] | int | None = None) -> None:
        self.settings = settings
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.settings.home / "nginx.conf"

    @property
    def status_socket(self) -> Path:
        return self.settings.home.resolve() / "status.sock"

    def status(self) -> FrontStatus | None:
        return front_status(self.status_socket)

    def start(self, timeout: float = 10.0) -> None:
        """nginx started and listening; FrontError naming nginx's complaint otherwise."""
        nginx = find_nginx()
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(nginx_config(self.settings))
        host, _, port = self.settings.listen.rpartition(":")
        _check_free(host, int(port))
        self.process = subprocess.Popen(
            [nginx, "-e", "stderr", "-p", str(home), "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=self.output,
            start_new_session=True,  # a Ctrl-C in a terminal reaches the supervisor only
        )
        deadline = time.monotonic() + timeout
        while not _accepts(host, int(port)):
            if self.process.poll() is not None:
                raise FrontError(f"nginx exited with code {self.process.returncode} (its output is above)")
            if time.monotonic() > deadline:
                self.stop()
                raise FrontError(f"nginx did not listen on {self.settings.listen} within {timeout:.0f} s")
            time.sleep(0.02)
        logger.debug("nginx listening on %s (pid %d)", self.settings.listen, self.process.pid)

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def drain(self) -> None:
        """Stop accepting connections; answer every request already accepted, then exit (SIGQUIT)."""
        if self.alive() and self.process is not None:
            self.process.send_signal(signal.SIGQUIT)

    def wait(self, timeout: float) -> bool:
        """True when nginx exited within ``timeout`` seconds."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Drain, then terminate what is left after ``timeout`` seconds."""
        if self.process is None:
            return
        self.drain()
        if not self.wait(timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self.process = None


@dataclass(frozen=True)
class FrontStatus:
    """nginx's stub_status: connections open, and requests being read, answered (in flight) or idle."""

    active: int
    requests: int  # requests handled since start
    reading: int
    writing: int  # requests nginx is answering: waiting for MMS or sending its answer
    waiting: int  # idle keep-alive connections


def front_status(socket_path: Path, timeout: float = 2.0) -> FrontStatus | None:
    """Read stub_status over nginx's private socket; None when nginx does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(socket_path))
            connection.sendall(b"GET /status HTTP/1.0\r\nHost: status\r\n\r\n")
            data = b""
            while chunk := connection.recv(4096):
                data += chunk
    except OSError:
        return None
    numbers = [int(n) for n in re.findall(rb"\d+", data.partition(b"\r\n\r\n")[2])]
    if len(numbers) != 7:
        return None
    active, _accepted, _handled, requests, reading, writing, waiting = numbers
    # the status request itself is one of the "writing" ones
    return FrontStatus(active, requests, reading, max(0, writing - 1), waiting)


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1" if host in ("", "0.0.0.0") else host, port))
        except OSError:
            return False
    return True


def _check_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "0.0.0.0", port))
        except OSError as exc:
            raise FrontError(
                f"{host}:{port} is already in use ({exc.strerror}): stop what holds it or choose another port"
            ) from exc
