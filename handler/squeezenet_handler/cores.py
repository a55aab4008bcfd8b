"""The cores this process may use (``usable_cores``: affinity and cgroup quota), and how many of them
this worker's next forward pass may use, shared with the other workers on the machine through one
lock file per core.

MMS runs each worker as a process of its own. A worker alone should run its forward pass on every
core (a batch-1 forward pass takes 4.4 ms on 2 threads, 7.3 ms on 1, on the 2-core machine of the
README); busy workers should take one core each, since OpenMP threads that outnumber the cores wait
at every barrier for a descheduled thread. So each worker holds one core while it works on a batch
(its *home* core: ``working``), and for the forward pass borrows the free cores that no other live
worker calls home (``borrowed``, ``spare_cores``): fewer workers than cores (``serve --workers 1``)
use the spare ones; with a worker per core (the default) each keeps to its own, since a second
OpenMP thread on a neighbour's core costs more CPU and tail latency than it saves, and makes the
neighbour wait for its home core (issue 23, through ``serve`` on 2 cores: at c=1 p99 19 -> 13 ms and
worker CPU 11.0 -> 9.3 ms per request, p50 8.2 -> 10.2 ms; +4-7 % requests/s at c=8 and c=16).
Nobody blocks while holding a borrowed core, so there is no deadlock; a
worker waits for its home core at most ``HOME_CORE_WAIT`` (a neighbour's batch, normally), then
works on the batch without it, on one thread: a lock held for longer (a hung process of the same
user) slows requests down but never stops them.

The lock files live in ``<temp dir>/squeezenet-cores-<uid>/``: ``core-N.lock`` (the cores) and
``worker-N.lock`` (held for life by each worker to number itself; its home core is N mod cores).
``flock`` locks vanish with the process that held them, so a killed worker never leaves one behind.
The folder must belong to this user and have mode 0700, and nothing in it is followed if it is a
symbolic link: in a shared ``/tmp`` another user could make the folder first, to hold the locks or
to point lock files at files of their choosing. Such a folder is refused and the worker runs its
forward passes on a fixed number of threads instead (:func:`shared_cores`, one log line).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_WORKERS = 256  # worker numbers tried before a worker shares the last one
# Seconds a batch waits for its home core. A neighbour legitimately holds it for one batch at most
# (more workers than cores share home cores) or one forward pass (it borrowed the core). A batch of 8
# takes 0.23 s (500x375 JPEGs) to 0.40 s (4000x3000) on the README's 2-core machine: 1 s is above
# that with room for a loaded machine, and bounds what a stuck holder costs each request, far below
# MMS's 120 s response timeout. Past it the batch runs on one thread, beside the holder.
HOME_CORE_WAIT = 1.0
_POLL_LONGEST = 0.002  # seconds between two attempts at a busy lock, at most
_WARN_EVERY = 60.0  # seconds between two log lines about giving up on the home core
SPARE_CHECK_EVERY = 1.0  # seconds a look at which cores other workers call home stays valid
_CLAIM_WAIT = 0.005  # seconds a worker number's lock is tried before the next number


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (``taskset``, cpusets), capped by a cgroup CPU
    quota (a container's ``--cpus``, a Kubernetes CPU limit), which the affinity does not show."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota else cores


def _cgroup_cpu_quota() -> int | None:
    """Whole cores of the cgroup's CPU quota, rounded up; None when there is none (or no cgroup)."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if limit == "max" else -(-int(limit) // int(period))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        limit = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if limit <= 0 or period <= 0 else -(-limit // period)
    except (OSError, ValueError):
        return None


def _worker_number(name: str) -> int | None:
    """N for a lock file named ``worker-N.lock``, else None."""
    stem = name.removeprefix("worker-").removesuffix(".lock")
    if name == stem or not stem.isascii() or not stem.isdigit():
        return None
    return int(stem)


class UnsafeLockFolder(OSError):
    """The lock folder (or a lock file in it) could be another user's: not used."""


def default_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"squeezenet-cores-{os.geteuid()}"


def shared_cores(cores: int, folder: Path | None = None) -> CoreTokens | None:
    """The cores shared with the other workers, or None (fixed threads, one log line) when the lock
    folder cannot be used safely or at all."""
    try:
        return CoreTokens(cores, folder)
    except OSError as exc:
        logger.warning("squeezenet: not sharing cores with other workers, fixed threads instead: %s", exc)
        return None


def _open_private_folder(folder: Path) -> int:
    """A descriptor of ``folder``, made with mode 0700 unless it exists; UnsafeLockFolder unless it
    is a real folder (not a symbolic link) of this user with mode 0700."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeLockFolder(f"{folder} is a symbolic link or not a folder") from exc
        raise
    status = os.fstat(descriptor)
    problem = None
    if status.st_uid != os.geteuid():
        problem = f"belongs to uid {status.st_uid}, not to this process's user (uid {os.geteuid()})"
    elif stat.S_IMODE(status.st_mode) != 0o700:
        problem = f"has mode {stat.S_IMODE(status.st_mode):04o}, not 0700"
    if problem:
        os.close(descriptor)
        raise UnsafeLockFolder(f"{folder} {problem}")
    return descriptor


def _lock_within(descriptor: int, seconds: float) -> bool:
    """Take the exclusive lock within ``seconds``; False if it stayed busy that long."""
    deadline = time.monotonic() + seconds
    pause = 0.0002
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_LONGEST)


class CoreTokens:
    """The machine's ``cores`` as lock files; ``working`` and ``borrowed`` are used by one thread.
    Raises UnsafeLockFolder (or another OSError) when the lock folder cannot be used."""

    def __init__(
        self,
        cores: int,
        folder: Path | None = None,
        home_wait: float = HOME_CORE_WAIT,
        spare_check_every: float = SPARE_CHECK_EVERY,
    ) -> None:
        self.cores = max(1, cores)
        self.spare_check_every = spare_check_every
        self.folder = folder or default_folder()
        self.home_wait = home_wait
        self._home_held = False
        self._given_up = 0  # batches that ran without their home core since the last log line
        self._warned_at = -_WARN_EVERY
        self._worker_lock = -1
        self._probes: dict[int, int] = {}  # other workers' numbers -> a descriptor of their lock file
        self._folder = _open_private_folder(self.folder)  # kept open: neighbours are looked up in it
        try:
            self._tokens = [self._open(f"core-{i}.lock") for i in range(self.cores)]
            self.worker = self._claim_worker_number()
        except BaseException:
            os.close(self._folder)
            raise
        self._home = self.worker % self.cores
        self._spare: set[int] = set()  # cores no live worker calls home (this one's aside)
        self._spare_seen_at = -float("inf")

    def _open(self, name: str) -> int:
        """The lock file ``name`` in the folder, never through a symbolic link; shared by the workers,
        so it is created if missing, not exclusively."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            descriptor = os.open(name, flags, 0o600, dir_fd=self._folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeLockFolder(f"{self.folder / name} is a symbolic link") from exc
            raise
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
            os.close(descriptor)
            raise UnsafeLockFolder(f"{self.folder / name} is not a file of this process's user")
        return descriptor

    def _claim_worker_number(self) -> int:
        for number in range(MAX_WORKERS):
            descriptor = self._open(f"worker-{number}.lock")
            # A neighbour's look at who lives (spare_cores) holds a free number for microseconds:
            # waiting a little keeps this worker from skipping to a number whose home core is taken.
            if not _lock_within(descriptor, _CLAIM_WAIT):
                os.close(descriptor)
                continue
            self._worker_lock = descriptor  # held until this process ends (or close)
            return number
        return MAX_WORKERS - 1

    def close(self) -> None:
        """Release every lock and descriptor (a worker's end does the same)."""
        for descriptor in {*self._tokens, *self._probes.values(), self._worker_lock, self._folder}:
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self._tokens, self._probes = [], {}

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Hold the home core for the block (a batch: decoding, forward pass, answers), if it comes
        free within ``home_wait``; else the block runs without it and ``borrowed`` gives one thread."""
        self._home_held = _lock_within(self._tokens[self._home], self.home_wait)
        if not self._home_held:
            self._gave_up()
        try:
            yield
        finally:
            if self._home_held:
                fcntl.flock(self._tokens[self._home], fcntl.LOCK_UN)
            self._home_held = False

    def _gave_up(self) -> None:
        self._given_up += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            logger.warning(
                "squeezenet: core %d stayed busy for %.1f s (%d batches since the last such line): "
                "working on one thread without it; is another process of this user holding %s?",
                self._home,
                self.home_wait,
                self._given_up,
                self.folder / f"core-{self._home}.lock",
            )
            self._warned_at, self._given_up = now, 0

    def spare_cores(self) -> set[int]:
        """The cores no other live worker calls home (its number mod ``cores``): the only ones this
        worker borrows. Looked up at most once every ``spare_check_every`` seconds (workers come and
        go rarely): each ``worker-N.lock`` in the folder is tried with a shared lock that fails while
        its worker lives. A folder that cannot be read leaves nothing spare."""
        now = time.monotonic()
        if now - self._spare_seen_at < self.spare_check_every:
            return self._spare
        homes = {self._home}
        try:
            for name in os.listdir(self._folder):
                number = _worker_number(name)
                if number is None or number == self.worker or number % self.cores in homes:
                    continue
                if number not in self._probes:
                    self._probes[number] = self._open(name)
                try:
                    fcntl.flock(self._probes[number], fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    homes.add(number % self.cores)  # its worker holds it: alive
                else:
                    fcntl.flock(self._probes[number], fcntl.LOCK_UN)
        except OSError as exc:
            logger.debug("squeezenet: cannot look at the other workers (%s): borrowing no core", exc)
            homes = set(range(self.cores))
        self._spare = set(range(self.cores)) - homes
        self._spare_seen_at = now
        return self._spare

    @contextlib.contextmanager
    def borrowed(self, wanted: int) -> Iterator[int]:
        """Inside ``working``: the spare cores (``spare_cores``) that are free, up to ``wanted`` with
        the home core, held for the block; yields how many cores are held (at least 1). Without the
        home core: 1, nothing borrowed."""
        held = []
        spare = self.spare_cores() if wanted > 1 and self._home_held else set()
        for index in range(self.cores):
            if len(held) + 1 >= wanted or not self._home_held:
                break
            if index not in spare:
                continue
            try:
                fcntl.flock(self._tokens[index], fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            held.append(index)
        try:
            yield len(held) + 1
        finally:
            for index in held:
                fcntl.flock(self._tokens[index], fcntl.LOCK_UN)
