"""A bounded worker pool: at most ``workers`` jobs run and ``queue`` wait; more are refused.

A request takes a :class:`Slot` first (refused at once with :class:`Busy` when running plus
waiting jobs would exceed ``workers + queue``), then runs its CPU-heavy steps in the pool's
threads, and releases the slot when done, so requests never pile up beyond the bound.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, TypeVar

from ..errors import Busy

T = TypeVar("T")


class Slot:
    """Admission of one request; run its jobs with :meth:`run`, give it back with :meth:`release`."""

    def __init__(self, pool: "WorkQueue"):
        self._pool, self._released = pool, False

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Run ``fn(*args)`` in a worker thread and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool._executor, partial(fn, *args))

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        if not self._released:
            self._released = True
            self._pool._leave()

    async def __aenter__(self) -> "Slot":
        return self

    async def __aexit__(self, *exc) -> None:
        self.release()


class WorkQueue:
    """``workers`` threads; admission bounded to ``workers + queue`` requests at a time."""

    def __init__(self, workers: int = 1, queue: int = 8, retry_after: int = 5):
        if workers < 1 or queue < 0:
            raise ValueError(f"need workers >= 1 and queue >= 0, got {workers} and {queue}")
        self.capacity, self.retry_after = workers + queue, retry_after
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="valle2-worker")
        self._lock = threading.Lock()
        self._admitted = 0
        self._closed = False

    @property
    def admitted(self) -> int:
        """Requests holding a slot now (running or waiting)."""
        return self._admitted

    def acquire(self) -> Slot:
        """A slot, or :class:`Busy` at once when the pool is full or closed."""
        with self._lock:
            if self._closed:
                raise Busy("the server is shutting down", self.retry_after, closed=True)
            if self._admitted >= self.capacity:
                raise Busy(f"server busy: {self._admitted} requests running or queued; retry later", self.retry_after)
            self._admitted += 1
        return Slot(self)

    def _leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        """Refuse new work and let running jobs finish."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
