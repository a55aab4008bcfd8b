"""Build, verify, publish and call the SqueezeNet 1.1 Multi Model Server archive.

The folder ``archive/`` is installed as the package ``squeezenet_mar`` (see pyproject.toml).
"""

from __future__ import annotations

MODEL_NAME = "squeezenet_v1.1"
MODEL_VERSION = "1.1"
HANDLER_MODULE = "squeezenet_service"
HANDLER = f"{HANDLER_MODULE}:handle"
