"""Amazon SQS, as the calls the operator and the Web API make.

boto3 is synchronous; calls run in the event loop's thread pool, except the long poll:
each ReceiveMessage runs in a daemon thread of its own, so a receive blocked for up to
``WaitTimeSeconds`` neither holds a thread of the shared pool nor keeps the process from
exiting on SIGTERM (interpreter exit joins the pool's threads, not daemon ones); messages
such a receive brings after its poller gave up on it are made visible again at once.
SDK errors become ``SqsError`` so callers need not know botocore.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from barbeque.adapters import aws

T = TypeVar("T")
# How long a finished long poll waits for the event loop to take its answer before
# treating it as dropped (the loop answers in well under a millisecond when it runs).
DROP_CHECK_SECONDS = 5.0


class SqsError(Exception):
    """An SQS call failed."""


class QueueMissing(SqsError):
    """The queue does not exist."""


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str
    sent_timestamp: int | None
    receive_count: int


@dataclass(frozen=True)
class QueueStats:
    visible: int
    in_flight: int
    delayed: int


def _in_daemon_thread(
    loop: asyncio.AbstractEventLoop,
    call: Callable[[], T],
    on_dropped: Callable[[T], object] | None = None,
) -> asyncio.Future[T]:
    """Run ``call`` in a new daemon thread; its result or exception settles the future.

    Cancelling the future does not stop the call. When its answer comes and nobody takes
    it (cancelled, or the loop is gone), ``on_dropped`` gets it, in that thread.
    """
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None, taken: list[bool]) -> None:
        try:
            if future.done():  # cancelled meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]
            taken.append(True)
        finally:
            settled.set()

    settled = threading.Event()

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        taken: list[bool] = []
        # RuntimeError: the loop is closed, nobody waits for this answer any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error, taken)
            settled.wait(DROP_CHECK_SECONDS)
        if not taken and error is None and on_dropped is not None:
            on_dropped(result)  # type: ignore[arg-type]

    threading.Thread(target=run, name="barbeque-sqs-receive", daemon=True).start()
    return future


class Sqs:
    def __init__(self, region: str, endpoint_url: str | None, max_pool: int = 32) -> None:
        self._client = aws.client("sqs", region, endpoint_url, max_pool)
        self.calls: dict[str, int] = {}

    def _count(self, verb: str) -> None:
        self.calls[verb] = self.calls.get(verb, 0) + 1

    async def _call(
        self,
        verb: str,
        fn: Callable[..., T],
        *,
        long_poll: bool = False,
        on_dropped: Callable[[T], object] | None = None,
        **kwargs: Any,
    ) -> T:
        self._count(verb)
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, **kwargs)
        try:
            if long_poll:
                return await _in_daemon_thread(loop, call, on_dropped)
            return await loop.run_in_executor(None, call)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise QueueMissing(str(exc)) from exc
            raise SqsError(str(exc)) from exc
        except BotoCoreError as exc:
            raise SqsError(str(exc)) from exc

    async def queue_url(self, name: str) -> str:
        result = await self._call("get_queue_url", self._client.get_queue_url, QueueName=name)
        return str(result["QueueUrl"])

    async def ensure_queue(self, name: str, attributes: dict[str, str] | None = None) -> str:
        result = await self._call(
            "create_queue", self._client.create_queue, QueueName=name, Attributes=attributes or {}
        )
        return str(result["QueueUrl"])

    async def attributes(self, url: str, names: list[str]) -> dict[str, str]:
        result = await self._call(
            "get_queue_attributes",
            self._client.get_queue_attributes,
            QueueUrl=url,
            AttributeNames=names,
        )
        attributes: dict[str, str] = result.get("Attributes", {})
        return attributes

    async def set_attributes(self, url: str, attributes: dict[str, str]) -> None:
        await self._call(
            "set_queue_attributes",
            self._client.set_queue_attributes,
            QueueUrl=url,
            Attributes=attributes,
        )

    async def queue_arn(self, url: str) -> str:
        return (await self.attributes(url, ["QueueArn"]))["QueueArn"]

    async def receive(
        self, url: str, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Message]:
        result = await self._call(
            "receive_message",
            self._client.receive_message,
            long_poll=True,
            on_dropped=functools.partial(self._release, url),
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        )
        messages = []
        for raw in result.get("Messages", []):
            attributes = raw.get("Attributes", {})
            sent = attributes.get("SentTimestamp")
            messages.append(
                Message(
                    message_id=raw["MessageId"],
                    receipt_handle=raw["ReceiptHandle"],
                    body=raw.get("Body", ""),
                    sent_timestamp=int(sent) if sent else None,
                    receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
                )
            )
        return messages

    def _release(self, url: str, result: dict[str, Any]) -> None:
        """Make the messages of an abandoned receive (its poller stopped or restarted
        while SQS answered) visible again at once, instead of after their visibility
        timeout. Best effort, in the receive's own thread: if this fails they come back
        when the timeout ends, as they would have anyway."""
        entries = [
            {"Id": str(i), "ReceiptHandle": raw["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, raw in enumerate(result.get("Messages", []))
        ]
        if not entries:
            return
        self._count("change_message_visibility_batch")
        with contextlib.suppress(BotoCoreError, ClientError):
            self._client.change_message_visibility_batch(QueueUrl=url, Entries=entries)

    async def delete_batch(self, url: str, receipts: Sequence[str]) -> list[str]:
        """Delete up to ten messages in one call; returns the receipts that failed."""
        failed: list[str] = []
        for start in range(0, len(receipts), 10):
            chunk = list(receipts[start : start + 10])
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
            result = await self._call(
                "delete_message_batch",
                self._client.delete_message_batch,
                QueueUrl=url,
                Entries=entries,
            )
            failed.extend(chunk[int(f["Id"])] for f in result.get("Failed", []))
        return failed

    async def send(self, url: str, body: str, delay_seconds: int = 0) -> str:
        result = await self._call(
            "send_message",
            self._client.send_message,
            QueueUrl=url,
            MessageBody=body,
            DelaySeconds=delay_seconds,
        )
        return str(result["MessageId"])

    async def stats(self, url: str) -> QueueStats:
        attributes = await self.attributes(
            url,
            [
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        return QueueStats(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )
