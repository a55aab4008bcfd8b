"""The model zoo (phase 1: moved from publish.py and publish_s3.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..errors import PublishError
from .card import render_card
from .folder import LOCK_FILE, publish_to_folder
from .release import INDEX_FILE, PublishResult, read_checked_archive

__all__ = ["INDEX_FILE", "LOCK_FILE", "S3_NEEDS_BOTO3", "PublishResult", "publish_archive", "render_card"]

S3_NEEDS_BOTO3 = "s3:// destinations need boto3: pip install boto3"


def publish_archive(
    archive: Path,
    zoo: Path | str,
    *,
    force: bool = False,
    evaluation: dict[str, Any] | None = None,
) -> PublishResult:
    """Add ``archive`` to the zoo at ``zoo``; refuse a version already in its index unless ``force``."""
    if isinstance(zoo, str) and "://" in zoo:
        return _publish_remote(archive, zoo, force, evaluation)
    return publish_to_folder(read_checked_archive(archive), Path(zoo), force=force, evaluation=evaluation)


def _publish_remote(archive: Path, zoo: str, force: bool, evaluation: dict[str, Any] | None) -> PublishResult:
    """An S3 zoo (``s3://bucket/prefix``), published by ``s3`` with boto3."""
    if not zoo.startswith("s3://"):
        raise PublishError(f"{zoo}: unsupported zoo destination; give a local folder or s3://bucket/prefix")
    if importlib.util.find_spec("boto3") is None:
        raise PublishError(S3_NEEDS_BOTO3)
    from .s3 import publish_to_s3  # imports boto3

    return publish_to_s3(read_checked_archive(archive), zoo, force=force, evaluation=evaluation)
