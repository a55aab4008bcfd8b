"""The service: MMS's entry point ``handle``, the four hooks, and one answer per request.

State lives on :class:`SqueezeNetService` (signature, labels, engine); the stages are the functions of
``images``, ``engines`` and ``postprocessing``. A bad request gets its own 4xx with a JSON body naming
the cause; the rest of the batch is answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import torchserve_worker
from .cores import CoreTokens
from .engines import Engine, choose_engine, core_tokens, default_threads, load_engine
from .errors import BadInput, InferenceError, ModelLoadError, ServiceError, UnsupportedMediaType
from .health import announce_loaded
from .images import SEND_AN_IMAGE, decode_image, normalize, prepare_decoding, resize_and_crop
from .load_failures import earlier_refusal, forget_refusal, in_server_worker, remember_refusal
from .metrics import NO_METRICS, Metrics, manifest_version, start_metrics
from .mms_worker import send_content_type_outside_headers, take_raw_request_bodies
from .postprocessing import softmax, top_k
from .protocols import answer_batch
from .responses import JSON_TYPE, check_accept, json_body, request_headers
from .signature import SIGNATURE_FILE, SYNSET_FILE, Signature, read_labels, read_signature
from .trust import check_archive_hashes, check_folder_ownership, check_signature

logger = logging.getLogger(__name__)


def parse_topk(value: Any, default: int, num_classes: int) -> int:
    """The ``topk`` field: ASCII digits only (``int()`` would also take "1_0" and Arabic-Indic digits)."""
    if value is None:
        return default
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]{1,9}", text) or not 1 <= int(text) <= num_classes:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise BadInput(f"topk must be a whole number from 1 to {num_classes}, got {shown!r}")
    return int(text)


MAX_FIELDS_NAMED = 10  # an error lists at most this many of the request's field names


def request_payload(request: dict[str, Any], field: str) -> bytes:
    """The image bytes: the multipart field named like the model input, or the raw body.

    MMS parses ``application/json`` bodies and decodes ``text/*`` ones in the worker unless
    ``MMS_DECODE_INPUT_REQUEST=false``, which :func:`handle` sets for its own worker at load time;
    already-parsed values (a handler run some other way) are still answered 415, never crashed on.
    """
    for key in (field, "body"):
        value = request.get(key)
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            raise UnsupportedMediaType(f"the body is JSON, not an image: {SEND_AN_IMAGE}")
        if isinstance(value, str):
            value = value.encode("utf-8")
        return bytes(value)
    names = sorted(request)
    shown = ", ".join(repr(name[:40]) for name in names[:MAX_FIELDS_NAMED])
    more = f" and {len(names) - MAX_FIELDS_NAMED} more" if len(names) > MAX_FIELDS_NAMED else ""
    raise BadInput(
        f"no image in the request: send it as the raw body or as the multipart field {field!r}"
        + (f" (got fields {shown}{more})" if names else "")
    )


class SqueezeNetService:
    """State only: signature, labels, engine. The stages are the module-level functions above."""

    def __init__(self) -> None:
        self.signature: Signature | None = None
        self.labels: list[str] = []
        self.engine: Engine | None = None
        self.cores: CoreTokens | None = None  # shared with the other workers (None: fixed threads)
        self.metrics: Metrics = NO_METRICS  # recording only under a supervisor that asks (metrics.py)

    @property
    def initialized(self) -> bool:
        return self.engine is not None

    def initialize(self, context: Any) -> None:
        started = time.perf_counter()
        props = context.system_properties
        model_dir = Path(props["model_dir"])
        check_folder_ownership(model_dir)  # no other local user made it or can change it
        signer = check_signature(model_dir)  # origin, when the operator names a trusted key
        check_archive_hashes(model_dir)  # consistency
        sig = read_signature(model_dir / SIGNATURE_FILE)
        sig = replace(sig, preprocessing=prepare_decoding(sig.preprocessing))  # this process's memory
        labels = read_labels(model_dir / SYNSET_FILE)
        if len(labels) != sig.num_classes:
            raise ModelLoadError(
                f"{SYNSET_FILE}: {len(labels)} labels, "
                f"but {SIGNATURE_FILE} declares {sig.num_classes} classes"
            )
        engine_name = choose_engine(sig, model_dir, default_threads())  # logs which and why
        max_batch = max(1, int(props.get("batch_size") or 1))
        self.cores = core_tokens()
        engine = load_engine(engine_name, model_dir, sig, default_threads(), self.cores)
        crop = sig.preprocessing.crop_size
        with self.working():
            probe = engine(np.zeros((1, 3, crop, crop), dtype=np.float32))
        if probe.shape != (1, len(labels)):
            raise ModelLoadError(
                f"model answers {probe.shape[1]} classes, but {SYNSET_FILE} has {len(labels)} labels"
            )
        self.signature, self.labels, self.engine = sig, labels, engine
        name = getattr(context, "model_name", "") or model_dir.name
        announce_loaded(name)  # for a supervisor, if any
        self.metrics = start_metrics(name, manifest_version(context))
        self.metrics.loaded(time.perf_counter() - started, signer is not None)
        sharing = f"shared with other workers as worker {self.cores.worker}" if self.cores else "fixed"
        logger.info(
            "squeezenet: engine %s, %d classes, batch <= %d, up to %d threads (%s), loaded in %.0f ms",
            engine.name,
            len(labels),
            max_batch,
            engine.threads,
            sharing,
            (time.perf_counter() - started) * 1000,
        )

    def working(self) -> contextlib.AbstractContextManager[None]:
        """This worker's home core, held while it works on a batch (see ``cores``)."""
        return self.cores.working() if self.cores else contextlib.nullcontext()

    def preprocess(self, request: dict[str, Any]) -> np.ndarray:
        pre = self._signature().preprocessing
        payload = request_payload(request, pre.input_name)
        with self.metrics.stage("decode"):  # images.preprocess_image, timed stage by stage
            image = decode_image(payload, pre)
        with self.metrics.stage("preprocess"):
            return normalize(resize_and_crop(image, pre.resize_shorter_side, pre.crop_size), pre)

    def inference(self, batch: np.ndarray) -> np.ndarray:
        if self.engine is None:
            raise ModelLoadError("the model is not loaded")
        with self.metrics.stage("inference"):
            return self.engine(np.ascontiguousarray(batch, dtype=np.float32))

    def postprocess(self, scores: np.ndarray, topks: Sequence[int]) -> list[list[dict[str, Any]]]:
        with self.metrics.stage("postprocess"):
            probabilities = softmax(scores)
            return [top_k(p, self.labels, k) for p, k in zip(probabilities, topks, strict=True)]

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        """One answer per request; a failed request gets its own status, the others their predictions."""
        with self.metrics.handling(data, context), self.working():
            limit = self._signature().preprocessing.max_image_bytes  # KServe's shapes: protocols.py
            return answer_batch(data, context, self._answers, limit)

    def _answers(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        sig = self._signature()
        answers: list[Any] = [None] * len(data)
        tensors: list[np.ndarray] = []
        topks: list[int] = []
        good: list[int] = []
        for idx, request in enumerate(data):
            try:
                check_accept(request_headers(context, idx))  # we answer JSON only: 406 otherwise
                k = parse_topk(request.get("topk"), sig.topk, sig.num_classes)
                tensor = self.preprocess(request)
            except ServiceError as exc:
                logger.info("request %d rejected (%d): %s", idx, exc.status, exc)
                answers[idx] = _error_answer(context, idx, exc)
                continue
            except Exception as exc:  # a bug on one request's path fails that request alone
                logger.exception("request %d failed", idx)
                error = ServiceError(f"the service failed on this request: {type(exc).__name__}: {exc}")
                answers[idx] = _error_answer(context, idx, error)
                continue
            good.append(idx)
            topks.append(k)
            tensors.append(tensor)
        if good:
            try:
                predictions = self.postprocess(self.inference(np.stack(tensors)), topks)
            except ServiceError as exc:
                return _answer_all(context, answers, good, exc)
            except Exception as exc:  # an engine bug must not kill the worker (see handle)
                logger.exception("inference failed for a batch of %d", len(good))
                return _answer_all(context, answers, good, InferenceError(f"inference failed: {exc!r}"))
            for idx, prediction in zip(good, predictions, strict=True):
                answers[idx] = _answer(context, idx, json_body(prediction))
        return answers

    def _signature(self) -> Signature:
        if self.signature is None:
            raise ModelLoadError("the model is not loaded")
        return self.signature


def _error_answer(context: Any, idx: int, exc: ServiceError) -> str:
    """The request's own status and a JSON body naming the cause, on one line."""
    context.set_response_status(exc.status, exc.reason, idx)
    return _answer(context, idx, json.dumps(exc.to_json()) + "\n")


def _answer(context: Any, idx: int, body: str) -> str:
    """``body``, declared ``application/json`` where that is safe: MMS 1.1.11 sends a per-request
    content type in a header map its frontend mis-decodes in batched replies, so the type is set only
    once ``mms_worker`` moved it out of that map (see there). Without it, bodies are JSON all the same."""
    if _content_type_is_safe:
        context.set_response_content_type(idx, JSON_TYPE)
    return body


_service = SqueezeNetService()


def _answer_all(context: Any, answers: list[Any], indices: list[int], exc: ServiceError) -> list[Any]:
    for idx in indices:
        answers[idx] = _error_answer(context, idx, exc)
    return answers


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """MMS entry point: ``data is None`` at load time, else one answer per request in ``data``.

    Never raises for a batch: when ``handle`` raises with more than one request, MMS 1.1.11 answers
    one request with the intended status and fails the others with 500 "Worker died" (a
    ConcurrentModificationException in the frontend), restarting the worker. Whole-batch failures
    are therefore answered per request too.
    """
    global _content_type_is_safe, _refusal
    if data is None:
        take_raw_request_bodies()
        torchserve_worker.take_raw_request_bodies()
        _content_type_is_safe = (
            send_content_type_outside_headers() or torchserve_worker.content_type_is_safe()
        )
        if not _service.initialized:
            _load(context)
        return None
    if not _service.initialized:
        error = ModelLoadError(f"model not loaded: {_refusal}" if _refusal else "model not loaded")
        return _answer_all(context, [None] * len(data), list(range(len(data))), error)
    return _service.handle(data, context)


_content_type_is_safe = False
_refusal: str | None = None  # why this worker came up without its model (load_failures)


def _load(context: Any) -> None:
    """Initialize; a failed load raises the first time in its model folder and, in a server's worker,
    answers 503 naming the cause from the second time on (see ``load_failures``)."""
    global _refusal
    model_dir = Path(context.system_properties["model_dir"])
    try:
        _service.initialize(context)
    except ModelLoadError as exc:
        earlier = earlier_refusal(model_dir) if in_server_worker() else None
        if earlier is None:
            if in_server_worker():
                remember_refusal(model_dir, str(exc))
            raise
        _refusal = str(exc)
        logger.error(
            "squeezenet: model not loaded again (%s); this worker answers every request 503 with the cause "
            "(MMS retries a failed load forever and reports the worker READY)",
            exc,
        )
        return
    forget_refusal(model_dir)
