"""Where the container's archives come from, and the check each passes before MMS may see it."""

from __future__ import annotations

import logging
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import DownloadError, VerifyError
from ..layout import MANIFEST, sha256_file
from ..signatures import Trust
from ..verify import VerifyReport, verify_archive
from .settings import ContainerError, Settings

logger = logging.getLogger(__name__)


def local_archives(folder: Path) -> list[Path]:
    """The archives in ``folder``: the folder itself when it is an unpacked archive, else its
    ``*.mar`` files, sorted. A missing folder has none."""
    if (folder / MANIFEST).is_file():
        return [folder]
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.mar") if p.is_file() and not p.name.startswith("."))


def _archive_file_name(url: str) -> str:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip(".")
    return name if name.endswith(".mar") else f"{name or 'model'}.mar"


def _request(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"User-Agent": "squeezenet-mar-container"})


def download_archive(url: str, folder: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` into ``folder``; also ``<url>.sha256`` beside it when the server has one, so
    that :func:`check_archive` compares the two. Raises DownloadError naming the URL and the cause."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _archive_file_name(url)
    partial = target.with_name(target.name + ".partial")
    logger.info("downloading %s", url)
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as response:
            with partial.open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"cannot download the model archive {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download the model archive {url}: {reason}") from exc
    os.replace(partial, target)
    checksum = target.with_name(target.name + ".sha256")
    try:
        with urllib.request.urlopen(_request(url + ".sha256"), timeout=timeout) as response:
            checksum.write_bytes(response.read(4096))
    except (urllib.error.URLError, OSError) as exc:
        logger.info("no checksum file beside %s (%s): relying on the archive's own SHA256SUMS", url, exc)
    logger.info("downloaded %s (%d bytes)", target.name, target.stat().st_size)
    return target


def locate_archives(settings: Settings, download_dir: Path) -> tuple[str, list[Path]]:
    """The first model source that has archives (see the module docstring), and its archives."""
    if settings.urls:
        return "SQUEEZENET_MODEL_URL", [
            download_archive(url, download_dir / str(index), settings.download_timeout)
            for index, url in enumerate(settings.urls)
        ]
    for label, folder in (
        ("mounted folder", settings.mounted_dir),
        ("SageMaker model folder", settings.sagemaker_dir),
        ("image", settings.baked_dir),
    ):
        found = local_archives(folder)
        if found:
            return f"{label} {folder}", found
    raise ContainerError(
        "no model archive: set SQUEEZENET_MODEL_URL, mount a folder of .mar files at "
        f"{settings.mounted_dir} (or SQUEEZENET_MODEL_DIR), put them in {settings.sagemaker_dir} "
        f"(SageMaker's model.tar.gz), or build the image with one baked into {settings.baked_dir}"
    )


def model_names(archives: Sequence[Path], single_name: str) -> dict[str, Path]:
    """MMS model name -> archive: one archive is ``single_name``; several are named after their
    files the way MMS names them (``squeezenet_v1.1.mar`` -> ``squeezenet_v1_1``)."""
    if len(archives) == 1:
        return {single_name: archives[0]}
    named: dict[str, Path] = {}
    for archive in archives:
        stem = archive.name[: -len(".mar")] if archive.name.endswith(".mar") else archive.name
        name = re.sub(r"\W", "_", stem).lstrip("_") or "model"
        if name in named:
            raise ContainerError(f"{named[name]} and {archive} would both be served as {name!r}")
        named[name] = archive
    return named


def check_archive(path: Path, trust: Trust | None = None) -> VerifyReport:
    """Everything checked about an archive before MMS may load it; raises VerifyError, or
    SignatureVerifyError when ``trust`` is given and the signature does not verify.

    - the ``<archive>.sha256`` file beside it, when there is one (``build`` and ``publish`` write it);
    - ``verify_archive``: the zip's layout as MMS reads it, safe entry names, the manifest MMS needs,
      every hash in ``MAR-INF/SHA256SUMS``, the consistency of signature, synset and model. The
      handler is not run here: MMS runs it when it loads the model, and a failure there stops the
      container;
    - with ``trust`` (``SQUEEZENET_TRUSTED_KEY`` or ``SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN``): the
      archive's signature, over every file. This is the check an archive's own code cannot skip; the
      workers inherit the variable and their genuine handler checks again at load.
    """
    checksum = path.with_name(path.name + ".sha256")
    if path.is_file() and checksum.is_file():
        expected = checksum.read_text(errors="replace").split(maxsplit=1)[:1]
        actual = sha256_file(path)
        if expected != [actual]:
            said = expected[0] if expected else "nothing"
            raise VerifyError([(path.name, f"sha256 is {actual}, {checksum.name} says {said}")])
    report = verify_archive(path, trust=trust)
    manifest = report.manifest.get("model", {})
    signer = f", signed by key sha256:{report.signature.fingerprint}" if report.signature else ""
    logger.info(
        "verified %s: %s %s, %d files%s",
        path.name,
        manifest.get("modelName"),
        manifest.get("modelVersion"),
        len(report.files),
        signer,
    )
    if trust is None:
        logger.warning("%s: signature not checked (no SQUEEZENET_TRUSTED_KEY)", path.name)
    return report


def stage_archives(named: Mapping[str, Path], store: Path, trust: Trust | None = None) -> dict[str, str]:
    """Copy each archive into the (emptied) model ``store`` as ``<name>.mar`` (an unpacked archive as
    folder ``<name>``), with its ``.sha256``, and check the copy. Returns name -> entry in the store."""
    if store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True)
    entries: dict[str, str] = {}
    for name, source in named.items():
        if source.is_dir():
            target = store / name
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target = store / f"{name}.mar"
            shutil.copyfile(source, target)
            checksum = source.with_name(source.name + ".sha256")
            if checksum.is_file():
                shutil.copyfile(checksum, target.with_name(target.name + ".sha256"))
        check_archive(target, trust)
        entries[name] = target.name
    return entries
