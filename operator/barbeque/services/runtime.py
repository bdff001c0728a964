"""The running operator: store, work queue, reconcile workers and one poller per JobQueue.

The kopf handlers feed watch events in through the ``on_*`` methods; everything else
happens in tasks owned here, started by ``start`` and cancelled by ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from barbeque import metrics
from barbeque.adapters.kube import KubeError
from barbeque.api.models import LABEL_EXECUTION, JobQueue
from barbeque.services.intake import Intake, Poller, SqsApi
from barbeque.services.reconciler import Reconciler, Requeue
from barbeque.services.store import Key, Store
from barbeque.services.workqueue import WorkQueue, run_workers

logger = logging.getLogger(__name__)

DELETED = "DELETED"


class Runtime:
    def __init__(
        self,
        store: Store,
        kube: Any,
        sqs: SqsApi,
        reconciler: Reconciler,
        intake: Intake,
        workers: int = 16,
        resync_seconds: float = 300.0,
        stats_seconds: float = 15.0,
        sqs_error_backoff_max: float = 60.0,
    ) -> None:
        self.store = store
        self.kube = kube
        self.sqs = sqs
        self.reconciler = reconciler
        self.intake = intake
        self.queue: WorkQueue[Key] = WorkQueue()
        self.workers = workers
        self.resync_seconds = resync_seconds
        self.stats_seconds = stats_seconds
        self.sqs_error_backoff_max = sqs_error_backoff_max
        self.pollers: dict[str, tuple[Poller, asyncio.Task[None]]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._phase_series: set[tuple[str, str, str]] = set()
        store.on_slot_freed = self._wake_poller
        intake.on_created = self.queue.add

    # -- lifecycle ----------------------------------------------------------------------------

    async def prime(self) -> None:
        """Load definitions, Jobs and executions before any decision is taken.

        Without this, an execution seen before its definition would be marked UnknownJob,
        and a queue's concurrency cap would start counting from zero.
        """
        for body in await self.kube.list_objects("jobdefinitions"):
            self.store.put_definition(body)
        for body in await self.kube.list_objects("jobs", label_selector=LABEL_EXECUTION):
            self.store.put_job(body)
        for body in await self.kube.list_objects("jobexecutions"):
            if self.store.put_execution(body) is not None:
                meta = body["metadata"]
                self.queue.add((meta["namespace"], meta["name"]))
        logger.info(
            "Primed the store: %d definitions, %d jobs, %d executions",
            len(self.store.definitions),
            len(self.store.jobs),
            len(self.store.executions),
        )

    async def start(self) -> None:
        self._tasks.append(
            asyncio.create_task(
                run_workers(self.queue, self._reconcile, self.workers, self._on_error),
                name="barbeque-workers",
            )
        )
        self._tasks.append(asyncio.create_task(self._resync_loop(), name="barbeque-resync"))
        self._tasks.append(asyncio.create_task(self._stats_loop(), name="barbeque-stats"))

    async def stop(self) -> None:
        for name in list(self.pollers):
            await self._stop_poller(name)
        self.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    # -- watch events -------------------------------------------------------------------------

    def on_execution_event(self, type_: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if type_ == DELETED:
            self.store.delete_execution(*key)
            return
        if self.store.put_execution(body) is not None:
            self.queue.add(key)

    def on_definition_event(self, type_: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        if type_ == DELETED:
            self.store.delete_definition(meta.get("namespace", ""), meta.get("name", ""))
        else:
            self.store.put_definition(body)

    def on_job_event(self, type_: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        namespace = meta.get("namespace", "")
        execution = (meta.get("labels") or {}).get(LABEL_EXECUTION)
        if not execution:
            return
        if type_ == DELETED:
            self.store.delete_job(namespace, meta.get("name", ""))
        elif self.store.put_job(body) is None:
            return
        self.queue.add((namespace, execution))

    def on_pod_event(self, type_: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        namespace = meta.get("namespace", "")
        execution = (meta.get("labels") or {}).get(LABEL_EXECUTION)
        if not execution:
            return
        if type_ == DELETED:
            self.store.delete_pod(namespace, execution, meta.get("name", ""))
            return
        if self.store.put_pod(body) is not None:
            self.queue.add((namespace, execution))

    def on_queue_event(self, type_: str | None, body: dict[str, Any]) -> None:
        name = body.get("metadata", {}).get("name", "")
        if type_ == DELETED:
            self.store.delete_queue(name)
            asyncio.get_running_loop().create_task(self._stop_poller(name))
            return
        queue = self.store.put_queue(body)
        current = self.pollers.get(name)
        if current is not None and current[0].queue.spec == queue.spec:
            current[0].queue = queue
            return
        asyncio.get_running_loop().create_task(self._restart_poller(queue))

    # -- pollers ------------------------------------------------------------------------------

    async def _restart_poller(self, queue: JobQueue) -> None:
        name = queue.metadata.name
        await self._stop_poller(name)
        poller = Poller(
            queue, self.sqs, self.intake, self.store, self.kube, self.sqs_error_backoff_max
        )
        task = asyncio.create_task(self._run_poller(poller), name=f"poller-{name}")
        self.pollers[name] = (poller, task)

    async def _run_poller(self, poller: Poller) -> None:
        while True:
            try:
                await poller.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Poller of JobQueue %s crashed; restarting in 5s", poller.name)
                await asyncio.sleep(5)

    async def _stop_poller(self, name: str) -> None:
        entry = self.pollers.pop(name, None)
        if entry is None:
            return
        entry[1].cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await entry[1]

    def _wake_poller(self, queue: str) -> None:
        entry = self.pollers.get(queue)
        if entry is not None:
            entry[0].capacity.set()

    # -- reconciling --------------------------------------------------------------------------

    async def _reconcile(self, key: Key) -> None:
        try:
            await self.reconciler.reconcile(key)
        except Requeue as requeue:
            self.queue.forget(key)
            self.queue.add_after(key, requeue.delay)
            return
        self.queue.forget(key)

    def _on_error(self, key: Key, exc: BaseException) -> None:
        delay = self.queue.retry(key)
        metrics.RECONCILE_ERRORS.labels(error=type(exc).__name__).inc()
        if isinstance(exc, KubeError):
            logger.warning("Reconciling %s/%s failed, again in %.1fs: %s", *key, delay, exc)
        else:
            logger.error("Reconciling %s/%s failed, again in %.1fs", *key, delay, exc_info=exc)

    async def _resync_loop(self) -> None:
        """A safety net for missed events: look at every unfinished execution again."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            for execution in self.store.iter_executions():
                phase = execution.status.phase
                logs = execution.status.logs
                if phase in (None, "Pending", "Running") or (
                    logs is not None and not logs.uploaded
                ):
                    self.queue.add((execution.metadata.namespace or "", execution.metadata.name))

    async def _stats_loop(self) -> None:
        while True:
            self.export_phase_gauge()
            for poller, _ in list(self.pollers.values()):
                await poller.report_stats()
            await asyncio.sleep(self.stats_seconds)

    def export_phase_gauge(self) -> None:
        counts: Counter[tuple[str, str, str]] = Counter()
        for execution in self.store.iter_executions():
            phase = execution.status.phase or "Pending"
            counts[(execution.spec.application, execution.spec.job, phase)] += 1
        for labels in self._phase_series - set(counts):
            metrics.EXECUTIONS_BY_PHASE.labels(*labels).set(0)
        for labels, count in counts.items():
            metrics.EXECUTIONS_BY_PHASE.labels(*labels).set(count)
        self._phase_series |= set(counts)
