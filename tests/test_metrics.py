"""GET /metrics (issue 21): the handler's stage series in prometheus_client's multiprocess files, the
supervisor's endpoint that merges them with nginx's requests in flight and the workers' locks, and
a real Prometheus scraping the real ``squeezenet-mar serve`` every second.

The served part uses one ``serve`` and one Prometheus for the whole module. What Prometheus answers
is compared with what the load generator itself counted and measured:

- counts: PromQL evaluated at the first scrape after the run, over a window that starts exactly at
  the last scrape before it (both read back from Prometheus as ``timestamp(up)``). A window whose
  ends are sample timestamps is not extrapolated by ``increase()`` (Prometheus extrapolates only
  the gap between the window's ends and its first and last samples), so the answer is exact, and so
  is the plain difference ``x - x offset W``;
- the p99: the buckets are about 1.5x apart between 5 ms and 0.5 s, and the bucket the client's
  p99 falls in must be the one ``histogram_quantile`` answers in (see
  ``test_prometheus_counts_a_load_run_exactly_and_finds_its_p99_in_the_clients_bucket``);
- the queue depth: above 0 while 32 clients overload 2 workers, 0 at the first scrape once idle.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
import yaml
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

import images
from harness import ROOT
from prometheus import Prometheus, running_prometheus
from squeezenet_handler.metrics import METRICS_DIR_ENV, SECONDS_BUCKETS
from squeezenet_mar.container.settings import ContainerError, settings_from_env
from squeezenet_mar.server import free_port, is_model_worker, read_properties, write_properties
from squeezenet_mar.serving.front import FrontStatus
from squeezenet_mar.serving.metrics import ServingCollector, prepare_metrics_dir, sweep_dead_workers

PHOTO = images.jpeg(500, 375, 31)
ADAPTER_RULES = ROOT / "deploy" / "prometheus-adapter" / "rules.yaml"
SCRAPE_JOB = ROOT / "deploy" / "prometheus-adapter" / "prometheus-scrape.yaml"
DEPLOYMENT = ROOT / "deploy" / "kubernetes" / "base" / "deployment.yaml"
ONLY = '{job="squeezenet"}'  # the series of the plain job (the deploy scrape job scrapes the same server)
POD = {"namespace": "squeezenet-test", "pod": "squeezenet-5f7c9d8b6-x2x7q"}
MODEL = "squeezenet"
VERSION = "1.1"  # the built archive's modelVersion
START_TIMEOUT = 120.0
# The server may see a request as longer than its client by at most this: nginx's $msec (when it
# handed the request on) has millisecond resolution, truncated.
MSEC_RESOLUTION = 0.001

WORKER_SERIES = {
    "squeezenet_requests": "counter",
    "squeezenet_request_duration_seconds": "histogram",
    "squeezenet_queue_wait_seconds": "histogram",
    "squeezenet_decode_seconds": "histogram",
    "squeezenet_preprocess_seconds": "histogram",
    "squeezenet_inference_seconds": "histogram",
    "squeezenet_postprocess_seconds": "histogram",
    "squeezenet_handler_seconds": "histogram",
    "squeezenet_batch_size": "histogram",
    "squeezenet_requests_in_progress": "gauge",
    "squeezenet_model_load_seconds": "histogram",
    "squeezenet_signature_verified": "gauge",
}
SUPERVISOR_SERIES = {
    "squeezenet_workers_ready": "gauge",
    "squeezenet_queue_depth": "gauge",
    "squeezenet_nginx_requests_in_flight": "gauge",
}


# ------------------------------------------------------------------------------------ load generator
@dataclass
class LoadRun:
    latencies: list[float]  # seconds, of the answered requests
    statuses: list[int]  # 0: no answer

    def p99(self) -> float:
        """The nearest-rank 99th percentile, the rank ``histogram_quantile`` looks for."""
        ordered = sorted(self.latencies)
        return ordered[math.ceil(0.99 * len(ordered)) - 1]


def load(
    url: str, body: bytes, concurrency: int, requests_total: int | None = None, seconds: float = 0
) -> LoadRun:
    """``concurrency`` clients on kept-alive connections, each sending the next request as soon as it
    has its answer: ``requests_total`` requests in all, or as many as fit in ``seconds``."""
    host, port = url.split("://", 1)[1].split(":")
    sent = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    run = LoadRun([], [])

    def take() -> bool:
        with lock:
            if requests_total is not None and sent[0] >= requests_total:
                return False
            if requests_total is None and time.monotonic() >= deadline:
                return False
            sent[0] += 1
            return True

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        while take():
            began = time.perf_counter()
            try:
                connection.request(
                    "POST", f"/predictions/{MODEL}", body=body, headers={"Content-Type": "image/jpeg"}
                )
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=60)
            latency = time.perf_counter() - began
            with lock:
                run.statuses.append(status)
                if status:
                    run.latencies.append(latency)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return run


# ----------------------------------------------------------------------------------------- the server
@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    metrics: str  # http://HOST:PORT/metrics
    home: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float, str]]]:
        """family name -> (labels, value, sample name) of one GET /metrics."""
        answer = requests.get(self.metrics, timeout=10)
        answer.raise_for_status()
        found: dict[str, list[tuple[dict[str, str], float, str]]] = {}
        for family in text_string_to_metric_families(answer.text):
            found[family.name] = [(s.labels, s.value, s.name) for s in family.samples]
        return found

    def sample(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        family = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
        return sum(
            value
            for found, value, sample in self.scrape().get(family, [])
            if sample == name and labels.items() <= found.items()
        )

    def workers(self) -> list[psutil.Process]:
        """The processes that load and run the model (MMS forks one per worker connection)."""
        return [
            proc
            for proc in psutil.Process(self.process.pid).children(recursive=True)
            if is_model_worker(proc)
        ]


def wait_until(condition, timeout: float, what: str, served: Served) -> None:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            pytest.fail(f"{what} not within {timeout:.0f} s:\n{served.output()[-3000:]}")
        if served.process.poll() is not None:
            pytest.fail(
                f"serve exited ({served.process.returncode}) before {what}:\n{served.output()[-3000:]}"
            )
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served(built, tmp_path_factory) -> Iterator[Served]:
    """``squeezenet-mar serve`` with the repository's config (2 workers, batches <= 2), free ports and
    ``--metrics-port`` on a free port; its whole tree stopped by PID afterwards."""
    home = tmp_path_factory.mktemp("metrics_serve")
    config = home / "config.properties"
    ports = {f"{api}_address": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management")}
    write_properties(config, {**read_properties(ROOT / "config.properties"), **ports})
    metrics_port = free_port()
    command = [str(Path(sys.executable).with_name("squeezenet-mar")), "serve", str(built.archive)]
    command += ["--config", str(config), "--home", str(home / ".mms"), "--log-dir", str(home / "logs")]
    command += ["--metrics-port", str(metrics_port)]
    log = home / "serve.out"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    server = Served(
        process, ports["inference_address"], f"http://127.0.0.1:{metrics_port}/metrics", home, log
    )
    try:
        wait_until(lambda: "serving " in server.output(), START_TIMEOUT, "serving", server)
        yield server
    finally:
        if process.poll() is None:
            tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(tree, timeout=10)


def deploy_scrape_job(served: Served) -> dict:
    """deploy/prometheus-adapter/prometheus-scrape.yaml's job, its Kubernetes discovery written out as
    the targets it finds for one pod of deploy/kubernetes: one per container port (inference and
    metrics), each with the pod's namespace, name and the Deployment's annotations (the port one
    pointing at this server's metrics port). Debian's Prometheus is built without Kubernetes discovery."""
    [job] = yaml.safe_load(SCRAPE_JOB.read_text())["scrape_configs"]
    job = {key: value for key, value in job.items() if key != "kubernetes_sd_configs"}
    annotations = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["metadata"]["annotations"]
    metrics_port = served.metrics.rsplit(":", 1)[1].split("/")[0]
    annotations = {**annotations, "prometheus.io/port": metrics_port}
    labels = {
        "__meta_kubernetes_namespace": POD["namespace"],
        "__meta_kubernetes_pod_name": POD["pod"],
        **{
            f"__meta_kubernetes_pod_annotation_{re.sub('[^a-zA-Z0-9_]', '_', k)}": v
            for k, v in annotations.items()
        },
    }
    inference_port = served.url.rsplit(":", 1)[1]
    targets = [f"127.0.0.1:{port}" for port in (inference_port, metrics_port)]
    return {**job, "static_configs": [{"targets": targets, "labels": labels}]}


@pytest.fixture(scope="module")
def prometheus(served, tmp_path_factory) -> Iterator[Prometheus]:
    target = served.metrics.split("://", 1)[1].removesuffix("/metrics")
    jobs = [deploy_scrape_job(served)]
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), [target], jobs) as server:
        server.scrape_after(time.time())
        yield server


def bucket_of(seconds: float) -> int:
    """The index of the histogram bucket (upper bound ``le``) that holds ``seconds``."""
    return next((i for i, bound in enumerate(SECONDS_BUCKETS) if seconds <= bound), len(SECONDS_BUCKETS))


def acceptable_buckets(client: float) -> set[int]:
    """Where the server's p99 may lie given the client's: the client's bucket or the one below it
    (see the p99 test), and the one above when the client's p99 is within $msec's resolution of its
    upper edge."""
    index = bucket_of(client)
    accepted = {index, max(0, index - 1)}
    if index < len(SECONDS_BUCKETS) and SECONDS_BUCKETS[index] - client <= MSEC_RESOLUTION:
        accepted.add(index + 1)
    return accepted


# ---------------------------------------------------------------------------------- served: GET /metrics
@pytest.mark.integration
def test_metrics_has_every_series_labelled_by_model_and_version(served):
    assert requests.post(f"{served.url}/predictions/{MODEL}", data=PHOTO, timeout=30).status_code == 200
    answer = requests.get(served.metrics, timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith(
        "text/plain; version=0.0.4"
    )
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    for name, kind in {**WORKER_SERIES, **SUPERVISOR_SERIES}.items():
        assert families[name].type == kind, name
        assert families[name].documentation, name
    for name in [*WORKER_SERIES, "squeezenet_workers_ready", "squeezenet_queue_depth"]:
        for sample in families[name].samples:
            assert (sample.labels["model"], sample.labels["version"]) == (MODEL, VERSION), sample
    assert {s.labels["code"] for s in families["squeezenet_requests"].samples} >= {"200"}
    assert served.sample("squeezenet_workers_ready") == 2
    assert served.sample("squeezenet_signature_verified") == 0  # unsigned archive, no trusted key
    assert served.sample("squeezenet_model_load_seconds_count") >= 2
    assert requests.get(served.metrics.replace("/metrics", "/"), timeout=10).status_code == 404


# ------------------------------------------------------------------------ served: a real Prometheus
@pytest.mark.integration
def test_prometheus_counts_a_load_run_exactly_and_finds_its_p99_in_the_clients_bucket(served, prometheus):
    """300 requests at concurrency 4. Counts: exact (see the module docstring).

    Latency: the server's request duration (from nginx handing the request on to the handler's
    answer, MMS's queue included) is each request's client latency less the answer's way back
    (handler -> MMS's frontend -> nginx -> client) and the client's own delays, plus at most 1 ms of
    $msec truncation. So, over the same 300 requests, every bucket of the server's histogram holds at
    least as many as the client measured up to 1 ms below its edge (exact), and the server's p99
    lies in the client p99's bucket or the one below: on 2 cores busy with inference, the way back
    waits for a core (measured: 0-9 ms at the p99). The handler call is part of the request, so its
    p99 is in the client p99's bucket or lower."""
    total = 300
    quiet = time.time()
    before = prometheus.scrape_after(quiet)
    run = load(served.url, PHOTO, concurrency=4, requests_total=total)
    after = prometheus.scrape_after(time.time())
    assert run.statuses == [200] * total
    window = f"{round((after - before) * 1000)}ms"

    def at_end(promql: str) -> float | None:
        return prometheus.value(promql, at=after)

    increase = at_end(f"sum(increase(squeezenet_requests_total{ONLY}[{window}]))")
    difference = at_end(
        f"sum(squeezenet_requests_total{ONLY}) - sum(squeezenet_requests_total{ONLY} offset {window})"
    )
    assert (increase, difference) == (total, total)
    for stage in ("request_duration", "queue_wait", "decode", "preprocess"):  # once per request
        assert at_end(f"sum(increase(squeezenet_{stage}_seconds_count{ONLY}[{window}]))") == total, stage
    calls = at_end(f"sum(increase(squeezenet_handler_seconds_count{ONLY}[{window}]))")
    batched = at_end(f"sum(increase(squeezenet_batch_size_sum{ONLY}[{window}]))")
    assert batched == total and calls is not None and total / 2 <= calls <= total  # batches of 1 or 2

    def p99(series: str) -> float | None:
        return at_end(f"histogram_quantile(0.99, sum by (le) (increase({series}_bucket{ONLY}[{window}])))")

    server_p99, handler_p99 = p99("squeezenet_request_duration_seconds"), p99("squeezenet_handler_seconds")
    client_p99 = run.p99()
    buckets = prometheus.query(
        f"sum by (le) (increase(squeezenet_request_duration_seconds_bucket{ONLY}[{window}]))", at=after
    )
    server_counts = {float(b["metric"]["le"]): float(b["value"][1]) for b in buckets}
    assert server_counts[math.inf] == total
    for edge in SECONDS_BUCKETS:
        client_below = sum(latency <= edge - MSEC_RESOLUTION for latency in run.latencies)
        assert server_counts[edge] >= client_below, (edge, server_counts[edge], client_below)
    print(
        f"load: {total} requests at c=4; PromQL increase {increase:.0f}, difference {difference:.0f}; "
        f"p99 client {client_p99 * 1e3:.1f} ms, server (PromQL) {server_p99 * 1e3:.1f} ms, "
        f"handler (PromQL) {handler_p99 * 1e3:.1f} ms; buckets {SECONDS_BUCKETS}"
    )
    assert bucket_of(server_p99) in acceptable_buckets(client_p99), (client_p99, server_p99)
    assert bucket_of(handler_p99) <= bucket_of(client_p99)


@pytest.mark.integration
def test_queue_depth_is_above_0_under_overload_and_0_when_idle(served, prometheus):
    """32 clients for 6 s against 2 workers taking batches of at most 2: most requests wait."""
    began = time.time()
    run = load(served.url, PHOTO, concurrency=32, seconds=6.0)
    done = time.time()
    assert run.statuses and set(run.statuses) == {200}
    idle = prometheus.scrape_after(done)
    seconds = max(1, math.ceil(done - began))
    peak = prometheus.value(f"max_over_time(squeezenet_queue_depth{ONLY}[{seconds}s])", at=done)
    at_idle = prometheus.value(f"squeezenet_queue_depth{ONLY}", at=idle)
    in_flight_idle = prometheus.value(f"squeezenet_nginx_requests_in_flight{ONLY}", at=idle)
    in_progress_idle = prometheus.value(f"sum(squeezenet_requests_in_progress{ONLY})", at=idle)
    print(f"overload c=32: {len(run.statuses)} requests; queue depth peak {peak:.0f}, idle {at_idle:.0f}")
    assert peak is not None and peak > 0
    assert (at_idle, in_flight_idle, in_progress_idle) == (0, 0, 0)


@pytest.mark.integration
def test_a_killed_worker_loses_no_count_and_leaves_nothing_in_progress(served):
    """A worker killed while it handles requests: MMS answers those 500 "Worker died" (the handler
    never answered them: not counted; nginx sends them once more), replaces it, and the counts go on
    from where they were."""
    folder = served.home / ".mms" / "metrics"
    victim = served.workers()[0]
    gauge = folder / f"gauge_livesum_{victim.pid}.db"

    def victim_busy() -> bool:
        values = MmapedDict.read_all_values_from_file(str(gauge)) if gauge.exists() else []
        return any(value > 0 for key, value, _, _ in values if "requests_in_progress" in key)

    stop = threading.Event()
    background: list[LoadRun] = []

    def keep_busy() -> None:
        while not stop.is_set():
            background.append(load(served.url, PHOTO, concurrency=4, requests_total=8))

    thread = threading.Thread(target=keep_busy)
    thread.start()
    try:
        wait_until(victim_busy, 30, "the worker handling a request", served)
        victim.kill()  # a process our serve started
    finally:
        stop.set()
        thread.join()

    def swept() -> bool:
        served.scrape()  # every scrape sweeps the dead workers first
        return not gauge.exists()

    wait_until(swept, 10, "the dead worker's gauge swept", served)
    wait_until(lambda: served.sample("squeezenet_workers_ready") == 2, 60, "a new worker", served)
    answered = sum(status == 200 for run in background for status in run.statuses)
    counted = served.sample("squeezenet_requests_total", code="200")
    assert served.sample("squeezenet_requests_in_progress") == 0
    more = load(served.url, PHOTO, concurrency=2, requests_total=20)
    assert more.statuses == [200] * 20
    assert served.sample("squeezenet_requests_total", code="200") == counted + 20  # neither lost nor doubled
    assert counted >= answered  # everything answered during the kill is in (plus the earlier tests')


@pytest.mark.integration
def test_the_adapter_rule_reads_each_pods_queue_depth_through_the_deploy_scrape_job(prometheus):
    """The HPA's metric as prometheus-adapter computes it: the rule's seriesQuery finds the pod's
    series (labelled by the scrape job from the Deployment's annotations), and its metricsQuery,
    rendered as the adapter renders it for the pods of a namespace, answers one value per pod."""
    job = yaml.safe_load(SCRAPE_JOB.read_text())["scrape_configs"][0]["job_name"]
    scraped = prometheus.scrape_after(time.time(), job=job)
    assert prometheus.value(f'count(up{{job="{job}"}})', at=scraped) == 1  # two ports, one target
    [rule] = yaml.safe_load(ADAPTER_RULES.read_text())["rules"]
    found = prometheus.query(rule["seriesQuery"], at=scraped)
    assert {(s["metric"]["namespace"], s["metric"]["pod"]) for s in found} == {(POD["namespace"], POD["pod"])}
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", rule["name"]["as"])
        .replace("<<.LabelMatchers>>", f'namespace="{POD["namespace"]}",pod=~"{POD["pod"]}"')
        .replace("<<.GroupBy>>", "pod")
    )
    [answer] = prometheus.query(query, at=scraped)
    assert answer["metric"] == {"pod": POD["pod"]} and float(answer["value"][1]) >= 0


# -------------------------------------------------------------------------------- the handler alone
HANDLER_RUN = """
import json, os, sys, time
root, image, hide = sys.argv[1], sys.argv[2], sys.argv[3] == "hide"
if hide:  # a stock MMS's environment: no prometheus_client
    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "prometheus_client":
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, Hide())
sys.path.insert(0, root)
import mms
from mms.context import Context, RequestProcessor
import squeezenet_service
manifest = {"model": {"modelName": "squeezenet_v1.1", "modelVersion": "1.1"}}
context = Context("squeezenet", root, manifest, 2, None, mms.__version__)
squeezenet_service.handle(None, context)
body = open(image, "rb").read()
handed_on = f"t={time.time() - 0.5:.3f}"  # as nginx writes it: half a second ago
statuses = []
for batch in ([body, body], [body, b"not an image, plain text"]):
    context.request_processor = [RequestProcessor({"X-Request-Start": handed_on}) for _ in batch]
    answers = squeezenet_service.handle([{"body": bytearray(b)} for b in batch], context)
    statuses += [context.get_response_status(i)[0] for i in range(len(batch))]
print(json.dumps({"pid": os.getpid(), "statuses": statuses}))
"""


def run_handler(
    model_dir: Path, image: Path, folder: Path | None, hide: bool = False
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (METRICS_DIR_ENV, "PROMETHEUS_MULTIPROC_DIR")}
    if folder is not None:
        env[METRICS_DIR_ENV] = str(folder)
    done = subprocess.run(
        [sys.executable, "-c", HANDLER_RUN, str(model_dir), str(image), "hide" if hide else "-"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def merged(folder: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, labels) -> value, merged from the workers' files as the supervisor merges them."""
    out = {}
    for family in MultiProcessCollector.merge([str(p) for p in folder.glob("*.db")]):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_the_handler_records_stages_statuses_and_the_time_since_nginx_handed_the_request_on(
    model_dir, tmp_path
):
    folder = prepare_metrics_dir(tmp_path / "metrics")
    image = tmp_path / "photo.jpg"
    image.write_bytes(PHOTO)
    result = json.loads(run_handler(model_dir, image, folder).stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200, 200, 200, 415]
    values = merged(folder)
    labels = (("model", MODEL), ("version", VERSION))

    def value(name: str, **extra: str) -> float:
        return values[(name, tuple(sorted((*labels, *extra.items()))))]

    assert value("squeezenet_requests_total", code="200") == 3
    assert value("squeezenet_requests_total", code="415") == 1
    assert value("squeezenet_decode_seconds_count") == 4  # the text is refused while decoding
    assert value("squeezenet_preprocess_seconds_count") == 3
    assert value("squeezenet_inference_seconds_count") == value("squeezenet_handler_seconds_count") == 2
    assert value("squeezenet_batch_size_sum") == 4
    assert value("squeezenet_model_load_seconds_count") == 1
    assert value("squeezenet_requests_in_progress") == 0
    assert value("squeezenet_signature_verified") == 0
    for name in ("request_duration", "queue_wait"):  # handed on 0.5 s before: every one at least that
        assert value(f"squeezenet_{name}_seconds_count") == 4
        assert value(f"squeezenet_{name}_seconds_bucket", le="0.3") == 0
    assert (folder / f"worker-{result['pid']}.lock").exists()


def test_without_prometheus_client_the_handler_serves_and_says_so_once(model_dir, tmp_path):
    folder = prepare_metrics_dir(tmp_path / "metrics")
    image = tmp_path / "photo.jpg"
    image.write_bytes(PHOTO)
    done = run_handler(model_dir, image, folder, hide=True)
    assert json.loads(done.stdout.strip().splitlines()[-1])["statuses"] == [200, 200, 200, 415]
    said = [line for line in done.stderr.splitlines() if "prometheus_client is missing" in line]
    assert len(said) == 1 and METRICS_DIR_ENV in said[0]
    assert list(folder.iterdir()) == []


def test_without_the_variable_the_handler_records_nothing(model_dir, tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(PHOTO)
    done = run_handler(model_dir, image, None)
    assert json.loads(done.stdout.strip().splitlines()[-1])["statuses"] == [200, 200, 200, 415]
    assert "metrics" not in done.stderr


# ------------------------------------------------------------------------- the supervisor's side
WORKER_ALIVE = """
import sys, time
from squeezenet_handler.metrics import start_metrics
metrics = start_metrics("squeezenet", "1.1")
metrics.loaded(1.5, False)
with metrics.handling([{}, {}, {}], None):
    metrics.answered(200)
    print("busy", flush=True)
    sys.stdin.readline()  # killed here, 3 requests in progress
"""


def test_a_dead_workers_gauges_are_dropped_and_its_counts_kept(tmp_path):
    """Two real worker processes record; one is killed while 3 requests are in progress. The sweep
    drops its in-progress gauge (the queue depth would otherwise stay 3 too low) and keeps its count."""
    folder = prepare_metrics_dir(tmp_path / "metrics")
    env = {**os.environ, METRICS_DIR_ENV: str(folder)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    workers = []
    for _ in range(2):
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER_ALIVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert worker.stdout is not None and worker.stdout.readline() == b"busy\n"
        workers.append(worker)
    status = FrontStatus(active=12, requests=100, reading=0, writing=10, waiting=2)
    collector = ServingCollector(folder, tmp_path / "health", {MODEL: VERSION}, lambda: status)
    try:

        def series() -> dict[str, float]:
            out = {}
            for family in collector.collect():
                for sample in family.samples:
                    out[sample.name] = out.get(sample.name, 0.0) + sample.value
            return out

        alive = series()
        assert alive["squeezenet_requests_in_progress"] == 6
        assert alive["squeezenet_queue_depth"] == 10 - 6
        assert alive["squeezenet_requests_total"] == 2
        workers[0].kill()
        workers[0].wait(timeout=10)
        assert sweep_dead_workers(folder) == [workers[0].pid]
        after = series()
        assert after["squeezenet_requests_in_progress"] == 3
        assert after["squeezenet_queue_depth"] == 10 - 3
        assert after["squeezenet_requests_total"] == 2  # the dead worker's count stays
        assert after["squeezenet_model_load_seconds_count"] == 2
        assert not list(folder.glob(f"*live*_{workers[0].pid}.db"))
        assert not (folder / f"worker-{workers[0].pid}.lock").exists()
        assert sweep_dead_workers(folder) == []  # the live one is left alone
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=10)


# ------------------------------------------------------------------------------------- the settings
@pytest.mark.parametrize("port", ["-1", "65536"])
def test_serve_refuses_a_metrics_port_out_of_range_before_anything_starts(port, built, tmp_path, capsys):
    from squeezenet_mar.cli import main

    config = ["--config", str(ROOT / "config.properties"), "--home", str(tmp_path / "home")]
    assert main(["serve", str(built.archive), *config, "--metrics-port", port]) == 2
    assert "--metrics-port must be from 0 (off) to 65535" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_the_container_serves_metrics_on_8082_or_where_sagemaker_allows_or_not_at_all():
    assert settings_from_env({}).metrics_address == "http://0.0.0.0:8082"
    assert (
        settings_from_env({"SAGEMAKER_SAFE_PORT_RANGE": "9000-9010"}).metrics_address == "http://0.0.0.0:9002"
    )
    assert settings_from_env({"SQUEEZENET_METRICS_ADDRESS": "off"}).metrics_address is None
    given = settings_from_env({"SQUEEZENET_METRICS_ADDRESS": "http://127.0.0.1:9100"})
    assert given.metrics_address == "http://127.0.0.1:9100"
    with pytest.raises(ContainerError, match="SQUEEZENET_METRICS_ADDRESS"):
        settings_from_env({"SQUEEZENET_METRICS_ADDRESS": "http://0.0.0.0:8080"})
    with pytest.raises(ContainerError, match="SQUEEZENET_METRICS_ADDRESS"):
        settings_from_env({"SQUEEZENET_METRICS_ADDRESS": "8082"})
