"""Intake decisions: which messages are recorded where, and which may leave SQS."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from barbeque.adapters.kube import (
    Conflict,
)
from barbeque.adapters.sqs import Message
from barbeque.api.models import JobQueue
from barbeque.controller.workqueue import WorkQueue
from barbeque.services.intake import Intake, Outcome
from barbeque.services.poller import Poller
from barbeque.services.store import Store
from tests.support.fakes import FakeKube, FakeSqs

# The event loop runs on a fake clock (looptime): the sleeps of the fakes and the waits
# below take no real time.
pytestmark = [pytest.mark.unit, pytest.mark.looptime]


def queue(**spec: Any) -> JobQueue:
    return JobQueue.model_validate({"metadata": {"name": "default"}, "spec": spec})


def message(body: str, message_id: str = "id-1", sent: int = 1700000000000) -> Message:
    return Message(message_id, f"receipt-{message_id}", body, sent, 1)


def setup(
    queued: list[Message] | None = None, **spec: Any
) -> tuple[Poller, FakeKube, FakeSqs, Store]:
    store = Store()
    kube = FakeKube({"blog", "barbeque-system"})
    sqs = FakeSqs(queued)
    intake = Intake(
        store=store, kube=kube, operator_namespace="barbeque-system", on_created=lambda key: None
    )
    poller = Poller(
        queue(**spec), sqs=sqs, intake=intake, store=store, kube=kube, capacity=asyncio.Event()
    )  # type: ignore[arg-type]
    poller.url = "http://sqs/default"
    return poller, kube, sqs, store


GOOD = '{"Type":"JobExecution","Application":"blog","Job":"notify","Message":{"a":1}}'


async def test_a_message_is_recorded_then_deleted() -> None:
    poller, kube, sqs, store = setup()
    [result] = await poller.handle([message(GOOD)])
    assert result.outcome is Outcome.CREATED
    assert ("blog", "id-1") in kube.created
    assert sqs.deleted == ["receipt-id-1"]
    assert store.active_by_queue["default"] == 1


async def test_a_redelivered_message_is_deleted_and_creates_nothing() -> None:
    poller, kube, sqs, _ = setup()
    await poller.handle([message(GOOD)])
    [again] = await poller.handle([message(GOOD)])
    assert again.outcome is Outcome.DUPLICATE
    assert len(kube.created) == 1
    assert sqs.deleted == ["receipt-id-1", "receipt-id-1"]


async def test_an_api_outage_keeps_the_message_in_sqs() -> None:
    poller, kube, sqs, _ = setup()
    kube.fail_next = 1
    [result] = await poller.handle([message(GOOD)])
    assert result.outcome is Outcome.FAILED
    assert sqs.deleted == []
    assert kube.created == {}


async def test_a_conflict_on_create_keeps_the_message_and_the_next_delivery_records_it() -> None:
    # A 409 whose reason is Conflict, not AlreadyExists, says nothing about the execution:
    # taken for a duplicate, the message would be deleted and never recorded.
    poller, kube, sqs, _ = setup()
    kube.fail_next = 1
    kube.failure = Conflict("409 Conflict: the object has been modified", 409)
    [result] = await poller.handle([message(GOOD)])
    assert result.outcome is Outcome.FAILED
    assert sqs.deleted == []
    assert kube.created == {}
    [again] = await poller.handle([message(GOOD)])
    assert again.outcome is Outcome.CREATED
    assert list(kube.created) == [("blog", "id-1")]
    assert sqs.deleted == ["receipt-id-1"]


async def test_unreadable_json_becomes_an_error_record_in_the_operator_namespace() -> None:
    poller, kube, sqs, _ = setup()
    [result] = await poller.handle([message("{oops")])
    assert result.outcome is Outcome.CREATED
    record = kube.created[("barbeque-system", "id-1")]
    assert record["spec"]["invalidReason"].startswith("InvalidJSON: the message body is not JSON")
    assert record["spec"]["rawMessage"] == "{oops"
    assert sqs.deleted == ["receipt-id-1"]


async def test_with_a_dead_letter_queue_a_message_naming_no_application_stays_for_redrive() -> None:
    poller, kube, sqs, _ = setup(deadLetterQueue={"queueName": "dlq", "maxReceiveCount": 3})
    [result] = await poller.handle([message("{oops")])
    assert result.outcome is Outcome.DEFERRED
    assert kube.created == {}
    assert sqs.deleted == []


async def test_an_unknown_application_is_recorded_in_the_operator_namespace() -> None:
    poller, kube, _, _ = setup()
    body = '{"Type":"JobExecution","Application":"ghost","Job":"j","Message":1}'
    [result] = await poller.handle([message(body)])
    assert result.outcome is Outcome.CREATED
    record = kube.created[("barbeque-system", "id-1")]
    assert record["spec"]["application"] == "ghost"
    assert "no namespace 'ghost'" in record["spec"]["invalidReason"]


def holds_refused(body: dict[str, Any]) -> bool:
    # Stands for whatever the API server refuses that the envelope let through (NaN and
    # integers past int64 are refused by the envelope itself now).
    return body["spec"].get("message") == {"refuse": True}


REFUSED = '{"Type":"JobExecution","Application":"blog","Job":"notify","Message":{"refuse":true}}'


async def test_a_message_the_api_server_refuses_is_an_error_in_its_applications_namespace() -> None:
    poller, kube, sqs, _ = setup()
    kube.refuses = holds_refused
    [result] = await poller.handle([message(REFUSED)])
    assert result.outcome is Outcome.CREATED
    assert list(kube.created) == [("blog", "id-1")]
    record = kube.created[("blog", "id-1")]
    assert record["spec"]["invalidReason"].startswith("RejectedMessage: the API server refused")
    assert record["spec"]["application"] == "blog"
    assert record["spec"]["job"] == "notify"
    assert record["spec"]["message"] is None
    assert record["spec"]["rawMessage"] == REFUSED
    assert sqs.deleted == ["receipt-id-1"]


async def test_a_refused_message_of_an_unknown_application_is_an_error_in_the_operators() -> None:
    poller, kube, _, _ = setup()
    kube.refuses = holds_refused
    [result] = await poller.handle([message(REFUSED.replace('"blog"', '"ghost"'))])
    assert result.outcome is Outcome.CREATED
    assert list(kube.created) == [("barbeque-system", "id-1")]
    record = kube.created[("barbeque-system", "id-1")]
    assert record["spec"]["invalidReason"].startswith("UnknownApplication: application 'ghost'")


async def test_an_error_record_the_applications_namespace_refuses_goes_to_the_operators() -> None:
    poller, kube, sqs, _ = setup()
    kube.refuses = lambda body: body["metadata"]["namespace"] == "blog"
    [result] = await poller.handle([message(GOOD)])
    assert result.outcome is Outcome.CREATED
    assert kube.attempts == [("blog", "id-1"), ("blog", "id-1"), ("barbeque-system", "id-1")]
    record = kube.created[("barbeque-system", "id-1")]
    assert record["spec"]["invalidReason"].startswith("RejectedMessage")
    assert record["spec"]["application"] == "blog"
    assert sqs.deleted == ["receipt-id-1"]


async def test_an_error_record_refused_everywhere_stays_in_sqs() -> None:
    poller, kube, sqs, _ = setup()
    kube.refuses = lambda body: True
    [result] = await poller.handle([message(GOOD)])
    assert result.outcome is Outcome.DEFERRED
    assert kube.created == {}
    assert len(kube.attempts) == 3
    assert sqs.deleted == []


async def test_without_the_operators_namespace_a_message_stays_in_sqs_after_one_try() -> None:
    poller, kube, sqs, _ = setup()
    kube.namespaces.clear()
    [result] = await poller.handle([message("{oops")])
    assert result.outcome is Outcome.FAILED
    assert kube.attempts == [("barbeque-system", "id-1")]
    assert sqs.deleted == []


async def test_a_jobretry_for_a_known_execution_creates_its_child() -> None:
    poller, kube, _, _ = setup()
    await poller.handle([message(GOOD, "first")])
    [result] = await poller.handle(
        [message('{"Type":"JobRetry","RetryMessageId":"first"}', "second")]
    )
    assert result.outcome is Outcome.CREATED
    child = kube.created[("blog", "second")]
    assert child["spec"]["attempt"] == 1
    assert child["spec"]["retryOf"] == "first"
    assert child["spec"]["originalMessageId"] == "first"
    assert child["spec"]["message"] == {"a": 1}


def automatic_retry(store: Store, created: datetime, **status: Any) -> None:
    """What the reconciler made when ``first`` failed: ``first-retry-1``, backing off."""
    store.put_execution(
        {
            "metadata": {
                "name": "first-retry-1",
                "namespace": "blog",
                "resourceVersion": "5",
                "creationTimestamp": created.isoformat(),
            },
            "spec": {
                "application": "blog",
                "job": "notify",
                "messageId": "first-retry-1",
                "retryOf": "first",
                "attempt": 1,
            },
            "status": status,
        }
    )


RETRY_FIRST = '{"Type":"JobRetry","RetryMessageId":"first"}'


async def test_a_retry_sent_while_the_attempt_ran_replaces_its_unstarted_automatic_retry() -> None:
    """The job asked for its retry, then failed; the automatic retry was made before the
    request arrived. The one asked for runs in its place: one retry of the attempt."""
    poller, kube, _, store = setup()
    await poller.handle([message(GOOD, "first")])
    sent = datetime.now(UTC) - timedelta(seconds=3)
    automatic_retry(store, created=sent + timedelta(seconds=2), phase="Scheduled")
    sent_ms = int(sent.timestamp() * 1000)
    [result] = await poller.handle([message(RETRY_FIRST, "second", sent=sent_ms)])
    assert result.outcome is Outcome.CREATED
    assert "delete execution first-retry-1" in kube.writes
    assert store.execution(("blog", "first-retry-1")) is None
    assert kube.created[("blog", "second")]["spec"]["retryOf"] == "first"


@pytest.mark.parametrize(
    ("created_after_request", "status"),
    [
        (False, {"phase": "Scheduled"}),  # it was there when the retry was asked for
        (True, {"phase": "Running", "jobName": "first-retry-1"}),  # already running
    ],
)
async def test_an_automatic_retry_that_started_or_was_seen_first_is_left_alone(
    created_after_request: bool, status: dict[str, Any]
) -> None:
    poller, kube, _, store = setup()
    await poller.handle([message(GOOD, "first")])
    sent = datetime.now(UTC) - timedelta(seconds=5)
    created = sent + timedelta(seconds=2 if created_after_request else -3)
    automatic_retry(store, created=created, **status)
    await poller.handle([message(RETRY_FIRST, "second", sent=int(sent.timestamp() * 1000))])
    assert not [w for w in kube.writes if w.startswith("delete execution")]
    assert store.execution(("blog", "first-retry-1")) is not None


async def test_a_jobretry_runs_with_its_own_messages_sent_timestamp() -> None:
    """BARBEQUE_SENT_TIMESTAMP of a retry is the JobRetry message's, as in barbeque."""
    poller, kube, _, _ = setup()
    await poller.handle([message(GOOD, "first", sent=1700000000000)])
    retry = '{"Type":"JobRetry","RetryMessageId":"first"}'
    await poller.handle([message(retry, "second", sent=1700000060000)])
    assert kube.created[("blog", "first")]["spec"]["sentTimestamp"] == 1700000000000
    assert kube.created[("blog", "second")]["spec"]["sentTimestamp"] == 1700000060000


def annotate(store: Store, namespace: str, application: str) -> None:
    store.put_namespace(
        {
            "metadata": {
                "name": namespace,
                "annotations": {"barbeque.dev/application": application},
            }
        }
    )


@pytest.mark.parametrize("application", ["my_app", "MyApp"])
async def test_an_application_named_by_a_namespace_annotation_runs_there(
    application: str,
) -> None:
    poller, kube, _, store = setup()
    annotate(store, "blog", application)
    body = GOOD.replace('"Application":"blog"', f'"Application":"{application}"')
    [result] = await poller.handle([message(body)])
    assert result.outcome is Outcome.CREATED
    spec = kube.created[("blog", "id-1")]["spec"]
    assert spec["application"] == application  # the barbeque name stays in the record


async def test_an_application_two_namespaces_claim_is_an_error_saying_which() -> None:
    poller, kube, _, store = setup()
    annotate(store, "blog", "my_app")
    annotate(store, "shop", "my_app")
    body = GOOD.replace('"Application":"blog"', '"Application":"my_app"')
    await poller.handle([message(body)])
    reason = kube.created[("barbeque-system", "id-1")]["spec"]["invalidReason"]
    assert reason.startswith("UnknownApplication: ")
    assert "blog, shop" in reason


async def test_an_unannotated_name_that_is_no_namespace_name_says_how_to_map_it() -> None:
    poller, kube, _, _ = setup()
    body = GOOD.replace('"Application":"blog"', '"Application":"my_app"')
    await poller.handle([message(body)])
    reason = kube.created[("barbeque-system", "id-1")]["spec"]["invalidReason"]
    assert "barbeque.dev/application" in reason


TOPIC = "arn:aws:sns:us-east-1:123456789012:orders"


def subscribe(store: Store, name: str, job: str, namespace: str = "blog") -> None:
    store.put_subscription(
        {
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": {"topicArn": TOPIC, "queue": "default", "job": job},
        }
    )


def notification(message: str) -> str:
    return json.dumps({"Type": "Notification", "TopicArn": TOPIC, "Message": message})


async def test_a_notification_runs_every_definition_subscribed_on_its_queue() -> None:
    poller, kube, sqs, store = setup()
    subscribe(store, "orders-to-notify", "notify")
    subscribe(store, "orders-to-archive", "archive")
    [result] = await poller.handle([message(notification('{"order": 7}'), "sns-1")])
    assert result.outcome is Outcome.CREATED
    created = [body for (namespace, _), body in kube.created.items() if namespace == "blog"]
    assert sorted(b["spec"]["job"] for b in created) == ["archive", "notify"]
    assert all(b["spec"]["message"] == {"order": 7} for b in created)
    ids = {b["spec"]["messageId"] for b in created}
    assert len(ids) == 2
    assert all(i.startswith("sns-1-") for i in ids)
    assert sqs.deleted == ["receipt-sns-1"]

    # Delivered again: the same two executions (409), nothing new, the message deleted.
    [again] = await poller.handle([message(notification('{"order": 7}'), "sns-1")])
    assert again.outcome is Outcome.DUPLICATE
    assert len(kube.created) == 2


async def test_a_notification_of_a_topic_nobody_subscribed_is_an_error_record() -> None:
    poller, kube, _, store = setup()
    subscribe(store, "elsewhere", "notify")
    store.subscriptions[("blog", "elsewhere")].spec.queue = "other"
    [result] = await poller.handle([message(notification("{}"), "sns-2")])
    assert result.outcome is Outcome.CREATED
    record = kube.created[("barbeque-system", "sns-2")]
    assert record["spec"]["invalidReason"].startswith("UnknownTopic: ")
    assert TOPIC in record["spec"]["invalidReason"]


async def test_at_the_cap_the_poller_has_no_free_slots() -> None:
    poller, _, _, _ = setup(maxConcurrentExecutions=2)
    assert poller.free_slots() == 2
    await poller.handle([message(GOOD, "a"), message(GOOD, "b")])
    assert poller.free_slots() == 0


def backlog(count: int) -> list[Message]:
    return [message(GOOD, f"m{i:03d}") for i in range(count)]


async def until(condition: Any) -> None:
    async with asyncio.timeout(5):
        # The fakes signal nothing; polling them keeps them simple.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_the_next_batch_is_received_while_the_last_is_still_being_recorded() -> None:
    poller, kube, sqs, store = setup(backlog(100))
    kube.gate.clear()
    running = asyncio.create_task(poller.run())
    # Four batches recording at once, none of them finished: receiving did not wait.
    await until(lambda: kube.waiting == 40)
    await asyncio.sleep(0.05)
    assert kube.waiting == 40  # and no more: the pipeline is PIPELINE_DEPTH batches deep
    assert sqs.asked == [10, 10, 10, 10]
    assert kube.created == {}
    kube.gate.set()
    await until(lambda: len(sqs.deleted) == 100)
    poller.stopping.set()
    await asyncio.wait_for(running, 5)
    assert len(kube.created) == 100
    assert store.active_by_queue["default"] == 100
    assert sqs.most_deleting == 1  # deletes of one queue never overlap


async def test_messages_still_being_recorded_count_against_the_cap() -> None:
    poller, kube, sqs, store = setup(backlog(40), maxConcurrentExecutions=15)
    kube.gate.clear()
    running = asyncio.create_task(poller.run())
    await until(lambda: kube.waiting == 15)
    await asyncio.sleep(0.05)
    # Ten received, then only the five slots left; nothing is an execution yet.
    assert sqs.asked == [10, 5]
    assert poller.free_slots() == 0
    kube.gate.set()
    await until(lambda: len(sqs.deleted) == 15)
    await asyncio.sleep(0.05)
    assert len(kube.created) == 15
    assert store.active_by_queue["default"] == 15
    assert len(sqs.queued) == 25  # the rest waits in SQS
    poller.stopping.set()
    await asyncio.wait_for(running, 5)


async def test_two_pollers_of_one_queue_share_its_cap() -> None:
    # A restart can overlap the old poller with its successor for a moment.
    first, kube, sqs, store = setup(backlog(40), maxConcurrentExecutions=15)
    second = Poller(
        first.queue,
        sqs=sqs,  # type: ignore[arg-type]
        intake=first.intake,
        store=store,
        kube=kube,
        capacity=first.capacity,
    )
    second.url = first.url
    kube.gate.clear()
    running = [asyncio.create_task(p.run()) for p in (first, second)]
    await until(lambda: kube.waiting == 15)
    await asyncio.sleep(0.05)
    assert sum(sqs.asked) == 15
    assert kube.waiting == 15
    kube.gate.set()
    await until(lambda: len(sqs.deleted) == 15)
    await asyncio.sleep(0.05)
    assert len(kube.created) == 15
    for poller in (first, second):
        poller.stopping.set()
    await asyncio.wait_for(asyncio.gather(*running), 5)


async def test_a_failed_create_gives_its_slot_back() -> None:
    poller, kube, sqs, _ = setup(backlog(3), maxConcurrentExecutions=2)
    kube.fail_next = 1
    running = asyncio.create_task(poller.run())
    await until(lambda: len(kube.created) == 2)
    poller.stopping.set()
    await asyncio.wait_for(running, 5)
    assert poller.free_slots() == 0
    assert len(sqs.deleted) == 2  # the failed one stays in SQS for redelivery


async def test_stopping_records_and_deletes_every_batch_already_received() -> None:
    poller, kube, sqs, _ = setup(backlog(100))
    kube.gate.clear()
    running = asyncio.create_task(poller.run())
    await until(lambda: kube.waiting == 40)
    poller.stopping.set()
    await asyncio.sleep(0.05)
    assert not running.done()  # waiting for the batches it has
    kube.gate.set()
    await asyncio.wait_for(running, 5)
    assert len(kube.created) == 40
    assert sorted(sqs.deleted) == sorted(f"receipt-m{i:03d}" for i in range(40))
    assert len(sqs.queued) == 60


async def test_the_work_queue_coalesces_keys_and_backs_off() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.01)
    queue.add("a")
    queue.add("a")
    assert len(queue) == 1
    key = await queue.get()
    queue.add("a")  # an event while it is being reconciled: run once more afterwards
    queue.done(key)
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.done("a")
    assert queue.retry("a") == pytest.approx(0.01)
    assert queue.retry("a") == pytest.approx(0.02)
    assert await asyncio.wait_for(queue.get(), 1) == "a"
