"""The container's entrypoint: find the model archives, verify each before MMS sees it, configure MMS
(on 127.0.0.1) and nginx in front of it (the public address), and supervise both until SIGTERM
(``squeezenet_mar.serving``: the same stack as ``squeezenet-mar serve``).

    python -m squeezenet_mar.container [serve]      # `serve` is what SageMaker passes; same behaviour
    python -m squeezenet_mar.container healthcheck  # exit 0 while /ping says 200 (the HEALTHCHECK)

Where the archives come from; the first source that has any wins, and all of its archives are served:

1. ``SQUEEZENET_MODEL_URL``: one or more http(s) URLs (separated by commas or spaces), downloaded
   at start-up, with ``<url>.sha256`` beside each when the zoo publishes it (``publish`` does);
2. a mounted folder, ``SQUEEZENET_MODEL_DIR`` (default ``/models``): every ``*.mar``;
3. ``/opt/ml/model``, where SageMaker unpacks ``model.tar.gz``: every ``*.mar`` (the layout that
   ``python -m squeezenet_mar.sagemaker`` writes), or the folder itself when it is an unpacked archive;
4. the archives baked into the image, ``/opt/squeezenet/models/*.mar``.

Each archive is copied into a private model store and the copy is checked by :func:`check_archive`
(the ``.sha256`` file beside it when there is one, then every hash and the manifest), so MMS serves
exactly the bytes that were checked. One archive is served as ``SQUEEZENET_MODEL_NAME`` (default
``squeezenet``); several are named after their files, like MMS names them. They are loaded at
start-up (``--models``), so ``/invocations`` without ``?model_name=`` reaches the one model.

``GET /ping`` is nginx's, from the supervisor's verdict: 503 ("Starting") until every model answered a
warm-up image through MMS, then 200 while every model has a worker that loaded it and is alive (each
holds a lock; a killed worker's vanishes at once) and MMS's frontend answers; 503 with the reason
otherwise, and predictions get 503 at once then. After 5 s of outage the supervisor restarts MMS; after
3 restarts in 10 minutes it exits 8, so that the platform restarts the container. MMS's own ``/ping``
says 200 whatever its workers do. A model that MMS fails to load at start-up (it would retry forever)
stops the container with exit code 8. SIGTERM: ``/ping`` 503, nginx stops accepting connections and
answers every request it accepted (at most ``SQUEEZENET_DRAIN_TIMEOUT`` seconds), then MMS stops; exit 0.

The other settings, all environment variables (SageMaker's own names are honoured too):

=================================  =========================================================
``SQUEEZENET_INFERENCE_ADDRESS``   default ``http://0.0.0.0:8080`` (port: ``SAGEMAKER_BIND_TO_PORT``)
``SQUEEZENET_MANAGEMENT_ADDRESS``  default ``http://127.0.0.1:8081`` (the first port of
                                   ``SAGEMAKER_SAFE_PORT_RANGE`` when that is set); no authentication
``SQUEEZENET_METRICS_ADDRESS``     ``GET /metrics`` (Prometheus), served by the entrypoint, default
                                   ``http://0.0.0.0:8082`` (the third port of ``SAGEMAKER_SAFE_PORT_RANGE``
                                   when that is set); ``off``: none
``SQUEEZENET_WORKERS``             workers per model (``SAGEMAKER_MODEL_SERVER_WORKERS``), default one
                                   per usable core: the CPU quota (``--cpus``, a CPU limit) counts
``SQUEEZENET_THREADS``             fixed threads per forward pass; by default the workers share the
                                   cores at run time (one alone uses all, busy ones one each)
``SQUEEZENET_RESPONSE_TIMEOUT``    seconds per batch, default 120, 60 when SageMaker's variables are set
                                   (``SAGEMAKER_MODEL_SERVER_TIMEOUT``)
``SQUEEZENET_STARTUP_TIMEOUT``     seconds for MMS to load the models, default 300
``SQUEEZENET_DRAIN_TIMEOUT``       seconds a stop waits for the requests in flight, default 25
``SQUEEZENET_STOP_TIMEOUT``        then seconds between SIGTERM and SIGKILL of MMS, default 3
``SQUEEZENET_HOME``                writable folder (model store, config, MMS's tmp, nginx's files),
                                   default /tmp/squeezenet; not writable: one line naming the fix
``SQUEEZENET_TRUSTED_KEY``         the publisher's public key: every archive's signature must verify
                                   before MMS starts, and again in each worker at load
``SQUEEZENET_TRUSTED_CERTIFICATE_CHAIN``  or: the CA certificates to trust (``:``-separated)
``SQUEEZENET_TRUSTED_IDENTITY``    with the chain: the signer's identity to require (``subject:...``,
                                   ``email:``, ``uri:``, ``dns:``). A trust variable that is set but
                                   blank or names nothing usable stops the container (exit 2)
=================================  =========================================================

Exit codes: those of ``squeezenet-mar`` (3 download failed, 5 verification failed, 9 signature does
not verify, 8 MMS failed to start or load a model, 1 anything else, 2 usage); 0 after a requested
stop (SIGTERM, SIGINT).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from ..errors import ArchiveToolError, SignatureVerifyError, VerifyError
from .archives import (
    check_archive,
    download_archive,
    local_archives,
    locate_archives,
    model_names,
    stage_archives,
)
from .launch import Launch, local_url, mms_environment, mms_properties, prepare_model_server
from .settings import ContainerError, Settings, parse_urls, settings_from_env
from .supervisor import healthcheck, run_model_server

__all__ = [
    "ContainerError",
    "Launch",
    "Settings",
    "check_archive",
    "download_archive",
    "local_archives",
    "locate_archives",
    "main",
    "mms_environment",
    "mms_properties",
    "model_names",
    "parse_urls",
    "prepare_model_server",
    "run_model_server",
    "settings_from_env",
    "stage_archives",
]


USAGE = "usage: python -m squeezenet_mar.container [serve | healthcheck]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "serve"
    if command not in ("serve", "healthcheck") or len(args) > 1:
        print(USAGE, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s [%(levelname)s] squeezenet-container - %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = settings_from_env(os.environ)
        if command == "healthcheck":
            return 0 if healthcheck(local_url(settings.inference_address)) else 1
        launch = prepare_model_server(settings)
        return run_model_server(launch, settings)
    except (VerifyError, SignatureVerifyError) as exc:
        print(f"error: an archive failed verification; MMS was not started:\n{exc}", file=sys.stderr)
        return exc.exit_code
    except ArchiveToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
