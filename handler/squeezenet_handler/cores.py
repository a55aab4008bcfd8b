"""How many cores this worker's next forward pass may use, shared with the other workers on the
machine through one lock file per core.

MMS runs each worker as a process of its own. A worker alone should run its forward pass on every
core (a batch-1 forward pass takes 4.4 ms on 2 threads, 7.3 ms on 1, on the 2-core machine of the
README); busy workers should take one core each, since OpenMP threads that outnumber the cores wait
at every barrier for a descheduled thread. So each worker holds one core while it works on a batch
(its *home* core: ``working``), and for the forward pass borrows the cores no other worker holds at
that moment (``borrowed``). Nobody blocks while holding a borrowed core, so there is no deadlock; a
worker only ever waits for its home core, at most one forward pass of a neighbour that borrowed it.

The lock files live in ``<temp dir>/squeezenet-cores-<uid>/``: ``core-N.lock`` (the cores) and
``worker-N.lock`` (held for life by each worker to number itself; its home core is N mod cores).
``flock`` locks vanish with the process that held them, so a killed worker never leaves one behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_WORKERS = 256  # worker numbers tried before a worker shares the last one


class CoreTokens:
    """The machine's ``cores`` as lock files; ``working`` and ``borrowed`` are used by one thread."""

    def __init__(self, cores: int, folder: Path | None = None) -> None:
        self.cores = max(1, cores)
        self.folder = folder or Path(tempfile.gettempdir()) / f"squeezenet-cores-{os.getuid()}"
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tokens = [self._open(f"core-{i}.lock") for i in range(self.cores)]
        self.worker = self._claim_worker_number()
        self._home = self.worker % self.cores

    def _open(self, name: str) -> int:
        return os.open(self.folder / name, os.O_RDWR | os.O_CREAT, 0o600)

    def _claim_worker_number(self) -> int:
        for number in range(MAX_WORKERS):
            descriptor = self._open(f"worker-{number}.lock")
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            self._worker_lock = descriptor  # held until this process ends
            return number
        return MAX_WORKERS - 1

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Hold the home core for the block (a batch: decoding, forward pass, answers)."""
        fcntl.flock(self._tokens[self._home], fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._tokens[self._home], fcntl.LOCK_UN)

    @contextlib.contextmanager
    def borrowed(self, wanted: int) -> Iterator[int]:
        """Inside ``working``: the free cores, up to ``wanted`` with the home core, held for the block;
        yields how many cores are held (at least 1)."""
        held = []
        for index in range(self.cores):
            if len(held) + 1 >= wanted:
                break
            if index == self._home:
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
