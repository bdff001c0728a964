"""The Web API's barbeque-compatible shapes and our additions, against in-memory fakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from barbeque.api import envelope
from barbeque.api.models import Phase
from tests.support.webapi import AUTH, WebWorld, execution_body, finished_history

pytestmark = pytest.mark.unit


def enqueue(client: TestClient, **overrides: Any) -> Any:
    body = {"application": "shop", "job": "SendMail", "queue": "default", "message": {"a": 1}}
    body.update(overrides)
    return client.post("/v2/job_executions", json=body, headers=AUTH)


def test_enqueue_answers_201_pending_with_the_sqs_message_id(
    client: TestClient, world: WebWorld
) -> None:
    response = enqueue(client)
    assert response.status_code == 201
    sent = world.sqs.sent[0]
    assert response.json() == {"message_id": sent["id"], "status": "pending", "id": None}
    assert sent["body"] == {
        "Type": "JobExecution",
        "Application": "shop",
        "Job": "SendMail",
        "Message": {"a": 1},
    }
    assert sent["delay"] == 0
    assert sent["url"].endswith("/Barbeque-default")


@pytest.mark.parametrize("message", [None, 1, "text", [1, 2], {"deep": {"x": [True]}}])
def test_enqueue_passes_any_json_message_through(
    client: TestClient, world: WebWorld, message: Any
) -> None:
    assert enqueue(client, message=message).status_code == 201
    assert world.sqs.sent[-1]["body"]["Message"] == message


def test_short_delay_uses_sqs_delay_seconds(client: TestClient, world: WebWorld) -> None:
    assert enqueue(client, delay_seconds=900).status_code == 201
    assert world.sqs.sent[-1]["delay"] == 900
    assert "NotBefore" not in world.sqs.sent[-1]["body"]


def test_long_delay_becomes_not_before_in_the_envelope(client: TestClient, world: WebWorld) -> None:
    before = datetime.now(UTC)
    assert enqueue(client, delay_seconds=3600).status_code == 201
    sent = world.sqs.sent[-1]
    assert sent["delay"] == 0
    parsed = envelope.parse(json.dumps(sent["body"]))
    assert isinstance(parsed, envelope.ExecutionRequest)
    assert parsed.not_before is not None
    assert before + timedelta(seconds=3599) <= parsed.not_before <= before + timedelta(seconds=3601)


def test_unknown_queue_is_404_record_not_found(client: TestClient) -> None:
    response = enqueue(client, queue="nope")
    assert response.status_code == 404
    body = response.json()
    assert body["status_code"] == 404
    assert body["error_code"] == "record_not_found"
    assert "nope" in body["message"]
    assert set(body) == {"status_code", "error_code", "message"}


def test_unknown_job_definition_is_404(client: TestClient) -> None:
    response = enqueue(client, job="Missing")
    assert response.status_code == 404
    assert response.json()["error_code"] == "record_not_found"


@pytest.mark.parametrize(
    "change",
    [
        {"application": None},
        {"job": 5},
        {"queue": ""},
        {"delay_seconds": -1},
        {"delay_seconds": "soon"},
        {"delay_seconds": 1.5},
        {"delay_seconds": 10**9},
    ],
)
def test_bad_parameters_are_400_invalid_parameter(
    client: TestClient, change: dict[str, Any]
) -> None:
    response = enqueue(client, **change)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status_code"] == 400
    assert body["error_code"] == "invalid_parameter"
    assert body["message"]


def test_missing_message_is_400(client: TestClient) -> None:
    body = {"application": "shop", "job": "SendMail", "queue": "default"}
    response = client.post("/v2/job_executions", json=body, headers=AUTH)
    assert response.status_code == 400
    assert "message" in response.json()["message"]


def test_not_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/v2/job_executions",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_parameter"


def test_message_over_256_kib_is_413(client: TestClient, world: WebWorld) -> None:
    response = enqueue(client, message="x" * (256 * 1024))
    assert response.status_code == 413
    assert response.json()["error_code"] == "payload_too_large"
    assert "256 KiB" in response.json()["message"]
    assert world.sqs.sent == []


def test_message_just_under_the_limit_is_sent(client: TestClient, world: WebWorld) -> None:
    overhead = len(envelope.encode_execution("shop", "SendMail", ""))
    assert enqueue(client, message="x" * (256 * 1024 - overhead)).status_code == 201


def test_status_of_unknown_message_is_pending(client: TestClient) -> None:
    response = client.get("/v1/job_executions/never-seen", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"message_id": "never-seen", "status": "pending", "id": None}


@pytest.mark.parametrize(
    ("phase", "word"),
    [
        (None, "pending"),
        (Phase.PENDING.value, "pending"),
        (Phase.SCHEDULED.value, "pending"),
        (Phase.RUNNING.value, "running"),
        (Phase.SUCCEEDED.value, "success"),
        (Phase.FAILED.value, "failed"),
        (Phase.ERROR.value, "error"),
    ],
)
def test_status_speaks_barbeque_words(
    client: TestClient, world: WebWorld, phase: str | None, word: str
) -> None:
    body = world.add(execution_body("shop", "SendMail", "m-1", phase=phase))
    response = client.get("/v1/job_executions/m-1", headers=AUTH)
    assert response.json() == {
        "message_id": "m-1",
        "status": word,
        "id": body["metadata"]["name"],
    }


def test_fields_add_html_url_and_message(client: TestClient, world: WebWorld) -> None:
    world.add(execution_body("shop", "SendMail", "m-2", message={"user": 7}))
    response = client.get(
        "/v1/job_executions/m-2?fields=__default__,html_url,message", headers=AUTH
    )
    body = response.json()
    assert body["message"] == {"user": 7}
    assert body["html_url"] == "http://testserver/job_executions/m-2"
    assert body["status"] == "pending"


def test_retried_execution_reads_retried_until_its_last_retry_finishes(
    client: TestClient, world: WebWorld
) -> None:
    world.add(execution_body("shop", "SendMail", "first", phase="Failed", retried_by="second"))
    world.add(
        execution_body("shop", "SendMail", "second", phase="Running", retry_of="first", attempt=1)
    )
    assert client.get("/v1/job_executions/first").json()["status"] == "retried"
    assert client.get("/v1/job_executions/second").json()["status"] == "running"
    world.add(
        execution_body("shop", "SendMail", "second", phase="Succeeded", retry_of="first", attempt=1)
    )
    assert client.get("/v1/job_executions/first").json()["status"] == "success"


def test_retry_sends_job_retry_and_answers_the_new_message_id(
    client: TestClient, world: WebWorld
) -> None:
    world.add(execution_body("shop", "SendMail", "m-f", phase="Failed"))
    response = client.post(
        "/v1/job_executions/m-f/retries", json={"delay_seconds": 10}, headers=AUTH
    )
    assert response.status_code == 201
    sent = world.sqs.sent[-1]
    assert response.json() == {"message_id": sent["id"], "status": "pending"}
    assert sent["body"] == {"Type": "JobRetry", "RetryMessageId": "m-f"}
    assert sent["delay"] == 10


def test_retry_without_body_uses_no_delay(client: TestClient, world: WebWorld) -> None:
    world.add(execution_body("shop", "SendMail", "m-e", phase="Error"))
    response = client.post("/v1/job_executions/m-e/retries", headers=AUTH)
    assert response.status_code == 201
    assert world.sqs.sent[-1]["delay"] == 0


def test_retry_of_a_retried_execution_retries_its_last_attempt(
    client: TestClient, world: WebWorld
) -> None:
    world.add(execution_body("shop", "SendMail", "a", phase="Failed", retried_by="b"))
    world.add(execution_body("shop", "SendMail", "b", phase="Failed", retry_of="a", attempt=1))
    assert client.post("/v1/job_executions/a/retries", headers=AUTH).status_code == 201
    assert world.sqs.sent[-1]["body"]["RetryMessageId"] == "b"


def test_retry_of_unknown_execution_is_404(client: TestClient) -> None:
    response = client.post("/v1/job_executions/ghost/retries", json={}, headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error_code"] == "record_not_found"


@pytest.mark.parametrize("phase", [None, "Pending", "Scheduled", "Running", "Succeeded"])
def test_retry_is_accepted_in_any_state_as_barbeque_does(
    client: TestClient, world: WebWorld, phase: str | None
) -> None:
    """A job retrying itself while it runs (barbeque_client's Retryable) gets its 201."""
    world.add(execution_body("shop", "SendMail", "live", phase=phase))
    response = client.post("/v1/job_executions/live/retries", json={}, headers=AUTH)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    [sent] = world.sqs.sent
    assert sent["body"] == {"Type": "JobRetry", "RetryMessageId": "live"}


def test_retry_with_negative_delay_is_400(client: TestClient, world: WebWorld) -> None:
    world.add(execution_body("shop", "SendMail", "neg", phase="Failed"))
    response = client.post(
        "/v1/job_executions/neg/retries", json={"delay_seconds": -5}, headers=AUTH
    )
    assert response.status_code == 400


def test_cancel_patches_a_running_execution(client: TestClient, world: WebWorld) -> None:
    body = world.add(execution_body("shop", "SendMail", "run", phase="Running"))
    response = client.post("/v1/job_executions/run/cancel", headers=AUTH)
    assert response.status_code == 202
    assert world.kube.cancelled == [("shop", body["metadata"]["name"])]


def test_cancel_of_a_finished_execution_is_409(client: TestClient, world: WebWorld) -> None:
    world.add(execution_body("shop", "SendMail", "done", phase="Succeeded"))
    assert client.post("/v1/job_executions/done/cancel", headers=AUTH).status_code == 409


def test_list_filters_by_status_and_pages_newest_first(client: TestClient, world: WebWorld) -> None:
    for body in finished_history(30, failed_every=3, prefix="m"):
        world.add(body)
    response = client.get("/v1/job_executions?status=failed&per_page=4&page=2", headers=AUTH)
    body = response.json()
    assert body["total"] == 10
    assert [e["message_id"] for e in body["job_executions"]] == ["m15", "m12", "m09", "m06"]
    assert all(e["status"] == "failed" for e in body["job_executions"])


def test_list_with_unknown_status_is_400(client: TestClient) -> None:
    assert client.get("/v1/job_executions?status=bogus").status_code == 400


def test_definitions_queues_and_applications_are_listed(client: TestClient) -> None:
    assert client.get("/v1/applications").json() == [
        {"name": "shop", "job_definitions": ["SendMail"]}
    ]
    definitions = client.get("/v1/job_definitions?application=shop").json()
    assert definitions[0]["job"] == "SendMail"
    assert definitions[0]["retry"] is None  # no retry config: no automatic retries
    queues = client.get("/v1/job_queues").json()
    assert queues[0]["name"] == "default"
    assert client.get("/v1/job_queues/none").status_code == 404


def test_sns_subscriptions_are_listed_by_application(client: TestClient, world: WebWorld) -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:orders"
    world.cache.replace(
        "snssubscriptions",
        [
            {
                "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": "3"},
                "spec": {"topicArn": topic, "queue": "default", "job": "SendMail"},
                "status": {"phase": "Subscribed", "subscriptionArn": f"{topic}:1"},
            }
        ],
    )
    assert client.get("/v1/sns_subscriptions?application=shop").json() == [
        {
            "application": "shop",
            "name": "orders",
            "topic_arn": topic,
            "queue": "default",
            "job": "SendMail",
            "status": "Subscribed",
            "message": None,
            "subscription_arn": f"{topic}:1",
        }
    ]
    assert client.get("/v1/sns_subscriptions?application=other").json() == []


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readiness_waits_for_the_cache() -> None:
    world = WebWorld()
    world.cache.synced.clear()
    with TestClient(world.app) as client:
        assert client.get("/readyz").status_code == 503


def test_openapi_documents_the_barbeque_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v2/job_executions" in paths
    assert "/v1/job_executions/{message_id}" in paths
    assert "/v1/job_executions/{message_id}/retries" in paths
    assert "/applications" not in paths


def test_openapi_links_lead_from_a_message_id_to_its_status_retry_and_cancel(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    operations = {
        op["operationId"]: (path, op)
        for path, methods in spec["paths"].items()
        for op in methods.values()
    }
    links = {
        (operations_id, status, name): link
        for operations_id, (_, op) in operations.items()
        for status, response in op["responses"].items()
        for name, link in response.get("links", {}).items()
    }
    assert {(source, name) for source, _, name in links} >= {
        ("enqueue_job_execution", "Status"),
        ("enqueue_job_execution", "Retry"),
        ("enqueue_job_execution", "Cancel"),
        ("retry_job_execution", "Status"),
        ("list_job_executions", "Retry"),
    }
    for (source, status, name), link in links.items():
        path, _ = operations[link["operationId"]]
        assert set(link["parameters"]) == {"message_id"}, (source, name)
        assert "{message_id}" in path
        assert status.startswith("2"), (source, status)
        expression = link["parameters"]["message_id"]
        assert expression.startswith("$response.body#/")
        assert expression.endswith("/message_id")


def test_a_finished_execution_deleted_by_history_keeps_its_status(
    client: TestClient, world: WebWorld
) -> None:
    body = world.add(
        execution_body(
            "shop", "SendMail", "old-one", phase="Succeeded", logs_prefix="shop/SendMail/old-one/"
        )
    )
    world.s3.objects["shop/SendMail/old-one/execution.json"] = json.dumps(
        {
            "name": "old-one",
            "namespace": "shop",
            "spec": body["spec"],
            "phase": "Succeeded",
            "exitCode": 0,
            "startedAt": "2026-01-01T00:00:00+00:00",
            "finishedAt": "2026-01-01T00:00:05+00:00",
        }
    )
    world.s3.objects["shop/SendMail/old-one/stdout.txt"] = "archived output"
    world.cache.apply("jobexecutions", "DELETED", body)
    assert client.get("/v1/job_executions/old-one").json() == {
        "message_id": "old-one",
        "status": "success",
        "id": "old-one",
    }
    page = client.get("/job_executions/old-one", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "archived output" in page.text
    assert "deleted from the cluster" in page.text
    # Unfinished executions that vanish are simply unknown again.
    running = world.add(execution_body("shop", "SendMail", "vanished", phase="Running"))
    world.cache.apply("jobexecutions", "DELETED", running)
    assert client.get("/v1/job_executions/vanished").json()["id"] is None
