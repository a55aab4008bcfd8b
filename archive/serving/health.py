"""What the supervisor knows about the server's health, and what it does about it.

Sources, read about twice a second:

- each model's *loaded workers*: the worker processes that loaded the model and are alive, counted
  from the locks they hold (``squeezenet_handler.health``; a killed worker's lock vanishes with it);
- whether MMS's frontend answers its own ``/ping`` at all (a hung or dead JVM does not).

:class:`Watchdog` turns them into a verdict (pure logic, no I/O, so tests drive it with a clock of
their own); :class:`HealthBoard` publishes it as the files nginx serves ``/ping`` from::

    Starting    until every model answered a warm-up request           /ping 503
    Healthy     every model has a loaded worker and MMS answers         /ping 200
    Unhealthy   a model has none, or MMS does not answer (the reason)   /ping 503
    Draining    after SIGTERM, while the requests in flight finish     /ping 503

An outage longer than ``outage_grace`` seconds makes the verdict ``restart``: the supervisor restarts
MMS in place; after ``max_restarts`` restarts within ``restart_window`` seconds it gives up (exit
code 8) so that the platform restarts the container. (MMS replaces one killed worker in about 1.2 s,
which loads in about 1.5 s; it replaces none once every worker of a model is killed: measured.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY_FLAG = "ready"
STATUS_FILE = "status.json"


def loaded_workers(health_dir: Path, model: str) -> int:
    """Workers holding ``<health_dir>/<model>/loaded-<pid>.lock``; stale files (their worker died) are
    removed on the way."""
    folder = health_dir / model
    count = 0
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return 0
    for name in names:
        if not (name.startswith("loaded-") and name.endswith(".lock")):
            continue
        path = folder / name
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            count += 1  # a live worker holds it
        else:
            with contextlib.suppress(OSError):
                path.unlink()  # nobody holds it: its worker is gone
        finally:
            os.close(descriptor)
    return count


def prepare_health_dir(health_dir: Path) -> Path:
    """An empty private folder for the workers' locks and the /ping files (mode 0700)."""
    health_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    health_dir.chmod(0o700)
    for item in health_dir.iterdir():
        if item.is_dir() and not item.is_symlink():
            for lock in item.iterdir():
                lock.unlink()
            item.rmdir()
        else:
            item.unlink()
    return health_dir


@dataclass(frozen=True)
class Observation:
    at: float  # monotonic seconds
    loaded: Mapping[str, int]  # model -> loaded workers
    frontend_answers: bool


@dataclass(frozen=True)
class Verdict:
    status: str  # Starting, Healthy, Unhealthy, Draining
    reason: str = ""
    restart: bool = False  # restart MMS now
    give_up: bool = False  # too many restarts: exit so that the platform restarts us

    @property
    def healthy(self) -> bool:
        return self.status == "Healthy"

    def body(self) -> dict[str, object]:
        return {"status": self.status, **({"reason": self.reason} if self.reason else {})}


@dataclass
class Watchdog:
    models: Sequence[str]
    outage_grace: float = 5.0
    max_restarts: int = 3
    restart_window: float = 600.0
    started: bool = False  # every model answered its warm-up
    draining: bool = False
    _unhealthy_since: float | None = None
    _restarts: list[float] = field(default_factory=list)

    def observe(self, seen: Observation) -> Verdict:
        if self.draining:
            return Verdict("Draining", "stopping: finishing the requests in flight")
        if not self.started:
            return Verdict("Starting", "loading the model")
        missing = [model for model in self.models if seen.loaded.get(model, 0) < 1]
        if seen.frontend_answers and not missing:
            self._unhealthy_since = None
            return Verdict("Healthy")
        reason = (
            f"no worker of {', '.join(missing)} can answer"
            if missing
            else "the model server's frontend does not answer"
        )
        if self._unhealthy_since is None:
            self._unhealthy_since = seen.at
        if seen.at - self._unhealthy_since < self.outage_grace:
            return Verdict("Unhealthy", reason)
        recent = [at for at in self._restarts if seen.at - at < self.restart_window]
        if len(recent) >= self.max_restarts:
            return Verdict(
                "Unhealthy",
                f"{reason}; {len(recent)} restarts in {self.restart_window:.0f} s did not help",
                give_up=True,
            )
        self._restarts = [*recent, seen.at]
        self._unhealthy_since = None
        self.started = False  # until the restarted server answers its warm-up
        return Verdict("Unhealthy", f"{reason} for {self.outage_grace:.0f} s: restarting it", restart=True)


class HealthBoard:
    """The files nginx answers ``/ping`` from: ``status.json`` (the body) and ``ready`` (present: 200)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.shown: Verdict | None = None

    def show(self, verdict: Verdict) -> bool:
        """Publish ``verdict`` (the body first, then the flag); True when it changed."""
        if verdict == self.shown:
            return False
        _write_atomically(self.folder / STATUS_FILE, (json.dumps(verdict.body()) + "\n").encode())
        flag = self.folder / READY_FLAG
        if verdict.healthy:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)
        self.shown = verdict
        return True


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
