"""The generated CRDs as the real API server judges them, and the examples as users apply them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from barbeque.api.models import JobDefinition, JobExecution, JobQueue
from tests.cluster.harness import Cluster, ClusterError

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MODELS: dict[str, Any] = {
    "JobQueue": JobQueue,
    "JobDefinition": JobDefinition,
    "JobExecution": JobExecution,
}


@pytest.fixture
def namespace(cluster: Cluster, crds: None) -> Iterator[str]:
    with cluster.temporary_namespace("e2e") as name:
        yield name


def test_the_api_server_accepts_the_crds_as_structural(cluster: Cluster, crds: None) -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        crd = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NonStructuralSchema", "False") == "False", conditions


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") in MODELS:
                found.append((path.name, document))
    return found


@pytest.mark.parametrize(
    ("source", "document"), example_documents(), ids=[n for n, _ in example_documents()]
)
def test_every_example_round_trips_through_the_api_server_and_the_models(
    cluster: Cluster, namespace: str, source: str, document: dict[str, Any]
) -> None:
    document = json.loads(json.dumps(document))
    kind = document["kind"]
    if kind == "JobQueue":
        document["metadata"]["name"] = f"{document['metadata']['name']}-{namespace}"
    else:
        document["metadata"]["namespace"] = namespace
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(document))
    scope = [] if kind == "JobQueue" else ["-n", namespace]
    stored = json.loads(
        cluster.kubectl(
            "get", kind.lower(), document["metadata"]["name"], *scope, "-o", "json"
        ).stdout
    )
    parsed = MODELS[kind].model_validate(stored)
    # What the user wrote survives: the server kept every field, the models read them all.
    written = MODELS[kind].model_validate(document)
    assert parsed.spec == written.spec
    if kind == "JobQueue":
        cluster.kubectl("delete", "jobqueue", document["metadata"]["name"])


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"spec": {"image": "has space"}}, "spec.image"),
        ({"spec": {"retry": {"limit": -1}}}, "spec.retry.limit"),
        ({"spec": {"activeDeadlineSeconds": 0}}, "spec.activeDeadlineSeconds"),
        ({"spec": {"imagePullPolicy": "Sometimes"}}, "spec.imagePullPolicy"),
        ({"spec": {"image": 7}}, "spec.image"),
        ({"spec": {"unknownField": True}}, "unknownField"),
    ],
)
def test_invalid_definitions_are_rejected_with_the_field_named(
    cluster: Cluster, namespace: str, patch: dict[str, Any], words: str
) -> None:
    document: dict[str, Any] = {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "JobDefinition",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"image": "busybox:1.36", "queue": "default"},
    }
    document["spec"].update(patch["spec"])
    with pytest.raises(ClusterError) as error:
        cluster.kubectl("apply", "--validate=strict", "-f", "-", input=json.dumps(document))
    assert words in str(error.value)


def test_kubectl_get_executions_shows_the_printer_columns(cluster: Cluster, namespace: str) -> None:
    execution = {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "JobExecution",
        "metadata": {"name": "abc-123", "namespace": namespace},
        "spec": {
            "application": namespace,
            "job": "hello",
            "queue": "default",
            "messageId": "abc-123",
            "message": {"any": ["json", 1]},
        },
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(execution))
    cluster.api(
        "PATCH",
        f"/apis/barbeque.dev/v1alpha1/namespaces/{namespace}/jobexecutions/abc-123/status",
        json.dumps(
            {"status": {"phase": "Failed", "exitCode": 3, "duration": "12s", "reason": "Error"}}
        ),
        content_type="application/merge-patch+json",
    )
    for resource in ("executions", "execution", "jx", "jobexecutions"):
        out = cluster.kubectl("get", resource, "-n", namespace).stdout.splitlines()
        assert out[0].split() == ["NAME", "JOB", "STATUS", "ATTEMPT", "EXIT", "DURATION", "AGE"]
        assert out[1].split()[:6] == ["abc-123", "hello", "Failed", "0", "3", "12s"]
    wide = cluster.kubectl("get", "executions", "-n", namespace, "-o", "wide").stdout
    assert "REASON" in wide.splitlines()[0]
    assert "abc-123" in cluster.kubectl("get", "barbeque", "-n", namespace).stdout


def _apply(cluster: Cluster, document: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(document))


def _refused(cluster: Cluster, document: dict[str, Any]) -> str:
    with pytest.raises(ClusterError) as error:
        _apply(cluster, document)
    return str(error.value)


def _definition(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "JobDefinition",
        "metadata": {"name": "rules", "namespace": namespace},
        "spec": {"image": "busybox:1.36", **spec},
    }


def _execution(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "JobExecution",
        "metadata": {"name": "fixed", "namespace": namespace},
        "spec": {
            "application": namespace,
            "job": "hello",
            "messageId": "fixed",
            "message": {"a": 1},
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"job": "other"}, "immutable once recorded"),
        ({"attempt": 2}, "immutable once recorded"),
        ({"retryOf": "added-later"}, "immutable once recorded"),
        ({"notBefore": None}, "immutable once recorded"),
        ({"queue": "elsewhere"}, "immutable once recorded"),
    ],
)
def test_the_api_server_refuses_a_change_to_a_recorded_execution(
    cluster: Cluster, namespace: str, change: dict[str, Any], words: str
) -> None:
    _apply(cluster, _execution(namespace, notBefore="2030-01-01T00:00:00Z"))
    changed = _execution(namespace, notBefore="2030-01-01T00:00:00Z")
    changed["spec"].update(change)
    changed["spec"] = {k: v for k, v in changed["spec"].items() if v is not None}
    assert words in _refused(cluster, changed)


def test_an_execution_may_be_cancelled_once_and_not_uncancelled(
    cluster: Cluster, namespace: str
) -> None:
    _apply(cluster, _execution(namespace))
    resource = ["jobexecution", "fixed", "-n", namespace, "--type", "merge", "-p"]
    cluster.kubectl("patch", *resource, '{"spec":{"cancel":true}}')
    with pytest.raises(ClusterError) as error:
        cluster.kubectl("patch", *resource, '{"spec":{"cancel":false}}')
    assert "spec.cancel cannot be undone" in str(error.value)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            {"queueName": "a", "queueUrl": "http://sqs.test/1/a"},
            "set spec.queueUrl or spec.queueName, not both",
        ),
        (
            {"queueUrl": "http://sqs.test/1/a", "create": True},
            "spec.create needs spec.queueName",
        ),
    ],
)
def test_the_api_server_refuses_a_queue_naming_both_a_url_and_a_name(
    cluster: Cluster, crds: None, spec: dict[str, Any], words: str
) -> None:
    document = {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": "both-url-and-name"},
        "spec": spec,
    }
    assert words in _refused(cluster, document)


def test_the_api_server_refuses_inconsistent_retry_limits(cluster: Cluster, namespace: str) -> None:
    message = _refused(
        cluster, _definition(namespace, retry={"baseDelaySeconds": 60, "maxDelaySeconds": 30})
    )
    assert "retry.maxDelaySeconds must be at least retry.baseDelaySeconds" in message
    # Equal, or only a maximum above the default base, is fine.
    _apply(cluster, _definition(namespace, retry={"baseDelaySeconds": 30, "maxDelaySeconds": 30}))


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("jobqueues.spec.queueUrl", "instead of queueName"),
        ("jobdefinitions.spec.env.valueFrom.secretKeyRef.key", "The key whose value is taken"),
        ("jobdefinitions.status.conditions", "one per type"),
        ("jobexecutions.status.logs.bucket", "The S3 bucket"),
        ("jobexecutions.spec.cancel", "Set to true to stop the execution"),
    ],
)
def test_kubectl_explain_describes_nested_fields(
    cluster: Cluster, crds: None, path: str, words: str
) -> None:
    assert words in cluster.kubectl("explain", path).stdout


def test_the_short_names_resolve_and_the_old_ones_are_gone(
    cluster: Cluster, namespace: str
) -> None:
    resources = cluster.kubectl("api-resources", "--api-group", "barbeque.dev").stdout
    assert "jobq,jq" in resources
    for short in ("jobq", "jq", "executions", "jx", "definitions", "jd"):
        cluster.kubectl("get", short, "-n", namespace)
    assert "queue" not in resources.replace("jobqueues", "")


def _template_pod(**pod: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": pod}}}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            {"jobTemplate": _template_pod(restartPolicy="OnFailure")},
            "restartPolicy is the operator's (Never)",
        ),
        ({"jobTemplate": {"spec": {"backoffLimit": 3}}}, "backoffLimit is the operator's (0)"),
        (
            {"jobTemplate": {"metadata": {"labels": {"barbeque.dev/job": "x"}}}},
            "labels under barbeque.dev/ are the operator's",
        ),
        (
            {"jobTemplate": {"metadata": {"ownerReferences": [{"name": "x"}]}}},
            'unknown field "spec.jobTemplate.metadata.ownerReferences"',
        ),
        (
            {"jobTemplate": _template_pod(containers=[{"name": "job", "image": "other:1"}])},
            "the container named job takes image, command, args, env",
        ),
        (
            {
                "jobTemplate": _template_pod(
                    initContainers=[
                        {"name": "init", "image": "x", "env": [{"name": "BARBEQUE_JOB"}]}
                    ]
                )
            },
            "BARBEQUE_* variables are the operator's",
        ),
        ({"env": [{"name": "BARBEQUE_MESSAGE", "value": "{}"}]}, "BARBEQUE_* variables"),
        (
            {"serviceAccountName": "a", "jobTemplate": _template_pod(serviceAccountName="b")},
            "set spec.serviceAccountName or the jobTemplate's, not both",
        ),
    ],
    ids=[
        "restartPolicy",
        "backoffLimit",
        "operator-labels",
        "ownerReferences",
        "job-container-image",
        "barbeque-env-in-template",
        "barbeque-env-in-short-form",
        "service-account-twice",
    ],
)
def test_a_job_template_conflicting_with_the_operator_is_refused_with_a_reason(
    cluster: Cluster, namespace: str, spec: dict[str, Any], words: str
) -> None:
    assert words in _refused(cluster, _definition(namespace, **spec))


def test_a_full_job_template_is_kept_as_written(cluster: Cluster, namespace: str) -> None:
    template = {
        "metadata": {"labels": {"kueue.x-k8s.io/queue-name": "batch"}},
        "spec": {
            "template": {
                "spec": {
                    "priorityClassName": "batch-low",
                    "runtimeClassName": "gvisor",
                    "volumes": [{"name": "v", "emptyDir": {}}],
                    "affinity": {"podAntiAffinity": {}},
                    "containers": [
                        {"name": "job", "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                        {
                            "name": "side",
                            "image": "envoy:1",
                            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
                        },
                    ],
                    "initContainers": [{"name": "i", "image": "b", "restartPolicy": "Always"}],
                }
            }
        },
    }
    cluster.kubectl(
        "apply",
        "--validate=strict",
        "-f",
        "-",
        input=json.dumps(_definition(namespace, jobTemplate=template)),
    )
    stored = json.loads(
        cluster.kubectl("get", "jobdefinition", "rules", "-n", namespace, "-o", "json").stdout
    )
    assert stored["spec"]["jobTemplate"] == template
    assert JobDefinition.model_validate(stored).spec.job_template is not None
