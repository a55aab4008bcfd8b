"""What the handler checks about its own files at load, before it trusts them.

1. Ownership (always): the model folder, the folder holding it, and everything inside belong to this
   process's user (or root), no one else may write to them, and nothing inside is a symbolic link or
   a special file. MMS 1.1.11 unpacks an archive into ``<tmp>/models/<sha1>/`` and *reuses* that
   folder when it exists: with a shared ``/tmp``, another local user could have made it first.
2. Origin, when the operator names what to trust in the MMS process's environment, which its workers
   inherit: ``SQUEEZENET_TRUSTED_KEY=/path/to/public.pem``, or
   ``SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN=ca.pem[:intermediate.pem]`` and optionally
   ``SQUEEZENET_TRUSTED_IDENTITY`` (see ``signing``). A variable that is set must name something
   usable: a blank or broken one refuses the load, never skips the check. The archive's signature
   (``MAR-INF/model.sig``) must then verify over every file of the model folder, ``__pycache__``
   included, or the model does not load. The only file left out is the bytecode Python wrote for
   the entry module when MMS imported it (:func:`entry_module_bytecode`). The package's own modules
   never run from bytecode (``squeezenet_service`` imports them from source), so a ``.pyc`` planted
   next to them is refused here, not run.
3. Consistency: every file listed in ``MAR-INF/SHA256SUMS`` is there with that SHA-256 (damage,
   not origin: whoever replaces an archive can rewrite its checksums).

What no check in here can catch: code that runs before the handler does. MMS puts the model folder
on the worker's ``PYTHONPATH`` ahead of the standard library and site-packages, so a
``sitecustomize.py`` added to an archive runs when the worker's Python starts, a ``numpy/`` or
``json.py`` runs in place of the real one when first imported, and a ``.pyc`` or ``.so`` planted for
the entry module runs in place of ``squeezenet_service.py``; a replaced handler simply skips the
check. Such code can defeat this check, so only a check before MMS unpacks the archive protects
from it: ``squeezenet-mar verify --trusted-key``, ``serve --trusted-key`` and the container's
entrypoint refuse every added file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import ModelLoadError

logger = logging.getLogger(__name__)

ENTRY_MODULE = "squeezenet_service.py"  # MMS's handler module, at the archive's root
# The variables ``signing`` reads (same names there), known here without importing it: it costs
# ~40 ms (cryptography), paid only when one of them is set.
TRUSTED_KEY = "SQUEEZENET_TRUSTED_KEY"
TRUSTED_CHAIN = "SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN"
TRUSTED_IDENTITY = "SQUEEZENET_TRUSTED_IDENTITY"
TRUST_VARIABLES = (TRUSTED_KEY, TRUSTED_CHAIN, TRUSTED_IDENTITY)
_TIMESTAMP_PYC = 0  # PEP 552 flags of a pyc checked against its source's mtime and size


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def group_of_this_user_alone(gid: int) -> bool:
    """``gid`` is this user's own group, with no other member and nobody else's primary group (the
    user-private groups of Debian and Ubuntu, whose default umask 002 leaves files group-writable)."""
    import grp
    import pwd

    me = os.geteuid()
    try:
        group = grp.getgrgid(gid)
        name = pwd.getpwuid(me).pw_name
    except KeyError:
        return False
    if any(member != name for member in group.gr_mem):
        return False
    return all(user.pw_uid == me for user in pwd.getpwall() if user.pw_gid == gid)


def _others_may_write(status: os.stat_result) -> bool:
    if status.st_mode & stat.S_IWOTH:
        return True
    return bool(status.st_mode & stat.S_IWGRP) and not group_of_this_user_alone(status.st_gid)


def own_folder(path: Path) -> bool:
    """A real folder (not a symlink) owned by this user and writable by nobody else: the folders the
    supervisor hands the workers (health locks, metrics files) must be, or they are not used."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def _ownership_problem(status: os.stat_result, trusted_owners: set[int]) -> str | None:
    if stat.S_ISLNK(status.st_mode):
        return "is a symbolic link"
    if not (stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode)):
        return "is not a regular file or folder"
    if status.st_uid not in trusted_owners:
        return f"belongs to uid {status.st_uid}, not to this process's user (uid {os.geteuid()}) or root"
    if _others_may_write(status):
        mode = stat.S_IMODE(status.st_mode)
        return f"is writable by other users (mode {mode:04o}, group {status.st_gid})"
    return None


def check_folder_ownership(model_dir: Path) -> int:
    """Refuse a model folder another local user made or can change: ``model_dir`` and all it holds
    must belong to this process's user (or root), be writable by no one else (group-writable only for
    a group of this user alone), and hold no symbolic link or special file; the folder holding it must
    belong to this user or root and, if others may write to it, be sticky (like ``/tmp``: nobody can
    rename another's entries). Returns the number of entries checked; ModelLoadError names the first
    problem."""
    trusted_owners = {os.geteuid(), 0}
    refusal = (
        "refusing to load from a folder another user made or can change; run MMS with a private "
        "temporary folder (TMPDIR=$(mktemp -d), or a folder of mode 0700)"
    )
    parent = model_dir.absolute().parent
    status = os.lstat(parent)
    if status.st_uid not in trusted_owners or (
        _others_may_write(status) and not status.st_mode & stat.S_ISVTX
    ):
        owner = f"uid {status.st_uid}, mode {stat.S_IMODE(status.st_mode):04o}"
        raise ModelLoadError(f"{parent} ({owner}) holds the model folder and is not ours: {refusal}")
    status = os.lstat(model_dir)
    problem = _ownership_problem(status, trusted_owners)
    if problem is None and not stat.S_ISDIR(status.st_mode):
        problem = "is not a folder"
    if problem:
        raise ModelLoadError(f"{model_dir} {problem}: {refusal}")
    checked, pending = 1, [model_dir]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                status = entry.stat(follow_symlinks=False)
                problem = _ownership_problem(status, trusted_owners)
                if problem:
                    raise ModelLoadError(f"{entry.path} {problem}: {refusal}")
                if stat.S_ISDIR(status.st_mode):
                    pending.append(Path(entry.path))
                checked += 1
    return checked


def check_archive_hashes(model_dir: Path) -> int:
    """Refuse a tampered or incomplete archive: every file in ``MAR-INF/SHA256SUMS`` must exist inside
    ``model_dir`` with that SHA-256. Archives without the file (built by other tools) pass unchecked.
    Returns the number of files checked."""
    sums = model_dir / "MAR-INF" / "SHA256SUMS"
    if not sums.is_file():
        logger.warning("%s: no MAR-INF/SHA256SUMS, archive integrity not checked", model_dir)
        return 0
    root = model_dir.resolve()
    checked = 0
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        path = (model_dir / name).resolve()
        if not path.is_relative_to(root):
            raise ModelLoadError(f"MAR-INF/SHA256SUMS: {name!r} points outside the archive")
        if not path.is_file():
            raise ModelLoadError(f"{name}: listed in MAR-INF/SHA256SUMS but missing from the archive")
        digest = _sha256_file(path)
        if digest != expected:
            raise ModelLoadError(f"{name}: sha256 {digest} does not match MAR-INF/SHA256SUMS ({expected})")
        checked += 1
    return checked


def entry_module_bytecode(model_dir: Path) -> frozenset[str]:
    """The one bytecode file the signature check leaves out: ``__pycache__/squeezenet_service.<tag>.pyc``
    as Python writes it when MMS imports the entry module (PEP 552 timestamp form, recording the
    source's mtime and size), if it is there and matches the source. Any other form (unchecked or
    checked hash, another interpreter's tag, a stale header) is not what this import wrote, and counts
    as an added file.

    What a match proves is limited: Python ran this file in place of the source, and a planted one
    with a matching header would have run before any code of ours, like a ``sitecustomize.py``;
    only the checks before MMS unpacks the archive, which refuse every ``__pycache__`` entry, stop it.
    If this code runs, the entry module that imported it was the genuine one or a copy keeping it."""
    source = model_dir / ENTRY_MODULE
    cached = Path(importlib.util.cache_from_source(str(source)))  # honours sys.pycache_prefix and -O
    if not cached.is_relative_to(model_dir) or not cached.is_file() or not source.is_file():
        return frozenset()
    with cached.open("rb") as handle:
        header = handle.read(16)
    status = source.stat()
    expected = importlib.util.MAGIC_NUMBER + b"".join(
        (value & 0xFFFFFFFF).to_bytes(4, "little")
        for value in (_TIMESTAMP_PYC, int(status.st_mtime), status.st_size)
    )
    if header != expected:
        return frozenset()
    return frozenset({cached.relative_to(model_dir).as_posix()})


def check_signature(model_dir: Path, env: Mapping[str, str] | None = None) -> str | None:
    """With a trusted key or chain in ``env`` (default: this process's environment): the signer's key
    fingerprint, or ModelLoadError naming why the signature does not verify or why the trust setting
    is unusable. With none of the variables set: None, and a log line saying so."""
    env = os.environ if env is None else env
    if not any(name in env for name in TRUST_VARIABLES):
        logger.warning(
            "squeezenet: archive signature NOT checked (no %s or %s in the environment)",
            TRUSTED_KEY,
            TRUSTED_CHAIN,
        )
        return None
    try:
        from .signing import SignatureError, TrustSettingError, trusted_signer_from_environment, verify_folder
    except ImportError as exc:
        named = ", ".join(name for name in TRUST_VARIABLES if name in env)
        raise ModelLoadError(
            f"{named} asks for a signature check, but the model-signing package is missing "
            f"(pip install model-signing==1.1.1 pyopenssl): {exc}"
        ) from exc
    try:
        signer = trusted_signer_from_environment(env)
    except TrustSettingError as exc:
        logger.error("squeezenet: refusing to load, unusable trust setting: %s", exc)
        raise ModelLoadError(f"refusing to load, unusable trust setting: {exc}") from exc
    if signer is None:  # unreachable: a variable is set
        raise ModelLoadError("no trust setting")
    trusted = signer.describe()
    try:
        info = verify_folder(
            model_dir,
            public_key=signer.public_key,
            certificate_chain=signer.certificate_chain,
            identity=signer.identity,
            ignore=entry_module_bytecode(model_dir),
        )
    except SignatureError as exc:
        logger.error("squeezenet: refusing to load, signature check failed (%s): %s", trusted, exc)
        raise ModelLoadError(f"signature check failed ({trusted}): {exc}") from exc
    except (OSError, ValueError) as exc:
        logger.error("squeezenet: refusing to load, cannot check the signature (%s): %s", trusted, exc)
        raise ModelLoadError(f"cannot check the signature ({trusted}): {exc}") from exc
    logger.info(
        "squeezenet: signature verified in %.0f ms: %d files signed by key sha256:%s%s",
        info.seconds * 1000,
        info.files,
        info.fingerprint,
        f" ({info.subject})" if info.subject else "",
    )
    return info.fingerprint
