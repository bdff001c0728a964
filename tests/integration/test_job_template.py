"""A JobDefinition's full Job template reaches the Job the operator creates, on the real
API server (kwok runs the pods), and the execution runs to Succeeded."""

from __future__ import annotations

import json

import pytest

from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster
from tests.support.operator import App

pytestmark = pytest.mark.integration

PRIORITY_CLASS = {
    "apiVersion": "scheduling.k8s.io/v1",
    "kind": "PriorityClass",
    "metadata": {"name": "barbeque-test-low"},
    "value": 10,
}
RUNTIME_CLASS = {
    "apiVersion": "node.k8s.io/v1",
    "kind": "RuntimeClass",
    "metadata": {"name": "barbeque-test-sandbox"},
    "handler": "runc",
}


def test_volumes_sidecars_affinity_classes_and_kueue_labels_reach_the_job(
    app: App, cluster: Cluster
) -> None:
    for body in (PRIORITY_CLASS, RUNTIME_CLASS):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    try:
        run_templated(app)
    finally:
        for body in (PRIORITY_CLASS, RUNTIME_CLASS):
            cluster.kubectl("delete", body["kind"].lower(), body["metadata"]["name"])


def run_templated(app: App) -> None:
    app.define(
        "templated",
        jobTemplate={
            "metadata": {
                "labels": {"kueue.x-k8s.io/queue-name": "batch"},
                "annotations": {"team": "blog"},
            },
            "spec": {
                "template": {
                    "metadata": {"labels": {"tier": "batch"}},
                    "spec": {
                        "priorityClassName": "barbeque-test-low",
                        "runtimeClassName": "barbeque-test-sandbox",
                        "volumes": [{"name": "scratch", "emptyDir": {}}],
                        "affinity": {
                            "nodeAffinity": {
                                "preferredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "weight": 1,
                                        "preference": {
                                            "matchExpressions": [
                                                {"key": "pool", "operator": "Exists"}
                                            ]
                                        },
                                    }
                                ]
                            }
                        },
                        "initContainers": [{"name": "fetch", "image": "busybox:1.36"}],
                        "containers": [
                            {
                                "name": "job",
                                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                            },
                            {"name": "shipper", "image": "fluent-bit:3"},
                        ],
                    },
                }
            },
        },
    )
    name = execution_name(app.enqueue("templated", {"n": 1}))
    execution = app.wait_phase(name, ("Succeeded", "Failed", "Error"))
    assert execution["status"]["phase"] == "Succeeded", execution["status"]

    (job,) = app.jobs()
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "batch"
    assert job.metadata.labels["barbeque.dev/execution"] == name
    assert job.metadata.annotations["team"] == "blog"
    assert job.metadata.owner_references[0].name == name
    assert job.spec.backoff_limit == 0
    pod = job.spec.template
    assert pod.metadata.labels["tier"] == "batch"
    assert pod.spec.priority_class_name == "barbeque-test-low"
    assert pod.spec.runtime_class_name == "barbeque-test-sandbox"
    assert pod.spec.restart_policy == "Never"
    assert [v.name for v in pod.spec.volumes] == ["scratch"]
    assert pod.spec.affinity.node_affinity is not None
    assert [c.name for c in pod.spec.init_containers] == ["fetch"]
    assert [c.name for c in pod.spec.containers] == ["job", "shipper"]
    job_container = pod.spec.containers[0]
    assert job_container.image == "busybox:1.36"  # the short form's (tests/data)
    assert job_container.volume_mounts[0].mount_path == "/scratch"
    env = {e.name: e.value for e in job_container.env}
    assert env["BARBEQUE_EXECUTION"] == name


@pytest.mark.parametrize(
    ("pod", "words"),
    [
        ({"containers": [{"name": "shipper"}]}, "containers[1].image: Required value"),
        ({"priorityClasName": "typo"}, 'unknown field "spec.template.spec.priorityClasName"'),
    ],
    ids=["sidecar-without-image", "misspelt-field"],
)
def test_a_template_the_api_server_would_refuse_makes_the_definition_not_ready(
    app: App, cluster: Cluster, pod: dict[str, object], words: str
) -> None:
    app.define("typo", jobTemplate={"spec": {"template": {"spec": pod}}})
    cluster.kubectl(
        "wait",
        "--for=condition=Ready=false",
        "jobdefinition/typo",
        f"-n={app.namespace}",
        "--timeout=30s",
    )
    definition = json.loads(
        cluster.kubectl("get", "jobdefinition", "typo", f"-n={app.namespace}", "-o=json").stdout
    )
    (ready,) = [c for c in definition["status"]["conditions"] if c["type"] == "Ready"]
    assert ready["reason"] == "InvalidJobTemplate"
    assert words in ready["message"]
    # Checked by a dry run: no Job was created.
    assert app.jobs() == []
    # An execution of it ends as Error with the same reason in words, not a Job without it.
    name = execution_name(app.enqueue("typo", {}))
    execution = app.wait_phase(name, ("Succeeded", "Failed", "Error"))
    assert (execution["status"]["phase"], execution["status"]["reason"]) == ("Error", "JobRejected")
    assert words in execution["status"]["message"]
