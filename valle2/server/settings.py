"""The server's limits and keys, in one frozen object passed to :func:`valle2.server.create_app`."""
from __future__ import annotations

from dataclasses import dataclass, field

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")   # OpenAI's TTS model names: each means the served model


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one server.

    ``auth``: every ``/v1/`` call needs an API key of the key store (False only for
    ``valle2 serve --no-auth`` on a loopback address).  ``rate_limit``: requests a minute each key
    may make, unless the key has its own (0: unlimited); beyond it, 429 with ``Retry-After``.
    ``max_workers`` syntheses run at once; up to ``max_queue`` more wait; beyond that requests get
    429 with ``Retry-After``.  ``model_names``: the ``model`` values a speech request may name, all
    meaning the one model served (OpenAI's TTS model names among them, so OpenAI clients work
    unchanged).  ``shipped_voices``: voices shipped in the package (:mod:`valle2.names`) that every
    key may list and use, and none may revoke.
    """

    auth: bool = True
    rate_limit: float = 60.0
    max_request_bytes: int = 10 * 2**20
    max_text_chars: int = 4096
    max_audio_seconds: float = 30.0
    max_workers: int = 1
    max_queue: int = 8
    retry_after_s: int = 5
    model_names: tuple[str, ...] = field(default=("valle2",) + OPENAI_MODELS)
    shipped_voices: tuple[str, ...] = ("demo",)
