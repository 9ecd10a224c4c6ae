"""Every error leaves as JSON ``{"error": {"type", "message"}}``; no traceback reaches a client.

Valle2 errors map to 4xx (consent refusals 403, unknown voices 404, a full queue 429 with
``Retry-After``), validation errors to 422, anything else to a generic 500 that is logged here.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import AudioError, TextError, Valle2Error
from ..safety import ConsentError
from .auth import AuthError
from .queue import Busy

log = logging.getLogger("valle2.server")


class BadRequest(Valle2Error):
    """A request that is well-formed but cannot be served as asked."""


class NotFound(Valle2Error):
    """A voice or model the server does not have."""


def error_response(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
    """The JSON error body every failure uses."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


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
    if isinstance(exc, AuthError):
        return error_response(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, ConsentError):
        return error_response(403, "consent_refused", str(exc))
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc))
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
