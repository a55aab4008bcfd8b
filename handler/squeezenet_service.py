"""SqueezeNet 1.1 (ONNX model zoo) as a Multi Model Server custom service: the entry point MMS imports
by its bare name from the unpacked archive (handler spec ``squeezenet_service:handle``).

The code is the package ``squeezenet_handler`` packed beside this file (see its ``__init__``). MMS puts
the model folder on the worker's ``PYTHONPATH``, so the archive's own copy is the one imported.

Pipeline (numbers from ``signature.json``, never from code constants)::

    bytes -> decode (Pillow, EXIF orientation, any mode -> RGB) -> shorter side to 256 (bilinear)
          -> centre crop 224x224 -> [0, 1] -> (x - mean) / std -> NCHW float32
          -> one forward pass for the whole batch -> softmax -> top k
          -> [{"class": "<synset line>", "probability": p}, ...] per request

A bad request gets its own 4xx with a JSON body naming the cause (``squeezenet_handler.errors``); the
rest of the batch is answered.
"""

from __future__ import annotations

from squeezenet_handler.service import handle

__all__ = ["handle"]
