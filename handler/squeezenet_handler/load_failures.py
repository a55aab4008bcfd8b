"""A model that cannot load, made visible on any MMS.

MMS 1.1.11 treats a failed load two ways. Registered through the management API with
``synchronous=true``, the registration fails with "Failed to start workers" and the model is gone:
clear enough. Loaded at start-up (``--models``), MMS retries the worker forever with a growing delay,
reports it READY all the while (``ManagementRequestHandler`` shows ``isRunning``, which a crash loop
never clears) and keeps every request queued until the client gives up: only timeouts reveal it (a
wrong ``SQUEEZENET_TRUSTED_KEY`` on a stock MMS, say).

So the first failed load in a model folder raises (the registration fails), and records why beside
the folder; a later load of the same folder that fails again does not raise: the worker comes up with
no model and answers every request 503 naming the cause, at once. Nothing of the refused archive is
used by such a worker but the handler that refused it. A load that succeeds forgets the record (the
cause was fixed). This happens only inside a model server's worker process, never in-process
(``squeezenet-mar build``'s smoke test and ``evaluate`` must see the exception).

The record is ``<parent>/.<folder name>.squeezenet-refused`` (MMS's ``$TEMP/models``, which is the
server's own: the handler refuses a model folder whose parent another user controls), written and read
without following symbolic links, read only when it is this user's regular file. It names the folder
it is about by inode and change time: MMS deletes a model's folder when the model is unregistered (a
failed registration included), and a record of a folder that no longer exists is stale, so registering
the same archive again refuses it again, at registration.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_SUFFIX = ".squeezenet-refused"
_MAX_RECORD = 4096


def in_server_worker() -> bool:
    """True in MMS's or TorchServe's worker process (``model_service_worker.py`` is ``__main__``)."""
    main = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    return os.path.basename(main) == "model_service_worker.py"


def _record(model_dir: Path) -> Path:
    return model_dir.parent / f".{model_dir.name}{_SUFFIX}"


def _identity(model_dir: Path) -> str:
    """The folder itself, not its name: inode and change time (a folder made anew has other ones)."""
    info = os.stat(model_dir)
    return f"{info.st_ino}:{info.st_ctime_ns}"


def earlier_refusal(model_dir: Path) -> str | None:
    """Why an earlier load of this very folder failed, if one did (see the module docstring)."""
    try:
        descriptor = os.open(_record(model_dir), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return None
        folder, _, cause = handle.read(_MAX_RECORD).decode("utf-8", "replace").partition("\n")
    try:
        current = _identity(model_dir)
    except OSError:
        return None
    return (cause or "an earlier load failed") if folder == current else None


def remember_refusal(model_dir: Path, cause: str) -> None:
    """Record ``cause`` beside ``model_dir``; a folder we cannot write beside just keeps no record."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        record = f"{_identity(model_dir)}\n{cause}".encode()[:_MAX_RECORD]
        descriptor = os.open(_record(model_dir), flags, 0o600)
    except OSError as exc:
        logger.debug("no record of the refused load: %s", exc)
        return
    with os.fdopen(descriptor, "wb") as handle:
        if os.fstat(handle.fileno()).st_uid == os.getuid():
            handle.write(record)


def forget_refusal(model_dir: Path) -> None:
    with contextlib.suppress(OSError):
        _record(model_dir).unlink()
