"""Orphans in a container: the processes MMS leaves behind (the Java frontend once its launcher exits,
workers of a dead frontend) become the children of the nearest subreaper. The container's main
process makes itself that subreaper, so it reaps them and no zombie piles up, whether or not an init
runs as PID 1 (the image has tini; `docker run` without `--init` does not)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os

logger = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_CHILD_SUBREAPER) unavailable")


def reap_orphans(keep: set[int | None]) -> list[int]:
    """Reap every exited child but those in ``keep`` (the processes ``subprocess`` waits for itself:
    reaping them here would lose their exit codes). The pids reaped."""
    import psutil

    reaped = []
    for child in psutil.Process().children():
        if child.pid in keep:
            continue
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
                reaped.append(child.pid)
    return reaped
