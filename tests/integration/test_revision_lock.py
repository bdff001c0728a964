"""barbeque's revision lock through the real Web API: ``POST`` and ``DELETE
/v1/apps/{name}/revision_lock`` annotate every JobDefinition of the application on the
real API server, and the operator (its own process) runs Jobs with the pinned tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from barbeque.api.revision import REVISION_LOCK
from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster
from tests.support import webapi_servers
from tests.support.aws import Aws
from tests.support.kube import service_account_token
from tests.support.operator import App, OperatorProcess, application
from tests.support.waiting import wait_until
from tests.support.webapi_servers import Service

pytestmark = pytest.mark.integration

service = webapi_servers.service
operator_process = webapi_servers.operator_process

REVISION = "798926db1e623cd51245b70b1f1acb40d780ddc1"


@pytest.fixture
def app(cluster: Cluster, aws: Aws, operator_process: OperatorProcess) -> Iterator[App]:
    with application(cluster, aws) as made:
        yield made


def definition(app: App, name: str) -> dict[str, Any]:
    found: dict[str, Any] = app.cluster.api(
        "GET",
        f"/apis/barbeque.dev/v1alpha1/namespaces/{app.namespace}/jobdefinitions/{name}",
    )
    return found


def job_image(service: Service, app: App, job: str) -> str:
    """Enqueue the barbeque way and return the image of the Job the operator created."""
    response = service.client().post(
        "/v2/job_executions",
        json={"application": app.namespace, "job": job, "queue": app.queue, "message": {}},
    )
    assert response.status_code == 201, response.text
    name = execution_name(response.json()["message_id"])
    app.wait_phase(name, ("Succeeded",), timeout=90)
    jobs = [j for j in app.jobs() if j.metadata.labels.get("barbeque.dev/execution") == name]
    assert len(jobs) == 1
    image: str = jobs[0].spec.template.spec.containers[0].image
    return image


def cached_lock(service: Service, app: App, job: str) -> Any:
    body = service.client().get(f"/v1/applications/{app.namespace}/job_definitions/{job}")
    return body.json().get("revision_lock") if body.status_code == 200 else "missing"


def test_a_revision_lock_pins_every_definition_and_its_release_restores_them(
    service: Service, app: App
) -> None:
    app.define("mail", image="registry.example:5000/shop/app:latest")
    app.define("report", image="registry.example:5000/shop/app@sha256:" + "a" * 64)
    wait_until("both definitions cached", lambda: cached_lock(service, app, "report") is None)

    locked = service.client().post(
        f"/v1/apps/{app.namespace}/revision_lock", json={"revision": REVISION}
    )
    assert locked.status_code == 201, locked.text
    assert locked.json() == {"revision": REVISION, "job_definitions": ["mail", "report"]}
    for name in ("mail", "report"):
        stored = definition(app, name)
        assert stored["metadata"]["annotations"][REVISION_LOCK] == REVISION
        assert stored["spec"]["image"].startswith("registry.example:5000/shop/app")
    shown = service.client().get(f"/v1/applications/{app.namespace}/job_definitions/report")
    assert shown.json()["effective_image"] == f"registry.example:5000/shop/app:{REVISION}"
    page = service.client().get(f"/applications/{app.namespace}/job_definitions/report").text
    assert f"registry.example:5000/shop/app:{REVISION}</code> (revision lock)" in page

    wait_until(
        "the operator to see the lock",
        lambda: job_image(service, app, "mail") == f"registry.example:5000/shop/app:{REVISION}",
        timeout=120,
    )

    released = service.client().delete(f"/v1/apps/{app.namespace}/revision_lock")
    assert released.status_code == 204
    assert released.content == b""
    assert REVISION_LOCK not in (definition(app, "mail")["metadata"].get("annotations") or {})
    wait_until(
        "the operator to see the release",
        lambda: job_image(service, app, "mail") == "registry.example:5000/shop/app:latest",
        timeout=120,
    )


def test_revision_lock_refusals(service: Service, app: App) -> None:
    app.define("mail")
    wait_until("the definition cached", lambda: cached_lock(service, app, "mail") is None)
    path = f"/v1/apps/{app.namespace}/revision_lock"

    missing = service.client().post(path, json={})
    assert missing.status_code == 400
    assert missing.json()["error_code"] == "invalid_parameter"
    assert "revision" in missing.json()["message"]
    bad = service.client().post(path, json={"revision": "no spaces"})
    assert bad.status_code == 400
    unknown = service.client().post("/v1/apps/no-such-app/revision_lock", json={"revision": "v1"})
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "record_not_found"
    anonymous = service.client(token=None).post(path, json={"revision": "v1"})
    assert anonymous.status_code == 401

    # A Kubernetes token may lock only with `patch` on the application's definitions.
    token = service_account_token(app.cluster, app.namespace, "deployer")
    denied = service.client(token=token).post(path, json={"revision": "v1"})
    assert denied.status_code == 403
    assert "patch jobdefinitions" in denied.json()["message"]
    assert REVISION_LOCK not in (definition(app, "mail")["metadata"].get("annotations") or {})
