"""Build, verify, publish and call the SqueezeNet 1.1 Multi Model Server archive.

The folder ``archive/`` is installed as the package ``squeezenet_mar`` (see pyproject.toml).
"""

from __future__ import annotations

from typing import Any

MODEL_NAME = "squeezenet_v1.1"
MODEL_VERSION = "1.1"
HANDLER_MODULE = "squeezenet_service"  # MMS's entry module, at the archive's root
HANDLER_PACKAGE = "squeezenet_handler"  # the code it imports, packed beside it
HANDLER = f"{HANDLER_MODULE}:handle"

# Accuracy the ONNX model zoo reports for its SqueezeNet 1.1 weights, keyed by the archive's model
# name: shown as the zoo's figure (model cards, evaluate), never as a measurement of an archive.
ZOO_PAGE = "https://github.com/onnx/models/tree/main/validated/vision/classification/squeezenet"
REFERENCE_ACCURACY: dict[str, dict[str, Any]] = {
    MODEL_NAME: {
        "top1": 56.34,
        "top5": 79.12,
        "dataset": "ILSVRC2012 validation set, centre-cropped",
        "page": ZOO_PAGE,
    }
}
