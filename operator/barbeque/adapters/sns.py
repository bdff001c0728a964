"""Amazon SNS, as the calls the operator makes to subscribe queues to topics.

SDK errors become ``SnsError`` (``TopicMissing`` for a topic that does not exist), so
callers need not know botocore.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from barbeque.adapters import aws

T = TypeVar("T")


class SnsError(Exception):
    """An SNS call failed."""


class TopicMissing(SnsError):
    """The topic does not exist."""


class Sns:
    def __init__(self, region: str, endpoint_url: str | None, max_pool: int = 4) -> None:
        self._client = aws.client("sns", region, endpoint_url, max_pool)

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, functools.partial(fn, **kwargs))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") == "NotFound":
                raise TopicMissing(str(exc)) from exc
            raise SnsError(str(exc)) from exc
        except BotoCoreError as exc:
            raise SnsError(str(exc)) from exc

    async def subscribe_queue(self, topic_arn: str, queue_arn: str) -> str:
        """Subscribe an SQS queue (SNS's own envelope, not raw delivery: barbeque reads
        ``TopicArn`` from it); SNS answers the existing subscription when there is one."""
        result = await self._call(
            self._client.subscribe,
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            ReturnSubscriptionArn=True,
        )
        return str(result["SubscriptionArn"])

    async def unsubscribe_queue(self, topic_arn: str, queue_arn: str) -> None:
        """Remove every subscription of the queue to the topic (none is fine)."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"TopicArn": topic_arn}
            if token:
                kwargs["NextToken"] = token
            try:
                page = await self._call(self._client.list_subscriptions_by_topic, **kwargs)
            except TopicMissing:
                return
            for subscription in page.get("Subscriptions", []):
                if subscription.get("Endpoint") == queue_arn:
                    await self._call(
                        self._client.unsubscribe, SubscriptionArn=subscription["SubscriptionArn"]
                    )
            token = page.get("NextToken")
            if not token:
                return
