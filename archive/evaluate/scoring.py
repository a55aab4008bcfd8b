"""The tally: :func:`evaluate` feeds every sample to a predictor and scores each answer against the
sample's label into an :class:`Evaluation`: top-1 and top-5 counts, per-class counts, confusions and
failures. :meth:`Evaluation.to_json` is the record ``publish --evaluation`` takes."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from .. import MODEL_NAME, REFERENCE_ACCURACY
from ..errors import ClientError
from .errors import EvaluationError
from .ground_truth import Sample, name_of, wnid_of
from .predictors import TOPK, Outcome, Predictor

logger = logging.getLogger(__name__)

REFERENCE_TOP1: float = REFERENCE_ACCURACY[MODEL_NAME]["top1"]  # the ONNX model zoo's page, in %
REFERENCE_TOP5: float = REFERENCE_ACCURACY[MODEL_NAME]["top5"]
CONFUSIONS_SHOWN = 10  # most confused pairs in the record and the report; failures listed in the report
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


@dataclass(frozen=True)
class Failure:
    """An image without a prediction; it counts as wrong in top-1 and top-5."""

    image: str
    status: int
    error: str


@dataclass
class ClassCounts:
    """Images of one true class, and how many of them were right in top-1 and top-5."""

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
