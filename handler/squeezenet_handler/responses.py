"""What an answer looks like on the wire: JSON, one trailing newline, ``Content-Type:
application/json``, and a 406 for a client that accepts no JSON.

The bodies are strings the server sends as they are (MMS and TorchServe would otherwise ``json.dumps``
a list themselves, with no newline). The content type is set per request through the server's
context; on MMS 1.1.11 that is safe only with ``mms_worker.send_content_type_outside_headers``.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import NotAcceptable

JSON_TYPE = "application/json"
_ACCEPTS_JSON = {"*/*", "application/*", "application/json"}


def json_body(value: Any) -> str:
    """``value`` as the body: indented like MMS's own JSON, ending in a newline."""
    return json.dumps(value, indent=2) + "\n"


def accepts_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits ``application/json``: absent or empty, or a media range
    ``*/*``, ``application/*`` or ``application/json`` whose ``q`` is not 0 (RFC 9110, 12.5.1)."""
    if accept is None or not accept.strip():
        return True
    for media_range in accept.split(","):
        kind, *parameters = (part.strip() for part in media_range.split(";"))
        if kind.lower() not in _ACCEPTS_JSON:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def request_headers(context: Any, idx: int) -> dict[str, Any]:
    """Request ``idx``'s headers as the server's context holds them (MMS and TorchServe: a
    ``RequestProcessor`` per request); empty when the context has none."""
    try:
        return dict(context.request_processor[idx].get_request_properties())
    except (AttributeError, IndexError, KeyError, TypeError):
        return {}


def request_header(headers: dict[str, Any] | None, name: str) -> str | None:
    """A request header by name, whatever its case. Servers mix the request's parameters into the same
    map (each a dict of its own content type): only string values are headers."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


def check_accept(headers: dict[str, Any] | None) -> None:
    """NotAcceptable (406) when the client's Accept header admits no JSON, the only thing we answer."""
    accept = request_header(headers, "Accept")
    if not accepts_json(accept):
        shown = accept if accept is not None and len(accept) <= 100 else f"{(accept or '')[:100]}..."
        raise NotAcceptable(
            f"the answer is {JSON_TYPE}, which the request's Accept header ({shown!r}) does not accept"
        )
