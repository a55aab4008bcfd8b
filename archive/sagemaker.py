"""SageMaker's ``model.tar.gz`` for a built ``.mar``.

SageMaker downloads the ``ModelDataUrl`` object (``s3://.../model.tar.gz``) and unpacks it into
``/opt/ml/model`` before it starts the container with the argument ``serve``. Our layout:

    model.tar.gz
    ├── squeezenet_v1.1.mar          the archive, byte for byte as ``build`` wrote and ``publish`` released it
    └── squeezenet_v1.1.mar.sha256   its sha256, in ``sha256sum`` format

so ``/opt/ml/model/squeezenet_v1.1.mar`` is what the container's entrypoint finds there, checks
(the ``.sha256`` beside it, then every hash inside) and serves as ``squeezenet``. The ``.mar`` stays
whole, rather than unpacked, so that the bytes SageMaker serves are the bytes that were verified and
published, and a signature over the archive (a later addition) covers exactly them.

``write_model_tar`` verifies the archive first (``verify_archive``; with a trust, its signature too)
and packs exactly the bytes it verified: a private copy, so the file changing meanwhile changes nothing.
An archive that fails is refused (VerifyError, SignatureVerifyError) and nothing is written.

The file is deterministic: entries sorted, mode 0644, owner 0:0 without names, mtime 1980-01-01
(the archive's own zip timestamp), gzip header mtime 0 and no file name, so one archive always
gives the same ``model.tar.gz`` bytes.

    squeezenet-mar sagemaker model_store/squeezenet_v1.1.mar --output model.tar.gz
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from .errors import ArchiveToolError
from .layout import sha256_file
from .signatures import Trust
from .verify import verify_archive

logger = logging.getLogger(__name__)

TAR_MTIME = 315532800  # 1980-01-01T00:00:00Z, the timestamp of every entry of the .mar itself


def _entry(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = TAR_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def model_tar_entries(archive: Path) -> list[str]:
    """The names ``write_model_tar`` puts in ``model.tar.gz`` for ``archive``, in order."""
    return sorted([archive.name, f"{archive.name}.sha256"])


def write_model_tar(archive: Path, output: Path, trust: Trust | None = None) -> Path:
    """Write SageMaker's ``model.tar.gz`` holding ``archive`` and its sha256 (see the module
    docstring); returns ``output``. The archive is verified first, with ``trust`` its signature too
    (raises VerifyError or SignatureVerifyError; nothing is written then), and the bytes packed are
    the bytes verified. The container's entrypoint checks it again before MMS sees it."""
    if not archive.is_file():
        raise ArchiveToolError(f"{archive}: not a file (build the archive first: make archive)")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".model-tar-", dir=output.parent) as tmp:
        verified = Path(tmp) / archive.name
        shutil.copyfile(archive, verified)
        verify_archive(verified, trust=trust)
        digest = sha256_file(verified)
        _write_tar(verified, digest, output)
    logger.info("wrote %s (%d bytes): %s sha256 %s", output, output.stat().st_size, archive.name, digest)
    return output


def _write_tar(archive: Path, digest: str, output: Path) -> None:
    checksum = f"{digest}  {archive.name}\n".encode()
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("wb") as raw:
            # GzipFile writes the file name and mtime into its header unless told not to.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as zipped:
                with tarfile.open(fileobj=zipped, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    for name in model_tar_entries(archive):
                        if name == archive.name:
                            with archive.open("rb") as data:
                                tar.addfile(_entry(name, archive.stat().st_size), data)
                        else:
                            tar.addfile(_entry(name, len(checksum)), io.BytesIO(checksum))
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
