"""Scores to answers: softmax and the most probable classes, labelled from ``synset.txt``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    shifted = scores.astype(np.float64) - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """Most probable first; equal probabilities keep class-index order."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class": labels[i], "probability": float(probabilities[i])} for i in order]
