"""Where a served request's worker CPU goes: each stage of MMS's Python worker and of the handler,
timed with ``time.thread_time`` in one process, one image at a time.

The worker's path for one request, as ``mms/model_service_worker.py`` runs it:

- ``protocol_decode``: ``retrieve_msg`` reads the frontend's frame from the socket (a real socket
  pair here, the frame written as MMS's Java frontend writes it);
- ``Service.predict``: MMS's request bookkeeping, the handler, ``create_predict_response`` (which
  serialises the answer with ``json.dumps(indent=2)`` and frames it);
- ``metrics_emit``: ``emit_metrics`` logs the ``PredictionTime`` line the frontend reads back.

Inside ``Service.predict`` the handler's own stages are timed one by one (image decode, resize and
crop, normalise, inference, postprocess) together with MMS's JSON encoding of the answer; what they
leave of ``Service.predict`` is reported as ``predict_glue`` (request bookkeeping, the handler's
dispatch and the response framing). The engine runs with the threads this process was given
(``SQUEEZENET_THREADS``), 1 by default: the share of a core a busy served worker gets.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import struct
import time
from functools import partial
from pathlib import Path
from typing import Any

STAGES = (
    "protocol_decode",
    "image_decode",
    "resize_crop",
    "normalise",
    "inference",
    "postprocess",
    "json_encode",
    "predict_glue",
    "metrics_emit",
)


def _string(value: bytes) -> bytes:
    return struct.pack("!i", len(value)) + value


def predict_frame(request_id: str, body: bytes, content_type: str = "image/jpeg") -> bytes:
    """One request as MMS 1.1.11's frontend sends it to a worker (``otf_message_handler`` reads it)."""
    frame = b"I" + _string(request_id.encode())
    frame += _string(b"Content-Type") + _string(content_type.encode()) + struct.pack("!i", -1)
    frame += _string(b"body") + _string(content_type.encode()) + _string(body) + struct.pack("!i", -1)
    return frame + struct.pack("!i", -1)  # end of the batch


def _timed(call: Any, *args: Any) -> tuple[Any, float]:
    started = time.thread_time()
    result = call(*args)
    return result, time.thread_time() - started


def measure(model_dir: Path, image: bytes, iterations: int, warmup: int = 5) -> dict[str, Any]:
    """Mean CPU milliseconds per request of every stage, over ``iterations`` requests of ``image``."""
    from mms.protocol.otf_message_handler import retrieve_msg
    from mms.service import Service, emit_metrics

    from squeezenet_mar.inprocess import InProcessService

    inprocess = InProcessService(model_dir)
    service_module = inprocess.handler_module("service")
    images = inprocess.handler_module("images")
    handler = service_module._service  # the loaded SqueezeNetService behind ``handle``
    pre, topk = handler.signature.preprocessing, handler.signature.topk
    service = Service(model_dir.name, str(model_dir), None, inprocess.module.handle, None, 1)
    service.context.__dict__.update(inprocess.context.__dict__)  # the context ``handle`` was loaded with
    logging.getLogger("mms.service").setLevel(logging.INFO)

    totals = dict.fromkeys(STAGES, 0.0)
    predict_total = 0.0
    frontend, worker = socket.socketpair()
    try:
        for i in range(warmup + iterations):
            counted = i >= warmup
            frontend.sendall(predict_frame(f"request-{i}", image))
            (_, batch), decode_s = _timed(retrieve_msg, worker)
            response, predict_s = _timed(service.predict, batch)
            if struct.unpack("!i", response[:4])[0] != 200:
                raise RuntimeError(f"the handler did not answer 200: {bytes(response[:200])!r}")
            with contextlib.redirect_stdout(io.StringIO()):
                _, metrics_s = _timed(emit_metrics, service.context.metrics.store)
            # The handler's stages, one by one, on the same bytes.
            decoded, image_s = _timed(images.decode_image, image, pre)
            cropped, crop_s = _timed(images.resize_and_crop, decoded, pre.resize_shorter_side, pre.crop_size)
            tensor, normalise_s = _timed(images.normalize, cropped, pre)
            scores, inference_s = _timed(handler.inference, tensor[None])
            answers, post_s = _timed(handler.postprocess, scores, [topk])
            _, json_s = _timed(partial(json.dumps, indent=2), answers[0])  # as create_predict_response
            if not counted:
                continue
            stage_s = (decode_s, image_s, crop_s, normalise_s, inference_s, post_s, json_s)
            for name, seconds in zip(STAGES[:7], stage_s, strict=True):
                totals[name] += seconds
            totals["metrics_emit"] += metrics_s
            predict_total += predict_s
    finally:
        frontend.close()
        worker.close()
    per_request = {name: 1e3 * seconds / iterations for name, seconds in totals.items()}
    inside_predict = sum(per_request[name] for name in STAGES[1:7])
    per_request["predict_glue"] = max(0.0, 1e3 * predict_total / iterations - inside_predict)
    return {
        "iterations": iterations,
        "image_bytes": len(image),
        "threads": handler.engine.threads,
        "engine": handler.engine.name,
        "cpu_ms_per_request": {name: round(per_request[name], 3) for name in STAGES},
        "total_cpu_ms": round(sum(per_request.values()), 3),
        "service_predict_cpu_ms": round(1e3 * predict_total / iterations, 3),
    }
