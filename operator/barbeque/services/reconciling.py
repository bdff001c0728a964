"""Reconcile workers over the work queue, and the resync that is their safety net.

A component of the active replica (``controller.manager``): started, it queues every
execution in the store (whatever the previous leader left unfinished) and runs the
workers; stopped, it lets reconciles in hand finish within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import KW_ONLY, dataclass
from typing import Any

from barbeque import logs, metrics
from barbeque.adapters.kube import KubeError, NotFound
from barbeque.controller.manager import cancel_all
from barbeque.controller.workqueue import WorkQueue, run_workers
from barbeque.services.reconciler import Reconciler, Requeue
from barbeque.services.store import Key, Store

logger = logging.getLogger(__name__)


@dataclass(eq=False, repr=False)
class Reconciling:
    _: KW_ONLY
    store: Store
    queue: WorkQueue[Key]
    reconciler: Reconciler
    workers: int = 16
    resync_seconds: float = 300.0
    shutdown_grace_seconds: float = 20.0
    gauge_seconds: float = 15.0

    def __post_init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        self.queue.reopen()
        self._tasks = [
            asyncio.create_task(
                run_workers(self.queue, self._reconcile, self.workers, self._on_error),
                name="barbeque-workers",
            ),
            asyncio.create_task(self._resync_loop(), name="barbeque-resync"),
            asyncio.create_task(self._gauge_loop(), name="barbeque-workqueue-gauges"),
        ]
        for key in list(self.store.executions):
            self.queue.add(key)

    async def stop(self) -> None:
        self.queue.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace_seconds
        # Reconciles are short; polling keeps the work queue free of shutdown plumbing.
        while self.queue.busy and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await cancel_all(*self._tasks)
        self._tasks = []

    async def _gauge_loop(self) -> None:
        while True:
            self.queue.export_unfinished()
            await asyncio.sleep(self.gauge_seconds)

    async def _reconcile(self, key: Key) -> None:
        execution = self.store.execution(key)
        try:
            with logs.context(*key, execution.spec.message_id if execution else None):
                await self.reconciler.reconcile(key)
        except Requeue as requeue:
            self.queue.forget(key)
            self.queue.add_after(key, requeue.delay)
            return
        self.queue.forget(key)

    def _on_error(self, key: Key, exc: BaseException) -> None:
        if isinstance(exc, NotFound) and self.store.execution(key) is None:
            self.queue.forget(key)  # the execution was deleted while being reconciled
            return
        delay = self.queue.retry(key)
        metrics.RECONCILE_ERRORS.labels(error=type(exc).__name__).inc()
        if isinstance(exc, KubeError):
            logger.warning("Reconciling %s/%s failed, again in %.1fs: %s", *key, delay, exc)
        else:
            logger.error("Reconciling %s/%s failed, again in %.1fs", *key, delay, exc_info=exc)

    async def _resync_loop(self) -> None:
        """Look at every unfinished execution again, in case an event was missed."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            for execution in self.store.iter_executions():
                phase = execution.status.phase
                logs = execution.status.logs
                if phase in (None, "Pending", "Running") or (
                    logs is not None and not logs.uploaded
                ):
                    self.queue.add((execution.metadata.namespace or "", execution.metadata.name))
