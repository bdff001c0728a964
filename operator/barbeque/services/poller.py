"""One JobQueue drained: long polls of SQS in batches of up to ten, into the shared Intake.

The poller does not wait for a batch to be recorded before receiving the next one: up to
``PIPELINE_DEPTH`` batches per queue are recorded at once, so a queue's intake is bounded
by the API server rather than by one receive-record-delete round trip. Messages received
and not yet recorded count against ``maxConcurrentExecutions`` like executions do; at the
cap the poller stops receiving, so the backlog waits in SQS, where it is cheap.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

from barbeque import logs, metrics
from barbeque.adapters.sqs import Message, QueueStats, SqsError
from barbeque.api.models import JobQueue, JobQueueStatus
from barbeque.services.conditions import READY, condition, merge_conditions
from barbeque.services.intake import Intake, Recorded
from barbeque.services.recorder import Recorder
from barbeque.services.store import Store

logger = logging.getLogger(__name__)

# Batches of one queue being recorded at once, while the next one is received.
PIPELINE_DEPTH = 4


class QueueStatusApi(Protocol):
    async def patch_queue_status(self, name: str, status: dict[str, Any]) -> None: ...


class SqsApi(Protocol):
    async def queue_url(self, name: str) -> str: ...
    async def ensure_queue(self, name: str, attributes: dict[str, str] | None = None) -> str: ...
    async def queue_arn(self, url: str) -> str: ...
    async def receive(
        self, url: str, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Message]: ...
    async def delete_batch(self, url: str, receipts: list[str]) -> list[str]: ...
    async def stats(self, url: str) -> QueueStats: ...


class Capacity:
    """One event per queue, set whenever a slot of that queue may have freed up; the
    store sets it (an execution finished), the queue's poller waits on it."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, queue: str) -> asyncio.Event:
        return self._events.setdefault(queue, asyncio.Event())

    def freed(self, queue: str) -> None:
        event = self._events.get(queue)
        if event is not None:
            event.set()


@dataclass(frozen=True)
class Health:
    """What the queue's status and its Ready condition say: resolved and receiving, or why
    not (``reason``: ResolveFailed, ReceiveFailed; Polling or Suspended when ready)."""

    ready: bool
    reason: str
    message: str

    @property
    def phase(self) -> str:
        return "Ready" if self.ready else "Error"


@dataclass(eq=False, repr=False)
class Poller:
    """Drains one JobQueue until stopped."""

    queue: JobQueue
    _: KW_ONLY
    sqs: SqsApi
    intake: Intake
    store: Store
    kube: QueueStatusApi
    # Set whenever a slot may have freed up: an execution finished, a batch recorded.
    capacity: asyncio.Event
    recorder: Recorder | None = None
    error_backoff_max: float = 60.0
    pipeline_depth: int = PIPELINE_DEPTH

    def __post_init__(self) -> None:
        metrics.queue_series(self.queue.metadata.name)
        self.url: str | None = None
        self.stopping = asyncio.Event()
        self._last_status: dict[str, Any] | None = None
        # The conditions last written (or found): their transition times are kept.
        self._conditions = list(self.queue.status.conditions)
        self.health: Health | None = None
        self._running: int | None = None
        # Batches being recorded (each holds a pipeline place), and those still deleting.
        self._recording = 0
        self._batches: set[asyncio.Task[list[Recorded]]] = set()
        # One DeleteMessageBatch at a time per queue: deletes wait for nobody, and moto
        # (tests, the local demo) loses deletes that overlap on one queue, as it rebuilds
        # the queue's message list without a lock.
        self._deleting = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.queue.metadata.name

    def free_slots(self) -> int:
        cap = self.queue.spec.max_concurrent_executions
        if cap is None:
            return 10
        active = self.store.active_by_queue.get(self.name, 0)
        # Received, not yet recorded: they will occupy slots once they are executions.
        return max(0, cap - active - self.intake.in_flight[self.name])

    async def resolve(self) -> str:
        spec = self.queue.spec
        if spec.queue_url:
            return spec.queue_url
        name = spec.sqs_queue_name(self.name)
        if not spec.create:
            return await self.sqs.queue_url(name)
        attributes: dict[str, str] = {}
        if spec.dead_letter_queue is not None:
            dlq_url = await self.sqs.ensure_queue(spec.dead_letter_queue.queue_name)
            arn = await self.sqs.queue_arn(dlq_url)
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": arn,
                    "maxReceiveCount": str(spec.dead_letter_queue.max_receive_count),
                }
            )
        return await self.sqs.ensure_queue(name, attributes)

    async def _set_health(self, health: Health) -> None:
        """Say how the queue is (status and Ready); a Warning Event when it turns bad."""
        # Once per trouble, not per retry of it (messages may differ between retries).
        before = self.health
        turned_bad = not health.ready and (
            before is None or before.ready or before.reason != health.reason
        )
        self.health = health
        await self._set_status()
        if turned_bad and self.recorder is not None:
            meta = self.queue.metadata
            await self.recorder.warning(
                "JobQueue",
                meta.name,
                None,
                meta.uid,
                reason=health.reason,
                note=health.message,
                action="Poll",
            )

    async def _set_status(self, running: int | None = None) -> None:
        health = self.health
        if health is None:
            return
        generation = self.queue.metadata.generation
        observed = JobQueueStatus(
            phase=health.phase, message="" if health.ready else health.message
        )
        if self.url is not None:
            observed.queue_url = self.url
        if running is not None:
            self._running = running
        if self._running is not None:
            observed.running_executions = self._running
        if generation is not None:
            observed.observed_generation = generation
        ready = condition(READY, health.ready, health.reason, health.message, generation)
        observed.conditions = merge_conditions(self._conditions, [ready])
        status = observed.model_dump(by_alias=True, mode="json", exclude_unset=True)
        if status == self._last_status:
            return
        try:
            await self.kube.patch_queue_status(self.name, status)
            self._last_status = status
            self._conditions = observed.conditions
        except Exception as exc:
            logger.warning("Could not update the status of JobQueue %s: %s", self.name, exc)

    def _polling(self) -> Health:
        if self.queue.spec.suspend:
            return Health(True, "Suspended", f"resolved {self.url}; suspended: not receiving")
        return Health(True, "Polling", f"receiving from {self.url}")

    async def run(self) -> None:
        try:
            await self._drain()
        except asyncio.CancelledError:
            # Out of grace time: what is not recorded stays in SQS and comes back.
            for task in list(self._batches):
                task.cancel()
            raise
        # Stopping: batches already received are recorded and deleted before we return.
        if self._batches:
            await asyncio.gather(*list(self._batches), return_exceptions=True)

    async def _drain(self) -> None:
        delay = 1.0
        while self.url is None:
            try:
                self.url = await self.resolve()
            except SqsError as exc:
                metrics.SQS_ERRORS.labels(queue=self.name, operation="resolve").inc()
                await self._set_health(
                    Health(False, "ResolveFailed", f"cannot use the SQS queue: {exc}"[:1000])
                )
                await self._pause(delay)
                if self.stopping.is_set():
                    return
                delay = min(delay * 2, self.error_backoff_max)
        await self._set_health(self._polling())
        logger.info("Draining JobQueue %s from %s", self.name, self.url)

        delay = 1.0
        while not self.stopping.is_set():
            if self.queue.spec.suspend:
                await self._pause(5)
                continue
            free = self.free_slots()
            if free <= 0 or self._recording >= self.pipeline_depth:
                # Backpressure: stop receiving; the backlog waits in SQS, where it is cheap.
                # At the cap, an execution finishing wakes us; otherwise a batch recorded.
                self.capacity.clear()
                await self._wait(self.capacity, 5)
                continue
            try:
                messages = await self._receive(min(10, free))
            except SqsError as exc:
                metrics.SQS_ERRORS.labels(queue=self.name, operation="receive").inc()
                logger.warning(
                    "Receiving from %s failed; retrying in %.0fs: %s", self.name, delay, exc
                )
                await self._set_health(
                    Health(False, "ReceiveFailed", f"cannot receive from SQS: {exc}"[:1000])
                )
                await self._pause(delay)
                delay = min(delay * 2, self.error_backoff_max)
                continue
            if messages is None:
                # Stopped mid long poll: whatever SQS hands that poll is made visible
                # again by the adapter, or after the visibility timeout if the process
                # has exited by then.
                return
            delay = 1.0
            if self.health is not None and not self.health.ready:
                await self._set_health(self._polling())
            if messages:
                # Not interrupted by shutdown: recording and deleting is the bookkeeping
                # that must finish (``run`` waits for it).
                self._start_batch(messages)

    async def _receive(self, want: int) -> list[Message] | None:
        """One long poll for up to ``want`` messages; None if the poller is stopped meanwhile.

        The ``want`` slots are taken before asking, so that another poller of the queue
        cannot take them too; those SQS did not fill are given back, the others stay taken
        until their message is recorded.
        """
        assert self.url is not None
        self.intake.in_flight[self.name] += want
        got = 0
        receiving = asyncio.ensure_future(
            self.sqs.receive(
                self.url,
                want,
                self.queue.spec.receive_wait_seconds,
                self.queue.spec.visibility_timeout_seconds,
            )
        )
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                return None
            messages = receiving.result()
            got = len(messages)
            return messages
        finally:
            stopping.cancel()
            receiving.cancel()
            self.intake.in_flight[self.name] -= want - got

    def _start_batch(self, messages: list[Message]) -> None:
        self._recording += 1
        task = asyncio.create_task(self.handle(messages, received=True), name=f"intake-{self.name}")
        self._batches.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[list[Recorded]]) -> None:
        self._batches.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Recording a batch from %s failed", self.name, exc_info=task.exception())

    async def _pause(self, seconds: float) -> None:
        await self._wait(self.stopping, seconds)

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set, the poller is stopped, or ``seconds`` have passed."""
        waiters = {asyncio.ensure_future(event.wait())}
        if event is not self.stopping:
            waiters.add(asyncio.ensure_future(self.stopping.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def handle(self, messages: list[Message], received: bool = False) -> list[Recorded]:
        """Record a batch, then delete from SQS the messages that may leave it.

        ``received``: counted in flight (and holding a pipeline place) by the poller; each
        message leaves that count once recorded, the batch gives its place back before the
        delete, which nobody waits for.
        """
        assert self.url is not None
        try:
            results = await asyncio.gather(*(self._record(m, received) for m in messages))
        finally:
            if received:
                self._recording -= 1
                self.capacity.set()
        receipts = [m.receipt_handle for m, r in zip(messages, results, strict=True) if r.delete]
        if receipts:
            try:
                async with self._deleting:
                    failed = await self.sqs.delete_batch(self.url, receipts)
            except SqsError as exc:
                # Harmless: redelivery finds the execution (409) and deletes again.
                metrics.SQS_ERRORS.labels(queue=self.name, operation="delete").inc()
                logger.warning(
                    "Deleting %d messages from %s failed: %s", len(receipts), self.name, exc
                )
            else:
                if failed:
                    metrics.SQS_ERRORS.labels(queue=self.name, operation="delete").inc(len(failed))
        return results

    async def _record(self, message: Message, received: bool) -> Recorded:
        try:
            with logs.context(message_id=message.message_id):
                return await self.intake.record(self.queue, message)
        finally:
            if received:
                # Now an execution holding its own slot, or nothing that holds one.
                self.intake.in_flight[self.name] -= 1

    async def report_stats(self) -> None:
        if self.url is None:
            return
        try:
            stats = await self.sqs.stats(self.url)
        except SqsError:
            metrics.SQS_ERRORS.labels(queue=self.name, operation="stats").inc()
            return
        metrics.QUEUE_MESSAGES.labels(queue=self.name, state="visible").set(stats.visible)
        metrics.QUEUE_MESSAGES.labels(queue=self.name, state="in_flight").set(stats.in_flight)
        metrics.QUEUE_MESSAGES.labels(queue=self.name, state="delayed").set(stats.delayed)
        running = self.store.active_by_queue.get(self.name, 0)
        metrics.RUNNING_EXECUTIONS.labels(queue=self.name).set(running)
        waiting = sum(
            e.spec.queue == self.name
            and e.status.reason == "Unschedulable"
            and not (e.phase and e.phase.finished)
            for e in self.store.iter_executions()
        )
        metrics.WAITING_FOR_CAPACITY.labels(queue=self.name).set(waiting)
        await self._set_status(running)
