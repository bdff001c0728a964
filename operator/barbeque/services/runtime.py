"""The running operator: store, work queue, reconcile workers and one poller per JobQueue.

Watch events come in through the ``on_*`` methods, always, so the store stays warm: from
kopf for JobQueues and JobDefinitions, from the runtime's own watches (``adapters.watch``)
for Jobs, pods and unfinished JobExecutions. The active part (pollers, reconcile workers,
history collection) runs only while this replica leads (with leader election) or always
(without). ``stop`` shuts down gracefully: pollers stop receiving, recording of messages
already received and running reconciles finish, then the rest is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

from barbeque import logs, metrics
from barbeque.adapters.kube import KubeError, NotFound
from barbeque.api.models import FINISHED_PHASES, LABEL_EXECUTION, JobQueue
from barbeque.services import history
from barbeque.services.intake import Intake, Poller, SqsApi
from barbeque.services.leader import LeaderElector
from barbeque.services.reconciler import Reconciler, Requeue
from barbeque.services.store import Key, Store, settled
from barbeque.services.workqueue import WorkQueue, run_workers

logger = logging.getLogger(__name__)

DELETED = "DELETED"


class Watch(Protocol):
    """One kind, listed then watched (``adapters.watch.ListWatch``)."""

    async def sync(self) -> None: ...
    async def run(self) -> None: ...
    async def stop(self, task: asyncio.Task[None]) -> None: ...
    async def close(self) -> None: ...


def needs_follow_up(body: dict[str, Any]) -> bool:
    """Finished, but the upload of its record to S3 is still to be done."""
    status = body.get("status") or {}
    logs = status.get("logs")
    return (
        status.get("phase") in FINISHED_PHASES
        and isinstance(logs, dict)
        and logs.get("uploaded") is False
    )


class Runtime:
    def __init__(
        self,
        store: Store,
        kube: Any,
        sqs: SqsApi,
        reconciler: Reconciler,
        intake: Intake,
        job_watch: Watch,
        pod_watch: Watch,
        execution_watch: Watch,
        workers: int = 16,
        resync_seconds: float = 300.0,
        stats_seconds: float = 15.0,
        sqs_error_backoff_max: float = 60.0,
        elector: LeaderElector | None = None,
        shutdown_grace_seconds: float = 20.0,
        history_ttl_seconds: int = 7 * 24 * 3600,
        history_keep: int = 1000,
        history_interval_seconds: float = 60.0,
    ) -> None:
        self.store = store
        self.kube = kube
        self.sqs = sqs
        self.reconciler = reconciler
        self.intake = intake
        self.job_watch = job_watch
        self.pod_watch = pod_watch
        self.execution_watch = execution_watch
        self.queue: WorkQueue[Key] = WorkQueue()
        self.workers = workers
        self.resync_seconds = resync_seconds
        self.stats_seconds = stats_seconds
        self.sqs_error_backoff_max = sqs_error_backoff_max
        self.elector = elector
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.history_ttl_seconds = history_ttl_seconds
        self.history_keep = history_keep
        self.history_interval_seconds = history_interval_seconds
        self.active = False
        self.pollers: dict[str, tuple[Poller, asyncio.Task[None]]] = {}
        self._active_tasks: list[asyncio.Task[Any]] = []
        self._election: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._phase_series: set[tuple[str, str, str]] = set()
        # Finished executions by (application, job, phase), counted by the last sweep.
        self._finished_counts: Counter[tuple[str, str, str]] = Counter()
        self._watch_tasks: list[tuple[Watch, asyncio.Task[None]]] = []
        self._poller_locks: dict[str, asyncio.Lock] = {}
        store.on_slot_freed = self._wake_poller
        intake.on_created = self.queue.add

    # -- lifecycle ----------------------------------------------------------------------------

    async def prime(self) -> None:
        """Load definitions, Jobs, pods and executions before any decision is taken.

        Without this, an execution seen before its definition would be marked UnknownJob,
        and a queue's concurrency cap would start counting from zero.
        """
        for body in await self.kube.list_objects("jobdefinitions"):
            self.store.put_definition(body)
        # Each watch's first LIST fills the store, and its WATCH goes on from that LIST's
        # resourceVersion, so every kind is listed once. Unfinished executions only;
        # finished ones needing a follow-up come with the first sweep.
        watches = {
            "jobs": self.job_watch,
            "pods": self.pod_watch,
            "executions": self.execution_watch,
        }
        try:
            for watch in watches.values():
                await watch.sync()
        except BaseException:
            # kopf retries the start-up with a new Runtime; leave no sessions open.
            for watch in watches.values():
                await watch.close()
            raise
        if not self._watch_tasks:
            self._watch_tasks = [
                (watch, asyncio.create_task(watch.run(), name=f"barbeque-{name}-watch"))
                for name, watch in watches.items()
            ]
        logger.info(
            "Primed the store: %d definitions, %d jobs, %d pods, %d executions",
            len(self.store.definitions),
            len(self.store.jobs),
            len(self.store.pods),
            len(self.store.executions),
        )

    async def start(self) -> None:
        if self.elector is None:
            await self.activate()
            return
        self._election = asyncio.create_task(
            self.elector.run(self.activate, self.deactivate), name="barbeque-election"
        )

    async def activate(self) -> None:
        """Start draining queues and reconciling: this replica is the active one."""
        if self.active:
            return
        self.active = True
        metrics.LEADER.set(1)
        self.queue.reopen()
        self._active_tasks = [
            asyncio.create_task(
                run_workers(self.queue, self._reconcile, self.workers, self._on_error),
                name="barbeque-workers",
            ),
            asyncio.create_task(self._resync_loop(), name="barbeque-resync"),
            asyncio.create_task(self._stats_loop(), name="barbeque-stats"),
            asyncio.create_task(self._history_loop(), name="barbeque-history"),
        ]
        for queue in list(self.store.queues.values()):
            await self._restart_poller(queue)
        # Anything left unfinished by the previous leader gets looked at now.
        for key in list(self.store.executions):
            self.queue.add(key)

    async def deactivate(self) -> None:
        """Stop draining and reconciling, gracefully; the store keeps following the cluster."""
        if not self.active:
            return
        self.active = False
        metrics.LEADER.set(0)
        await asyncio.gather(*(self._stop_poller(name) for name in list(self.pollers)))
        self.queue.close()
        deadline = asyncio.get_running_loop().time() + self.shutdown_grace_seconds
        # Reconciles are short; polling keeps the work queue free of shutdown plumbing.
        while self.queue.busy and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for task in self._active_tasks:
            task.cancel()
        for task in self._active_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._active_tasks = []

    async def stop(self) -> None:
        if self._election is not None:
            self._election.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._election
        await self.deactivate()
        self.queue.shutdown()
        for watch, task in self._watch_tasks:
            await watch.stop(task)
        self._watch_tasks = []
        if self.elector is not None and self.elector.leading:
            # Hand over now instead of making the next leader wait for the lease to expire.
            with contextlib.suppress(Exception):
                await self.elector.release()

    # -- watch events -------------------------------------------------------------------------

    def on_execution_event(self, type_: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if type_ == DELETED:
            # Deleted, or finished and so out of the watch's selection (the event then
            # carries the last state that matched, not the final one): forgotten, unless
            # the store holds it finished with its logs still to go to S3.
            kept = self.store.execution(key)
            if kept is None or not (
                kept.phase is not None and kept.phase.finished and not settled(kept)
            ):
                self.store.delete_execution(*key)
            return
        if self.store.put_execution(body) is not None:
            self.queue.add(key)

    def on_definition_event(self, type_: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        if type_ == DELETED:
            namespace, name = meta.get("namespace", ""), meta.get("name", "")
            self.store.delete_definition(namespace, name)
            # Its series go too, and the phase gauge stops re-exporting them.
            gone = {labels for labels in self._phase_series if labels[:2] == (namespace, name)}
            self._phase_series -= gone
            for labels in gone:
                self._finished_counts.pop(labels, None)
            metrics.forget_definition(namespace, name)
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
            self._spawn(self._stop_poller(name))
            metrics.forget_queue(name)
            return
        queue = self.store.put_queue(body)
        if not self.active:
            return
        current = self.pollers.get(name)
        if current is not None and current[0].queue.spec == queue.spec:
            current[0].queue = queue
            return
        self._spawn(self._restart_poller(queue))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks; hold them until they finish.
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- pollers ------------------------------------------------------------------------------

    def _poller_lock(self, name: str) -> asyncio.Lock:
        return self._poller_locks.setdefault(name, asyncio.Lock())

    async def _restart_poller(self, queue: JobQueue) -> None:
        """Run one poller with the queue's latest spec.

        Serialised per queue: stopping a poller waits for its batches, and events arriving
        meanwhile must not start a second poller beside the one being started (two pollers
        would each let maxConcurrentExecutions through).
        """
        name = queue.metadata.name
        async with self._poller_lock(name):
            latest = self.store.queues.get(name)
            current = self.pollers.get(name)
            if latest is not None and current is not None and current[0].queue.spec == latest.spec:
                current[0].queue = latest
                return
            await self._stop_poller_now(name)
            if not self.active or latest is None:  # stopped meanwhile, or queue deleted
                return
            poller = Poller(
                latest, self.sqs, self.intake, self.store, self.kube, self.sqs_error_backoff_max
            )
            task = asyncio.create_task(self._run_poller(poller), name=f"poller-{name}")
            self.pollers[name] = (poller, task)

    async def _run_poller(self, poller: Poller) -> None:
        while not poller.stopping.is_set():
            try:
                await poller.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Poller of JobQueue %s crashed; restarting in 5s", poller.name)
                await asyncio.sleep(5)

    async def _stop_poller(self, name: str) -> None:
        async with self._poller_lock(name):
            await self._stop_poller_now(name)

    async def _stop_poller_now(self, name: str) -> None:
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

    def _wake_poller(self, queue: str) -> None:
        entry = self.pollers.get(queue)
        if entry is not None:
            entry[0].capacity.set()

    # -- reconciling --------------------------------------------------------------------------

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
            self.queue.export_unfinished()
            for poller, _ in list(self.pollers.values()):
                await poller.report_stats()
            await asyncio.sleep(self.stats_seconds)

    async def _history_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except KubeError as exc:
                logger.warning("Sweeping finished executions failed: %s", exc)
            await asyncio.sleep(self.history_interval_seconds)

    async def sweep(self) -> int:
        """Page through every execution: count finished ones, pick up uploads left to do
        (finished while S3 was down, then the operator restarted) and delete executions
        past their definition's history policy. Returns how many were deleted."""
        records: list[history.Record] = []
        finished: Counter[tuple[str, str, str]] = Counter()
        async for page in self.kube.pages("jobexecutions"):
            for body in page:
                record = history.Record.from_body(body)
                records.append(record)
                if not record.finished:
                    continue
                labels = metrics.definition_labels(
                    record.application,
                    record.job,
                    known=self.store.definition(record.key[0], record.job) is not None,
                )
                finished[(*labels, record.phase or "")] += 1
                if (
                    needs_follow_up(body)
                    and self.store.execution(record.key) is None
                    and self.store.put_execution(body) is not None
                ):
                    self.queue.add(record.key)
        self._finished_counts = finished
        # Stale events arrive within seconds; a tombstone older than a sweep has served.
        self.store.prune_settled(max(60.0, self.history_interval_seconds))
        expired = history.select_expired(
            records,
            self.store.definitions,
            datetime.now(UTC),
            self.history_ttl_seconds,
            self.history_keep,
        )
        deleted = 0
        for namespace, name in expired:
            try:
                await self.kube.delete_execution(namespace, name)
            except NotFound:
                pass
            except KubeError as exc:
                logger.warning("Could not delete old execution %s/%s: %s", namespace, name, exc)
                continue
            self.store.delete_execution(namespace, name)
            deleted += 1
        if deleted:
            metrics.EXECUTIONS_COLLECTED.inc(deleted)
            logger.info("Deleted %d finished executions past their history policy", deleted)
        return deleted

    def export_phase_gauge(self) -> None:
        counts: Counter[tuple[str, str, str]] = Counter(self._finished_counts)
        for execution in self.store.iter_executions():
            phase = execution.status.phase or "Pending"
            if phase not in FINISHED_PHASES:
                known = self.store.definition(
                    execution.metadata.namespace or "", execution.spec.job
                )
                application, definition = metrics.definition_labels(
                    execution.spec.application, execution.spec.job, known=known is not None
                )
                counts[(application, definition, phase)] += 1
        for series in self._phase_series - set(counts):
            metrics.EXECUTIONS_BY_PHASE.labels(*series).set(0)
        for series, count in counts.items():
            metrics.EXECUTIONS_BY_PHASE.labels(*series).set(count)
        self._phase_series |= set(counts)
