"""What the command prints and writes: the report table, the JSON record, the per-class CSV."""

from __future__ import annotations

import csv
import io
import json

from .. import MODEL_NAME
from .scoring import CONFUSIONS_SHOWN, PER_CLASS_COLUMNS, REFERENCE_TOP1, REFERENCE_TOP5, Evaluation

VAL_IMAGES = 50_000  # the ILSVRC2012 validation set the model zoo's numbers are measured on


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
    """The ``--json`` file: :meth:`Evaluation.to_json`, keys sorted."""
    return json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n"


def per_class_csv(result: Evaluation) -> str:
    """The ``--per-class`` file: one row per class with images (columns: ``PER_CLASS_COLUMNS``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_CLASS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.per_class_rows())
    return buffer.getvalue()
