"""Every error leaves as JSON in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``;
no traceback and no file-system path reaches a client.

Valle2 errors map to 4xx (a missing, wrong or revoked API key 401, consent refusals and calls
beyond a key's rights 403, unknown voices and other keys' voices 404 (an unknown model too, with
``code`` ``model_not_found``), a key over its rate limit or a full queue 429 with
``Retry-After``), validation errors to 422, anything else to a generic 500 that is logged here.  Absolute paths in messages (a consent refusal naming the server's copy
of a file, say) are cut to the file's name.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import AudioError, Busy, ConsentError, NotFound, PermissionDenied, TextError, Valle2Error

log = logging.getLogger("valle2.server")


class UnknownModel(NotFound):
    """A speech request names a model this server does not serve (OpenAI's code ``model_not_found``)."""

    code = "model_not_found"


# an absolute path: '/' then at least one more '/'-separated part, not inside a URL or a relative path
_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s'\"/<>]+/)+([^\s'\"/<>]*)")


def scrub_paths(message: str) -> str:
    """``message`` with every absolute file-system path (one whose first part exists on this
    machine, so URL paths such as ``/v1/voices`` stay) cut to its last part."""
    def cut(m: re.Match) -> str:
        first = m.group(0).split("/")[1]
        return (m.group(1) or "<path>") if first and Path("/" + first).exists() else m.group(0)
    return _PATH.sub(cut, message)


def error_response(status: int, kind: str, message: str, headers: dict | None = None,
                   code: str | None = None) -> JSONResponse:
    """The JSON error body every failure uses (OpenAI's shape; ``param`` is always null here)."""
    return JSONResponse({"error": {"message": scrub_paths(message), "type": kind, "param": None, "code": code}},
                        status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _valle2_error(request: Request, exc: Valle2Error) -> JSONResponse:
    if isinstance(exc, Busy):
        status = 503 if exc.closed else 429
        return error_response(status, "server_busy", str(exc), {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, PermissionDenied):
        return error_response(403, "permission_denied", str(exc), code="insufficient_permissions")
    if isinstance(exc, ConsentError):
        return error_response(403, "consent_refused", str(exc))
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc), code=getattr(exc, "code", None))
    kind = {AudioError: "invalid_audio", TextError: "invalid_text"}.get(type(exc), "invalid_request")
    return error_response(400, kind, str(exc))


def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    kind = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; the operator can find details in the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(Valle2Error, _valle2_error)
    app.add_exception_handler(RequestValidationError,
                              lambda r, e: error_response(422, "invalid_request", _validation_message(e)))
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
