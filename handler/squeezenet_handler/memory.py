"""How much memory one worker may spend on one request's image: the signature's ``max_decode_bytes``,
or less when the memory the process may use, shared by the server's workers, leaves less.

    budget = min(max_decode_bytes, (limit - FRONTEND_BYTES - workers x WORKER_BYTES) / workers)

- ``limit``: the cgroup's memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``, the
  smallest on the way from this process's cgroup to the root; "max" or a huge number is none), else
  the machine's memory (``MemTotal``).
- ``workers``: what the server runs: ``SQUEEZENET_WORKERS`` (or SageMaker's
  ``SAGEMAKER_MODEL_SERVER_WORKERS``) when set, else one per usable core, MMS's default.
- ``FRONTEND_BYTES`` and ``WORKER_BYTES``: the measured resident memory of an MMS 1.1.11 frontend
  (its JVM, the launcher and the worker's parent) and of a loaded worker (README, "Memory").

Computed once, when the model loads; the 413 names the budget and where it came from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .cores import usable_cores

logger = logging.getLogger(__name__)

MiB = 1024 * 1024

# Measured in the container (2 workers; 8 clients posting each kind of the largest accepted image,
# twice; VmHWM of each process): the JVM 513 MB with the container's -Xmx256m
# -XX:MaxDirectMemorySize=128m (its bodies: about three copies of each request in flight), the
# supervisor 61, nginx 22, MMS's launcher 12, the workers' parent 15 MB: 624 MB with a margin. Each
# loaded worker 215 MB before its first decode, back to about 208 MB after (what a decode takes is
# returned). With 8 clients of 500x375 JPEGs the JVM stays at 127 MB: the reserve is for large bodies.
FRONTEND_BYTES = 640 * MiB
WORKER_BYTES = 224 * MiB
MIN_BUDGET = 32 * MiB  # below this not even a camera JPEG decodes; the limit is then simply too small
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as 9223372036854771712, v2 as "max"


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes one request's decode may hold, and where that number comes from (for the 413)."""

    bytes: int
    source: str


def signature_budget(max_decode_bytes: int) -> MemoryBudget:
    return MemoryBudget(max_decode_bytes, "signature.json max_decode_bytes")


def decode_budget(
    max_decode_bytes: int, limit: tuple[int, str] | None, workers: tuple[int, str]
) -> MemoryBudget:
    """The rule above, on given numbers: ``limit`` is (bytes, where it was read) or None, ``workers``
    (count, where it was read)."""
    if limit is None:
        return signature_budget(max_decode_bytes)
    limit_bytes, limit_source = limit
    count, count_source = workers
    share = (limit_bytes - FRONTEND_BYTES - count * WORKER_BYTES) // max(1, count)
    if share >= max_decode_bytes:
        return signature_budget(max_decode_bytes)
    source = (
        f"{limit_source} {limit_bytes} shared by {count} workers ({count_source}), "
        f"less {FRONTEND_BYTES // MiB} MiB for the frontend and {WORKER_BYTES // MiB} MiB for each worker"
    )
    if share < MIN_BUDGET:
        return MemoryBudget(MIN_BUDGET, f"the minimum; {source} leaves {max(0, share)}")
    return MemoryBudget(share, source)


def cgroup_memory_limit(
    root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> tuple[int, str] | None:
    """The smallest memory limit from this process's cgroup up to the root, v2 or v1, or None."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    v1 = [line.split(":", 2)[2] for line in lines if ":memory:" in line or ":memory," in line]
    candidates: list[tuple[Path, str]] = []
    for path in _up_to_root(root, v2[0] if v2 else "/"):
        candidates.append((path / "memory.max", "cgroup memory.max"))
    for path in _up_to_root(root / "memory", v1[0] if v1 else "/"):
        candidates.append((path / "memory.limit_in_bytes", "cgroup memory.limit_in_bytes"))
    found: tuple[int, str] | None = None
    for file, name in candidates:
        value = _read_limit(file)
        if value is not None and (found is None or value < found[0]):
            found = (value, name)
    return found


def _up_to_root(root: Path, inner: str) -> list[Path]:
    """``root/inner`` and its parents up to ``root`` (only those that exist: inside a container the
    path in /proc/self/cgroup may name the host's hierarchy, and ``root`` is then the container's)."""
    path = root / inner.strip("/")
    paths = []
    while True:
        if path.is_dir():
            paths.append(path)
        if path == root or root not in path.parents:
            break
        path = path.parent
    return paths


def _read_limit(file: Path) -> int | None:
    try:
        text = file.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():  # "max"
        return None
    value = int(text)
    return value if value < NO_LIMIT else None


def machine_memory(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, str] | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024, "MemTotal"
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_count(environ: Mapping[str, str], cores: int) -> tuple[int, str]:
    for name in ("SQUEEZENET_WORKERS", "SAGEMAKER_MODEL_SERVER_WORKERS"):
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value), name
    return max(1, cores), "one per usable core"


def process_budget(max_decode_bytes: int) -> MemoryBudget:
    """The budget of this process (read from its cgroup, environment and cores), logged once."""
    limit = cgroup_memory_limit() or machine_memory()
    budget = decode_budget(max_decode_bytes, limit, worker_count(os.environ, usable_cores()))
    logger.info("decode memory budget: %d bytes (%s)", budget.bytes, budget.source)
    return budget
