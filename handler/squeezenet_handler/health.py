"""A loaded worker says so to whoever supervises the server: it holds a lock for as long as it lives.

When ``SQUEEZENET_HEALTH_DIR`` names a folder (``squeezenet-mar serve`` and the container set it; a
plain MMS does not, and then nothing happens here), a worker that has loaded its model creates
``<folder>/<model name>/loaded-<pid>.lock`` and holds an exclusive ``flock`` on it until it exits.
The supervisor counts the locks it cannot take: the workers that can answer right now. A killed
worker's lock vanishes with it (the kernel releases ``flock`` locks of a dead process), so the count
drops at once, whatever MMS's own worker states say (MMS 1.1.11 reports a crash-looping worker as
READY). The folder must be the caller's own and not a symlink; otherwise nothing is announced and
one line is logged (the supervisor then sees no worker and says so).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path

from .trust import own_folder

logger = logging.getLogger(__name__)

HEALTH_DIR_ENV = "SQUEEZENET_HEALTH_DIR"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

_held: list[int] = []  # descriptors kept open (and locked) for the life of the process


def announce_loaded(model_name: str) -> Path | None:
    """Hold ``loaded-<pid>.lock`` for ``model_name`` (see the module docstring); its path, or None when
    no supervisor asked for it or the folder cannot be trusted."""
    root = os.environ.get(HEALTH_DIR_ENV, "").strip()
    if not root:
        return None
    folder = Path(root)
    if not _safe_name(model_name) or not own_folder(folder):
        logger.warning(
            "%s=%s: not a folder of this user's; not announcing the loaded model", HEALTH_DIR_ENV, root
        )
        return None
    models = folder / model_name
    try:
        models.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        logger.warning("cannot announce the loaded model in %s: %s", models, exc)
        return None
    if not own_folder(models):
        logger.warning("%s: not a folder of this user's; not announcing the loaded model", models)
        return None
    path = models / f"loaded-{os.getpid()}.lock"
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(path, flags, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # our own pid's file: nobody else holds it
    _held.append(descriptor)
    return path


def _safe_name(name: str) -> bool:
    return bool(_SAFE_NAME.fullmatch(name)) and ".." not in name
