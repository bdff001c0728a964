"""From SQS messages to recorded JobExecutions: the commit point of the queue.

Each message becomes a JobExecution named from its message id; only once that object
exists (created now, or 409 because an earlier delivery created it) may the message
leave SQS. A crash anywhere in between leaves the message in SQS, and its redelivery
finds the execution. A message that cannot run (unreadable, an unknown application) is
recorded too, as an execution that finishes Error, where its application's owners look.
The pollers that feed this (``services.poller``) are one per JobQueue.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from barbeque import metrics
from barbeque.adapters.kube import AlreadyExists, Invalid, NotFound
from barbeque.adapters.sqs import Message
from barbeque.api import envelope
from barbeque.api.models import (
    ANNOTATION_APPLICATION,
    LABEL_MESSAGE_ID,
    JobExecution,
    JobQueue,
    Phase,
)
from barbeque.services import builders, naming
from barbeque.services.store import Key, Store

logger = logging.getLogger(__name__)


class KubeApi(Protocol):
    async def create_execution(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def delete_execution(self, namespace: str, name: str) -> None: ...
    async def patch_queue_status(self, name: str, status: dict[str, Any]) -> None: ...
    async def list_objects(
        self, kind: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]: ...


class Outcome(enum.Enum):
    """What became of one message, and so whether SQS may forget it."""

    CREATED = "created"
    DUPLICATE = "duplicate"  # 409: an earlier delivery recorded it
    NO_NAMESPACE = "no-namespace"  # 404: the application's namespace does not exist
    REFUSED = "refused"  # 400/422: the API server will never take this body
    DEFERRED = "deferred"  # left for SQS's dead-letter redrive
    FAILED = "failed"  # not recorded now; SQS delivers it again

    @property
    def delete(self) -> bool:
        return self in (Outcome.CREATED, Outcome.DUPLICATE)


def classify(error: Exception) -> Outcome:
    """What a failed create of an execution means for its message."""
    if isinstance(error, AlreadyExists):
        return Outcome.DUPLICATE
    if isinstance(error, NotFound):
        return Outcome.NO_NAMESPACE
    if isinstance(error, Invalid):
        return Outcome.REFUSED
    # The API server unavailable, throttling, a conflict: the message stays in SQS and
    # its redelivery after the visibility timeout creates the execution then.
    return Outcome.FAILED


@dataclass(frozen=True)
class Recorded:
    """What happened to one message."""

    outcome: Outcome
    key: Key | None = None

    @property
    def delete(self) -> bool:
        return self.outcome.delete


class Intake:
    """Turns messages into JobExecutions; shared by all pollers."""

    def __init__(
        self,
        *,
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
            namespace = self.store.namespace_for(parsed.application)
            if namespace is None:
                return await self._record_invalid(
                    queue,
                    message,
                    envelope.InvalidMessage(
                        "UnknownApplication",
                        self._unknown_application(parsed.application),
                        parsed.application,
                        parsed.job,
                        message.body[: envelope.RAW_KEEP],
                    ),
                )
            body = builders.build_execution(
                name=name,
                namespace=namespace,
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
        if isinstance(parsed, envelope.NotificationRequest):
            return await self._record_notification(queue, message, parsed)
        return await self._record_invalid(queue, message, parsed)

    def _unknown_application(self, application: str) -> str:
        claims = self.store.claims(application)
        if claims:
            return (
                f"application {application!r} is claimed by namespaces {', '.join(claims)} "
                f"(annotation {ANNOTATION_APPLICATION}); it must be one"
            )
        return (
            f"application {application!r} is not a namespace name and no namespace is "
            f"annotated {ANNOTATION_APPLICATION}: {application}"
        )

    async def _record_notification(
        self, queue: JobQueue, message: Message, request: envelope.NotificationRequest
    ) -> Recorded:
        """One execution per definition subscribed to the topic on this queue.

        The message leaves SQS only when every one of them is recorded; a redelivery finds
        those already made (409) and makes the rest.
        """
        queue_name = queue.metadata.name
        subscriptions = self.store.subscribed(request.topic_arn, queue_name)
        if not subscriptions:
            return await self._record_invalid(
                queue,
                message,
                envelope.InvalidMessage(
                    "UnknownTopic",
                    f"no SNSSubscription of topic {request.topic_arn!r} on queue {queue_name!r}",
                    raw=message.body[: envelope.RAW_KEEP],
                ),
            )
        results = []
        for subscription in subscriptions:
            namespace = subscription.metadata.namespace or ""
            message_id = naming.fan_out_message_id(
                message.message_id, namespace, subscription.spec.job
            )
            body = builders.build_execution(
                name=naming.execution_name(message_id),
                namespace=namespace,
                application=self.store.application_for(namespace),
                job=subscription.spec.job,
                queue=queue_name,
                message_id=message_id,
                message=request.message,
                sent_timestamp=message.sent_timestamp,
            )
            results.append(
                await self._create(queue, message, body, fallback_reason="UnknownApplication")
            )
        kept = [r for r in results if not r.delete]
        if kept:
            return kept[0]
        created = [r for r in results if r.outcome is Outcome.CREATED]
        return created[0] if created else results[0]

    async def _create(
        self, queue: JobQueue, message: Message, body: dict[str, Any], fallback_reason: str
    ) -> Recorded:
        queue_name = queue.metadata.name
        namespace = body["metadata"]["namespace"]
        key = (namespace, body["metadata"]["name"])
        try:
            created = await self.kube.create_execution(body)
        except Exception as exc:
            return await self._not_created(queue, message, body, fallback_reason, exc)
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
        return Recorded(Outcome.CREATED, key)

    async def _not_created(
        self,
        queue: JobQueue,
        message: Message,
        body: dict[str, Any],
        fallback_reason: str,
        error: Exception,
    ) -> Recorded:
        queue_name = queue.metadata.name
        namespace = body["metadata"]["namespace"]
        spec = body["spec"]
        outcome = classify(error)
        if outcome is Outcome.DUPLICATE:
            key = (namespace, body["metadata"]["name"])
            metrics.MESSAGES_DUPLICATE.labels(queue=queue_name).inc()
            logger.info("Message %s was already recorded as %s/%s", message.message_id, *key)
            return Recorded(outcome, key)
        if outcome is Outcome.FAILED:
            logger.warning("Could not record message %s: %s", message.message_id, error)
            return Recorded(outcome)
        own_namespace = namespace == self.operator_namespace
        if outcome is Outcome.NO_NAMESPACE:
            if own_namespace:
                # Not even the operator's own namespace exists: nowhere to record anything.
                logger.error(
                    "Cannot record message %s: no namespace %r", message.message_id, namespace
                )
                return Recorded(Outcome.FAILED)
            invalid = envelope.InvalidMessage(
                fallback_reason,
                f"application {spec['application']!r} is unknown: no namespace {namespace!r}",
                spec["application"],
                spec["job"],
                message.body[: envelope.RAW_KEEP],
            )
            return await self._record_invalid(queue, message, invalid)
        # REFUSED: the API server will never take this body.
        if not spec.get("invalidReason"):
            invalid = envelope.InvalidMessage(
                "RejectedMessage",
                f"the API server refused the execution: {error}",
                spec.get("application"),
                spec.get("job"),
                message.body[: envelope.RAW_KEEP],
            )
            return await self._record_invalid(queue, message, invalid)
        if own_namespace:
            # Even the Error record is refused; only the dead-letter queue can keep it.
            logger.error("Cannot record message %s at all: %s", message.message_id, error)
            metrics.MESSAGES_DEFERRED.labels(queue=queue_name, reason="Unrecordable").inc()
            return Recorded(Outcome.DEFERRED)
        # The application's namespace refused the Error record itself (a policy of its
        # own?): the operator's namespace keeps it.
        logger.warning(
            "The Error record of message %s was refused in %s, recording it in %s: %s",
            message.message_id,
            namespace,
            self.operator_namespace,
            error,
        )
        fallback = {**body, "metadata": {**body["metadata"], "namespace": self.operator_namespace}}
        return await self._create(queue, message, fallback, fallback_reason)

    async def _record_retry(
        self, queue: JobQueue, message: Message, request: envelope.RetryRequest
    ) -> Recorded:
        try:
            parent = await self._find(request.retry_message_id)
        except Exception as exc:
            logger.warning("Could not look up the execution a JobRetry names: %s", exc)
            return Recorded(Outcome.FAILED)
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
        await self._withdraw_automatic_retry(parent, message)
        body = builders.build_retry(
            parent,
            naming.execution_name(message.message_id),
            message.message_id,
            message.sent_timestamp,
        )
        if request.not_before is not None:
            body["spec"]["notBefore"] = request.not_before.isoformat()
        body["spec"]["queue"] = parent.spec.queue or queue.metadata.name
        return await self._create(queue, message, body, fallback_reason="UnknownApplication")

    async def _withdraw_automatic_retry(self, parent: JobExecution, message: Message) -> None:
        """A retry asked for while its attempt ran (a job retrying itself) that reaches the
        operator only after the attempt failed finds the automatic retry made meanwhile.
        When that one has not started, the retry asked for takes its place, so the attempt
        is retried once, not twice; one already started is left to run."""
        if message.sent_timestamp is None:
            return
        # creationTimestamp has whole seconds: one made in the second the request was sent
        # may read up to a second earlier.
        sent = datetime.fromtimestamp(message.sent_timestamp / 1000, UTC) - timedelta(seconds=1)
        namespace = parent.metadata.namespace or ""
        automatic_suffix = f"-retry-{parent.spec.attempt + 1}"
        for other in self.store.iter_executions():
            name = other.metadata.name
            created = other.metadata.creation_timestamp
            if (
                other.metadata.namespace == namespace
                and other.spec.retry_of == parent.metadata.name
                and other.spec.message_id == name  # the operator's own, not from a message
                and name.endswith(automatic_suffix)
                and other.phase in (None, Phase.SCHEDULED)
                and other.status.job_name is None
                and (namespace, name) not in self.store.jobs
                and created is not None
                and created > sent
            ):
                with contextlib.suppress(NotFound):
                    await self.kube.delete_execution(namespace, name)
                self.store.delete_execution(namespace, name)
                logger.info(
                    "Retry message %s replaces the automatic retry %s of %s, not started yet",
                    message.message_id,
                    name,
                    parent.metadata.name,
                )

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
            return Recorded(Outcome.DEFERRED)
        # In the application's namespace, where its owners look, when it has one; a message
        # the API server refused there (NaN, a number past int64) goes there too, without
        # its message. ``_create`` falls back to the operator's namespace when the
        # application's does not exist or refuses even the Error record.
        namespace = self.operator_namespace
        if invalid.application and invalid.reason != "UnknownApplication":
            namespace = self.store.namespace_for(invalid.application) or namespace
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
