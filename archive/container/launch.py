"""What MMS runs with in the container: its config.properties, log configuration, environment and
command line, prepared from the settings and the checked archives."""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..server import write_properties
from .archives import locate_archives, model_names, stage_archives
from .settings import Settings

logger = logging.getLogger(__name__)


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
        <Logger name="ACCESS_LOG" level="info" additivity="false"><AppenderRef ref="STDOUT"/></Logger>
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


def mms_properties(settings: Settings, store: Path) -> dict[str, str]:
    """MMS's config.properties: inference on all interfaces, management on loopback, the model store,
    and the limits of the repository's config.properties."""
    return {
        "inference_address": settings.inference_address,
        "management_address": settings.management_address,
        "model_store": str(store),
        "default_workers_per_model": str(settings.workers),
        "job_queue_size": "100",
        "max_request_size": str(25 * 1024 * 1024),
        "max_response_size": "6553500",
        "default_response_timeout_seconds": str(settings.response_timeout),
    }


def mms_environment(base: Mapping[str, str], settings: Settings, tmp: Path) -> dict[str, str]:
    """The environment of MMS and its workers: a private tmp for the pid file, sockets and unpacked
    models; a fixed thread count, if set. (The handler makes its worker take request bodies as bytes
    itself, and reads the trusted key, if any, from the environment the workers inherit.)"""
    env = dict(base)
    env.update(
        TMPDIR=str(tmp),
        TEMP=str(tmp),
        LOG_LOCATION=str(tmp),
        METRICS_LOCATION=str(tmp),
    )
    if settings.threads is not None:
        env["SQUEEZENET_THREADS"] = str(settings.threads)
    return env


@dataclass(frozen=True)
class Launch:
    """What :func:`run_model_server` starts: MMS's command line and environment, and its models."""

    command: list[str]
    env: dict[str, str]
    models: dict[str, str]  # name -> entry in the model store
    inference_url: str  # as reached from inside the container
    ready_file: Path  # written once every model has answered; the HEALTHCHECK looks for it


def local_url(address: str) -> str:
    """An MMS address as a client inside the container reaches it."""
    return address.replace("://0.0.0.0:", "://127.0.0.1:")


def prepare_model_server(settings: Settings, env: Mapping[str, str]) -> Launch:
    """Find, copy and check the archives, write config.properties and the log configuration, and
    return the command that runs MMS in the foreground. Starts nothing."""
    home = settings.home
    tmp = home / "tmp"
    if tmp.exists():  # a restarted container keeps its emptyDir: MMS would find its old pid file
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    source, archives = locate_archives(settings, home / "downloads")
    logger.info("model source: %s (%s)", source, ", ".join(p.name for p in archives))
    store = home / "model_store"
    models = stage_archives(model_names(archives, settings.model_name), store, settings.trust)
    config = home / "config.properties"
    write_properties(config, mms_properties(settings, store))
    log_config = home / "log4j2.xml"
    log_config.write_text(LOG4J2_XML)
    launcher = Path(sys.executable).with_name("multi-model-server")
    command = [str(launcher), "--start", "--foreground", "--mms-config", str(config)]
    command += ["--model-store", str(store), "--log-config", str(log_config)]
    command += ["--models", *(f"{name}={entry}" for name, entry in models.items())]
    return Launch(
        command=command,
        env=mms_environment(env, settings, tmp),
        models=models,
        inference_url=local_url(settings.inference_address),
        ready_file=home / "ready",
    )
