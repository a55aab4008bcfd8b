"""`squeezenet-mar serve` operated as an SRE would (issue 19): /ping tells the truth and recovers, a
stop answers every request in flight, and the nginx front bounds what requests cost MMS (issue 20).

Each test runs the real `serve` command (nginx in front of a real MMS) on free 127.0.0.1 ports; the
container runs the same code (``squeezenet_mar.serving``) and is tested in test_container.py. The
watchdog's decisions are also tested as pure logic, with a clock of the test's own."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

import images
from harness import ROOT
from squeezenet_mar.server import free_port, is_model_worker, read_properties, write_properties
from squeezenet_mar.serving import Observation, Watchdog
from squeezenet_mar.serving.front import front_status
from test_serving import same_prediction

pytestmark = pytest.mark.integration

PHOTO = images.jpeg(500, 375, 31)
START_TIMEOUT = 120.0


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str  # nginx, the public address
    management: str
    home: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ping(self) -> int:
        try:
            return requests.get(f"{self.url}/ping", timeout=5).status_code
        except requests.RequestException:
            return 0

    def predict(self, body: bytes = PHOTO, timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/predictions/squeezenet", data=body, timeout=timeout)

    def workers(self) -> list[psutil.Process]:
        """The processes that load and run the model (MMS forks one per worker connection)."""
        return [
            proc
            for proc in psutil.Process(self.process.pid).children(recursive=True)
            if is_model_worker(proc)
        ]

    def in_flight(self) -> int:
        status = front_status(self.home / ".mms" / "nginx" / "status.sock")
        return status.writing if status else 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str, served: Served) -> float:
    """Seconds until ``condition`` held (polled every 50 ms); fails with serve's output after ``timeout``."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            pytest.fail(f"{what} not within {timeout:.0f} s:\n{served.output()[-3000:]}")
        if served.process.poll() is not None:
            pytest.fail(
                f"serve exited ({served.process.returncode}) before {what}:\n{served.output()[-3000:]}"
            )
        time.sleep(0.05)
    return time.monotonic() - began


@pytest.fixture
def serve(built, tmp_path) -> Iterator[Callable[..., Served]]:
    """``squeezenet-mar serve ARCHIVE`` with the repository's config on free ports, waited for; stopped
    (its whole tree, by PID) when the test ends."""
    started: list[Served] = []

    def start(*options: str) -> Served:
        home = tmp_path / f"serve{len(started)}"
        home.mkdir()
        config = home / "config.properties"
        ports = {f"{api}_address": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management")}
        write_properties(config, {**read_properties(ROOT / "config.properties"), **ports})
        command = [str(Path(sys.executable).with_name("squeezenet-mar")), "serve", str(built.archive)]
        command += ["--config", str(config), "--home", str(home / ".mms"), "--log-dir", str(home / "logs")]
        command += ["--metrics-port", str(free_port())]  # 8082, the default, may be another server's
        log = home / "serve.out"
        with log.open("wb") as sink:
            process = subprocess.Popen([*command, *options], stdout=sink, stderr=subprocess.STDOUT)
        served = Served(process, ports["inference_address"], ports["management_address"], home, log)
        started.append(served)
        wait_until(lambda: "serving " in served.output(), START_TIMEOUT, "serving", served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            tree = [psutil.Process(served.process.pid), *psutil.Process(served.process.pid).children(True)]
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(tree, timeout=10)


# ------------------------------------------------------------------------------------------ health
def test_ping_is_200_only_after_the_model_answered_and_says_so(serve, inprocess):
    served = serve()
    assert served.ping() == 200
    assert requests.get(f"{served.url}/ping", timeout=5).json() == {"status": "Healthy"}
    [local] = inprocess.predict_bytes([PHOTO])
    assert same_prediction(served.predict().json(), local.body)


def test_killing_every_worker_fails_ping_at_once_and_serve_recovers_within_30_s(serve):
    """MMS 1.1.11 answers /ping 200 while no worker runs, and replaces none once all are killed."""
    served = serve()
    workers = served.workers()
    assert len(workers) == 2
    for worker in workers:
        worker.kill()  # processes our serve started
    unhealthy = wait_until(lambda: served.ping() == 503, 10, "/ping 503", served)
    body = requests.get(f"{served.url}/ping", timeout=5).json()
    assert body["status"] == "Unhealthy" and "no worker of squeezenet" in body["reason"]
    refused = served.predict(timeout=10)  # no worker: an immediate 503, not a request left waiting
    assert refused.status_code == 503 and "no worker can answer" in refused.json()["message"]
    recovered = wait_until(lambda: served.ping() == 200, 30, "/ping 200 again", served)
    assert served.predict().status_code == 200
    assert len(served.workers()) == 2
    print(f"ping 503 after {unhealthy:.2f} s, 200 again {recovered:.2f} s later")


def test_a_request_whose_worker_dies_under_it_is_answered_by_another(serve):
    """MMS 1.1.11 answers 500 "Worker died." to a request its worker took and never answered; nginx
    hands it to MMS once more and the live worker answers. The worker is stopped (SIGSTOP) first, so
    that it surely holds a request when it is killed."""
    served = serve()
    victim = served.workers()[0]
    victim.suspend()  # it still takes requests from MMS, and answers none
    with ThreadPoolExecutor(max_workers=2) as pool:
        stuck = None
        for _ in range(40):  # MMS gives each request to whichever worker asks first
            sent = pool.submit(served.predict)
            finished, _ = wait([sent], timeout=5)  # the live worker answers in tens of milliseconds
            if not finished:
                stuck = sent
                break
            assert sent.result().status_code == 200
        assert stuck is not None, "no request reached the stopped worker"
        victim.kill()
        answer = stuck.result(timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json() == served.predict().json()


def test_one_killed_worker_leaves_ping_at_200(serve):
    served = serve()
    served.workers()[0].kill()
    for _ in range(10):  # two seconds of observations: the other worker answers all along
        assert served.ping() == 200
        assert served.predict().status_code == 200
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------- drain
def new_request(served: Served) -> int | str:
    """A request sent once the drain began: 503 (nginx still listening, /ping says Draining) or
    "refused" (nginx closed its listening socket): either way the client knows at once."""
    try:
        return served.predict(timeout=10).status_code
    except requests.ConnectionError:
        return "refused"


def test_sigterm_answers_every_request_in_flight_then_exits_0(serve):
    """16 requests accepted and not yet answered when SIGTERM arrives (held there by pausing the
    workers with SIGSTOP, so the count is exact): every one is answered, then serve exits 0."""
    served = serve()
    workers = served.workers()
    answers: list[object] = []

    def client() -> None:
        try:
            answers.append(served.predict(timeout=60).status_code)
        except requests.RequestException as exc:
            answers.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for worker in workers:
        worker.suspend()  # processes our serve started
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: served.in_flight() >= 16, 30, "16 requests accepted by nginx", served)
        began = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "SIGTERM: draining" in served.output(), 10, "the drain", served)
        assert new_request(served) in (503, "refused")  # no new request once draining
    finally:
        for worker in workers:
            worker.resume()
    for thread in threads:
        thread.join(timeout=60)
    assert served.process.wait(timeout=60) == 0
    stopped = time.monotonic() - began
    assert answers == [200] * 16, answers
    assert served.ping() == 0  # nothing listens any more
    print(f"16 in flight at SIGTERM: 16 answered 200, serve exited 0 after {stopped:.2f} s")


def test_a_request_after_the_drain_began_is_refused_not_lost(serve):
    served = serve()
    served.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM: draining" in served.output(), 10, "the drain", served)
    assert new_request(served) in (503, "refused")  # told at once: draining, or nothing listens
    assert served.process.wait(timeout=60) == 0


# ------------------------------------------------------------------------------------- the front
def test_a_form_encoded_body_is_not_parsed_by_mms(serve, inprocess):
    """curl --data-binary without -H sends application/x-www-form-urlencoded: MMS's frontend would
    parse the JPEG as a form (its own 500). nginx hands the bytes to the handler instead."""
    served = serve()
    answer = requests.post(
        f"{served.url}/predictions/squeezenet",
        data=PHOTO,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    [local] = inprocess.predict_bytes([PHOTO])
    assert answer.status_code == 200 and same_prediction(answer.json(), local.body)


def test_a_form_field_flood_costs_mms_nothing(serve):
    """2.3 M fields in 22 MB took MMS alone 20 s and 1.7 GB to parse before the handler ran; here the
    handler reads the bytes (19 MiB of them, under its 20 MiB image limit) and names what they are."""
    served = serve()
    flood = b"&".join(b"f%d=1" % i for i in range(2_300_000))[: 19 * 1024 * 1024]
    answer = requests.post(
        f"{served.url}/predictions/squeezenet",
        data=flood,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    assert answer.status_code == 415 and "plain text" in answer.json()["message"]
    assert served.predict().status_code == 200


def test_only_post_reaches_the_model_and_oversized_bodies_are_413_json(serve):
    served = serve()
    wrong = requests.get(f"{served.url}/predictions/squeezenet", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["code"] == 405
    too_big = requests.post(
        f"{served.url}/predictions/squeezenet", data=b"\0" * (26 * 1024 * 1024), timeout=60
    )
    assert too_big.status_code == 413 and "26214400" in too_big.json()["message"]


def test_a_thousand_unfinished_connections_do_not_stop_service(serve):
    """Slowloris: 1,100 connections that never finish their headers stopped a plain MMS at Debian's
    default 1024 open files. nginx holds them cheaply and closes them after its header timeout."""
    served = serve()
    host, port = served.url.rsplit("/", 1)[-1].rsplit(":", 1)
    held = []
    try:
        for _ in range(1100):
            connection = socket.create_connection((host, int(port)), timeout=5)
            connection.sendall(b"POST /predictions/squeezenet HTTP/1.1\r\nHost: x\r\n")  # never ends
            held.append(connection)
        answer = served.predict(timeout=30)
        assert answer.status_code == 200
    finally:
        for connection in held:
            connection.close()


# ---------------------------------------------------------------------------- the watchdog alone
def test_the_watchdog_waits_out_a_short_outage_then_restarts_then_gives_up():
    dog = Watchdog(["squeezenet"], outage_grace=5.0, max_restarts=2, restart_window=600.0)
    assert dog.observe(Observation(0.0, {"squeezenet": 2}, True)).status == "Starting"
    dog.started = True
    assert dog.observe(Observation(0.0, {"squeezenet": 2}, True)).healthy
    assert dog.observe(Observation(1.0, {"squeezenet": 1}, True)).healthy  # one worker is enough
    outage = dog.observe(Observation(2.0, {"squeezenet": 0}, True))
    assert (outage.status, outage.restart) == ("Unhealthy", False)
    assert not dog.observe(Observation(6.9, {"squeezenet": 0}, True)).restart
    assert dog.observe(Observation(3.0 + 4.5, {"squeezenet": 1}, True)).healthy  # MMS replaced one
    restarts = []
    for at in (10.0, 20.0, 30.0):
        dog.started = True
        dog.observe(Observation(at, {"squeezenet": 0}, True))
        restarts.append(dog.observe(Observation(at + 5.0, {"squeezenet": 0}, True)))
    assert [v.restart for v in restarts] == [True, True, False] and restarts[-1].give_up
    frontend_down = Watchdog(["squeezenet"], started=True).observe(Observation(0, {"squeezenet": 2}, False))
    assert not frontend_down.healthy and "frontend" in frontend_down.reason
    draining = Watchdog(["squeezenet"], started=True, draining=True)
    assert draining.observe(Observation(0, {"squeezenet": 2}, True)).status == "Draining"


@pytest.fixture(autouse=True)
def _not_root_shell_limits() -> None:
    """1,100 sockets need that many descriptors in this test process too."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or (hard == resource.RLIM_INFINITY and soft < 4096):
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))


# ------------------------------------------------------------------- a fresh MMS folder (issue 20)
def test_a_file_planted_in_mms_s_unpacked_model_folder_never_runs(serve, built, tmp_path):
    """MMS 1.1.11 reuses ``$TEMP/models/<sha1>/`` when it exists ("model folder already exists"): a
    file dropped there between two runs of serve would run. Every start empties MMS's temp folder."""
    import zipfile

    first = serve()
    models = first.home / ".mms" / "mms" / "tmp" / "models"
    unpacked = sorted(p.name for p in models.iterdir() if p.is_dir())  # MMS's SHA-1 of what it read
    assert unpacked
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=60) == 0
    marker = tmp_path / "planted-code-ran"
    for name in unpacked:  # the folder MMS would find again: the genuine files plus a sitecustomize.py
        with zipfile.ZipFile(built.archive) as archive:
            archive.extractall(models / name)
        (models / name / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    home = first.home
    command = [str(Path(sys.executable).with_name("squeezenet-mar")), "serve", str(built.archive)]
    command += ["--config", str(home / "config.properties"), "--home", str(home / ".mms")]
    command += ["--metrics-port", str(free_port())]
    command += ["--log-dir", str(home / "logs")]
    with (home / "serve2.out").open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    second = Served(process, first.url, first.management, home, home / "serve2.out")
    try:
        wait_until(lambda: "serving " in second.output(), START_TIMEOUT, "serving", second)
        assert second.predict().status_code == 200
        assert not marker.exists()
        assert not models.exists() or not any(models.rglob("sitecustomize.py"))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
