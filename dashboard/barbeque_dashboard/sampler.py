"""Samples each queue's SQS counters over time, for the 24-hour charts of the queue page.

cookpad/barbeque drew these from CloudWatch; here the web service asks SQS itself every
``BARBEQUE_DASHBOARD_QUEUE_SAMPLE_SECONDS`` and keeps the last 24 hours in memory (so the
charts start empty after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from barbeque.adapters.sqs import QueueStats, SqsError
from barbeque_dashboard import status as words
from barbeque_dashboard.services import Backend

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """A queue at one moment: its SQS figures and how many of its executions run."""

    at: datetime
    stats: QueueStats
    running: int


class QueueSampler:
    def __init__(self, backend: Backend, interval: float, window_seconds: float = 86400) -> None:
        self.backend = backend
        self.interval = interval
        self.keep = max(2, int(window_seconds // max(interval, 1.0)))
        self.history: dict[str, deque[Sample]] = {}
        self._task: asyncio.Task[None] | None = None

    def samples(self, queue: str) -> list[Sample]:
        return list(self.history.get(queue, ()))

    async def sample_once(self) -> None:
        running: dict[str, int] = {}
        for execution in self.backend.cache.executions():
            if words.own_status(execution) == words.RUNNING:
                running[execution.spec.queue] = running.get(execution.spec.queue, 0) + 1
        now = datetime.now(UTC)
        for queue in self.backend.cache.queues():
            name = queue.metadata.name
            try:
                stats = await self.backend.sqs.stats(await self.backend.queue_url(queue))
            except SqsError as exc:
                logger.debug("Cannot sample queue %s: %s", name, exc)
                continue
            series = self.history.setdefault(name, deque(maxlen=self.keep))
            series.append(Sample(now, stats, running.get(name, 0)))
        for gone in set(self.history) - {q.metadata.name for q in self.backend.cache.queues()}:
            del self.history[gone]

    async def _run(self) -> None:
        while True:
            try:
                await self.sample_once()
            except Exception as exc:  # sampling is best effort; never kill the loop
                logger.warning("Queue sampling failed: %s", exc)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None and self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
