"""End to end through a real Multi Model Server (Java frontend, Python workers) over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests

import images
from harness import ROOT
from squeezenet_mar.build import BuildOptions, build_archive
from squeezenet_mar.cli import main
from squeezenet_mar.client import predict_one
from squeezenet_mar.inprocess import InProcessService
from squeezenet_mar.server import ModelServer, Registration, free_port
from squeezenet_mar.zoo import publish_archive

pytestmark = pytest.mark.integration

PHOTOS = {
    "jpeg": images.jpeg(500, 375, 0),
    "portrait": images.jpeg(375, 500, 9),
    "png": images.png(),
    "webp": images.encode(images.scene(300, 240, 13), "WEBP", quality=90),
}


def post(server: ModelServer, body: bytes, model: str = "squeezenet", **kwargs) -> requests.Response:
    return requests.post(f"{server.inference_url}/predictions/{model}", data=body, timeout=60, **kwargs)


def batches_of(server: ModelServer, request_ids: list[str], timeout: float = 10.0) -> list[int]:
    """For each request id, the size of the handler call it was part of, from MMS's model metrics
    (``PredictionTime...|#...,requestID:id1,id2,...``); a metric line is flushed asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        sizes = []
        metrics = server.log_dir / "model_metrics.log"
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        for request_id in request_ids:
            calls = [line for line in lines if "PredictionTime" in line and request_id in line]
            ids = calls[0].split("requestID:", 1)[1].split(",timestamp")[0].split(",") if calls else []
            sizes.append(len(ids))
        if all(sizes) or time.monotonic() > deadline:
            return sizes
        time.sleep(0.2)


def same_prediction(a: list[dict], b: list[dict]) -> bool:
    return [x["class"] for x in a] == [y["class"] for y in b] and np.allclose(
        [x["probability"] for x in a], [y["probability"] for y in b], atol=1e-6, rtol=0
    )


@pytest.fixture(params=["mms", "torchserve"])
def served(request) -> tuple[ModelServer, InProcessService]:
    """(server, the in-process handler on its engine): MMS as ``serve`` runs it, and a stock TorchServe
    0.12 (tests/torchserve.py), whose Python has ONNX Runtime and no MXNet."""
    if request.param == "mms":
        return request.getfixturevalue("mms"), request.getfixturevalue("inprocess")
    return request.getfixturevalue("torchserve"), request.getfixturevalue("inprocess_onnxruntime")


def test_ping(mms):
    assert requests.get(f"{mms.inference_url}/ping", timeout=10).json() == {"status": "Healthy"}


def test_list_and_describe(mms, built):
    listed = requests.get(f"{mms.management_url}/models", timeout=10).json()
    assert {"modelName": "squeezenet", "modelUrl": built.archive.name} in listed["models"]
    described = mms.describe("squeezenet")
    assert described["modelVersion"] == "1.1"
    assert described["batchSize"] == 8 and described["maxBatchDelay"] == 50
    assert [w["status"] for w in described["workers"]] == ["READY"]


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_raw_body_and_multipart_answer_like_the_inprocess_handler(served, name):
    server, inprocess = served
    raw = post(server, PHOTOS[name])
    form = requests.post(
        f"{server.inference_url}/predictions/squeezenet", files={"data": ("photo", PHOTOS[name])}, timeout=60
    )
    [local] = inprocess.predict_bytes([PHOTOS[name]])
    for response in (raw, form):
        assert response.status_code == 200
        assert same_prediction(response.json(), local.body)


def test_topk_as_a_multipart_field(served):
    server, _ = served
    response = requests.post(
        f"{server.inference_url}/predictions/squeezenet",
        files={"data": ("photo", PHOTOS["png"])},
        data={"topk": "3"},
        timeout=60,
    )
    assert response.status_code == 200 and len(response.json()) == 3


def test_bad_image_is_a_4xx_with_the_reason(served):
    server, _ = served
    response = post(server, PHOTOS["jpeg"][:3000])
    assert response.status_code == 400
    assert response.json()["code"] == 400 and "truncated" in response.json()["message"]


def test_options_describes_the_prediction_api(mms):
    response = requests.options(f"{mms.inference_url}/predictions/squeezenet", timeout=10)
    assert response.status_code == 200
    assert "squeezenet" in json.dumps(response.json())


def test_unknown_model_is_404(mms):
    response = post(mms, PHOTOS["png"], model="no_such_model")
    assert response.status_code == 404
    assert response.json()["message"] == "Model not found: no_such_model"


def test_concurrent_requests_arrive_as_one_batch_and_each_gets_its_answer(mms, built, inprocess, onnx_model):
    """Registered with batch_size 8 and a long max_batch_delay: 8 simultaneous requests share one
    handler call (MMS's own PredictionTime metric lists the request ids of each call), and every
    client gets the answer for its own image."""
    # An archive of its own: MMS 1.1.11 unpacks one folder per archive *content* and deletes it when
    # any model registered from it is unregistered, which breaks the other model's next workers.
    build_archive(
        BuildOptions(
            model_file=onnx_model,
            model_name="batched",
            output=built.archive.with_name("batched.mar"),
            smoke_test=False,
            progress=False,
        )
    )
    mms.register(Registration(url="batched.mar", name="batched", batch_size=8, max_batch_delay_ms=5000))
    try:
        mms.wait_for_workers("batched", 1)
        bodies = [images.jpeg(320, 240, seed) for seed in range(8)]
        barrier = threading.Barrier(8)

        def send(body: bytes) -> requests.Response:
            barrier.wait()
            return post(mms, body, model="batched")

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(send, bodies))
        assert [r.status_code for r in responses] == [200] * 8
        assert batches_of(mms, [r.headers["x-request-id"] for r in responses]) == [8] * 8
        singles = inprocess.predict_bytes(bodies)
        for response, single in zip(responses, singles, strict=True):
            assert same_prediction(response.json(), single.body)
        assert len({r.json()[0]["class"] for r in responses}) > 1  # not one answer copied to all
    finally:
        deleted = requests.delete(f"{mms.management_url}/models/batched", timeout=60)
    assert deleted.status_code == 200
    assert post(mms, PHOTOS["png"], model="batched").status_code == 404


def test_scale_workers_up_and_down(mms):
    before = mms.worker_pids("squeezenet")
    mms.scale("squeezenet", 2)
    try:
        two = mms.wait_for_workers("squeezenet", 2)
        assert set(before) < set(two)
        with ThreadPoolExecutor(4) as pool:
            codes = [r.status_code for r in pool.map(lambda _: post(mms, PHOTOS["jpeg"]), range(8))]
        assert codes == [200] * 8
    finally:
        mms.scale("squeezenet", 1)
    assert len(mms.wait_for_workers("squeezenet", 1)) == 1


def test_cli_predict_prints_tables_and_fails_on_a_bad_image(mms, tmp_path, capsys):
    good, bad = tmp_path / "photo.jpg", tmp_path / "broken.jpg"
    good.write_bytes(PHOTOS["jpeg"])
    bad.write_bytes(b"%PDF-1.4 not a photo")
    assert main(["predict", str(good), "--server", mms.inference_url, "--topk", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{good}  (") and out[1].split() == ["rank", "probability", "class"]
    assert len(out) == 4
    assert main(["predict", str(good), str(bad), "--server", mms.inference_url, "--json"]) == 7
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["status"] for r in results] == [200, 415]
    assert "PDF" in results[1]["error"] and "1 of 2 image(s)" in captured.err


def test_client_names_an_unreachable_server():
    from squeezenet_mar.errors import ClientError

    with pytest.raises(ClientError, match="cannot reach http://127.0.0.1:9/predictions/squeezenet"):
        predict_one(PHOTOS["png"], url="http://127.0.0.1:9")


def test_mms_loads_the_published_archive_from_a_static_http_zoo(built, tmp_path):
    """publish -> http.server on 127.0.0.1 -> multi-model-server --models squeezenet=http://.../x.mar"""
    zoo = tmp_path / "zoo"
    result = publish_archive(built.archive, zoo)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(zoo)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{result.url}"
    server = ModelServer.on_free_ports(
        tmp_path / "mms",
        tmp_path / "empty_store",
        config=ROOT / "config.properties",
    )
    (tmp_path / "empty_store").mkdir()
    try:
        server.start(models=[f"squeezenet={url}"])
        server.wait_for_workers("squeezenet")  # one per core: config.properties keeps MMS's default
        response = post(server, PHOTOS["jpeg"])
        assert response.status_code == 200 and len(response.json()) == 5
        assert server.describe("squeezenet")["modelUrl"] == url
    finally:
        server.stop()
        httpd.shutdown()
        httpd.server_close()
    assert not server.processes()


def test_serve_command_runs_in_the_foreground_and_stops_on_ctrl_c(built, tmp_path):
    """The README's main job: `squeezenet-mar serve` until SIGINT, then nothing of it is left."""
    import psutil

    inference, management = free_port(), free_port()
    config = tmp_path / "config.properties"
    text = (ROOT / "config.properties").read_text()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{inference}").replace(
        "127.0.0.1:8081", f"127.0.0.1:{management}"
    )
    config.write_text(text)
    command = [
        str(Path(sys.executable).with_name("squeezenet-mar")),
        "serve", str(built.archive),
        "--config", str(config),
        "--batch-size", "4",
        "--home", str(tmp_path / ".mms"),
        "--log-dir", str(tmp_path / "logs"),
        "--metrics-port", str(free_port()),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()
        assert first_line.startswith("serving squeezenet_v1.1.mar as 'squeezenet': batch size 4"), (
            first_line + process.stderr.read()
        )
        descendants = psutil.Process(process.pid).children(recursive=True)
        response = requests.post(
            f"http://127.0.0.1:{inference}/predictions/squeezenet", data=PHOTOS["png"], timeout=60
        )
        assert response.status_code == 200
        assert (
            requests.get(f"http://127.0.0.1:{management}/models/squeezenet", timeout=10).json()["batchSize"]
            == 4
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "stopped" in process.stderr.read()
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert alive == []
        assert (tmp_path / "logs" / "mms_log.log").is_file()
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def test_scaling_to_zero_workers_is_refused_before_mms_sees_it(tmp_path):
    """MMS 1.1.11 hangs the management call and every prediction of a model scaled to 0 and back."""
    from squeezenet_mar.server import ServerError

    with pytest.raises(ServerError, match="unregister it instead"):
        ModelServer(tmp_path, tmp_path).scale("squeezenet", 0)
