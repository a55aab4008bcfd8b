"""The container's settings: everything the entrypoint reads from its environment, checked once
(the table is in the package docstring)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ArchiveToolError
from ..server import DEFAULT_WORKERS, MAX_PORT
from ..signatures import Trust, trust_from_environment

BAKED_DIR = Path("/opt/squeezenet/models")


MOUNTED_DIR = Path("/models")


SAGEMAKER_DIR = Path("/opt/ml/model")


DEFAULT_HOME = Path("/tmp/squeezenet")


DEFAULT_MODEL_NAME = "squeezenet"


class ContainerError(ArchiveToolError):
    """A setting or a model source the container cannot use (exit code 1)."""


@dataclass(frozen=True)
class Settings:
    """Everything the entrypoint reads from its environment, checked once."""

    urls: tuple[str, ...] = ()
    mounted_dir: Path = MOUNTED_DIR
    sagemaker_dir: Path = SAGEMAKER_DIR
    baked_dir: Path = BAKED_DIR
    model_name: str = DEFAULT_MODEL_NAME
    home: Path = DEFAULT_HOME
    inference_address: str = "http://0.0.0.0:8080"  # nginx, where clients connect
    management_address: str = "http://127.0.0.1:8081"
    mms_port: int | None = None  # MMS's own inference port on 127.0.0.1, behind nginx (None: a free one)
    metrics_address: str | None = "http://0.0.0.0:8082"  # GET /metrics (Prometheus); None: off
    workers: int = DEFAULT_WORKERS
    threads: int | None = None
    response_timeout: int = 120
    startup_timeout: float = 300.0
    drain_timeout: float = 25.0
    stop_timeout: float = 3.0
    trust: Trust | None = None  # SQUEEZENET_TRUSTED_KEY / _CERTIFICATE_CHAIN (+ _IDENTITY); set: must load
    download_timeout: float = 60.0


# SageMaker gives a model server 60 s per invocation (its documented invocation timeout).
SAGEMAKER_TIMEOUT = 60


def on_sagemaker(env: Mapping[str, str]) -> bool:
    """SageMaker sets variables of its own (``SAGEMAKER_BIND_TO_PORT``, ``SAGEMAKER_SAFE_PORT_RANGE``...)."""
    return any(name.startswith("SAGEMAKER_") for name in env)


def _positive_int(env: Mapping[str, str], *names: str, default: int) -> int:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise ContainerError(f"{name}={value!r}: expected a positive whole number")
            return int(value)
    return default


def _port(name: str, value: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= MAX_PORT:
        raise ContainerError(f"{name}={value!r}: expected a port from 1 to {MAX_PORT} (MMS refuses higher)")
    return int(value)


def _address(name: str, value: str) -> str:
    match = re.fullmatch(r"https?://[^/:]+:(\d+)", value.strip())
    if not match:
        raise ContainerError(f"{name}={value!r}: expected http://HOST:PORT")
    _port(name, match.group(1))
    return value.strip()


def parse_urls(value: str) -> tuple[str, ...]:
    """``SQUEEZENET_MODEL_URL``: http(s) URLs separated by commas or whitespace."""
    urls = tuple(part for part in re.split(r"[\s,]+", value.strip()) if part)
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ContainerError(f"SQUEEZENET_MODEL_URL: {url!r} is not an http(s) URL")
    return urls


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The settings, from the container's environment (see the module docstring)."""
    port = env.get("SAGEMAKER_BIND_TO_PORT", "").strip()
    inference = f"http://0.0.0.0:{_port('SAGEMAKER_BIND_TO_PORT', port)}" if port else "http://0.0.0.0:8080"
    management = "http://127.0.0.1:8081"
    mms_port = None
    metrics = "http://0.0.0.0:8082"
    safe_range = env.get("SAGEMAKER_SAFE_PORT_RANGE", "").strip()
    if safe_range:  # SageMaker: every port but the inference port must lie in this range
        low = _port("SAGEMAKER_SAFE_PORT_RANGE", safe_range.split("-", 1)[0])
        management, mms_port = f"http://127.0.0.1:{low}", low + 1
        metrics = f"http://0.0.0.0:{low + 2}"
    inference = _address("SQUEEZENET_INFERENCE_ADDRESS", env.get("SQUEEZENET_INFERENCE_ADDRESS") or inference)
    management = _address(
        "SQUEEZENET_MANAGEMENT_ADDRESS", env.get("SQUEEZENET_MANAGEMENT_ADDRESS") or management
    )
    if inference.rsplit(":", 1)[1] == management.rsplit(":", 1)[1]:
        raise ContainerError(
            f"the inference ({inference}) and management ({management}) ports must differ: "
            "set SQUEEZENET_INFERENCE_ADDRESS or SQUEEZENET_MANAGEMENT_ADDRESS"
        )
    metrics_setting = env.get("SQUEEZENET_METRICS_ADDRESS", "").strip()
    metrics_address = (
        None
        if metrics_setting == "off"
        else _address("SQUEEZENET_METRICS_ADDRESS", metrics_setting or metrics)
    )
    taken = {inference.rsplit(":", 1)[1], management.rsplit(":", 1)[1], str(mms_port)}
    if metrics_address and metrics_address.rsplit(":", 1)[1] in taken:
        raise ContainerError(
            f"SQUEEZENET_METRICS_ADDRESS={metrics_address}: its port is taken by the inference, management "
            "or model server's port; choose another (or 'off')"
        )
    name = env.get("SQUEEZENET_MODEL_NAME", "").strip() or DEFAULT_MODEL_NAME
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-.]*", name):
        raise ContainerError(f"SQUEEZENET_MODEL_NAME={name!r}: letters, digits, '_', '-' and '.' only")
    threads = env.get("SQUEEZENET_THREADS", "").strip()
    return Settings(
        urls=parse_urls(env.get("SQUEEZENET_MODEL_URL", "")),
        mounted_dir=Path(env.get("SQUEEZENET_MODEL_DIR", "").strip() or MOUNTED_DIR),
        model_name=name,
        home=Path(env.get("SQUEEZENET_HOME", "").strip() or DEFAULT_HOME),
        inference_address=inference,
        management_address=management,
        workers=_positive_int(
            env, "SQUEEZENET_WORKERS", "SAGEMAKER_MODEL_SERVER_WORKERS", default=DEFAULT_WORKERS
        ),
        threads=_positive_int(env, "SQUEEZENET_THREADS", default=1) if threads else None,
        mms_port=mms_port,
        metrics_address=metrics_address,
        response_timeout=_positive_int(
            env,
            "SQUEEZENET_RESPONSE_TIMEOUT",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT",
            default=SAGEMAKER_TIMEOUT if on_sagemaker(env) else 120,
        ),
        startup_timeout=float(_positive_int(env, "SQUEEZENET_STARTUP_TIMEOUT", default=300)),
        drain_timeout=float(_positive_int(env, "SQUEEZENET_DRAIN_TIMEOUT", default=25)),
        stop_timeout=float(_positive_int(env, "SQUEEZENET_STOP_TIMEOUT", default=3)),
        trust=trust_from_environment(env),  # a set but blank or broken variable stops the container
    )
