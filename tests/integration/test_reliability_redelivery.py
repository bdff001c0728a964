"""Redelivery: every point where an operator can stop between two steps, replayed by hand.

The operator runs in-process against the real apiserver and moto's SQS. With the JobQueue
suspended, the test plays the operator that crashed: it receives the messages itself
(so they are in flight, with a visibility timeout), leaves behind whatever that operator
had written before dying, and never deletes them. Then the queue is resumed; SQS hands the
same messages (same ids) to the live operator once their visibility timeout expires, and
each must end as exactly one JobExecution and one Job.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from barbeque import metrics
from barbeque.api.models import JobDefinition, JobExecution
from barbeque.services import builders
from barbeque.services.naming import execution_name
from tests.cluster.harness import EXIT_CODE_ANNOTATION
from tests.support.operator import GROUP, VERSION, App
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def suspend(app: App) -> None:
    app.set_queue(suspend=True)
    # The poller is restarted on the spec change; give a receive in progress time to end.
    time.sleep(2.5)


def receive_all(app: App, ids: list[str], visibility: int) -> dict[str, dict[str, Any]]:
    """Receive the messages as a (soon crashed) operator would: in flight, not deleted."""
    sqs = app.aws.sqs()
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 20
    while set(ids) - set(got) and time.monotonic() < deadline:
        result = sqs.receive_message(
            QueueUrl=app.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        )
        for message in result.get("Messages", []):
            got[message["MessageId"]] = message
    assert set(got) == set(ids), f"could not receive {set(ids) - set(got)}"
    return got


def record_as_the_operator_would(
    app: App, job: str, message: dict[str, Any], hold: float = 0
) -> dict[str, Any]:
    """The JobExecution the intake creates for ``message`` (same builder, same name).

    ``hold`` > 0 gives it a notBefore that many seconds ahead, so the live reconciler
    leaves it Scheduled while the test lays down what else the crashed operator had made.
    """
    body = builders.build_execution(
        not_before=datetime.now(UTC) + timedelta(seconds=hold) if hold else None,
        name=execution_name(message["MessageId"]),
        namespace=app.namespace,
        application=app.namespace,
        job=job,
        queue=app.queue,
        message_id=message["MessageId"],
        message=json.loads(message["Body"])["Message"],
        sent_timestamp=int(message["Attributes"]["SentTimestamp"]),
    )
    created: dict[str, Any] = app.custom.create_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "jobexecutions", body
    )
    return created


def finished_executions(app: App, count: int, timeout: float = 90) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        executions = app.executions()
        phases = [(e.get("status") or {}).get("phase") for e in executions]
        if len(executions) >= count and all(p in ("Succeeded", "Failed") for p in phases):
            return executions
        return None

    return wait_until(f"{count} finished executions", done, timeout)


def test_a_message_whose_visibility_timeout_expires_is_recorded_once(app: App) -> None:
    app.define("hello")
    suspend(app)
    message_id = app.enqueue("hello", {"n": 1})
    received = receive_all(app, [message_id], visibility=8)
    hidden_until = time.monotonic() + 8
    assert received[message_id]["Attributes"]["ApproximateReceiveCount"] == "1"
    app.set_queue(suspend=False)

    # Hidden from the operator until the visibility timeout ends.
    time.sleep(max(0.0, hidden_until - 3 - time.monotonic()))
    absent = app.execution(execution_name(message_id)) is None
    assert absent or time.monotonic() >= hidden_until, "recorded while still hidden"
    execution = app.wait_phase(execution_name(message_id), ("Succeeded",), timeout=60)
    assert execution["spec"]["messageId"] == message_id
    wait_until("the message to be deleted", lambda: app.queue_depth() == 0 or None, 30)
    time.sleep(6)  # one more visibility timeout: nothing comes back
    assert [e["metadata"]["name"] for e in app.executions()] == [execution_name(message_id)]
    assert [j.metadata.name for j in app.jobs()] == [execution_name(message_id)]


def test_a_batch_half_recorded_before_a_crash_ends_one_execution_per_message(app: App) -> None:
    app.define("hello")
    suspend(app)
    ids = [app.enqueue("hello", {"i": i}) for i in range(6)]
    received = receive_all(app, ids, visibility=3)
    # The crashed operator had recorded the first three, and deleted none.
    for message_id in ids[:3]:
        record_as_the_operator_would(app, "hello", received[message_id])
    duplicates_before = sample("barbeque_messages_duplicate_total", queue=app.queue)
    app.set_queue(suspend=False)

    executions = finished_executions(app, 6)
    wait_until("every message to be deleted", lambda: app.queue_depth() == 0 or None, 30)
    time.sleep(6)
    executions = app.executions()
    assert sorted(e["spec"]["messageId"] for e in executions) == sorted(ids)
    assert all(e["status"]["phase"] == "Succeeded" for e in executions)
    assert sorted(j.metadata.name for j in app.jobs()) == sorted(execution_name(i) for i in ids)
    assert sample("barbeque_messages_duplicate_total", queue=app.queue) == duplicates_before + 3


def test_a_crash_after_the_job_was_created_leaves_one_job(app: App) -> None:
    """Execution and Job exist, no status was written, the message was not deleted."""
    definition = app.define("hello")
    suspend(app)
    message_id = app.enqueue("hello", {"n": 1})
    received = receive_all(app, [message_id], visibility=3)
    created = record_as_the_operator_would(app, "hello", received[message_id], hold=15)
    execution = JobExecution.model_validate(created)
    job = builders.build_job(execution, JobDefinition.model_validate(definition))
    made = client.BatchV1Api(app.api).create_namespaced_job(app.namespace, job)
    app.set_queue(suspend=False)

    finished = app.wait_phase(execution_name(message_id), ("Succeeded",), timeout=60)
    assert finished["status"]["jobName"] == execution_name(message_id)
    wait_until("the message to be deleted", lambda: app.queue_depth() == 0 or None, 30)
    time.sleep(6)
    assert [e["metadata"]["name"] for e in app.executions()] == [execution_name(message_id)]
    jobs = app.jobs()
    assert [j.metadata.name for j in jobs] == [execution_name(message_id)]
    assert jobs[0].metadata.uid == made.metadata.uid, "the Job left behind was adopted"


def test_a_crash_after_the_retry_was_created_keeps_one_retry(app: App) -> None:
    """The retry exists, the failed parent's final status was never written."""
    app.define(
        "flaky",
        podAnnotations={EXIT_CODE_ANNOTATION: "3"},
        retry={"limit": 1, "baseDelaySeconds": 1, "jitter": False},
    )
    suspend(app)
    message_id = app.enqueue("flaky", {"n": 1})
    received = receive_all(app, [message_id], visibility=3)
    parent = JobExecution.model_validate(
        record_as_the_operator_would(app, "flaky", received[message_id], hold=8)
    )
    root = execution_name(message_id)
    retry = builders.build_execution(
        name=f"{root}-retry-1",
        namespace=app.namespace,
        application=app.namespace,
        job="flaky",
        queue=app.queue,
        message_id=f"{root}-retry-1",
        message=None,
        attempt=1,
        retry_of=root,
        original_message_id=message_id,
        owner=parent,
    )
    app.custom.create_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "jobexecutions", retry
    )
    app.set_queue(suspend=False)

    failed = app.wait_phase(root, ("Failed",), timeout=60)
    assert failed["status"]["retriedBy"] == f"{root}-retry-1"
    app.wait_phase(f"{root}-retry-1", ("Failed",), timeout=60)
    wait_until("the message to be deleted", lambda: app.queue_depth() == 0 or None, 30)
    time.sleep(3)
    assert sorted(e["metadata"]["name"] for e in app.executions()) == [root, f"{root}-retry-1"]
    assert sorted(j.metadata.name for j in app.jobs()) == [root, f"{root}-retry-1"]
