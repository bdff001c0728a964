"""The SQS adapter's long poll: off the shared pool, and never in the way of exiting.

What it does against an SQS server is in tests/integration/test_sqs_long_poll.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
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
                threading.Event().wait()  # a long poll nobody answers, ever
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
    # Were exit to wait for the receive's thread, the process would never end.
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
