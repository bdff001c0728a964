"""SNS fan-out end to end: SNSSubscriptions subscribe the queue (moto's SNS and SQS over
HTTP), a publish to the topic runs every subscribed definition on the local control
plane, and deleting the subscriptions unsubscribes the queue.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.support import samples
from tests.support.operator import GROUP, VERSION, App
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def get_subscription(app: App, name: str) -> dict[str, Any] | None:
    items = app.custom.list_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "snssubscriptions"
    )["items"]
    return next((i for i in items if i["metadata"]["name"] == name), None)


def subscribed(app: App, name: str) -> dict[str, Any] | None:
    found = get_subscription(app, name)
    return found if found and (found.get("status") or {}).get("phase") == "Subscribed" else None


def test_a_publish_runs_every_subscribed_definition_and_deleting_unsubscribes(
    app: App,
) -> None:
    sns, sqs = app.aws.sns(), app.aws.sqs()
    topic = sns.create_topic(Name=f"orders-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=app.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    app.define("notify")
    app.define("archive")
    app.subscribe("orders-notify", topic, "notify")
    app.subscribe("orders-archive", topic, "archive")

    first = wait_until("orders-notify Subscribed", lambda: subscribed(app, "orders-notify"), 30)
    wait_until("orders-archive Subscribed", lambda: subscribed(app, "orders-archive"), 30)
    assert "barbeque.dev/sns-unsubscribe" in first["metadata"]["finalizers"]
    assert first["status"]["queueArn"] == queue_arn
    endpoints = [
        s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    ]
    assert endpoints == [queue_arn]  # one SNS subscription of the queue, shared
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=app.queue_url, AttributeNames=["Policy"])["Attributes"][
            "Policy"
        ]
    )
    [statement] = policy["Statement"]
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == queue_arn
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == [topic]

    sns.publish(TopicArn=topic, Message=json.dumps({"order": 7}))

    executions = app.wait_succeeded(2, 90)
    assert sorted(e["spec"]["job"] for e in executions) == ["archive", "notify"]
    assert all(e["spec"]["message"] == {"order": 7} for e in executions)
    for job in app.jobs():
        env = {v.name: v.value for v in job.spec.template.spec.containers[0].env}
        assert json.loads(env["BARBEQUE_MESSAGE"]) == {"order": 7}
    wait_until("the SNS message to leave SQS", lambda: app.queue_depth() == 0 or None, 15)

    app.custom.delete_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "snssubscriptions", "orders-notify"
    )
    wait_until("orders-notify gone", lambda: get_subscription(app, "orders-notify") is None, 30)
    # The other definition still listens: the queue stays subscribed and allowed.
    assert [
        s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    ] == [queue_arn]

    app.custom.delete_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "snssubscriptions", "orders-archive"
    )
    wait_until("orders-archive gone", lambda: get_subscription(app, "orders-archive") is None, 30)
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
    attributes = sqs.get_queue_attributes(QueueUrl=app.queue_url, AttributeNames=["Policy"])
    assert not attributes.get("Attributes", {}).get("Policy")


def test_a_subscription_naming_a_missing_queue_says_so_and_still_deletes(app: App) -> None:
    body = app.subscribe("lost", "arn:aws:sns:us-east-1:123456789012:nowhere", "notify")
    assert body["spec"]["queue"] == app.queue
    app.custom.patch_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "snssubscriptions", "lost", {"spec": {"queue": "no-such"}}
    )

    def error() -> dict[str, Any] | None:
        found = get_subscription(app, "lost") or {}
        status = found.get("status") or {}
        return found if "no JobQueue named 'no-such'" in (status.get("message") or "") else None

    assert wait_until("the missing queue reported", error, 30)["status"]["phase"] == "Error"
    app.custom.delete_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "snssubscriptions", "lost"
    )
    wait_until("lost gone", lambda: get_subscription(app, "lost") is None, 30)


def test_a_subscription_applied_before_its_queue_subscribes_as_soon_as_the_queue_comes(
    app: App,
) -> None:
    # `kubectl apply` of a JobQueue and its subscriptions together: the subscription may
    # be seen first. It waits in Error, and the queue's arrival (not the 30 s retry)
    # subscribes it.
    topic = app.aws.sns().create_topic(Name=f"late-{uuid.uuid4().hex[:8]}")["TopicArn"]
    late = f"late-{app.queue}"
    app.subscribe("early", topic, "notify")
    app.custom.patch_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "snssubscriptions", "early", {"spec": {"queue": late}}
    )

    def waiting() -> dict[str, Any] | None:
        status = (get_subscription(app, "early") or {}).get("status") or {}
        return status if f"no JobQueue named {late!r}" in (status.get("message") or "") else None

    wait_until("the subscription waiting for its queue", waiting, 30)
    app.custom.create_cluster_custom_object(
        GROUP, VERSION, "jobqueues", samples.queue(late, queueUrl=app.queue_url)
    )
    try:
        wait_until("subscribed once the queue came", lambda: subscribed(app, "early"), 10)
    finally:
        app.custom.delete_namespaced_custom_object(
            GROUP, VERSION, app.namespace, "snssubscriptions", "early"
        )
        wait_until("early gone", lambda: get_subscription(app, "early") is None, 30)
        app.custom.delete_cluster_custom_object(GROUP, VERSION, "jobqueues", late)
