"""KServe's request shapes through the handler in-process (issue 22): v1 ``{"instances": [{"data": b64}]}``
and v2 ``{"inputs": [{"datatype": "BYTES", ...}]}`` answered in their response shapes, with the same
predictions as the raw image bytes; every other JSON body still a 415; bad shapes a 400 or 413 naming
the problem, for that request alone. The same requests through a real TorchServe:
tests/test_torchserve.py."""

from __future__ import annotations

import base64
import json

import pytest

import images
from harness import raw
from squeezenet_handler.protocols import MAX_INSTANCES, max_base64_chars

PHOTOS = [images.jpeg(320, 240, seed) for seed in (71, 72, 73)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def v1(*bodies: bytes) -> dict:
    return raw(json.dumps({"instances": [{"data": b64(body)} for body in bodies]}).encode())


def v2(*bodies: bytes, request_id: str | None = "req-1") -> dict:
    document = {"inputs": [{"name": "data", "shape": [len(bodies)], "datatype": "BYTES", "data": []}]}
    document["inputs"][0]["data"] = [b64(body) for body in bodies]
    if request_id is not None:
        document["id"] = request_id
    return raw(json.dumps(document).encode())


def plain_answers(service, bodies: list[bytes]) -> list:
    return [answer.json for answer in service.predict([raw(body) for body in bodies])]


def test_v1_instances_get_their_predictions(service):
    [answer] = service.predict([v1(*PHOTOS)])
    assert answer.status == 200, answer.body
    assert answer.json == {"predictions": plain_answers(service, PHOTOS)}


def test_v2_inputs_get_classes_and_probabilities(service):
    [answer] = service.predict([v2(*PHOTOS[:2])])
    assert answer.status == 200, answer.body
    body = answer.json
    assert body["id"] == "req-1" and body["model_name"] == service.context.model_name
    classes, probabilities = body["outputs"]
    expected = plain_answers(service, PHOTOS[:2])
    assert classes == {
        "name": "classes",
        "datatype": "BYTES",
        "shape": [2, 5],
        "data": [item["class"] for answer in expected for item in answer],
    }
    assert probabilities == {
        "name": "probabilities",
        "datatype": "FP64",
        "shape": [2, 5],
        "data": [item["probability"] for answer in expected for item in answer],
    }


def test_kserve_answers_end_like_and_are_typed_like_plain_ones(service):
    """One trailing newline, and the content type the service gives its own answers (where it is safe
    to send one: see squeezenet_handler.mms_worker), on successes and errors alike."""
    [plain] = service.predict([raw(PHOTOS[0])])
    for request in (v1(PHOTOS[0]), v2(PHOTOS[0]), v1(b"%PDF-1.4 not an image"), raw(b'{"instances": 5}')):
        [answer] = service.predict([request])
        assert answer.headers == plain.headers
        if answer.status != 200:  # (InProcessService hands successes over parsed)
            assert answer.body.endswith("}\n") and not answer.body.endswith("\n\n")


def test_a_v2_request_without_an_id_gets_the_servers_request_id(service):
    [answer] = service.predict([v2(PHOTOS[0], request_id=None)])
    assert answer.json["id"] == "inprocess-0"


def test_line_broken_base64_is_accepted(service):
    wrapped = "\n".join(b64(PHOTOS[0])[i : i + 76] for i in range(0, len(b64(PHOTOS[0])), 76))
    [answer] = service.predict([raw(json.dumps({"instances": [{"data": wrapped}]}).encode())])
    assert answer.json == {"predictions": plain_answers(service, PHOTOS[:1])}


@pytest.mark.parametrize(
    "body",
    [
        b'{"url": "http://example.org/kitten.jpg"}',  # JSON, but not a KServe shape
        b'{"instances": [',  # malformed: not JSON at all
        b'[{"data": "aGVsbG8="}]',  # a JSON array
        b'  {"inputs" : 5',
    ],
)
def test_other_json_bodies_are_still_a_415(service, body):
    [answer] = service.predict([raw(body)])
    assert answer.status == 415 and "JSON" in answer.json["message"], answer.body


def test_a_kserve_shape_as_a_multipart_field_is_not_unwrapped(service):
    """Only a raw body can be a KServe request; the multipart field 'data' is an image or nothing."""
    field = v1(PHOTOS[0])["body"]
    [answer] = service.predict([{"data": field}])
    assert answer.status == 415


LIMIT_CHARS = max_base64_chars(20 * 1024 * 1024)

# name -> (document, status, words the message must contain)
BAD_SHAPES = {
    "both_protocols": ({"instances": [], "inputs": []}, 400, "not both"),
    "instances_not_a_list": ({"instances": {"data": "x"}}, 400, "instances: expected a list"),
    "no_instances": ({"instances": []}, 400, "instances: no image"),
    "instance_with_another_key": (
        {"instances": [{"data": "aGk=", "target": 0}]},
        400,
        "instances[0]: expected",
    ),
    "instance_a_bare_string": ({"instances": ["aGk="]}, 400, "instances[0]: expected"),
    "extra_top_level_key": ({"instances": [{"data": "aGk="}], "signature_name": "x"}, 400, "unexpected key"),
    "data_not_a_string": ({"instances": [{"data": [1, 2]}]}, 400, "instances[0].data: expected a base64"),
    "data_not_base64": (
        {"instances": [{"data": "not base64!"}]},
        400,
        "instances[0].data: not standard base64",
    ),
    "data_urlsafe_base64": ({"instances": [{"data": "_-8="}]}, 400, "not standard base64"),
    "data_over_the_image_limit": (
        {"instances": [{"data": "A" * (LIMIT_CHARS + 4)}]},
        413,
        "base64 characters",
    ),
    "too_many_instances": (
        {"instances": [{"data": "aGk="}] * (MAX_INSTANCES + 1)},
        413,
        f"at most {MAX_INSTANCES}",
    ),
    "v2_two_inputs": ({"inputs": [{}, {}]}, 400, "inputs: expected one input"),
    "v2_missing_fields": ({"inputs": [{"name": "data"}]}, 400, "missing ['data', 'datatype', 'shape']"),
    "v2_tensor_datatype": (
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
        400,
        "expected 'BYTES'",
    ),
    "v2_wrong_shape": (
        {"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES", "data": ["aGk="]}]},
        400,
        "inputs[0].shape: expected [1]",
    ),
    "v2_id_not_a_string": (
        {"id": 7, "inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}]},
        400,
        "id: expected a string",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_SHAPES))
def test_a_kserve_document_of_the_wrong_shape_is_named(service, name):
    document, status, words = BAD_SHAPES[name]
    [answer] = service.predict([raw(json.dumps(document).encode())])
    assert answer.status == status, answer.body
    body = answer.json
    assert body["code"] == status and words in body["message"] and body["error"] == body["message"], body


def test_a_failing_image_fails_its_kserve_request_with_its_place_and_type(service):
    [answer] = service.predict([v1(PHOTOS[0], PHOTOS[1][:2000], b"%PDF-1.4 not an image")])
    assert answer.status == 400, answer.body
    assert answer.json["type"] == "BadInput"
    assert answer.json["message"].startswith("instances[1]: ") and "truncated" in answer.json["message"]
    [answer] = service.predict([v2(PHOTOS[0], b"%PDF-1.4 not an image")])
    assert answer.status == 415 and answer.json["message"].startswith("inputs[0].data[1]: "), answer.body


def test_kserve_and_plain_requests_in_one_batch_each_get_their_own_answer(service):
    """The server's batch: plain, v1 of two, a bad plain one, a bad v1, v2: statuses stay per request."""
    batch = [
        raw(PHOTOS[0]),
        v1(PHOTOS[1], PHOTOS[2]),
        raw(b"%PDF-1.4 not an image"),
        v1(PHOTOS[0], PHOTOS[2][:2000]),
        v2(PHOTOS[2]),
        raw(json.dumps({"instances": "x"}).encode()),
        raw(PHOTOS[1]),
    ]
    answers = service.predict(batch)
    assert [a.status for a in answers] == [200, 200, 415, 400, 200, 400, 200]
    expected = plain_answers(service, PHOTOS)
    assert answers[0].json == expected[0] and answers[6].json == expected[1]
    assert answers[1].json == {"predictions": expected[1:]}
    assert answers[3].json["message"].startswith("instances[1]: ")
    assert answers[4].json["outputs"][0]["data"] == [item["class"] for item in expected[2]]
