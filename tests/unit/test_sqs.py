"""The SQS adapter's long poll: off the shared pool, and never in the way of exiting."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from barbeque.adapters.sqs import Sqs, SqsError

pytestmark = pytest.mark.unit


class FakeClient:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.threads: list[threading.Thread] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.threads.append(threading.current_thread())
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def sqs_with(client: FakeClient) -> Sqs:
    sqs = Sqs("us-east-1", "http://127.0.0.1:9")
    sqs._client = client  # type: ignore[assignment]
    return sqs


async def test_a_receive_runs_in_a_daemon_thread_of_its_own() -> None:
    raw = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "Attributes": {}}
    client = FakeClient({"Messages": [raw]})
    [message] = await sqs_with(client).receive("http://sqs/q", 10, 20, 60)
    assert (message.message_id, message.receipt_handle) == ("m1", "r1")
    [thread] = client.threads
    assert thread.daemon
    assert thread.name == "barbeque-sqs-receive"


async def test_a_receive_error_is_an_sqs_error() -> None:
    error = ClientError({"Error": {"Code": "OverLimit", "Message": "slow down"}}, "ReceiveMessage")
    with pytest.raises(SqsError, match="slow down"):
        await sqs_with(FakeClient(error)).receive("http://sqs/q", 10, 20, 60)


def test_a_blocked_long_poll_does_not_delay_exit() -> None:
    script = textwrap.dedent(
        """
        import asyncio, threading
        from barbeque.adapters.sqs import Sqs

        class Blocked:
            def receive_message(self, **kwargs):
                threading.Event().wait(60)  # a long poll nobody answers
                return {}

        async def main():
            sqs = Sqs("us-east-1", "http://127.0.0.1:9")
            sqs._client = Blocked()
            receiving = asyncio.create_task(sqs.receive("http://sqs/q", 10, 20, 60))
            await asyncio.sleep(0.2)
            receiving.cancel()

        asyncio.run(main())
        """
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert time.monotonic() - started < 10


async def test_messages_an_abandoned_receive_brings_are_visible_again_at_once(aws: Any) -> None:
    """A poller that stops (or restarts on a spec change) gives up on its long poll;
    what SQS hands that poll afterwards must not stay hidden for the visibility timeout."""
    client = aws.sqs()
    url = client.create_queue(QueueName=f"abandoned-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs = Sqs("us-east-1", aws.endpoint_url)
    receiving = asyncio.create_task(sqs.receive(url, 10, 2, 300))
    await asyncio.sleep(0.5)  # the long poll is waiting in moto
    receiving.cancel()
    sent = {client.send_message(QueueUrl=url, MessageBody=str(i))["MessageId"] for i in range(3)}
    # The abandoned poll takes them (moto answers a waiting receive when messages come)...
    deadline = time.monotonic() + 10
    while sqs.calls.get("change_message_visibility_batch", 0) == 0:
        assert time.monotonic() < deadline, "the abandoned receive's messages were not released"
        await asyncio.sleep(0.1)
    # ...and they can be received again now, not in 300 s.
    again = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert {m["MessageId"] for m in again.get("Messages", [])} == sent
