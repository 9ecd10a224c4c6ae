"""The server's limits and keys, in one frozen object passed to :func:`valle2.server.create_app`."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one server.

    ``auth``: every ``/v1/`` call needs an API key of the key store (False only for
    ``valle2 serve --no-auth`` on a loopback address).  ``rate_limit``: requests a minute each key
    may make, unless the key has its own (0: unlimited); beyond it, 429 with ``Retry-After``.
    ``max_workers`` syntheses run at once; up to ``max_queue`` more wait; beyond that requests get
    429 with ``Retry-After``.  ``model_names``: the ``model`` values a speech request may name
    (besides ``"valle2"``).
    """

    auth: bool = True
    rate_limit: float = 60.0
    max_request_bytes: int = 10 * 2**20
    max_text_chars: int = 4096
    max_audio_seconds: float = 30.0
    max_workers: int = 1
    max_queue: int = 8
    retry_after_s: int = 5
    model_names: tuple[str, ...] = field(default=("valle2",))
