"""A keyed work queue, as controller-runtime's: level-based reconciling with backoff.

A key queued many times before a worker takes it is reconciled once; a key is never
reconciled by two workers at once; a failed key comes back after an exponential delay.
It exports controller-runtime's ``workqueue_*`` metrics under its ``name``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from barbeque import metrics

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        name: str = "jobexecutions",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        # What the duration metrics measure with (a test's fake clock; delays use the loop's).
        self._clock = clock
        # When each queued key was added, and when each key in hand was taken.
        self._added_at: dict[K, float] = {}
        self._taken_at: dict[K, float] = {}
        self._depth = metrics.WORKQUEUE_DEPTH.labels(name)
        self._adds = metrics.WORKQUEUE_ADDS.labels(name)
        self._retries = metrics.WORKQUEUE_RETRIES.labels(name)
        self._queue_duration = metrics.WORKQUEUE_QUEUE_DURATION.labels(name)
        self._work_duration = metrics.WORKQUEUE_WORK_DURATION.labels(name)
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._base_delay = base_delay
        self._max_delay = max_delay
        self.closed = False

    def __len__(self) -> int:
        return len(self._dirty)

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        self._adds.inc()
        self._added_at.setdefault(key, self._clock())
        self._depth.set(len(self._dirty))
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending timer wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= due:
                return
            existing[1].cancel()
        handle = loop.call_at(due, self._fire, key)
        self._timers[key] = (due, handle)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: K) -> float:
        """Queue ``key`` again after a backoff that grows with its consecutive failures."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self._retries.inc()
        delay: float = min(self._base_delay * float(2**failures), self._max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    async def get(self) -> K:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        taken = self._clock()
        self._queue_duration.observe(taken - self._added_at.pop(key, taken))
        self._taken_at[key] = taken
        self._depth.set(len(self._dirty))
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        taken = self._taken_at.pop(key, None)
        if taken is not None:
            self._work_duration.observe(self._clock() - taken)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def export_unfinished(self) -> None:
        """Set the gauges of work in hand (sampled: they grow while nothing happens)."""
        current = self._clock()
        running = [current - taken for taken in self._taken_at.values()]
        metrics.WORKQUEUE_UNFINISHED_WORK.labels(self.name).set(sum(running))
        metrics.WORKQUEUE_LONGEST_RUNNING.labels(self.name).set(max(running, default=0.0))

    @property
    def busy(self) -> bool:
        """Whether a key is being reconciled right now."""
        return bool(self._processing)

    def close(self) -> None:
        """Workers finish the key in hand and take no more; keys stay queued."""
        self.closed = True

    def reopen(self) -> None:
        self.closed = False

    def shutdown(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()


async def run_workers(
    queue: WorkQueue[K],
    reconcile: Callable[[K], Awaitable[None]],
    count: int,
    on_error: Callable[[K, BaseException], None],
) -> None:
    """Run ``count`` workers until cancelled."""

    async def worker() -> None:
        while not queue.closed:
            key = await queue.get()
            if queue.closed:
                # Closed while waiting: leave the key for whoever reconciles next.
                queue.done(key)
                queue.add(key)
                return
            try:
                await reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                on_error(key, exc)
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(count)))
