"""A small LRU memo for pure functions of audio, keyed by the samples' content.

A voice's prompt is checked and encoded on every request that uses it (consent gate: speaker
embedding and liveness checks; the model: codec codes).  Those results depend only on the samples
and their rate, so they are kept here, keyed by SHA-256 of the float32 samples, and a served voice
pays for them once.  Nothing that can change (revocation, expiry, signatures) is memoised.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Hashable

import numpy as np


def audio_digest(wav, sr: int) -> bytes:
    """SHA-256 of ``wav [samples]`` as little-endian float32 and of ``sr``."""
    h = hashlib.sha256(np.ascontiguousarray(np.asarray(wav, dtype="<f4")).tobytes())
    h.update(int(sr).to_bytes(8, "little"))
    return h.digest()


class ContentMemo:
    """``memo(fn, wav, sr)`` returns ``fn(wav, sr)``, computed once per (fn, content) among the
    ``size`` most recent; thread-safe.  ``fn`` must be pure: same samples, same result."""

    def __init__(self, size: int = 32):
        self.size = size
        self._items: OrderedDict[tuple[Hashable, bytes], object] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, fn: Callable, wav, sr: int):
        key = (fn, audio_digest(wav, sr))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = fn(wav, sr)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
