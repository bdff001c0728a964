"""The Web API over real HTTP: moto's SQS and S3, and a real Kubernetes API server.

The operator does not run here: tests create JobExecutions in the states they need and
check what reached SQS, exactly as the operator would receive it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from barbeque.api import envelope
from barbeque.services.naming import execution_name
from tests.support import webapi_servers
from tests.support.waiting import wait_until
from tests.support.webapi import execution_body, queue_body
from tests.support.webapi_servers import App, Service

pytestmark = pytest.mark.integration

# The fixtures (cluster, aws and crds come from the root conftest).
service = webapi_servers.service
webapp = webapi_servers.webapp


def enqueue(client: httpx.Client, webapp: App, **overrides: Any) -> httpx.Response:
    body = {
        "application": webapp.name,
        "job": webapp.job,
        "queue": webapp.queue,
        "message": {"n": 1},
    }
    body.update(overrides)
    return client.post("/v2/job_executions", json=body)


def status_of(service: Service, message_id: str, **params: str) -> dict[str, Any]:
    response = service.client().get(f"/v1/job_executions/{message_id}", params=params)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def record(service: Service, webapp: App, message_id: str, **kwargs: Any) -> dict[str, Any]:
    """An execution as the operator would have recorded it, visible through the API."""
    body = execution_body(webapp.name, webapp.job, message_id, queue=webapp.queue, **kwargs)
    created = service.apply(body)
    phase = kwargs.get("phase")
    expected = {
        None: "pending",
        "Pending": "pending",
        "Scheduled": "pending",
        "Running": "running",
        "Succeeded": "success",
        "Failed": "failed",
        "Error": "error",
    }[phase]
    if not kwargs.get("retried_by"):
        wait_until(
            f"execution {message_id} to read {expected}",
            lambda: (
                status_of(service, message_id)["status"] == expected
                and status_of(service, message_id)["id"] is not None
            ),
        )
    return created


def test_enqueue_sends_barbeques_envelope_to_the_queues_sqs_queue(
    service: Service, webapp: App
) -> None:
    response = enqueue(service.client(), webapp, message={"user_id": 42, "text": "héllo"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"message_id", "status", "id"}
    assert body["status"] == "pending"
    assert body["id"] is None
    messages = service.receive(webapp.queue_url)
    assert [m["MessageId"] for m in messages] == [body["message_id"]]
    assert json.loads(messages[0]["Body"]) == {
        "Type": "JobExecution",
        "Application": webapp.name,
        "Job": webapp.job,
        "Message": {"user_id": 42, "text": "héllo"},
    }


def test_a_short_delay_holds_the_message_in_sqs(service: Service, webapp: App) -> None:
    assert enqueue(service.client(), webapp, delay_seconds=600).status_code == 201
    assert service.counts(webapp.queue_url)["delayed"] == 1
    assert service.receive(webapp.queue_url, wait=0) == []


def test_a_delay_beyond_900_seconds_becomes_a_scheduled_envelope(
    service: Service, webapp: App
) -> None:
    before = datetime.now(UTC)
    response = enqueue(service.client(), webapp, delay_seconds=7200)
    assert response.status_code == 201
    [message] = service.receive(webapp.queue_url)
    parsed = envelope.parse(message["Body"])
    assert isinstance(parsed, envelope.ExecutionRequest)
    assert parsed.not_before is not None
    assert timedelta(seconds=7190) < parsed.not_before - before < timedelta(seconds=7210)


def test_unknown_queue_is_404_record_not_found(service: Service, webapp: App) -> None:
    response = enqueue(service.client(), webapp, queue="no-such-queue")
    assert response.status_code == 404
    assert response.json() == {
        "status_code": 404,
        "error_code": "record_not_found",
        "message": "JobQueue 'no-such-queue' is not found",
    }


@pytest.mark.parametrize(
    "change", [{"application": ""}, {"job": None}, {"delay_seconds": -3}, {"queue": 7}]
)
def test_invalid_parameters_are_400(service: Service, webapp: App, change: dict[str, Any]) -> None:
    response = enqueue(service.client(), webapp, **change)
    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_parameter"
    assert response.json()["status_code"] == 400


def test_an_oversized_message_is_413_and_never_sent(service: Service, webapp: App) -> None:
    response = enqueue(service.client(), webapp, message="x" * 300_000)
    assert response.status_code == 413
    assert "256 KiB" in response.json()["message"]
    assert service.counts(webapp.queue_url)["visible"] == 0


def _envelope(webapp: App, message: bytes) -> bytes:
    head = json.dumps({"application": webapp.name, "job": webapp.job, "queue": webapp.queue})
    return head[:-1].encode() + b', "message": ' + message + b"}"


def _chunks(size: int) -> Iterator[bytes]:
    """A body of ``size`` bytes sent chunked: no Content-Length to refuse it by."""
    yield b'{"message": "'
    for _ in range(size // 65536):
        yield b"x" * 65536
    yield b'"}'


MiB = 1024 * 1024
JSON = "application/json"
# (how the body is made from the test's application, Content-Type, the answer)
BAD_ENQUEUES: dict[str, tuple[Callable[[App], bytes | Iterator[bytes]], str | None, int]] = {
    "a 300 KiB message": (lambda a: _envelope(a, b'"' + b"x" * 300 * 1024 + b'"'), JSON, 413),
    "a 5 MiB body": (lambda a: _envelope(a, b'"' + b"x" * 5 * MiB + b'"'), JSON, 413),
    "a 5 MiB body sent chunked": (lambda a: _chunks(5 * MiB), JSON, 413),
    "not JSON": (lambda a: b"application=shop&job=send", JSON, 400),
    "an empty body": (lambda a: b"", JSON, 400),
    "a JSON array": (lambda a: b'["application", "job"]', JSON, 400),
    "a JSON string": (lambda a: b'"enqueue please"', JSON, 400),
    "JSON null": (lambda a: b"null", JSON, 400),
    "truncated JSON": (lambda a: _envelope(a, b'{"user_id": 4')[:-3], JSON, 400),
    "invalid UTF-8": (lambda a: _envelope(a, b'"caf\xe9 \xff\xfe"'), JSON, 400),
    "JSON as text/plain": (lambda a: _envelope(a, b"1"), "text/plain", 415),
    "a form": (
        lambda a: f"application={a.name}&job={a.job}".encode(),
        "application/x-www-form-urlencoded",
        415,
    ),
    "JSON without a Content-Type": (lambda a: _envelope(a, b"1"), None, 415),
    "NaN": (lambda a: _envelope(a, b'{"ratio": NaN}'), JSON, 400),
    "1e400": (lambda a: _envelope(a, b"[1e400]"), JSON, 400),
    "an integer past int64": (lambda a: _envelope(a, str(2**64).encode()), JSON, 400),
    "a 5,000-digit integer": (lambda a: _envelope(a, b"7" * 5000), JSON, 400),
    "a message nested 65 levels": (lambda a: _envelope(a, b"[" * 65 + b"]" * 65), JSON, 400),
    "a body nested 100,000 levels": (lambda a: b"[" * 100_000 + b"]" * 100_000, JSON, 400),
    "a name of the wrong type": (
        lambda a: json.dumps(
            {"application": a.name, "job": 7, "queue": a.queue, "message": 1}
        ).encode(),
        JSON,
        400,
    ),
}


def assert_refused_in_json(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["status_code"] == status
    assert isinstance(body["error_code"], str)
    assert body["error_code"]
    assert isinstance(body["message"], str)
    assert " " in body["message"], body


@pytest.mark.parametrize("case", list(BAD_ENQUEUES))
def test_oversized_and_malformed_enqueues_are_4xx_with_a_json_reason(
    service: Service, webapp: App, case: str
) -> None:
    make, content_type, status = BAD_ENQUEUES[case]
    headers = {"Content-Type": content_type} if content_type else {}
    client = service.client()
    response = client.post("/v2/job_executions", content=make(webapp), headers=headers)
    if content_type is None:
        assert "content-type" not in response.request.headers
    assert_refused_in_json(response, status)
    assert service.counts(webapp.queue_url) == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert client.get("/healthz").status_code == 200


BAD_RETRIES: dict[str, tuple[bytes | Iterator[bytes], str | None, int]] = {
    "not JSON": (b"{delay_seconds: 0}", JSON, 400),
    "a JSON array": (b"[0]", JSON, 400),
    "invalid UTF-8": (b'{"delay_seconds": "\xff"}', JSON, 400),
    "a delay of the wrong type": (b'{"delay_seconds": "soon"}', JSON, 400),
    "JSON as text/plain": (b'{"delay_seconds": 0}', "text/plain", 415),
    "a 5 MiB body": (b'{"pad": "' + b"x" * 5 * MiB + b'"}', JSON, 413),
}


@pytest.mark.parametrize("case", list(BAD_RETRIES))
def test_malformed_retries_are_4xx_with_a_json_reason(
    service: Service, webapp: App, case: str
) -> None:
    content, content_type, status = BAD_RETRIES[case]
    message_id = f"bad-retry-{list(BAD_RETRIES).index(case)}"
    record(service, webapp, message_id, phase="Failed")
    headers = {"Content-Type": content_type} if content_type else {}
    response = service.client().post(
        f"/v1/job_executions/{message_id}/retries", content=content, headers=headers
    )
    assert_refused_in_json(response, status)
    assert service.counts(webapp.queue_url) == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_write_endpoints_need_a_token(service: Service, webapp: App) -> None:
    anonymous = enqueue(service.client(token=None), webapp)
    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "unauthorized"
    wrong = enqueue(service.client(token="wrong"), webapp)
    assert wrong.status_code == 401


def test_status_follows_the_execution_through_the_watch(service: Service, webapp: App) -> None:
    assert status_of(service, "not-yet")["status"] == "pending"
    created = record(service, webapp, "watched-1", phase="Running")
    assert status_of(service, "watched-1") == {
        "message_id": "watched-1",
        "status": "running",
        "id": execution_name("watched-1"),
    }
    service.patch_status(created, {"phase": "Succeeded"})
    wait_until(
        "success", lambda: status_of(service, "watched-1")["status"] == "success", timeout=10
    )
    # Deleted by the history policy: the final status is remembered.
    service.delete(created)
    wait_until(
        "the deleted execution to leave the list",
        lambda: (
            not service.client()
            .get("/v1/job_executions", params={"application": webapp.name})
            .json()["job_executions"]
        ),
    )
    assert status_of(service, "watched-1")["status"] == "success"
    # An unfinished execution that vanishes is unknown again.
    running = record(service, webapp, "watched-2", phase="Running")
    service.delete(running)
    wait_until(
        "the deleted execution to be forgotten",
        lambda: status_of(service, "watched-2")["id"] is None,
    )


def test_fields_add_the_console_url_and_the_message(service: Service, webapp: App) -> None:
    record(service, webapp, "with-fields", phase="Failed", message={"order": 9})
    body = status_of(service, "with-fields", fields="__default__,html_url,message")
    assert body["message"] == {"order": 9}
    assert body["html_url"] == f"{service.url}/job_executions/with-fields"
    assert body["status"] == "failed"
    page = service.client().get(body["html_url"], headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "with-fields" in page.text


def test_retry_sends_a_job_retry_to_the_executions_queue(service: Service, webapp: App) -> None:
    record(service, webapp, "to-retry", phase="Failed")
    response = service.client().post(
        "/v1/job_executions/to-retry/retries", json={"delay_seconds": 0}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    [message] = service.receive(webapp.queue_url)
    assert message["MessageId"] == body["message_id"]
    assert json.loads(message["Body"]) == {"Type": "JobRetry", "RetryMessageId": "to-retry"}


def test_a_retried_execution_reads_retried_then_its_last_retrys_status(
    service: Service, webapp: App
) -> None:
    first = record(service, webapp, "chain-1", phase="Failed", retried_by=execution_name("chain-2"))
    wait_until("retried", lambda: status_of(service, "chain-1")["status"] == "retried")
    second = record(
        service, webapp, "chain-2", phase="Running", retry_of=first["metadata"]["name"], attempt=1
    )
    assert status_of(service, "chain-1")["status"] == "retried"
    service.patch_status(second, {"phase": "Succeeded"})
    wait_until("success", lambda: status_of(service, "chain-1")["status"] == "success")


def test_retry_of_an_unknown_execution_is_404(service: Service) -> None:
    response = service.client().post("/v1/job_executions/ghost/retries", json={})
    assert response.status_code == 404
    assert response.json()["error_code"] == "record_not_found"


def test_cancel_sets_spec_cancel_on_the_execution(service: Service, webapp: App) -> None:
    created = record(service, webapp, "to-cancel", phase="Running")
    response = service.client().post("/v1/job_executions/to-cancel/cancel")
    assert response.status_code == 202
    assert service.get(created)["spec"]["cancel"] is True


def test_listing_filters_executions(service: Service, webapp: App) -> None:
    record(service, webapp, "list-a", phase="Failed")
    record(service, webapp, "list-b", phase="Succeeded")
    response = service.client().get(
        "/v1/job_executions", params={"application": webapp.name, "status": "failed"}
    )
    assert response.status_code == 200
    assert [e["message_id"] for e in response.json()["job_executions"]] == ["list-a"]


def test_queue_endpoint_reports_sqs_figures_and_dead_letter_queue(service: Service) -> None:
    dlq_url = service.sqs_queue("webapi-dlq")
    arn = service.sqs().get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    url = service.sqs_queue(
        "Barbeque-with-dlq",
        {"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "3"})},
    )
    service.sqs().send_message(QueueUrl=url, MessageBody="{}")
    service.sqs().send_message(QueueUrl=dlq_url, MessageBody="{}")
    queue = service.apply(queue_body("with-dlq"))
    try:
        body = wait_until(
            "the queue in the cache",
            lambda: (
                service.client().get("/v1/job_queues/with-dlq").json().get("name")
                and service.client().get("/v1/job_queues/with-dlq").json()
            ),
        )
        assert body["queue_url"] == url
        assert body["visible"] == 1
        assert body["dead_letter_queue_url"] == dlq_url
        assert body["dead_letter_visible"] == 1
    finally:
        service.delete(queue)


def test_kubernetes_tokens_are_checked_with_rbac(service: Service, webapp: App) -> None:
    cluster = service.cluster
    cluster.api(
        "POST",
        f"/api/v1/namespaces/{webapp.name}/serviceaccounts",
        {"metadata": {"name": "enqueuer"}},
    )
    token = cluster.api(
        "POST",
        f"/api/v1/namespaces/{webapp.name}/serviceaccounts/enqueuer/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]
    denied = enqueue(service.client(token=token), webapp)
    assert denied.status_code == 403
    assert denied.json()["error_code"] == "forbidden"
    assert "enqueuer" in denied.json()["message"]
    cluster.api(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{webapp.name}/roles",
        {
            "metadata": {"name": "enqueue"},
            "rules": [
                {
                    "apiGroups": ["barbeque.dev"],
                    "resources": ["jobexecutions"],
                    "verbs": ["create"],
                }
            ],
        },
    )
    cluster.api(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{webapp.name}/rolebindings",
        {
            "metadata": {"name": "enqueue"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "enqueue"},
            "subjects": [{"kind": "ServiceAccount", "name": "enqueuer", "namespace": webapp.name}],
        },
    )
    allowed = wait_until(
        "RBAC to allow the ServiceAccount",
        lambda: (r := enqueue(service.client(token=token), webapp)).status_code == 201 and r,
    )
    assert allowed.json()["status"] == "pending"


def test_logs_from_s3_show_on_the_execution_page(service: Service, webapp: App) -> None:
    prefix = f"{webapp.name}/{webapp.job}/logged/"
    s3 = service.s3()
    s3.put_object(Bucket="barbeque-webapi", Key=prefix + "stdout.txt", Body=b"hello from S3\n")
    record(
        service, webapp, "logged", phase="Succeeded", logs_prefix=prefix, bucket="barbeque-webapi"
    )
    page = service.client().get("/job_executions/logged")
    assert page.status_code == 200
    assert "hello from S3" in page.text


def test_health_and_openapi(service: Service) -> None:
    client = service.client(token=None)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    assert "/v2/job_executions" in spec["paths"]
