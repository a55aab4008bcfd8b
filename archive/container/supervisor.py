"""The container's main process: the serving stack (``squeezenet_mar.serving``: nginx in front of
MMS, supervised) as the subreaper of everything MMS starts, its output on ours; and the image's
HEALTHCHECK."""

from __future__ import annotations

import logging
import sys
import urllib.error
import urllib.request

from ..inprocess import smoke_image
from ..serving import ServingStack, StackOptions
from ..serving.reaper import become_subreaper
from .launch import Launch
from .settings import Settings

logger = logging.getLogger(__name__)


def run_model_server(launch: Launch, settings: Settings) -> int:
    """Serve until SIGTERM (exit 0 once the requests in flight are answered) or a failure (8)."""
    become_subreaper()

    def ready(seconds: float) -> None:
        logger.info(
            "ready after %.1f s: %s on %s (POST /predictions/NAME or /invocations, GET /ping)",
            seconds,
            ", ".join(model.name for model in launch.models),
            launch.inference_url,
        )

    options = StackOptions(
        register=False,  # --models at start-up: /invocations finds a single model without ?model_name=
        startup_timeout=settings.startup_timeout,
        drain_seconds=settings.drain_timeout,
        stop_timeout=settings.stop_timeout,
        warm_up_image=smoke_image(),
        on_ready=ready,
        metrics=launch.metrics,
    )
    stack = ServingStack(
        launch.server, launch.front, launch.models, options, sys.stdout.buffer, reap_orphans=True
    )
    return stack.run()


def healthcheck(inference_url: str, timeout: float = 5.0) -> bool:
    """The image's HEALTHCHECK: nginx's ``/ping`` says 200, which it does only while every model has a
    worker that can answer (the supervisor's verdict, ``serving.health``)."""
    try:
        with urllib.request.urlopen(f"{inference_url}/ping", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
