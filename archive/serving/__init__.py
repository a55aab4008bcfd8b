"""Serving the archive as this project runs it: ``squeezenet-mar serve`` on a machine, and the container.

    front.py    nginx between the clients and MMS: /ping from health files, limits, timeouts, drain
    health.py   the workers' loaded locks, MMS's frontend, the watchdog's verdict, the /ping files
    stack.py    MMS + nginx + supervision, from start-up (warm-up) to the drain after SIGTERM
    metrics.py  GET /metrics (Prometheus): the workers' series merged, queue depth, workers ready
    reaper.py   a container's main process reaps the orphans MMS leaves

Which layer does what is written in the README ("Operations"). A plain MMS, run without this
package, has none of it: its ``/ping`` says 200 whatever the workers do, and a stop drops the
requests in flight.
"""

from __future__ import annotations

from .front import Front, FrontError, FrontSettings, nginx_config
from .health import HealthBoard, Observation, Verdict, Watchdog, loaded_workers
from .metrics import DEFAULT_METRICS_PORT, MetricsSettings
from .stack import ServedModel, ServingStack, StackOptions

__all__ = [
    "DEFAULT_METRICS_PORT",
    "Front",
    "FrontError",
    "FrontSettings",
    "HealthBoard",
    "MetricsSettings",
    "Observation",
    "ServedModel",
    "ServingStack",
    "StackOptions",
    "Verdict",
    "Watchdog",
    "loaded_workers",
    "nginx_config",
]
