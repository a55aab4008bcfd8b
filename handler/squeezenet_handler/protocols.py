"""KServe's request shapes: unwrapped into plain image requests before the model code sees them, and
the answers wrapped back into KServe's response shapes. Everything else passes through untouched.

KServe's TorchServe runtime runs a wrapper in front of TorchServe (``kserve_wrapper`` in pytorch/serve,
on kserve 0.13's ``Model._http_predict``) that forwards the client's JSON, re-serialised, to
TorchServe's ``/v1/models/NAME:predict`` (protocol v1) or ``/v2/models/NAME/infer`` (v2). TorchServe
hands that body to the handler exactly like a ``/predictions/NAME`` body (``body``, content type
``application/json``; the frontend only adds an ``explain`` header). The shapes::

    v1  {"instances": [{"data": "<base64 image>"}, ...]}
        -> {"predictions": [<the /predictions answer of each image>, ...]}
    v2  {"id": "...", "inputs": [{"name": "...", "shape": [n], "datatype": "BYTES",
                                  "data": ["<base64 image>", ...]}], "parameters": {...}}
        -> {"model_name": ..., "model_version": ..., "id": ...,
            "outputs": [{"name": "classes", "datatype": "BYTES", "shape": [n, k], "data": [...]},
                        {"name": "probabilities", "datatype": "FP64", "shape": [n, k], "data": [...]}]}

How a KServe request is told from an image: its raw body starts with ``{``, parses as a JSON object,
and has the key ``instances`` (v1) or ``inputs`` (v2). Any other body is the model's plain input, as
before: an image, or a 415 for JSON (``{"url": ...}``, malformed JSON, a multipart field holding
JSON). A body with one of the two keys that does not follow its shape gets a 400 naming what is wrong.

Limits: at most :data:`MAX_INSTANCES` images per request (413), and a base64 string whose decoded
bytes would exceed the image byte limit of ``signature.json`` is refused (413) before it is decoded.

Errors: a KServe request is one unit. If one of its images fails, the request gets that image's
status and JSON body, the message prefixed with the image's place (``instances[2]: ...``), plus
KServe's own error field ``error``. The other requests of the server's batch are not affected.
Answers are JSON text ending in a newline, typed ``application/json`` wherever the service types its
own answers (``mms_worker``).

TorchServe's own KServe envelopes (``service_envelope=kserve``/``kservev2``, or ``TS_SERVICE_ENVELOPE``
with ``enable_envvars_config=true``) are not used: they unwrap only the first request of a batch and
turn any per-request status into a 503 for the whole batch. ``squeezenet-mar kserve`` writes a
TorchServe configuration without them.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput, PayloadTooLarge, ServiceError
from .metrics import manifest_version
from .mms_worker import send_content_type_outside_headers
from .responses import JSON_TYPE, json_body

MAX_INSTANCES = 32  # images in one KServe request: each becomes a 600 KB input tensor
_LOOKS_LIKE_AN_OBJECT = re.compile(rb"[ \t\r\n]*\{")
_WHITESPACE = re.compile(r"[ \t\r\n]+")
V2_REQUEST_KEYS = {"id", "inputs", "parameters", "outputs"}
V2_INPUT_KEYS = {"name", "shape", "datatype", "data", "parameters"}

Answerer = Callable[[list[dict[str, Any]], Any], list[Any]]


@dataclass
class KServeRequest:
    """One request in a KServe shape: the image bytes of its instances, and how to answer."""

    protocol: str  # "v1" or "v2"
    images: list[bytes]
    places: list[str]  # where each image sat in the request, for error messages
    request_id: str | None = None  # v2's "id"
    first: int = 0  # index of its first image in the flattened batch
    answers: list[Any] = field(default_factory=list)


def max_base64_chars(max_image_bytes: int) -> int:
    """The longest base64 text (without whitespace) of an image within ``max_image_bytes``."""
    return 4 * -(-max_image_bytes // 3)


def decode_base64(text: Any, place: str, max_image_bytes: int) -> bytes:
    """Standard base64 (RFC 4648, padded; line breaks allowed), checked for size before decoding."""
    if not isinstance(text, str):
        raise BadInput(f"{place}: expected a base64 string, got {type(text).__name__}")
    limit = max_base64_chars(max_image_bytes)
    if len(text) > 2 * limit or len(text) > limit and len(_WHITESPACE.sub("", text)) > limit:
        raise PayloadTooLarge(
            f"{place}: {len(text)} base64 characters, over the {max_image_bytes} bytes an image may have"
        )
    compact = _WHITESPACE.sub("", text)
    try:
        return binascii.a2b_base64(compact.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise BadInput(f"{place}: not standard base64 ({exc})") from None


def parse_kserve(body: Any, max_image_bytes: int) -> KServeRequest | None:
    """The KServe request in a raw body, None when the body is not one (see the module docstring);
    BadInput or PayloadTooLarge when it has a KServe key but not the shape."""
    if not isinstance(body, (bytes, bytearray)) or not _LOOKS_LIKE_AN_OBJECT.match(body[:64]):
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (or nested beyond reason): a plain body
        return None
    if not isinstance(document, dict):
        return None
    has_v1, has_v2 = "instances" in document, "inputs" in document
    if has_v1 and has_v2:
        raise BadInput("a KServe request has 'instances' (protocol v1) or 'inputs' (v2), not both")
    if has_v1:
        return _parse_v1(document, max_image_bytes)
    if has_v2:
        return _parse_v2(document, max_image_bytes)
    return None


def _check_count(count: int, place: str) -> None:
    if count < 1:
        raise BadInput(f"{place}: no image")
    if count > MAX_INSTANCES:
        raise PayloadTooLarge(f"{place}: {count} images, at most {MAX_INSTANCES} in one request")


def _parse_v1(document: dict[str, Any], max_image_bytes: int) -> KServeRequest:
    extra = sorted(set(document) - {"instances"})
    if extra:
        raise BadInput(f"KServe v1 request: unexpected key(s) {extra[:10]}; send {{'instances': [...]}}")
    instances = document["instances"]
    if not isinstance(instances, list):
        raise BadInput("instances: expected a list of {'data': '<base64 image>'}")
    _check_count(len(instances), "instances")
    images, places = [], []
    for number, instance in enumerate(instances):
        place = f"instances[{number}]"
        if not isinstance(instance, dict) or set(instance) != {"data"}:
            got = sorted(instance)[:10] if isinstance(instance, dict) else type(instance).__name__
            raise BadInput(f"{place}: expected {{'data': '<base64 image>'}}, got {got}")
        images.append(decode_base64(instance["data"], f"{place}.data", max_image_bytes))
        places.append(place)
    return KServeRequest("v1", images, places)


def _parse_v2(document: dict[str, Any], max_image_bytes: int) -> KServeRequest:
    extra = sorted(set(document) - V2_REQUEST_KEYS)
    if extra:
        raise BadInput(f"KServe v2 request: unexpected key(s) {extra[:10]}")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadInput("id: expected a string")
    inputs = document["inputs"]
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadInput("inputs: expected one input, {'name', 'shape', 'datatype': 'BYTES', 'data'}")
    tensor = inputs[0]
    missing = sorted({"name", "shape", "datatype", "data"} - set(tensor))
    extra = sorted(set(tensor) - V2_INPUT_KEYS)
    if missing or extra:
        raise BadInput(f"inputs[0]: missing {missing}, unexpected {extra[:10]}")
    if not isinstance(tensor["name"], str):
        raise BadInput("inputs[0].name: expected a string")
    if tensor["datatype"] != "BYTES":
        raise BadInput(f"inputs[0].datatype: expected 'BYTES' (base64 images), got {tensor['datatype']!r}")
    data = tensor["data"]
    if not isinstance(data, list):
        raise BadInput("inputs[0].data: expected a list of base64 images")
    _check_count(len(data), "inputs[0].data")
    if tensor["shape"] not in ([len(data)], [-1]):
        raise BadInput(f"inputs[0].shape: expected [{len(data)}] for {len(data)} image(s)")
    places = [f"inputs[0].data[{number}]" for number in range(len(data))]
    images = [decode_base64(text, place, max_image_bytes) for text, place in zip(data, places, strict=True)]
    return KServeRequest("v2", images, places, request_id=request_id)


class _InstanceContext:
    """The server's context for the flattened batch: plain requests keep theirs (indices mapped back),
    a KServe request's images record their statuses here, to be turned into the request's own."""

    def __init__(self, context: Any, owners: list[int], plain: set[int]) -> None:
        self._context = context
        self._owners = owners  # flat index -> index of the server's request
        self._plain = plain  # flat indices that are a whole plain request
        self.statuses: dict[int, tuple[int, str | None]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    @property
    def request_processor(self) -> list[Any]:
        """Each image's view of its request (headers, ``Accept``): the server's request that holds it."""
        processors = self._context.request_processor
        return [processors[owner] for owner in self._owners]

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if idx in self._plain:
            self._context.set_response_status(code, phrase, self._owners[idx])
        else:
            self.statuses[idx] = (code, phrase)

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        if idx in self._plain:
            return self._context.get_response_status(self._owners[idx])
        return self.statuses.get(idx, (200, None))

    def set_response_content_type(self, idx: int, value: str) -> None:
        if idx in self._plain:
            self._context.set_response_content_type(self._owners[idx], value)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        if idx in self._plain:
            self._context.set_response_header(self._owners[idx], key, value)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._context.get_response_headers(self._owners[idx]) if idx in self._plain else {}

    def get_request_header(self, idx: int, key: str) -> Any:
        return self._context.get_request_header(self._owners[idx], key)

    def get_all_request_header(self, idx: int) -> Any:
        return self._context.get_all_request_header(self._owners[idx])

    def get_request_id(self, idx: int = 0) -> Any:
        return self._context.get_request_id(self._owners[idx])


def _error(context: Any, idx: int, exc: ServiceError, kserve: bool) -> str:
    context.set_response_status(exc.status, exc.reason, idx)
    body = exc.to_json()
    if kserve:
        body["error"] = body["message"]  # KServe's error shape
    return json.dumps(body) + "\n"


def _as_json(answer: Any) -> Any:
    return json.loads(answer) if isinstance(answer, (str, bytes, bytearray)) else answer


def answer_batch(
    data: list[dict[str, Any]], context: Any, answer: Answerer, max_image_bytes: int
) -> list[Any]:
    """``answer(requests, context)`` on the server's batch with every KServe request replaced by its
    images; one answer per request of ``data``, KServe ones in their protocol's response shape."""
    parsed: dict[int, KServeRequest | ServiceError] = {}
    for idx, request in enumerate(data):
        try:
            found = parse_kserve(request.get("body"), max_image_bytes)
        except ServiceError as exc:
            parsed[idx] = exc
            continue
        if found is not None:
            parsed[idx] = found
    if not parsed:
        return answer(data, context)
    flat: list[dict[str, Any]] = []
    owners: list[int] = []
    plain: set[int] = set()
    for idx, request in enumerate(data):
        found = parsed.get(idx)
        if found is None:
            plain.add(len(flat))
            flat.append(request)
            owners.append(idx)
        elif isinstance(found, KServeRequest):
            found.first = len(flat)
            flat.extend({"body": bytearray(image)} for image in found.images)
            owners.extend([idx] * len(found.images))
    inner = _InstanceContext(context, owners, plain)
    flat_answers = answer(flat, inner) if flat else []
    answers: list[Any] = []
    typed = send_content_type_outside_headers()  # as the service types its own answers (mms_worker)
    flat_index = {owner: position for position, owner in enumerate(owners) if position in plain}
    for idx in range(len(data)):
        found = parsed.get(idx)
        if found is None:
            answers.append(flat_answers[flat_index[idx]])
        elif isinstance(found, ServiceError):
            answers.append(_error(context, idx, found, kserve=True))
        else:
            answers.append(_kserve_answer(context, idx, found, flat_answers, inner))
        if found is not None and typed:
            context.set_response_content_type(idx, JSON_TYPE)
    return answers


def _kserve_answer(
    context: Any, idx: int, request: KServeRequest, flat_answers: list[Any], inner: _InstanceContext
) -> Any:
    count = len(request.images)
    mine = flat_answers[request.first : request.first + count]
    for offset, (answer, place) in enumerate(zip(mine, request.places, strict=True)):
        status, phrase = inner.statuses.get(request.first + offset, (200, None))
        if status != 200:  # the first failing image fails the request, with its status and type
            body = _as_json(answer)
            body = body if isinstance(body, dict) else {"message": str(body)}
            message = f"{place}: {body.get('message', '')}"
            context.set_response_status(status, phrase or "", idx)
            kind = str(body.get("type", ServiceError.__name__))
            return json.dumps({"code": status, "type": kind, "message": message, "error": message}) + "\n"
    predictions = [_as_json(answer) for answer in mine]
    if request.protocol == "v1":
        return json_body({"predictions": predictions})
    top = len(predictions[0])
    return json_body(
        {
            "model_name": getattr(context, "model_name", ""),
            "model_version": manifest_version(context),
            "id": request.request_id or context.get_request_id(idx) or "",
            "outputs": [
                {
                    "name": "classes",
                    "datatype": "BYTES",
                    "shape": [count, top],
                    "data": [item["class"] for prediction in predictions for item in prediction],
                },
                {
                    "name": "probabilities",
                    "datatype": "FP64",
                    "shape": [count, top],
                    "data": [item["probability"] for prediction in predictions for item in prediction],
                },
            ],
        }
    )
