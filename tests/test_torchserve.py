"""The unmodified archive on a real TorchServe 0.12 (issue 22), whose Python has CPU torch and ONNX
Runtime but no MXNet: it answers with no setting, picks its engine from what is importable, takes raw
bodies whatever TorchServe's request decoding, and answers KServe's v1 and v2 shapes on the endpoints
KServe's TorchServe wrapper calls. The suites shared with MMS (robustness corpus, batches, README
lines, serving, signing at load) run on TorchServe through their parametrisation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests

import images
from squeezenet_mar.server import Registration
from test_serving import same_prediction
from torchserve import TorchServe, minimal_properties, torchserve_missing

pytestmark = pytest.mark.integration

PHOTOS = [images.jpeg(500, 375, 0), images.png(), images.jpeg(320, 240, 5)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_the_engine_is_onnxruntime_with_one_line_saying_why(torchserve):
    lines = torchserve.model_log_lines("squeezenet: engine onnxruntime, because signature.json prefers mxnet")
    assert len(lines) == len(torchserve.worker_pids("squeezenet")) >= 1, lines  # one per worker
    assert "cannot import" in lines[0] and "No module named 'mxnet'" in lines[0]
    assert torchserve.model_log_lines("TS_DECODE_INPUT_REQUEST was 'true'")  # the worker's default, undone


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"12345", "application/json"),  # decoded, this would reach the handler as the int 12345
        (b'{"url": "http://example.org/kitten.jpg"}', "application/json"),
        (b'"a JSON string"', "application/json"),
        (b"caf\xe9 \x80\x81", "text/plain"),  # not UTF-8
    ],
)
def test_json_and_text_bodies_reach_the_handler_as_bytes(torchserve, body, content_type):
    url = f"{torchserve.inference_url}/predictions/squeezenet"
    before = torchserve.worker_pids("squeezenet")
    response = requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code in (400, 415), response.text
    assert response.json()["code"] == response.status_code
    assert "12345 bytes" not in response.json()["message"]  # never bytes(12345): 12345 zeros
    assert torchserve.worker_pids("squeezenet") == before


def test_kserve_v1_on_torchserves_v1_endpoint(torchserve, inprocess_onnxruntime):
    body = {"instances": [{"data": b64(photo)} for photo in PHOTOS]}
    response = requests.post(
        f"{torchserve.inference_url}/v1/models/squeezenet:predict", json=body, timeout=60
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = inprocess_onnxruntime.predict_bytes(PHOTOS)
    assert len(predictions) == len(PHOTOS)
    for got, want in zip(predictions, expected, strict=True):
        assert same_prediction(got, want.body)


def test_kserve_v2_on_torchserves_v2_endpoint(torchserve, inprocess_onnxruntime):
    body = {
        "id": "f0222600-353f-47df-8d9d-c96d96fa894e",
        "inputs": [
            {"name": "input-0", "shape": [2], "datatype": "BYTES", "data": [b64(p) for p in PHOTOS[:2]]}
        ],
    }
    response = requests.post(f"{torchserve.inference_url}/v2/models/squeezenet/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["id"], answer["model_name"], answer["model_version"]) == (body["id"], "squeezenet", "1.1")
    classes, probabilities = answer["outputs"]
    assert classes["shape"] == probabilities["shape"] == [2, 5]
    for row, want in enumerate(inprocess_onnxruntime.predict_bytes(PHOTOS[:2])):
        got = [
            {"class": c, "probability": p}
            for c, p in zip(
                classes["data"][row * 5 : row * 5 + 5],
                probabilities["data"][row * 5 : row * 5 + 5],
                strict=True,
            )
        ]
        assert same_prediction(got, want.body)


def test_a_bad_kserve_instance_is_a_4xx_in_kserves_error_shape(torchserve):
    body = {"instances": [{"data": b64(PHOTOS[0])}, {"data": b64(b"%PDF-1.4 a document")}]}
    response = requests.post(
        f"{torchserve.inference_url}/v1/models/squeezenet:predict", json=body, timeout=60
    )
    assert response.status_code == 415, response.text
    assert response.json()["error"].startswith("instances[1]: the body is PDF")


# ------------------------------------------------------------------------------ no engine at all
@pytest.fixture
def without_onnxruntime(tmp_path) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import onnxruntime`` fail as on a Python without it."""
    package = tmp_path / "blocked" / "onnxruntime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ImportError("onnxruntime is not installed in this test")\n')
    return package.parent


def test_without_any_engine_the_model_fails_to_load_naming_what_to_install(
    tmp_path, built, without_onnxruntime
):
    missing = torchserve_missing()
    if missing:
        pytest.skip(missing)
    server = TorchServe(
        tmp_path / "torchserve",
        built.archive.parent,
        minimal_properties(enable_model_api="true"),
        env={"PYTHONPATH": str(without_onnxruntime)},
    )
    server.start()
    try:
        response = server.register(Registration(url=built.archive.name, name="no_engine"))
        assert response.status_code == 500, response.text
        lines = server.model_log_lines("ModelLoadError: no inference engine for squeezenet1.1.onnx")
        assert lines, server.model_log.read_text()[-3000:]
        assert "pip install onnxruntime or pip install mxnet==1.9.1" in lines[0]
        assert "onnxruntime is not installed in this test" in lines[0]
    finally:
        server.stop()
    assert not server.processes()


def test_torchserve_answers_like_mms_on_the_wire(torchserve, mms):
    """What a client sees differ between the two servers for the same prediction (README "Other
    servers"): measured here, asserted so that the README's list stays true."""
    answers = {}
    for name, server in (("mms", mms), ("torchserve", torchserve)):
        url = f"{server.inference_url}/predictions/squeezenet"
        answers[name] = requests.post(url, data=PHOTOS[0], timeout=60)
    for response in answers.values():
        assert response.status_code == 200 and "x-request-id" in response.headers
    assert json.loads(answers["mms"].text)[0]["class"] == json.loads(answers["torchserve"].text)[0]["class"]
    unknown = requests.post(f"{torchserve.inference_url}/predictions/nothing", data=PHOTOS[0], timeout=30)
    assert unknown.status_code == 404
