"""SNSSubscriptions into SNS and SQS: the queue subscribed to the topic, and allowed to
receive from it, as cookpad/barbeque's SnsSubscriptionService did.

A subscription carries the operator's finalizer from its first reconcile, so deleting it
unsubscribes the queue before the object goes. Several subscriptions (definitions) may
share one topic on one queue: SNS holds one subscription of the queue for all of them,
removed with the last. The queue's policy lets exactly the topics subscribed to it send,
and is written whole, as barbeque wrote it (the queues are the operator's).

Every step is idempotent (SNS answers an existing subscription; the policy is recomputed
from the store), so a failure is simply tried again later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from barbeque.adapters.kube import NotFound
from barbeque.api.models import JobQueue
from barbeque.api.subscriptions import FINALIZER, SNSSubscription, SNSSubscriptionStatus
from barbeque.services.store import Key, Store

logger = logging.getLogger(__name__)

RETRY_SECONDS = 30.0


class SnsApi(Protocol):
    async def subscribe_queue(self, topic_arn: str, queue_arn: str) -> str: ...
    async def unsubscribe_queue(self, topic_arn: str, queue_arn: str) -> None: ...


class SqsApi(Protocol):
    async def queue_url(self, name: str) -> str: ...
    async def queue_arn(self, url: str) -> str: ...
    async def set_attributes(self, url: str, attributes: dict[str, str]) -> None: ...


class KubeApi(Protocol):
    async def patch_subscription(
        self, namespace: str, name: str, patch: dict[str, Any], status: bool = False
    ) -> dict[str, Any]: ...


def queue_policy(queue_arn: str, topic_arns: list[str]) -> str:
    """barbeque's policy: the topics may SendMessage to the queue; empty when none."""
    if not topic_arns:
        return ""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": sorted(set(topic_arns))}},
                }
            ],
        },
        separators=(",", ":"),
    )


@dataclass(eq=False, repr=False)
class Subscriber:
    """Reconciles one SNSSubscription at a time (per key, the latest event wins)."""

    _: KW_ONLY
    store: Store
    kube: KubeApi
    sqs: SqsApi
    sns: SnsApi
    retry_seconds: float = RETRY_SECONDS
    sleep: Callable[[float], Any] = asyncio.sleep
    active: bool = field(default=False, init=False)
    _retries: dict[Key, asyncio.Task[None]] = field(default_factory=dict, init=False)

    async def on_event(self, type_: str | None, body: dict[str, Any]) -> None:
        """Every replica keeps the store current (intake routes by it); the active one
        also subscribes and unsubscribes."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        if type_ == "DELETED":
            self.store.delete_subscription(namespace, name)
            return
        try:
            subscription = self.store.put_subscription(body)
        except ValueError as exc:
            logger.warning("Ignoring unreadable SNSSubscription %s/%s: %s", namespace, name, exc)
            return
        if self.active:
            await self.reconcile(subscription)

    async def start(self) -> None:
        """Now the active replica: catch up on what changed while standing by."""
        self.active = True
        for subscription in list(self.store.subscriptions.values()):
            await self.reconcile(subscription)

    async def stop(self) -> None:
        self.active = False
        tasks = list(self._retries.values())
        self._retries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reconcile(self, subscription: SNSSubscription) -> None:
        key = (subscription.metadata.namespace or "", subscription.metadata.name)
        try:
            if subscription.metadata.deletion_timestamp is not None:
                await self._remove(subscription)
            else:
                await self._apply(subscription)
        except NotFound:
            return  # deleted meanwhile
        except Exception as exc:
            logger.warning("SNSSubscription %s/%s: %s", *key, exc)
            if subscription.metadata.deletion_timestamp is None:
                await self._status(
                    subscription,
                    SNSSubscriptionStatus(phase="Error", message=str(exc)[:1000]),
                )
            self._retry_later(key)

    def on_queue(self, name: str) -> None:
        """A JobQueue came or changed: the subscriptions that wait for it (a queue and its
        subscriptions applied together) go now rather than at their next retry."""
        if not self.active:
            return
        for key, subscription in list(self.store.subscriptions.items()):
            if subscription.spec.queue == name and subscription.status.phase != "Subscribed":
                self._retry_later(key, delay=0.0)

    def _retry_later(self, key: Key, delay: float | None = None) -> None:
        """SNS, SQS or the API server failed: try again, from the store's latest copy,
        after ``retry_seconds``; a ``delay`` given replaces a retry already waiting."""
        pending = self._retries.get(key)
        if pending is not None and not pending.done():
            if delay is None:
                return
            pending.cancel()

        async def again() -> None:
            await self.sleep(self.retry_seconds if delay is None else delay)
            self._retries.pop(key, None)
            latest = self.store.subscriptions.get(key)
            if latest is not None and self.active:
                await self.reconcile(latest)

        self._retries[key] = asyncio.get_running_loop().create_task(again())

    async def _queue(self, name: str) -> tuple[str, str]:
        """The queue's URL and ARN."""
        queue: JobQueue | None = self.store.queues.get(name)
        if queue is None:
            raise LookupError(f"no JobQueue named {name!r}")
        url = (
            queue.spec.queue_url
            or queue.status.queue_url
            or await self.sqs.queue_url(queue.spec.sqs_queue_name(name))
        )
        return url, await self.sqs.queue_arn(url)

    def _topics(self, queue: str) -> list[str]:
        return [
            s.spec.topic_arn
            for s in self.store.subscriptions.values()
            if s.spec.queue == queue and s.metadata.deletion_timestamp is None
        ]

    async def _apply(self, subscription: SNSSubscription) -> None:
        meta = subscription.metadata
        done = subscription.status
        if (
            done.phase == "Subscribed"
            and done.observed_generation == meta.generation
            and FINALIZER in meta.finalizers
        ):
            return
        if FINALIZER not in meta.finalizers:
            # With the resourceVersion: a concurrent change makes this a 409, tried again.
            patched = await self.kube.patch_subscription(
                meta.namespace or "",
                meta.name,
                {
                    "metadata": {
                        "finalizers": [*meta.finalizers, FINALIZER],
                        "resourceVersion": meta.resource_version,
                    }
                },
            )
            subscription = self.store.put_subscription(patched)
        spec = subscription.spec
        url, queue_arn = await self._queue(spec.queue)
        subscription_arn = await self.sns.subscribe_queue(spec.topic_arn, queue_arn)
        policy = queue_policy(queue_arn, self._topics(spec.queue))
        await self.sqs.set_attributes(url, {"Policy": policy})
        logger.info(
            "Subscribed queue %s to %s for %s/%s",
            spec.queue,
            spec.topic_arn,
            meta.namespace,
            spec.job,
        )
        await self._status(
            subscription,
            SNSSubscriptionStatus(
                phase="Subscribed",
                message="",
                subscription_arn=subscription_arn,
                queue_arn=queue_arn,
            ),
        )

    async def _remove(self, subscription: SNSSubscription) -> None:
        meta = subscription.metadata
        if FINALIZER not in meta.finalizers:
            return
        spec = subscription.spec
        try:
            url, queue_arn = await self._queue(spec.queue)
        except LookupError:
            url = queue_arn = ""  # the queue is gone: nothing of it to clean up
        if queue_arn:
            await self.sqs.set_attributes(
                url, {"Policy": queue_policy(queue_arn, self._topics(spec.queue))}
            )
            if spec.topic_arn not in self._topics(spec.queue):
                await self.sns.unsubscribe_queue(spec.topic_arn, queue_arn)
        await self.kube.patch_subscription(
            meta.namespace or "",
            meta.name,
            {
                "metadata": {
                    "finalizers": [f for f in meta.finalizers if f != FINALIZER],
                    "resourceVersion": meta.resource_version,
                }
            },
        )
        logger.info("Unsubscribed queue %s from %s", spec.queue, spec.topic_arn)

    async def _status(self, subscription: SNSSubscription, status: SNSSubscriptionStatus) -> None:
        meta = subscription.metadata
        if meta.generation is not None:
            status.observed_generation = meta.generation
        body = status.model_dump(by_alias=True, mode="json", exclude_unset=True)
        updated = await self.kube.patch_subscription(
            meta.namespace or "", meta.name, {"status": body}, status=True
        )
        self.store.put_subscription(updated)
