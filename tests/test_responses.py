"""What every answer looks like on the wire, on the server `serve` configures and on a stock MMS:
JSON with ``Content-Type: application/json`` and a trailing newline, batched or not (MMS 1.1.11 fails
whole batches when a handler sets response headers: ``mms_worker`` works around it), a 406 for a
client that accepts no JSON (SageMaker's contract), and a model that cannot load made visible."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import images
from harness import raw
from squeezenet_handler.responses import accepts_json

PHOTO = images.jpeg(500, 375, 31)


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),
        ("", True),
        ("*/*", True),
        ("application/json", True),
        ("application/*;q=0.2", True),
        ("text/html,application/xhtml+xml,*/*;q=0.8", True),  # a browser
        ("text/csv", False),  # SageMaker's example of a type we cannot produce
        ("application/json;q=0, text/csv", False),
        ("image/png", False),
        ("application/json;q=abc", False),
    ],
)
def test_accept_header_rules(accept, ok):
    assert accepts_json(accept) is ok


def test_a_client_accepting_no_json_gets_406_for_that_request_alone(service):
    answers = service.predict([raw(PHOTO), raw(PHOTO)], headers=[{"Accept": "text/csv"}, {"accept": "*/*"}])
    assert [a.status for a in answers] == [406, 200]
    assert "text/csv" in answers[0].json["message"] and answers[0].json["type"] == "NotAcceptable"


@pytest.mark.integration
@pytest.mark.parametrize("server_name", ["mms", "plain_mms", "torchserve"])
def test_answers_are_json_with_its_content_type_and_a_final_newline(request, server_name):
    server = request.getfixturevalue(server_name)
    url = f"{server.inference_url}/predictions/squeezenet"
    good = requests.post(url, data=PHOTO, timeout=60)
    bad = requests.post(url, data=b"just text", timeout=60)
    for answer, status in ((good, 200), (bad, 415)):
        assert answer.status_code == status
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.text.endswith("}\n") or answer.text.endswith("]\n")
        json.loads(answer.text)
    csv = requests.post(url, data=PHOTO, headers={"Accept": "text/csv"}, timeout=60)
    assert csv.status_code == 406 and csv.json()["code"] == 406


@pytest.mark.integration
def test_batches_of_eight_with_content_types_never_fail(mms):
    """The bug mms_worker avoids: a batched reply whose header map is split across socket reads
    failed all 8 requests with 500 in about 1 run in 5. 15 batches of 8 here, every answer 200."""
    url = f"{mms.inference_url}/predictions/squeezenet"
    bodies = [images.jpeg(320 + 16 * i, 240, i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(15):
            answers = list(pool.map(lambda body: requests.post(url, data=body, timeout=60), bodies))
            assert [a.status_code for a in answers] == [200] * 8
            assert {a.headers["Content-Type"] for a in answers} == {"application/json"}


@pytest.mark.integration
def test_a_stock_mms_with_a_wrong_key_answers_503_naming_the_cause(tmp_path, built):
    """A stock MMS loads its --models at start-up and retries a failed load forever, reporting the
    worker READY: requests used to wait until the client gave up. From the second attempt on, the
    worker comes up without the model and answers every request 503 with the cause, at once."""
    from keys import make_key
    from squeezenet_mar.build import sign_archive
    from squeezenet_mar.server import ModelServer, free_port, write_properties
    from squeezenet_mar.signatures import SigningKey

    publisher, wrong = make_key(tmp_path, "publisher"), make_key(tmp_path, "someone-else")
    store = tmp_path / "store"
    signed = sign_archive(built.archive, SigningKey(publisher.private), store / built.archive.name).archive
    config = tmp_path / "config.properties"
    ports = {f"{api}_address": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management")}
    write_properties(config, ports)
    env = {"SQUEEZENET_TRUSTED_KEY": str(wrong.public)}
    server = ModelServer(tmp_path / "mms", store, config=config, env=env, lean_logging=False)
    server.start(models=[f"squeezenet={signed.name}"])
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline:
            answer = requests.post(f"{server.inference_url}/predictions/squeezenet", data=PHOTO, timeout=10)
            if answer.status_code == 503 and "signature" in answer.json().get("message", ""):
                break
            time.sleep(0.5)
        assert answer is not None and answer.status_code == 503, answer.text if answer else None
        message = answer.json()["message"]
        assert message.startswith("model not loaded: ") and "wrong key" in message
        log = (server.log_dir / "mms_log.log").read_text(errors="replace")
        assert "refusing to load" in log
    finally:
        server.stop()
