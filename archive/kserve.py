"""KServe's TorchServe runtime for a built ``.mar``: the ``storageUri`` folder and the InferenceService.

KServe's ``kserve-torchserve`` ClusterServingRuntime runs ``torchserve --start
--model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties`` beside a
wrapper (``kserve_wrapper`` in pytorch/serve) that reads the same config.properties (the model names
of its ``model_snapshot``, the inference and management addresses) and forwards v1/v2 requests to
TorchServe's ``/v1/models/NAME:predict`` and ``/v2/models/NAME/infer``. KServe's storage initializer
copies ``storageUri`` to ``/mnt/models``. So the folder this module writes is::

    DIR/
    ├── config/config.properties        TorchServe's settings (below)
    ├── config/<trusted key or CAs>     with a trust: what the handler checks the signature against
    ├── model-store/squeezenet_v1.1.mar the archive, byte for byte as verified
    └── inferenceservice.yaml           the InferenceService (``storageUri`` = where DIR is uploaded)

The TorchServe settings, each for a reason:

- the inference and management APIs on 127.0.0.1 (the wrapper is in the same container: the
  management API, which has no authentication once tokens are off, is never reachable from outside);
  the metrics API on 0.0.0.0:8082, where the runtime's Prometheus annotations point;
- ``disable_token_authorization=true``: TorchServe 0.12 asks for a token by default, and the wrapper
  sends none (its readiness check calls the management API);
- no ``enable_envvars_config``: the runtime sets ``TS_SERVICE_ENVELOPE=kserve``/``kservev2``, which
  TorchServe only reads with that setting. Its envelopes unwrap only the first request of a batch and
  give per-request errors to the whole batch; the handler reads KServe's shapes itself
  (``squeezenet_handler.protocols``);
- ``max_request_size``: base64 makes an image 4/3 larger; room for the handler's 20 MiB image limit;
- ``install_py_dep_per_model=true`` unless a trust is given: KServe's TorchServe image has torch but
  neither MXNet nor ONNX Runtime, and the archive's ``requirements.txt`` (onnxruntime) is then
  installed into the unpacked model folder. With a trust, files added to that folder would fail the
  handler's signature check: the runtime's image must bring onnxruntime itself (a one-line image:
  ``FROM <the kserve-torchserve image>`` + ``RUN pip install onnxruntime``);
- ``model_snapshot``: the model ``squeezenet`` from the archive, ``--workers`` workers (one per CPU of
  the InferenceService's limit), batches of 1, the response timeout of ``serve``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ArchiveToolError, UsageError
from .signatures import Trust
from .verify import verify_archive

logger = logging.getLogger(__name__)

MOUNT = "/mnt/models"  # where KServe's storage initializer puts storageUri
CONFIG = "config/config.properties"
MODEL_STORE = "model-store"
ISVC_FILE = "inferenceservice.yaml"
INFERENCE_PORT = 8085
MANAGEMENT_PORT = 8086
METRICS_PORT = 8082  # the kserve-torchserve runtime's prometheus.kserve.io/port
MAX_REQUEST_SIZE = 28 * 1024 * 1024  # a 20 MiB image in base64 (26.7 MiB) and its JSON
RESPONSE_TIMEOUT_SECONDS = 120
PROTOCOLS = ("v1", "v2")
RUNTIME = "kserve-torchserve"


@dataclass(frozen=True)
class KServeOptions:
    model_name: str = "squeezenet"  # the InferenceService's model and its URL: /v1/models/NAME:predict
    service_name: str = "squeezenet"  # metadata.name of the InferenceService
    storage_uri: str = "pvc://squeezenet-models/squeezenet"  # where DIR will be; a placeholder
    protocol: str = "v1"
    workers: int = 1
    cpu: str = "1"
    memory: str = "1Gi"


@dataclass(frozen=True)
class KServeLayout:
    folder: Path
    archive: Path  # DIR/model-store/<name>.mar
    config: Path
    inference_service: Path
    trusted_files: tuple[Path, ...]  # copied into DIR/config/
    install_dependencies: bool  # install_py_dep_per_model


def config_properties(archive_name: str, options: KServeOptions, install_dependencies: bool) -> str:
    """TorchServe's config.properties for KServe's runtime (see the module docstring)."""
    snapshot = {
        "name": "startup.cfg",
        "modelCount": 1,
        "models": {
            options.model_name: {
                "1.1": {
                    "defaultVersion": True,
                    "marName": archive_name,
                    "minWorkers": options.workers,
                    "maxWorkers": options.workers,
                    "batchSize": 1,
                    "maxBatchDelay": 0,
                    "responseTimeout": RESPONSE_TIMEOUT_SECONDS,
                }
            }
        },
    }
    lines = {
        "inference_address": f"http://127.0.0.1:{INFERENCE_PORT}",
        "management_address": f"http://127.0.0.1:{MANAGEMENT_PORT}",
        "metrics_address": f"http://0.0.0.0:{METRICS_PORT}",
        "metrics_mode": "prometheus",
        "enable_metrics_api": "true",
        "disable_token_authorization": "true",
        "install_py_dep_per_model": "true" if install_dependencies else "false",
        "max_request_size": str(MAX_REQUEST_SIZE),
        "default_response_timeout": str(RESPONSE_TIMEOUT_SECONDS),
        "job_queue_size": "100",
        "model_store": f"{MOUNT}/{MODEL_STORE}",
        "load_models": "all",
        "model_snapshot": json.dumps(snapshot, sort_keys=True, separators=(",", ":")),
    }
    header = (
        "# TorchServe for KServe's kserve-torchserve runtime, written by `squeezenet-mar kserve`.\n"
        "# No enable_envvars_config: the runtime's TS_SERVICE_ENVELOPE stays unused (the handler reads\n"
        "# KServe's v1/v2 shapes itself, per request).\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in lines.items())


def inference_service(options: KServeOptions, env: dict[str, str]) -> dict[str, Any]:
    """The InferenceService for KServe's TorchServe runtime (serving.kserve.io/v1beta1)."""
    model: dict[str, Any] = {
        "modelFormat": {"name": "pytorch"},
        "runtime": RUNTIME,
        "protocolVersion": options.protocol,
        "storageUri": options.storage_uri,
        "resources": {
            "requests": {"cpu": options.cpu, "memory": options.memory},
            "limits": {"cpu": options.cpu, "memory": options.memory},
        },
    }
    if env:
        model["env"] = [{"name": name, "value": value} for name, value in sorted(env.items())]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": options.service_name},
        "spec": {"predictor": {"model": model}},
    }


def _check(options: KServeOptions) -> None:
    if options.protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {PROTOCOLS}, got {options.protocol!r}")
    if options.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {options.workers}")
    for what, value in (("--model", options.model_name), ("--name", options.service_name)):
        if not value or not all(c.isalnum() or c in "-." for c in value) or not value[0].isalnum():
            raise UsageError(f"{what} {value!r}: use letters, digits, '-' and '.' (a Kubernetes name)")


def _trusted_files(trust: Trust, config: Path) -> tuple[list[Path], dict[str, str]]:
    """Copy what the handler trusts into DIR/config; the environment naming the copies in the pod."""
    from .signatures import TRUSTED_CHAIN, TRUSTED_IDENTITY, TRUSTED_KEY

    copies: list[Path] = []
    sources = [trust.public_key] if trust.public_key is not None else list(trust.certificate_chain)
    for number, source in enumerate(sources):
        if source is None:
            continue
        name = "trusted-key.pem" if trust.public_key is not None else f"trusted-ca-{number}.pem"
        shutil.copyfile(source, config / name)
        copies.append(config / name)
    in_pod = [f"{MOUNT}/config/{copy.name}" for copy in copies]
    if trust.public_key is not None:
        return copies, {TRUSTED_KEY: in_pod[0]}
    env = {TRUSTED_CHAIN: ":".join(in_pod)}
    if trust.identity is not None:
        env[TRUSTED_IDENTITY] = trust.identity
    return copies, env


def write_kserve_layout(
    archive: Path, output: Path, options: KServeOptions | None = None, trust: Trust | None = None
) -> KServeLayout:
    """Verify ``archive`` (with ``trust``, its signature too; VerifyError or SignatureVerifyError and
    nothing written otherwise), then write ``output`` as the module docstring shows. ``output`` must
    not exist or be empty: it is made whole in a temporary folder beside it, then renamed."""
    options = options or KServeOptions()
    _check(options)
    if not archive.is_file():
        raise ArchiveToolError(f"{archive}: not a file (build the archive first: make archive)")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output}: exists and is not an empty folder; name a new one")
    output.parent.mkdir(parents=True, exist_ok=True)
    install_dependencies = trust is None
    with tempfile.TemporaryDirectory(prefix=".kserve-", dir=output.parent) as tmp:
        staging = Path(tmp) / "layout"
        (staging / "config").mkdir(parents=True)
        (staging / MODEL_STORE).mkdir()
        verified = staging / MODEL_STORE / archive.name
        shutil.copyfile(archive, verified)  # the bytes verified are the bytes shipped
        verify_archive(verified, trust=trust)
        copies, env = _trusted_files(trust, staging / "config") if trust is not None else ([], {})
        (staging / CONFIG).write_text(config_properties(archive.name, options, install_dependencies))
        (staging / ISVC_FILE).write_text(_yaml(inference_service(options, env)))
        if output.exists():
            output.rmdir()
        staging.rename(output)
    logger.info("wrote %s for KServe's TorchServe runtime (%s)", output, archive.name)
    return KServeLayout(
        folder=output,
        archive=output / MODEL_STORE / archive.name,
        config=output / CONFIG,
        inference_service=output / ISVC_FILE,
        trusted_files=tuple(output / "config" / copy.name for copy in copies),
        install_dependencies=install_dependencies,
    )


def _yaml(document: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and strings (every string double-quoted, as JSON writes it,
    which YAML reads alike): no YAML library needed, the same bytes every time."""
    pad = " " * indent
    lines = []
    for key, value in document.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:\n{_yaml(value, indent + 2)}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}:\n")
            for item in value:
                block = _yaml(item, indent + 4)
                lines.append(f"{pad}  - {block.lstrip()}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(value)}\n")
    return "".join(lines)
