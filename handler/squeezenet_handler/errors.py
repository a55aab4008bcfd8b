"""The service's errors. The HTTP status lives on the class; ``service.handle`` converts them in one
place, per request::

    ServiceError                 500  a request's own unexpected failure
    +-- BadInput                 400  undecodable, empty, truncated, missing field, bad parameter
    +-- NotAcceptable            406  the request's Accept header admits no JSON
    +-- PayloadTooLarge          413  too many bytes, pixels, decode memory or JPEG scans
    +-- UnsupportedMediaType     415  a recognisable non-image (PDF, HTML, SVG, JSON, text, ...)
    +-- InferenceError           500  the engine failed on a batch (every request of it gets this)
    +-- ModelLoadError           503  the archive's files are missing or inconsistent (raised at load)
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Root of the service's errors; ``status`` is the HTTP status the request is answered with."""

    status = 500
    reason = "Internal Server Error"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.status, "type": type(self).__name__, "message": str(self)}


class BadInput(ServiceError):
    status = 400
    reason = "Bad Request"


class NotAcceptable(ServiceError):
    status = 406
    reason = "Not Acceptable"


class PayloadTooLarge(ServiceError):
    status = 413
    reason = "Payload Too Large"


class UnsupportedMediaType(ServiceError):
    status = 415
    reason = "Unsupported Media Type"


class InferenceError(ServiceError):
    status = 500
    reason = "Internal Server Error"


class ModelLoadError(ServiceError):
    status = 503
    reason = "Service Unavailable"
