"""Publish a ``.mar`` into a model zoo: a folder that any static HTTP server can serve.

Layout of the zoo (``DEST``)::

    DEST/index.json                              every published model and version (see below)
    DEST/.index.lock                             flock(2) target; serialises publishers
    DEST/<model>/<version>/<model>.mar           the archive, byte for byte
    DEST/<model>/<version>/<model>.mar.sha256    ``<sha256>  <model>.mar`` (``sha256sum -c`` format)
    DEST/<model>/<version>/README.md             the model card

``index.json`` (``json.dumps(..., indent=2, sort_keys=True)``; URLs relative to the zoo root)::

    {"format": 1,
     "models": {"<model>": {"<version>": {"url": "<model>/<version>/<model>.mar", "sha256": "...",
                                          "size": 123, "card": "<model>/<version>/README.md",
                                          "published": "2024-01-31T12:00:00Z"}}}}

The index is the record of what is published: a version is "already published" when the index lists
it. Every file is written to a temporary name in its own folder, fsynced, then ``os.replace``d, so a
reader never sees half a file and a crash leaves the old ``index.json`` intact (the new version's
files may then lie in its folder unlisted; publishing again overwrites them). The whole publish runs
under an exclusive ``flock`` on ``DEST/.index.lock``, so concurrent publishers never lose an entry.

An ``s3://bucket/prefix`` destination gets the same layout without the lock: see ``publish_s3``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from . import REFERENCE_ACCURACY
from .errors import PublishError, VerifyError
from .layout import Entry, read_archive, sha256_file
from .verify import verify_archive

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
LOCK_FILE = ".index.lock"
CARD_FILE = "README.md"
INDEX_FORMAT = 1
SIGNATURE_FILE = "signature.json"
NOT_RECORDED = "not recorded"
S3_NEEDS_BOTO3 = "s3:// destinations need boto3: pip install boto3"

# Row labels of the evaluation table, in this order; keys not listed here are shown by name.
_EVALUATION_LABELS = {
    "date": "Date",
    "model": "Model",
    "archive": "Archive",
    "archive_sha256": "Archive SHA-256",
    "images": "Images",
    "failed": "Failed images (counted as wrong)",
    "top1": "Top-1 (%)",
    "top5": "Top-5 (%)",
    "top1_correct": "Top-1 correct (images)",
    "top5_correct": "Top-5 correct (images)",
    "reference_top1": "Model zoo's top-1 (%)",
    "reference_top5": "Model zoo's top-5 (%)",
    "top1_difference": "Top-1 difference (points)",
    "top5_difference": "Top-5 difference (points)",
    "images_per_second": "Images per second",
    "subset": "Images evaluated",
    "ground_truth": "Ground truth",
    "served_by": "Served by",
}


@dataclass(frozen=True)
class PublishResult:
    # Paths in a local zoo; s3://bucket/key addresses in an S3 zoo.
    mar_path: Path | str
    sha256: str
    card_path: Path | str
    index_path: Path | str
    url: str  # relative to the zoo root, as in index.json
    model: str
    version: str
    size: int


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
    checked = _read_checked(archive)
    dest = Path(zoo)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with _locked(dest / LOCK_FILE):
            return _publish_locked(checked, dest, force, evaluation)
    except OSError as exc:
        raise PublishError(f"{dest}: cannot publish {archive.name}: {exc}") from exc


def _publish_locked(
    checked: _CheckedArchive, dest: Path, force: bool, evaluation: dict[str, Any] | None
) -> PublishResult:
    model, version = checked.model, checked.version
    index_path = dest / INDEX_FILE
    _remove_stale_temporaries(dest)
    index = read_index(index_path)
    versions = index["models"].setdefault(model, {})
    refuse_published(versions, model, version, str(dest), force)

    name, url, card_url = release_paths(model, version)
    folder = dest / model / version
    if folder.exists() and version not in versions:
        logger.warning("%s holds files of an unlisted publish (an earlier crash?); overwriting them", folder)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    mar_path = folder / name
    _atomic_copy(checked.path, mar_path)
    digest = sha256_file(mar_path)
    size = mar_path.stat().st_size
    _atomic_write(folder / f"{name}.sha256", f"{digest}  {name}\n".encode())

    card_path = folder / CARD_FILE
    card = release_card(checked, name=name, url=url, sha256=digest, size=size, evaluation=evaluation)
    _atomic_write(card_path, card.encode("utf-8"))

    versions[version] = index_entry(url, card_url, digest, size)
    _atomic_write(index_path, index_bytes(index))
    logger.info("published %s %s as %s (%d bytes, sha256 %s)", model, version, url, size, digest)
    return PublishResult(mar_path, digest, card_path, index_path, url, model, version, size)


# ------------------------------------------------- what every zoo (folder or S3) holds for a release
def release_paths(model: str, version: str) -> tuple[str, str, str]:
    """(archive file name, its URL and the card's URL, both relative to the zoo root)."""
    name = f"{model}.mar"
    return name, f"{model}/{version}/{name}", f"{model}/{version}/{CARD_FILE}"


def refuse_published(versions: dict[str, Any], model: str, version: str, where: str, force: bool) -> None:
    """A version listed in the index is published: refused unless ``force``."""
    if version in versions and not force:
        raise PublishError(
            f"{model} {version} is already published in {where} (sha256 {versions[version].get('sha256')}); "
            "publish a new version or pass --force to replace it"
        )
    if version in versions:
        logger.info("replacing %s %s in %s (--force)", model, version, where)


def index_entry(url: str, card_url: str, sha256: str, size: int) -> dict[str, Any]:
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"url": url, "sha256": sha256, "size": size, "card": card_url, "published": published}


def release_card(
    checked: _CheckedArchive,
    *,
    name: str,
    url: str,
    sha256: str,
    size: int,
    evaluation: dict[str, Any] | None,
) -> str:
    return render_card(
        checked.manifest,
        checked.entries,
        checked.signature,
        name=name,
        url=url,
        sha256=sha256,
        size=size,
        evaluation=evaluation,
    )


# ---------------------------------------------------------------------------------------- the archive
@dataclass(frozen=True)
class _CheckedArchive:
    path: Path
    manifest: dict[str, Any]
    entries: dict[str, Entry]
    signature: dict[str, Any] | None
    model: str
    version: str


def _read_checked(archive: Path) -> _CheckedArchive:
    """The archive's manifest and files, refused when it fails verification (read without running
    anything) or its model name or version cannot name a zoo folder (see ``names``)."""
    if not archive.is_file():
        raise PublishError(f"{archive}: no such .mar file (publish takes a built archive, not a folder)")
    try:
        verify_archive(archive)  # layout, names, hashes and consistency, without running code
    except VerifyError as exc:
        raise PublishError(f"{archive.name}: refusing an archive that fails verification:\n{exc}") from exc
    contents = read_archive(archive)
    manifest = contents.manifest()
    model = manifest["model"]
    return _CheckedArchive(
        path=archive,
        manifest=manifest,
        entries=contents.entries,
        signature=_signature(contents.kept, archive),
        model=str(model["modelName"]),
        version=str(model["modelVersion"]),
    )


def _signature(files: dict[str, bytes], archive: Path) -> dict[str, Any] | None:
    """The archive's signature.json (input and preprocessing for the card), None when it has none."""
    if SIGNATURE_FILE not in files:
        return None
    try:
        signature = json.loads(files[SIGNATURE_FILE].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{archive.name}: {SIGNATURE_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(signature, dict):
        raise PublishError(f"{archive.name}: {SIGNATURE_FILE} is not a JSON object")
    return signature


# ------------------------------------------------------------------------------------------ the index
def empty_index() -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "models": {}}


def read_index(path: Path) -> dict[str, Any]:
    """The zoo's index, or an empty one when there is none yet; a damaged index is an error, never reset."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return empty_index()
    try:
        index = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PublishError(f"{path}: not valid JSON ({exc}); repair or remove it by hand") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise PublishError(f"{path}: not a format {INDEX_FORMAT} zoo index")
    if not isinstance(index.get("models"), dict):
        raise PublishError(f"{path}: 'models' is missing or not an object")
    return index


def index_bytes(index: dict[str, Any]) -> bytes:
    return (json.dumps(index, indent=2, sort_keys=True) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------------- file writes
@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive flock held for the block. The lock file stays: removing it would race."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside ``target``; on success fsynced, made 0644 and renamed over ``target``."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)  # mkstemp makes 0600; a static HTTP server must be able to read the file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _atomic_write(target: Path, data: bytes) -> None:
    with _replacing(target) as handle:
        handle.write(data)


def _atomic_copy(source: Path, target: Path) -> None:
    with source.open("rb") as src, _replacing(target) as handle:
        shutil.copyfileobj(src, handle, 1 << 20)


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files left by a publisher that died mid-write. Only call this holding the lock: every
    writer holds it, so any temporary file present then belongs to nobody."""
    for stale in folder.glob(".*.tmp"):
        logger.warning("removing %s, left by an interrupted publish", stale)
        stale.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------- model card
# Everything the card shows from the archive (manifest, signature.json, file names) is the archive
# author's text: it goes into code spans and code blocks, where Markdown renderers interpret nothing
# (no HTML, no links, no tables), never into the card's own Markdown.
def render_card(
    manifest: dict[str, Any],
    entries: dict[str, Entry],
    signature: dict[str, Any] | None,
    *,
    name: str,
    url: str,
    sha256: str,
    size: int,
    evaluation: dict[str, Any] | None = None,
) -> str:
    """The Markdown model card (``README.md``) published beside the archive."""
    model = manifest["model"]
    model_name, version = str(model["modelName"]), str(model["modelVersion"])  # checked by names.py
    description = model.get("description") or manifest.get("description")
    sections = [
        f"# {model_name} {version}\n\nDescription, as the archive's manifest gives it:\n\n"
        + (_code_block(description) if description else f"{NOT_RECORDED}.\n"),
        _files_section(entries, name=name, sha256=sha256, size=size),
        _source_section(manifest),
        _input_section(signature),
        _accuracy_section(model_name, evaluation),
        _serve_section(name=name, url=url),
    ]
    return "\n".join(sections)


def _files_section(entries: dict[str, Entry], *, name: str, sha256: str, size: int) -> str:
    rows = [f"| `{name}` | {size} | `{sha256}` |"]
    rows += [
        f"| {_code(entry.name)} (inside) | {entry.size} | `{entry.sha256}` |"
        for _, entry in sorted(entries.items())
    ]
    return (
        "## Files and checksums\n\n"
        "| File | Bytes | SHA-256 |\n|---|---:|---|\n" + "\n".join(rows) + "\n\n"
        f"Check a download with `sha256sum -c {name}.sha256` (the file lies beside the archive).\n"
    )


def _source_section(manifest: dict[str, Any]) -> str:
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    engine = manifest.get("engine") if isinstance(manifest.get("engine"), dict) else {}
    publisher = manifest.get("publisher") if isinstance(manifest.get("publisher"), dict) else {}
    engine_text = " ".join(str(engine[key]) for key in ("engineName", "engineVersion") if engine.get(key))
    author = " ".join(
        part
        for part in (publisher.get("author"), f"<{publisher['email']}>" if publisher.get("email") else "")
        if part
    )
    rows = [
        ("Source URL", source.get("url")),
        ("Source file", source.get("file")),
        ("Source MD5", source.get("md5")),
        ("Source SHA-256", source.get("sha256")),
        ("ONNX opset", source.get("opset")),
        ("Engine", engine_text),
        ("Handler", manifest.get("model", {}).get("handler")),
        ("Runtime", manifest.get("runtime")),
        ("Publisher", author),
    ]
    return "## Source\n\n" + _table(("Field", "Value"), [(k, _or_not_recorded(v)) for k, v in rows])


def _shape(shape: Any) -> str:
    """``[0, 3, 224, 224]`` (MMS's signature: 0 is the batch size) as ``N x 3 x 224 x 224``."""
    if (
        isinstance(shape, list)
        and shape
        and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    ):
        return " x ".join("N" if i == 0 and d == 0 else str(d) for i, d in enumerate(shape))
    return _or_not_recorded(shape)


def _input_section(signature: dict[str, Any] | None) -> str:
    head = "## Input and preprocessing\n\n"
    if signature is None:
        return head + f"{NOT_RECORDED} (the archive has no {SIGNATURE_FILE}).\n"
    pre = signature.get("preprocessing") or {}
    post = signature.get("postprocessing") or {}
    inputs = [item for item in signature.get("inputs") or [] if isinstance(item, dict)]
    shapes = ", ".join(f"{_code(item.get('data_name'))} {_shape(item.get('data_shape'))}" for item in inputs)
    field = _code(inputs[0].get("data_name")) if inputs else NOT_RECORDED
    steps = [
        f"Request body: one image ({_or_not_recorded(signature.get('input_type'))}), the bytes of the file "
        f"as the raw HTTP body (`curl -T photo.jpg`, or `Content-Type: application/octet-stream`) or as "
        f"the multipart field {field}.",
        f"Decoded and converted to {_or_not_recorded(pre.get('color_mode'))}.",
        f"Shorter side resized to {_or_not_recorded(pre.get('resize_shorter_side'))} px "
        f"({_or_not_recorded(pre.get('interpolation'))}).",
        f"Centre crop {_square(pre.get('crop_size'))}.",
        f"Pixels scaled by {_or_not_recorded(pre.get('scale'))}, then normalised per channel "
        f"with mean {_or_not_recorded(pre.get('mean'))} and std {_or_not_recorded(pre.get('std'))}.",
        f"Model input: {shapes or NOT_RECORDED} (N: the batch size), "
        f"layout {_or_not_recorded(pre.get('layout'))}.",
        f"Output: {_or_not_recorded(post.get('function'))} over the {_classes(signature)} classes; "
        f"the answer lists the top {_or_not_recorded(post.get('topk'))} as "
        '`[{"class": "<synset line>", "probability": p}, ...]` '
        f"({_or_not_recorded(signature.get('output_type'))}).",
    ]
    return head + "".join(f"{number}. {step}\n" for number, step in enumerate(steps, start=1))


def _accuracy_section(model_name: str, evaluation: dict[str, Any] | None) -> str:
    text = "## Accuracy\n\n"
    if evaluation:
        # Scalars in a table; the per-image failures stay in the JSON, the confused pairs get a table.
        scalars = {k: v for k, v in evaluation.items() if not isinstance(v, (list, dict))}
        ordered = [key for key in _EVALUATION_LABELS if key in scalars]
        ordered += sorted(key for key in scalars if key not in _EVALUATION_LABELS)
        rows = [
            (_EVALUATION_LABELS.get(key) or _code(key), _or_not_recorded(scalars[key])) for key in ordered
        ]
        text += "Measured on this archive (`squeezenet-mar evaluate`):\n\n" + _table(
            ("Metric", "Value"), rows
        )
        confusions = [c for c in evaluation.get("confusions") or [] if isinstance(c, dict)]
        if confusions:
            pairs = [
                (
                    _code(c.get("true_class")),
                    _code(c.get("predicted_class")),
                    _or_not_recorded(c.get("count")),
                )
                for c in confusions
            ]
            text += "\nMost confused classes (true class -> predicted top-1):\n\n"
            text += _table(("True class", "Predicted top-1", "Images"), pairs)
    else:
        text += (
            "Accuracy of this archive: not measured (measure it with `squeezenet-mar evaluate` and "
            "publish with `--evaluation`).\n"
        )
    reference = REFERENCE_ACCURACY.get(model_name)
    if reference:
        text += (
            f"\nFor reference, the ONNX model zoo reports top-1 {reference['top1']:.2f} % and top-5 "
            f"{reference['top5']:.2f} % for its own SqueezeNet 1.1 weights on the {reference['dataset']} "
            f"({reference['page']}): the zoo's figure, not a measurement of this archive.\n"
        )
    return text


def _serve_section(*, name: str, url: str) -> str:
    return (
        "## Serve it\n\n"
        "On any Multi Model Server (1.1.11 tested), from a local model store (the folder holding the "
        "downloaded archive):\n\n"
        f"```sh\nmulti-model-server --start --model-store DIR --models squeezenet={name}\n```\n\n"
        "Straight from this zoo, where HOST/zoo is the address the zoo folder is served at:\n\n"
        "```sh\nmulti-model-server --start --model-store DIR "
        f"--models squeezenet=http://HOST/zoo/{url}\n```\n\n"
        "Then ask for a prediction (the image file's bytes are the request body):\n\n"
        "```sh\ncurl -X POST http://127.0.0.1:8080/predictions/squeezenet -T photo.jpg\n```\n"
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _code(value: Any) -> str:
    """Any value as one inline code span, safe in a table cell: Markdown and HTML inside it are
    shown as text. Newlines become spaces; ``|`` is escaped (GitHub's table rule, even in code)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = " ".join(text.split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return (
        f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") else f"{fence}{text}{fence}"
    )


def _code_block(value: Any) -> str:
    """A fenced code block holding ``value`` as text, whatever backticks it contains."""
    text = str(value).replace("\r", "")
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence}text\n{text}\n{fence}\n"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _or_not_recorded(value: Any) -> str:
    """Numbers (and lists of them) as they are, they cannot carry Markdown; anything else as code."""
    if value is None or value == "":
        return NOT_RECORDED
    if _is_number(value) or (isinstance(value, list) and value and all(_is_number(v) for v in value)):
        return json.dumps(value)
    return _code(value)


def _square(size: Any) -> str:
    return f"{size}x{size}" if _is_number(size) else _or_not_recorded(size)


def _classes(signature: dict[str, Any]) -> str:
    outputs = signature.get("outputs") or [{}]
    shape = outputs[0].get("data_shape") if isinstance(outputs[0], dict) else None
    return _or_not_recorded(shape[-1]) if isinstance(shape, list) and shape else NOT_RECORDED


# -------------------------------------------------------------------------------------- remote zoos
def _publish_remote(archive: Path, zoo: str, force: bool, evaluation: dict[str, Any] | None) -> PublishResult:
    """An S3 zoo (``s3://bucket/prefix``), published by ``publish_s3`` with boto3."""
    if not zoo.startswith("s3://"):
        raise PublishError(f"{zoo}: unsupported zoo destination; give a local folder or s3://bucket/prefix")
    if importlib.util.find_spec("boto3") is None:
        raise PublishError(S3_NEEDS_BOTO3)
    from .publish_s3 import publish_to_s3  # imports boto3, and this module

    return publish_to_s3(_read_checked(archive), zoo, force=force, evaluation=evaluation)
