"""Poller supervision: one running Poller per JobQueue, with the queue's latest spec.

A component of the active replica (``controller.manager``): started, it runs a poller
for every known queue; stopped, it lets each finish recording the batches it received.
JobQueue events restart the poller of a queue whose spec changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import KW_ONLY, dataclass
from typing import Any

from barbeque.api.models import JobQueue
from barbeque.services.intake import Intake
from barbeque.services.poller import Capacity, Poller, QueueStatusApi, SqsApi
from barbeque.services.recorder import Recorder
from barbeque.services.store import Store

logger = logging.getLogger(__name__)


@dataclass(eq=False, repr=False)
class Pollers:
    _: KW_ONLY
    store: Store
    sqs: SqsApi
    kube: QueueStatusApi
    intake: Intake
    capacity: Capacity
    recorder: Recorder | None = None
    error_backoff_max: float = 60.0
    shutdown_grace_seconds: float = 20.0
    stats_seconds: float = 15.0

    def __post_init__(self) -> None:
        self.active = False
        self.pollers: dict[str, tuple[Poller, asyncio.Task[None]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._stats: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.active = True
        self._stats = asyncio.create_task(self._stats_loop(), name="barbeque-queue-stats")
        for queue in list(self.store.queues.values()):
            await self.restart(queue)

    async def stop(self) -> None:
        self.active = False
        await asyncio.gather(*(self._stop(name) for name in list(self.pollers)))
        if self._stats is not None:
            self._stats.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stats
            self._stats = None

    def on_queue(self, queue: JobQueue | None, name: str) -> None:
        """A JobQueue changed (``queue``) or was deleted (None)."""
        if queue is None:
            self._spawn(self._stop(name))
            return
        if not self.active:
            return
        current = self.pollers.get(name)
        if current is not None and current[0].queue.spec == queue.spec:
            current[0].queue = queue
            return
        self._spawn(self.restart(queue))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks; hold them until they finish.
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def restart(self, queue: JobQueue) -> None:
        """Run one poller with the queue's latest spec.

        Serialised per queue: stopping a poller waits for its batches, and events arriving
        meanwhile must not start a second poller beside the one being started (two pollers
        would each let maxConcurrentExecutions through).
        """
        name = queue.metadata.name
        async with self._lock(name):
            latest = self.store.queues.get(name)
            current = self.pollers.get(name)
            if latest is not None and current is not None and current[0].queue.spec == latest.spec:
                current[0].queue = latest
                return
            await self._stop_now(name)
            if not self.active or latest is None:  # stopped meanwhile, or queue deleted
                return
            poller = Poller(
                latest,
                sqs=self.sqs,
                intake=self.intake,
                store=self.store,
                kube=self.kube,
                capacity=self.capacity.event(name),
                recorder=self.recorder,
                error_backoff_max=self.error_backoff_max,
            )
            task = asyncio.create_task(self._run(poller), name=f"poller-{name}")
            self.pollers[name] = (poller, task)

    async def _run(self, poller: Poller) -> None:
        while not poller.stopping.is_set():
            try:
                await poller.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Poller of JobQueue %s crashed; restarting in 5s", poller.name)
                await asyncio.sleep(5)

    async def _stop(self, name: str) -> None:
        async with self._lock(name):
            await self._stop_now(name)

    async def _stop_now(self, name: str) -> None:
        entry = self.pollers.pop(name, None)
        if entry is None:
            return
        poller, task = entry
        poller.stopping.set()
        try:
            # Let a batch already received be recorded and deleted.
            await asyncio.wait_for(asyncio.shield(task), timeout=self.shutdown_grace_seconds)
        except (TimeoutError, asyncio.CancelledError, Exception):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _stats_loop(self) -> None:
        while True:
            for poller, _ in list(self.pollers.values()):
                await poller.report_stats()
            await asyncio.sleep(self.stats_seconds)
