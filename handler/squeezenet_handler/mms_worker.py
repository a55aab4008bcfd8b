"""What the handler adjusts in the MMS worker process it runs in, at load, so that the archive behaves
the same on any MMS (a stock one, SageMaker's, a container's), whatever that MMS's configuration.

1. Raw request bodies. MMS's worker parses ``application/json`` bodies and decodes ``text/*`` ones
   before the handler runs unless ``MMS_DECODE_INPUT_REQUEST`` is ``false``; the frontend sets that
   variable from its ``decode_input_request`` setting (default true), and a malformed body then kills
   the worker (``JSONDecodeError``/``UnicodeDecodeError`` in ``mms/protocol/otf_message_handler.py``).
   The worker reads the variable again for every request, in this process, so setting it here works.

2. A response content type that survives batching. MMS 1.1.11's ``Context.set_response_content_type``
   stores the type in the per-request header map, and the worker sends that map beside the type's own
   field. The frontend decodes the map with ``CodecUtils.readMap``, which hands the "buffer under-run"
   sentinel (-3) to ``readString`` when a reply is split across socket reads: every request of the
   batch gets a 500 (``CorruptedFrameException: Invalid message size: -3``, about 1 batch of 8 in 5).
   The type's own field is decoded safely (``readLength`` waits for more bytes), and the frontend sets
   ``Content-Type`` from it (``Job.response``). So the worker's encoder is wrapped to leave
   ``content-type`` out of the map it sends: the type still arrives, the map stays empty.

Nothing happens outside MMS's worker (no ``mms`` package, or an encoder of another shape): then
:func:`send_content_type_outside_headers` says False and the handler sets no content type.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_CONTENT_TYPE = "content-type"


def take_raw_request_bodies() -> None:
    """Make this worker hand every request body to the handler as bytes (see the module docstring)."""
    previous = os.environ.get("MMS_DECODE_INPUT_REQUEST")
    os.environ["MMS_DECODE_INPUT_REQUEST"] = "false"
    if previous != "false":
        logger.info("request bodies reach the handler as bytes (MMS_DECODE_INPUT_REQUEST was %r)", previous)


def send_content_type_outside_headers() -> bool:
    """Wrap MMS 1.1.11's response header encoder so that ``content-type`` travels only in its own field
    (see the module docstring). True when the content type can be set safely in this process."""
    try:
        from mms.protocol import otf_message_handler as protocol
    except ImportError:
        return False
    encode = getattr(protocol, "encode_response_headers", None)
    if getattr(encode, "_squeezenet_wrapped", False):
        return True
    if encode is None or list(inspect.signature(encode).parameters) != ["resp_hdr_map"]:
        logger.info("MMS's worker protocol is not 1.1.11's: answers carry no content type")
        return False
    protocol.encode_response_headers = _without_content_type(encode)
    return True


def _without_content_type(encode: Callable[[dict[str, str]], Any]) -> Callable[[dict[str, str]], Any]:
    def encode_response_headers(resp_hdr_map: dict[str, str]) -> Any:
        return encode({k: v for k, v in resp_hdr_map.items() if k.lower() != _CONTENT_TYPE})

    encode_response_headers._squeezenet_wrapped = True  # type: ignore[attr-defined]
    return encode_response_headers
