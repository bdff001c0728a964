"""From SQS messages to recorded JobExecutions: the commit point of the queue.

One poller per JobQueue long-polls SQS in batches of up to ten. Each message becomes a
JobExecution named from its message id; only once that object exists (created now, or
409 because an earlier delivery created it) is the message deleted from SQS. A crash
anywhere in between leaves the message in SQS, and its redelivery finds the execution.

The poller does not wait for a batch to be recorded before receiving the next one: up to
``PIPELINE_DEPTH`` batches per queue are recorded at once, so a queue's intake is bounded
by the API server rather than by one receive-record-delete round trip. Messages received
and not yet recorded count against ``maxConcurrentExecutions`` like executions do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from barbeque import logs, metrics
from barbeque.adapters.kube import AlreadyExists, Invalid, NotFound
from barbeque.adapters.sqs import Message, QueueStats, SqsError
from barbeque.api import envelope
from barbeque.api.models import LABEL_MESSAGE_ID, JobExecution, JobQueue
from barbeque.services import builders, naming
from barbeque.services.store import Key, Store

logger = logging.getLogger(__name__)

# Batches of one queue being recorded at once, while the next one is received.
PIPELINE_DEPTH = 4

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class KubeApi(Protocol):
    async def create_execution(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def patch_execution_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]: ...
    async def patch_queue_status(self, name: str, status: dict[str, Any]) -> None: ...
    async def list_objects(
        self, kind: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]: ...


class SqsApi(Protocol):
    async def queue_url(self, name: str) -> str: ...
    async def ensure_queue(self, name: str, attributes: dict[str, str] | None = None) -> str: ...
    async def queue_arn(self, url: str) -> str: ...
    async def receive(
        self, url: str, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Message]: ...
    async def delete_batch(self, url: str, receipts: list[str]) -> list[str]: ...
    async def stats(self, url: str) -> QueueStats: ...


@dataclass(frozen=True)
class Recorded:
    """What happened to one message; ``delete`` says whether SQS may forget it."""

    delete: bool
    outcome: str  # created, duplicate, invalid, deferred, failed
    key: Key | None = None


class Intake:
    """Turns messages into JobExecutions; shared by all pollers."""

    def __init__(
        self,
        store: Store,
        kube: KubeApi,
        operator_namespace: str,
        on_created: Callable[[Key], None],
    ) -> None:
        self.store = store
        self.kube = kube
        self.operator_namespace = operator_namespace
        self.on_created = on_created
        # Per queue: messages received and not yet recorded. Kept here, not in a poller, so
        # that every poller of a queue (a restarting one and its successor) sees them all.
        self.in_flight: Counter[str] = Counter()

    async def record(self, queue: JobQueue, message: Message) -> Recorded:
        queue_name = queue.metadata.name
        metrics.MESSAGES_RECEIVED.labels(queue=queue_name).inc()
        parsed = envelope.parse(message.body)
        name = naming.execution_name(message.message_id)
        if isinstance(parsed, envelope.ExecutionRequest):
            if not _NAMESPACE.match(parsed.application) or len(parsed.application) > 63:
                return await self._record_invalid(
                    queue,
                    message,
                    envelope.InvalidMessage(
                        "UnknownApplication",
                        f"application {parsed.application!r} is not a valid namespace name",
                        parsed.application,
                        parsed.job,
                        message.body[: envelope.RAW_KEEP],
                    ),
                )
            body = builders.build_execution(
                name=name,
                namespace=parsed.application,
                application=parsed.application,
                job=parsed.job,
                queue=queue_name,
                message_id=message.message_id,
                message=parsed.message,
                sent_timestamp=message.sent_timestamp,
                not_before=parsed.not_before,
            )
            return await self._create(queue, message, body, fallback_reason="UnknownApplication")
        if isinstance(parsed, envelope.RetryRequest):
            return await self._record_retry(queue, message, parsed)
        return await self._record_invalid(queue, message, parsed)

    async def _create(
        self, queue: JobQueue, message: Message, body: dict[str, Any], fallback_reason: str
    ) -> Recorded:
        queue_name = queue.metadata.name
        namespace = body["metadata"]["namespace"]
        key = (namespace, body["metadata"]["name"])
        try:
            created = await self.kube.create_execution(body)
        except AlreadyExists:
            metrics.MESSAGES_DUPLICATE.labels(queue=queue_name).inc()
            logger.info("Message %s was already recorded as %s/%s", message.message_id, *key)
            return Recorded(True, "duplicate", key)
        except NotFound:
            if namespace == self.operator_namespace:
                # Not even the operator's own namespace exists: nowhere to record anything.
                logger.error(
                    "Cannot record message %s: no namespace %r", message.message_id, namespace
                )
                return Recorded(False, "failed")
            # The namespace does not exist: the application is unknown.
            spec = body["spec"]
            return await self._record_invalid(
                queue,
                message,
                envelope.InvalidMessage(
                    fallback_reason,
                    f"application {spec['application']!r} is unknown: no namespace {namespace!r}",
                    spec["application"],
                    spec["job"],
                    message.body[: envelope.RAW_KEEP],
                ),
            )
        except Invalid as exc:
            if body["spec"].get("invalidReason"):
                if namespace == self.operator_namespace:
                    # Even the Error record is refused; only the dead-letter queue can keep it.
                    logger.error("Cannot record message %s at all: %s", message.message_id, exc)
                    metrics.MESSAGES_DEFERRED.labels(queue=queue_name, reason="Unrecordable").inc()
                    return Recorded(False, "deferred")
                # The application's namespace refused the Error record itself (a policy of
                # its own?): the operator's namespace keeps it.
                logger.warning(
                    "The Error record of message %s was refused in %s, recording it in %s: %s",
                    message.message_id,
                    namespace,
                    self.operator_namespace,
                    exc,
                )
                fallback = {
                    **body,
                    "metadata": {**body["metadata"], "namespace": self.operator_namespace},
                }
                return await self._create(queue, message, fallback, fallback_reason)
            spec = body["spec"]
            return await self._record_invalid(
                queue,
                message,
                envelope.InvalidMessage(
                    "RejectedMessage",
                    f"the API server refused the execution: {exc}",
                    spec.get("application"),
                    spec.get("job"),
                    message.body[: envelope.RAW_KEEP],
                ),
            )
        except Exception as exc:
            # API server unavailable: keep the message; SQS redelivers it after the
            # visibility timeout and the execution is created then.
            logger.warning("Could not record message %s: %s", message.message_id, exc)
            return Recorded(False, "failed")
        self.store.put_execution(created)
        spec = body["spec"]
        application, definition = metrics.definition_labels(
            spec["application"],
            spec["job"],
            known=self.store.definition(namespace, spec["job"] or "") is not None,
        )
        metrics.EXECUTIONS_CREATED.labels(
            application=application, definition=definition, queue=queue_name
        ).inc()
        self.on_created(key)
        return Recorded(True, "created", key)

    async def _record_retry(
        self, queue: JobQueue, message: Message, request: envelope.RetryRequest
    ) -> Recorded:
        try:
            parent = await self._find(request.retry_message_id)
        except Exception as exc:
            logger.warning("Could not look up the execution a JobRetry names: %s", exc)
            return Recorded(False, "failed")
        if parent is None:
            return await self._record_invalid(
                queue,
                message,
                envelope.InvalidMessage(
                    "UnknownExecution",
                    f"JobRetry names message {request.retry_message_id!r}, "
                    "which no JobExecution has",
                    raw=message.body[: envelope.RAW_KEEP],
                ),
            )
        body = builders.build_retry(
            parent, naming.execution_name(message.message_id), message.message_id
        )
        if request.not_before is not None:
            body["spec"]["notBefore"] = request.not_before.isoformat()
        body["spec"]["queue"] = parent.spec.queue or queue.metadata.name
        return await self._create(queue, message, body, fallback_reason="UnknownApplication")

    async def _find(self, message_id: str) -> JobExecution | None:
        """The execution of a message: in memory while unfinished, else asked by label."""
        found = self.store.execution_by_message_id(message_id)
        if found is not None:
            return found
        selector = f"{LABEL_MESSAGE_ID}={naming.label_value(message_id)}"
        for body in await self.kube.list_objects("jobexecutions", label_selector=selector):
            if (body.get("spec") or {}).get("messageId") == message_id:
                return JobExecution.model_validate(body)
        return None

    async def _record_invalid(
        self, queue: JobQueue, message: Message, invalid: envelope.InvalidMessage
    ) -> Recorded:
        queue_name = queue.metadata.name
        if invalid.application is None and queue.spec.dead_letter_queue is not None:
            # Names no application: nobody's to see it here; SQS's redrive moves it to the
            # dead-letter queue after maxReceiveCount receives.
            metrics.MESSAGES_DEFERRED.labels(queue=queue_name, reason=invalid.reason).inc()
            logger.warning(
                "Leaving message %s for dead-letter redrive: %s", message.message_id, invalid.detail
            )
            return Recorded(False, "deferred")
        # In the application's namespace, where its owners look, when it has one; a message
        # the API server refused there (NaN, a number past int64) goes there too, without
        # its message. ``_create`` falls back to the operator's namespace when the
        # application's does not exist or refuses even the Error record.
        namespace = invalid.application or self.operator_namespace
        if (
            invalid.reason == "UnknownApplication"
            or not _NAMESPACE.match(namespace)
            or len(namespace) > 63
        ):
            namespace = self.operator_namespace
        logger.warning(
            "Message %s is unusable (%s): %s", message.message_id, invalid.reason, invalid.detail
        )
        body = builders.build_execution(
            name=naming.execution_name(message.message_id),
            namespace=namespace,
            application=invalid.application or "",
            job=invalid.job or "",
            queue=queue_name,
            message_id=message.message_id,
            message=None,
            sent_timestamp=message.sent_timestamp,
            invalid_reason=f"{invalid.reason}: {invalid.detail}",
            raw_message=invalid.raw,
        )
        return await self._create(queue, message, body, fallback_reason="UnknownApplication")


class Poller:
    """Drains one JobQueue until stopped."""

    def __init__(
        self,
        queue: JobQueue,
        sqs: SqsApi,
        intake: Intake,
        store: Store,
        kube: KubeApi,
        error_backoff_max: float = 60.0,
        pipeline_depth: int = PIPELINE_DEPTH,
    ) -> None:
        self.queue = queue
        self.sqs = sqs
        self.intake = intake
        metrics.queue_series(queue.metadata.name)
        self.store = store
        self.kube = kube
        self.error_backoff_max = error_backoff_max
        self.pipeline_depth = pipeline_depth
        self.url: str | None = None
        # Set whenever a slot may have freed up: an execution finished, a batch recorded.
        self.capacity = asyncio.Event()
        self.stopping = asyncio.Event()
        self._last_status: dict[str, Any] | None = None
        # Batches being recorded (each holds a pipeline place), and those still deleting.
        self._recording = 0
        self._batches: set[asyncio.Task[list[Recorded]]] = set()
        # One DeleteMessageBatch at a time per queue, as before pipelining. Deletes wait
        # for nobody, and moto (tests, the local demo) loses deletes that overlap on one
        # queue: it rebuilds the queue's message list without a lock.
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

    async def _set_status(self, status: dict[str, Any]) -> None:
        if self.queue.metadata.generation is not None:
            status = {**status, "observedGeneration": self.queue.metadata.generation}
        if status == self._last_status:
            return
        try:
            await self.kube.patch_queue_status(self.name, status)
            self._last_status = status
        except Exception as exc:
            logger.warning("Could not update the status of JobQueue %s: %s", self.name, exc)

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
                await self._set_status(
                    {"phase": "Error", "message": f"cannot use the SQS queue: {exc}"[:1000]}
                )
                await self._pause(delay)
                if self.stopping.is_set():
                    return
                delay = min(delay * 2, self.error_backoff_max)
        await self._set_status({"phase": "Ready", "queueUrl": self.url, "message": ""})
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
                await self._pause(delay)
                delay = min(delay * 2, self.error_backoff_max)
                continue
            if messages is None:
                # Stopped mid long poll: whatever SQS hands that poll is made visible
                # again by the adapter, or after the visibility timeout if the process
                # has exited by then.
                return
            delay = 1.0
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
        await self._set_status(
            {"phase": "Ready", "queueUrl": self.url, "message": "", "runningExecutions": running}
        )
