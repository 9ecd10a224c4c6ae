"""Request limits: :class:`BodySizeLimit`, ASGI middleware that refuses request bodies over a
byte limit with a JSON 413, and :class:`RateLimiter`, each API key's request rate.

The body limit checks ``Content-Length`` up front and counts the bytes of bodies sent without one
(chunked), so a client cannot stream an unbounded upload into memory.
"""
from __future__ import annotations

import json
import threading
import time

from ..errors import BodyTooLarge


class BodySizeLimit:
    """Wrap an ASGI ``app``; bodies over ``max_bytes`` get 413."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": {"message": f"request body is larger than {self.max_bytes} bytes",
                                     "type": "request_too_large", "param": None, "code": None}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    return await self._refuse(send)
        seen = 0
        state = {"started": False, "refused": False}

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def guarded_send(message):
            # The app may turn BodyTooLarge into its own error response; replace that with the 413.
            if seen > self.max_bytes:
                if not state["refused"] and not state["started"]:
                    state["refused"] = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if state["started"]:
                raise
            if not state["refused"]:
                await self._refuse(send)


class RateLimiter:
    """Per-key token buckets: ``rate`` requests a minute, bursts of up to ``rate`` requests (a
    bucket holds a minute's worth, and at least one request).  :meth:`take` answers 0 when a
    request may go now, else the seconds until it may (the ``Retry-After``)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}   # key id -> (tokens, time of last update)
        self._lock = threading.Lock()

    def take(self, key_id: str, rate: float) -> float:
        if rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            capacity = max(rate, 1.0)
            tokens, last = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate / 60.0)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) * 60.0 / rate
