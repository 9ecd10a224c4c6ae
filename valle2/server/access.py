"""Who is calling: :class:`KeyAuth`, ASGI middleware that needs an API key on every call but the
public ones, and applies each key's rate limit, before the request body is read.

Public: ``GET /`` and ``/static/...`` (the web page, which asks for a key), ``/health`` and
``/openapi.json``.  Everything else, unknown paths included, needs ``Authorization: Bearer
<key>``: no key, an unknown, wrong or revoked key get 401 (the same message for the last three),
a key over its rate get 429 with ``Retry-After``.  The caller is left in ``scope`` for the routes
(:func:`principal_of`).  With ``auth=False`` (``valle2 serve --no-auth``, loopback only) every
caller is the one local user, who may use every voice and manage no keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
from starlette.requests import Request

from .errors import error_response
from .keys import ApiKey, KeyStore
from .limits import RateLimiter

PUBLIC_PATHS = frozenset({"/", "/health", "/openapi.json"})
SCOPE_KEY = "valle2.principal"


@dataclass(frozen=True)
class Principal:
    """The caller: ``key`` (None with auth off, where ``local`` is True and every voice is usable)."""

    key: ApiKey | None
    local: bool = False

    @property
    def admin(self) -> bool:
        return self.key is not None and self.key.admin

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


def principal_of(request: Request) -> Principal:
    """The caller of ``request`` (set by :class:`KeyAuth`)."""
    return request.scope[SCOPE_KEY]


class KeyAuth:
    """Wrap an ASGI ``app``: authenticate against ``keys`` (unless ``auth`` is off) and rate-limit
    each key to its own limit or ``default_rate`` requests a minute (0: unlimited)."""

    def __init__(self, app, keys: KeyStore, auth: bool = True, default_rate: float = 60.0,
                 limiter: RateLimiter | None = None):
        self.app, self.keys, self.auth, self.default_rate = app, keys, auth, default_rate
        self.limiter = limiter or RateLimiter()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or is_public(scope["path"]):
            return await self.app(scope, receive, send)
        if not self.auth:
            principal, bucket, rate = Principal(None, local=True), "local", self.default_rate
        else:
            token = _bearer(scope)
            if token is None:
                return await error_response(401, "unauthorized", "this call needs an API key: send 'Authorization: "
                                            "Bearer <key>' (the operator creates keys with `valle2 keys create`)",
                                            {"WWW-Authenticate": "Bearer"}, code="missing_api_key")(scope, receive, send)
            key = await anyio.to_thread.run_sync(self.keys.authenticate, token)
            if key is None:
                return await error_response(401, "unauthorized", "the API key is not valid (unknown, wrong or revoked)",
                                            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                                            code="invalid_api_key")(scope, receive, send)
            principal, bucket = Principal(key), key.id
            rate = key.rate_limit if key.rate_limit is not None else self.default_rate
        wait = self.limiter.take(bucket, rate)
        if wait > 0:
            return await error_response(429, "rate_limit_exceeded",
                                        f"rate limit of {rate:g} requests a minute reached for this API key; retry later",
                                        {"Retry-After": str(max(1, math.ceil(wait)))},
                                        code="rate_limit_exceeded")(scope, receive, send)
        scope[SCOPE_KEY] = principal
        return await self.app(scope, receive, send)


def _bearer(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None
