"""Conditions and Warning Events as a user sees them: `kubectl wait`, `kubectl describe`.

The operator runs in-process against the real API server (kwok nodes, moto's SQS and S3).
Only trouble is recorded as an Event; a queue and a definition that are fine get Ready.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client

from barbeque.services.builders import EVENT_CONTROLLER
from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster
from tests.support import samples
from tests.support.operator import GROUP, VERSION, App
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

FAIL = {"barbeque.dev/kwok-exit-code": "3"}


def our_events(cluster: Cluster, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    """The operator's Events in ``namespace`` (about the object ``name`` if given)."""
    found = json.loads(
        cluster.kubectl("get", "events.events.k8s.io", "-n", namespace, "-o", "json").stdout
    )
    return [
        e
        for e in found["items"]
        if e.get("reportingController") == EVENT_CONTROLLER
        and name in (None, (e.get("regarding") or {}).get("name"))
    ]


def ready_of(body: dict[str, Any]) -> dict[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next(c for c in conditions if c["type"] == "Ready")


def test_kubectl_wait_for_ready_works_on_a_queue_and_a_definition(
    app: App, cluster: Cluster
) -> None:
    cluster.kubectl("wait", "--for=condition=Ready", f"jobqueue/{app.queue}", "--timeout=30s")
    app.define("hello")
    cluster.kubectl(
        "wait", "--for=condition=Ready", "jobdefinition/hello", "-n", app.namespace, "--timeout=30s"
    )

    queue = app.custom.get_cluster_custom_object(GROUP, VERSION, "jobqueues", app.queue)
    ready = ready_of(queue)
    assert ready["reason"] == "Polling"
    assert ready["observedGeneration"] == queue["metadata"]["generation"]
    assert ready["lastTransitionTime"]
    assert queue["status"]["phase"] == "Ready"
    definition = app.custom.get_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "jobdefinitions", "hello"
    )
    ready = ready_of(definition)
    assert (ready["status"], ready["reason"]) == ("True", "Valid")
    assert definition["status"]["observedGeneration"] == definition["metadata"]["generation"]
    # The happy path records no Event.
    assert our_events(cluster, app.namespace, "hello") == []


def test_a_suspended_queue_stays_ready_and_says_so(app: App, cluster: Cluster) -> None:
    app.set_queue(suspend=True)
    queue = wait_until(
        "the Ready condition to say Suspended",
        lambda: (
            q
            if ready_of(
                q := app.custom.get_cluster_custom_object(GROUP, VERSION, "jobqueues", app.queue)
            )["reason"]
            == "Suspended"
            else None
        ),
        30,
    )
    assert ready_of(queue)["status"] == "True"


def test_a_queue_that_cannot_be_resolved_is_not_ready_with_a_warning_event(
    app: App, cluster: Cluster
) -> None:
    name = f"missing-{uuid.uuid4().hex[:8]}"
    body = samples.queue(name, queueName=f"NoSuchQueue-{name}", receiveWaitSeconds=1)
    app.custom.create_cluster_custom_object(GROUP, VERSION, "jobqueues", body)
    try:
        cluster.kubectl("wait", "--for=condition=Ready=false", f"jobqueue/{name}", "--timeout=30s")
        queue = app.custom.get_cluster_custom_object(GROUP, VERSION, "jobqueues", name)
        ready = ready_of(queue)
        assert ready["reason"] == "ResolveFailed"
        assert "cannot use the SQS queue" in ready["message"]
        assert queue["status"]["phase"] == "Error"
        # Events of a cluster-scoped object live in `default`; describe finds them there.
        events = wait_until("a Warning Event", lambda: our_events(cluster, "default", name), 30)
        assert [(e["type"], e["reason"]) for e in events] == [("Warning", "ResolveFailed")]
        assert events[0]["regarding"]["kind"] == "JobQueue"
        described = cluster.kubectl("describe", "jobqueue", name).stdout
        assert "ResolveFailed" in described
    finally:
        app.custom.delete_cluster_custom_object(GROUP, VERSION, "jobqueues", name)


def test_a_definition_with_a_malformed_image_is_not_ready_and_its_executions_error(
    app: App, cluster: Cluster
) -> None:
    app.define("shouty", image="Registry/Team/App:1")
    cluster.kubectl(
        "wait",
        "--for=condition=Ready=false",
        "jobdefinition/shouty",
        "-n",
        app.namespace,
        "--timeout=30s",
    )
    definition = app.custom.get_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "jobdefinitions", "shouty"
    )
    ready = ready_of(definition)
    assert ready["reason"] == "InvalidImage"
    assert "Registry/Team/App:1" in ready["message"]
    events = wait_until("a Warning Event", lambda: our_events(cluster, app.namespace, "shouty"), 30)
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "InvalidImage")]

    name = execution_name(app.enqueue("shouty", {}))
    execution = app.wait_phase(name, ("Succeeded", "Failed", "Error"))
    assert (execution["status"]["phase"], execution["status"]["reason"]) == (
        "Error",
        "InvalidDefinition",
    )
    assert app.jobs() == []

    # Fixed: Ready again, without another Event.
    app.custom.patch_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "jobdefinitions", "shouty", {"spec": {"image": "busybox"}}
    )
    cluster.kubectl(
        "wait",
        "--for=condition=Ready",
        "jobdefinition/shouty",
        f"-n={app.namespace}",
        "--timeout=30s",
    )
    assert len(our_events(cluster, app.namespace, "shouty")) == 1


def test_failed_and_error_executions_get_a_warning_event_succeeded_ones_none(
    app: App, cluster: Cluster
) -> None:
    app.define("ok")
    app.define("boom", podAnnotations=FAIL, retry={"limit": 0})
    succeeded = execution_name(app.enqueue("ok", {}))
    failed = execution_name(app.enqueue("boom", {}))
    unknown = execution_name(app.enqueue("nosuchjob", {}))
    for name in (succeeded, failed, unknown):
        app.wait_phase(name, ("Succeeded", "Failed", "Error"))

    events = wait_until(
        "two Warning Events", lambda: len(our_events(cluster, app.namespace)) >= 2 or None, 30
    )
    assert events
    by_name = {e["regarding"]["name"]: e for e in our_events(cluster, app.namespace)}
    assert set(by_name) == {failed, unknown}
    assert (by_name[failed]["type"], by_name[failed]["reason"]) == ("Warning", "Error")
    assert "exited with code 3" in by_name[failed]["note"]
    assert by_name[unknown]["reason"] == "UnknownJob"
    described = cluster.kubectl("describe", "jobexecution", failed, "-n", app.namespace).stdout
    assert "exited with code 3" in described


def test_an_execution_waiting_for_a_node_gets_an_unschedulable_event(
    app: App, cluster: Cluster
) -> None:
    app.define("nowhere", nodeSelector={"barbeque.dev/no-such-node": "true"})
    name = execution_name(app.enqueue("nowhere", {}))

    def waiting() -> dict[str, Any] | None:
        execution = app.execution(name)
        reason = ((execution or {}).get("status") or {}).get("reason")
        return execution if reason == "Unschedulable" else None

    wait_until("the execution to wait for a node", waiting, 60)
    events = wait_until("an Event", lambda: our_events(cluster, app.namespace, name), 30)
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "Unschedulable")]
    client.CustomObjectsApi(app.api).patch_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "jobexecutions", name, {"spec": {"cancel": True}}
    )
    app.wait_phase(name, ("Failed",))
