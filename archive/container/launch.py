"""What the container runs: MMS's config.properties, log configuration and environment, and nginx's
settings, prepared from the settings and the checked archives."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from squeezenet_handler.health import HEALTH_DIR_ENV

from ..server import JVM_OPTIONS as SERVE_JVM_OPTIONS
from ..server import ModelServer, free_port
from ..serving import FrontSettings, MetricsSettings, ServedModel
from .archives import locate_archives, model_names, stage_archives
from .settings import ContainerError, Settings

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 25 * 1024 * 1024  # as the repository's config.properties: a camera photo fits
# The heap bounded (see mms_properties), and the JVM tuned as `serve` runs it (server.JVM_OPTIONS).
JVM_OPTIONS = f"-Xmx256m -XX:MaxDirectMemorySize=128m {SERVE_JVM_OPTIONS}"


# MMS's log4j2 configuration for a container: everything on stdout, where container runtimes collect
# it, instead of MMS's default rolling files (which would fill the writable emptyDir). Per-minute
# metrics are off: MMS 1.1.11 only logs them, it has no metrics endpoint to scrape.
LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
    <Appenders>
        <Console name="STDOUT" target="SYSTEM_OUT">
            <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
        </Console>
    </Appenders>
    <Loggers>
        <!-- the supervisor's own health probes of MMS (GET /ping, every second) are not logged -->
        <Logger name="ACCESS_LOG" level="info" additivity="false">
            <RegexFilter regex=".*&quot;GET /ping HTTP/1[.]1&quot;.*" onMatch="DENY" onMismatch="NEUTRAL"/>
            <AppenderRef ref="STDOUT"/>
        </Logger>
        <Logger name="MODEL_LOG" level="info" additivity="false"><AppenderRef ref="STDOUT"/></Logger>
        <Logger name="MODEL_METRICS" level="off"/>
        <Logger name="MMS_METRICS" level="off"/>
        <Logger name="io.netty" level="error"/>
        <Logger name="org.apache" level="off"/>
        <Logger name="com.amazonaws.ml.mms" level="info"/>
        <Root level="info"><AppenderRef ref="STDOUT"/></Root>
    </Loggers>
</Configuration>
"""


def mms_properties(settings: Settings, store: Path, mms_port: int) -> dict[str, str]:
    """MMS's config.properties: inference on 127.0.0.1 behind nginx, management on loopback, the model
    store, and the limits of the repository's config.properties."""
    return {
        "inference_address": f"http://127.0.0.1:{mms_port}",
        "management_address": settings.management_address,
        "model_store": str(store),
        "default_workers_per_model": str(settings.workers),
        "job_queue_size": "100",
        "max_request_size": str(MAX_REQUEST_BYTES),
        "max_response_size": "6553500",
        "default_response_timeout_seconds": str(settings.response_timeout),
        # A JVM bounded whatever the pod's size (by default it takes a quarter of it for its heap):
        # its peak with large bodies in flight is what the handler's decode budget leaves it
        # (squeezenet_handler.memory.FRONTEND_BYTES, measured with these settings).
        "vmargs": JVM_OPTIONS,
    }


def mms_environment(
    settings: Settings, health: Path, metrics: MetricsSettings | None = None
) -> dict[str, str]:
    """What MMS and its workers get besides the container's environment (``ModelServer`` adds a private
    tmp and the log folders): where loaded workers announce themselves, a fixed thread count if set.
    (The handler makes its worker take request bodies as bytes itself, and reads the trusted key, if
    any, from the environment the workers inherit.)"""
    env = {HEALTH_DIR_ENV: str(health), **(metrics.environment() if metrics else {})}
    if settings.threads is not None:
        env["SQUEEZENET_THREADS"] = str(settings.threads)
    return env


@dataclass(frozen=True)
class Launch:
    """What :func:`run_model_server` runs: MMS (not started yet), nginx's settings, the models."""

    server: ModelServer
    front: FrontSettings
    models: list[ServedModel]
    inference_url: str  # the public address as reached from inside the container
    metrics: MetricsSettings | None = None  # GET /metrics, served by the supervisor


def local_url(address: str) -> str:
    """An address as a client inside the container reaches it."""
    return address.replace("://0.0.0.0:", "://127.0.0.1:")


def check_writable(home: Path) -> None:
    """``SQUEEZENET_HOME`` must be writable (MMS unpacks models and keeps its sockets there): one line
    naming the fix instead of a traceback on a read-only root filesystem."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".writable"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ContainerError(
            f"SQUEEZENET_HOME={home} is not writable ({exc.strerror}): on a read-only root filesystem "
            "mount a writable folder at /tmp (docker run --read-only --tmpfs /tmp:rw,exec ..., "
            "or a Kubernetes emptyDir), or point SQUEEZENET_HOME at one"
        ) from exc


def prepare_model_server(settings: Settings, env: Mapping[str, str] | None = None) -> Launch:
    """Find, copy and check the archives, and configure MMS and nginx for them. Starts nothing.
    (``env``: unused, kept for callers of release 1.1.0; settings come from ``settings_from_env``.)"""
    home = settings.home
    check_writable(home)
    source, archives = locate_archives(settings, home / "downloads")
    logger.info("model source: %s (%s)", source, ", ".join(p.name for p in archives))
    store = home / "model_store"
    models = stage_archives(model_names(archives, settings.model_name), store, settings.trust)
    log_config = home / "log4j2.xml"
    log_config.write_text(LOG4J2_XML)
    mms_port = settings.mms_port or free_port()
    health = home / "health"
    metrics = None
    if settings.metrics_address:
        metrics = MetricsSettings(settings.metrics_address.split("://", 1)[1], home / "metrics")
    server = ModelServer(
        home / "mms",
        store,
        overrides=mms_properties(settings, store, mms_port),
        env=mms_environment(settings, health, metrics),
        log_dir=home / "logs",
        log_config=log_config,
    )
    front = FrontSettings(
        listen=settings.inference_address.split("://", 1)[1],
        upstream=f"127.0.0.1:{mms_port}",
        home=home / "nginx",
        health=health,
        max_body_bytes=MAX_REQUEST_BYTES,
        response_timeout=settings.response_timeout,
        drain_seconds=int(settings.drain_timeout),
    )
    served = [ServedModel(name, entry, workers=settings.workers) for name, entry in models.items()]
    return Launch(server, front, served, local_url(settings.inference_address), metrics)
