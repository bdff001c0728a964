"""The SQS adapter's long poll against moto's server: what an abandoned poll is handed
comes back at once."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from barbeque.adapters.sqs import Sqs
from tests.support.aws import Aws

pytestmark = pytest.mark.integration


async def test_messages_an_abandoned_receive_brings_are_visible_again_at_once(aws: Aws) -> None:
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
