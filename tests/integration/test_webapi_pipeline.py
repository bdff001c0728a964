"""The Web API in front of the real operator: enqueue over HTTP, the operator runs the Job
on the local control plane (kwok pods), and the API and console report the outcome.

The operator and the web service each run as their own process, as they ship
(``python -m barbeque operator``, ``python -m barbeque_dashboard``); Kubernetes is the
local control plane; SQS and S3 are moto's server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from barbeque.services.naming import execution_name
from tests.cluster.harness import DURATION_ANNOTATION, Cluster
from tests.support import webapi_servers
from tests.support.aws import Aws
from tests.support.operator import App, OperatorProcess, application
from tests.support.waiting import wait_until
from tests.support.webapi_servers import Service

pytestmark = pytest.mark.integration

service = webapi_servers.service
operator_process = webapi_servers.operator_process


@pytest.fixture
def app(cluster: Cluster, aws: Aws, operator_process: OperatorProcess) -> Iterator[App]:
    with application(cluster, aws) as made:
        yield made


FAIL = {"barbeque.dev/kwok-exit-code": "3"}


def enqueue(service: Service, app: App, job: str, **extra: Any) -> str:
    response = service.client().post(
        "/v2/job_executions",
        json={
            "application": app.namespace,
            "job": job,
            "queue": app.queue,
            "message": {"from": "web api"},
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    message_id: str = response.json()["message_id"]
    return message_id


def status_of(service: Service, message_id: str) -> str:
    word: str = service.client().get(f"/v1/job_executions/{message_id}").json()["status"]
    return word


def wait_status(service: Service, message_id: str, word: str, timeout: float = 90) -> None:
    wait_until(
        f"{message_id} to read {word}",
        lambda: status_of(service, message_id) == word,
        timeout=timeout,
    )


def wait_for_definition(service: Service, app: App, job: str) -> None:
    wait_until(
        f"JobDefinition {job} in the web service's cache",
        lambda: (
            service.client()
            .get(f"/v1/applications/{app.namespace}/job_definitions/{job}")
            .status_code
            == 200
        ),
    )


def test_an_enqueued_message_runs_to_success_with_its_logs_on_the_console(
    service: Service, app: App
) -> None:
    app.define("hello")
    wait_for_definition(service, app, "hello")
    message_id = enqueue(service, app, "hello")
    wait_status(service, message_id, "success")
    body = (
        service.client()
        .get(f"/v1/job_executions/{message_id}", params={"fields": "__default__,message"})
        .json()
    )
    assert body == {
        "message_id": message_id,
        "status": "success",
        "id": execution_name(message_id),
        "message": {"from": "web api"},
    }

    def logs_shown() -> bool:
        page = service.client().get(f"/job_executions/{message_id}").text
        return "hello from kwok" in page

    wait_until("the S3 logs on the execution page", logs_shown, timeout=60)


def test_a_manual_retry_runs_and_the_original_follows_it(service: Service, app: App) -> None:
    app.define("flaky", podAnnotations=FAIL, retry={"limit": 0})
    wait_for_definition(service, app, "flaky")
    message_id = enqueue(service, app, "flaky")
    wait_status(service, message_id, "failed")

    response = service.client().post(f"/v1/job_executions/{message_id}/retries", json={})
    assert response.status_code == 201
    retry_id = response.json()["message_id"]
    wait_status(service, retry_id, "failed")
    retry = app.execution(execution_name(retry_id))
    assert retry is not None
    assert retry["spec"]["retryOf"] == execution_name(message_id)
    assert retry["spec"]["attempt"] == 1
    # The original's final status follows its last retry, and its page shows the chain.
    wait_status(service, message_id, "failed")
    page = service.client().get(f"/job_executions/{message_id}").text
    assert f'href="/job_executions/{retry_id}"' in page


def test_a_job_retrying_itself_while_it_runs_runs_once_more_not_twice(
    service: Service, app: App
) -> None:
    """barbeque_client's Retryable: the running job asks for its retry (201), then fails.
    The retry it asked for runs; the definition's automatic retry of that attempt is not
    made on top of it."""
    app.define(
        "self-retrying",
        podAnnotations={**FAIL, DURATION_ANNOTATION: "5000"},
        retry={"limit": 1, "baseDelaySeconds": 0, "jitter": False},
    )
    wait_for_definition(service, app, "self-retrying")
    message_id = enqueue(service, app, "self-retrying")
    wait_status(service, message_id, "running")

    response = service.client().post(f"/v1/job_executions/{message_id}/retries", json={})
    assert response.status_code == 201, response.text
    retry_id = response.json()["message_id"]
    root = execution_name(message_id)
    app.wait_phase(root, ("Failed",))
    retry = app.wait_phase(execution_name(retry_id), ("Failed",), timeout=90)
    assert (retry["spec"]["retryOf"], retry["spec"]["attempt"]) == (root, 1)
    assert app.execution(root)["status"]["retriedBy"] == execution_name(retry_id)  # type: ignore[index]
    names = sorted(e["metadata"]["name"] for e in app.executions())
    assert names == sorted([root, execution_name(retry_id)])
    assert f"{root}-retry-1" not in names


def test_an_application_named_by_its_namespaces_annotation_keeps_its_barbeque_name(
    service: Service, app: App
) -> None:
    """barbeque's app names need not be namespace names (my_app, MyApp): the namespace
    annotated barbeque.dev/application holds the application; messages, the Web API, the
    job's environment and the S3 keys keep the barbeque name."""
    application = f"My_App_{app.namespace[-8:]}"
    app.cluster.kubectl(
        "annotate", "namespace", app.namespace, f"barbeque.dev/application={application}"
    )
    app.define("hello")
    wait_until(
        "the annotated application's definition in the web service",
        lambda: (
            service.client()
            .get(f"/v1/applications/{application}/job_definitions/hello")
            .status_code
            == 200
        ),
    )
    response = service.client().post(
        "/v2/job_executions",
        json={"application": application, "job": "hello", "queue": app.queue, "message": [1]},
    )
    assert response.status_code == 201, response.text
    message_id = response.json()["message_id"]
    wait_status(service, message_id, "success")

    execution = app.execution(execution_name(message_id))
    assert execution is not None
    assert (execution["metadata"]["namespace"], execution["spec"]["application"]) == (
        app.namespace,
        application,
    )
    assert execution["status"]["logs"]["prefix"] == f"{application}/hello/{message_id}/"
    [job] = [j for j in app.jobs() if j.metadata.name == execution_name(message_id)]
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["BARBEQUE_APPLICATION"] == application
    listed = service.client().get("/v1/job_definitions", params={"application": application})
    assert [(d["application"], d["job"]) for d in listed.json()] == [(application, "hello")]


def test_a_long_delay_is_scheduled_then_cancelled(service: Service, app: App) -> None:
    app.define("later")
    wait_for_definition(service, app, "later")
    message_id = enqueue(service, app, "later", delay_seconds=3600)
    name = execution_name(message_id)
    app.wait_phase(name, ("Scheduled",))
    assert status_of(service, message_id) == "pending"
    wait_until(
        "the scheduled execution on the queue page",
        lambda: message_id in service.client().get(f"/job_queues/{app.queue}").text,
    )

    response = service.client().post(f"/v1/job_executions/{message_id}/cancel")
    assert response.status_code == 202
    cancelled = app.wait_phase(name, ("Failed",))
    assert cancelled["status"]["reason"] == "Cancelled"
    wait_status(service, message_id, "failed")
