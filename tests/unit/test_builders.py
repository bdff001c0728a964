"""The Job manifest an execution gets, compared whole."""

from __future__ import annotations

import pytest

from barbeque.api import revision
from barbeque.api.models import JobDefinition, JobExecution
from barbeque.services import builders

pytestmark = pytest.mark.unit


def definition(**spec: object) -> JobDefinition:
    return JobDefinition.model_validate(
        {
            "metadata": {"name": "notify-author", "namespace": "blog"},
            "spec": {"image": "registry.example.com/blog:1.0", "queue": "default", **spec},
        }
    )


def execution(**spec: object) -> JobExecution:
    return JobExecution.model_validate(
        {
            "metadata": {"name": "0b1c", "namespace": "blog", "uid": "uid-1"},
            "spec": {
                "application": "blog",
                "job": "notify-author",
                "queue": "default",
                "messageId": "0b1c",
                "message": {"user_id": 7},
                "sentTimestamp": 1700000000000,
                **spec,
            },
        }
    )


def test_job_carries_barbeque_environment_owner_and_no_kubernetes_retries() -> None:
    job = builders.build_job(
        execution(),
        definition(command=["bundle", "exec", "rake", "notify"], activeDeadlineSeconds=600),
    )
    labels = {
        "barbeque.dev/application": "blog",
        "barbeque.dev/job": "notify-author",
        "barbeque.dev/queue": "default",
        "barbeque.dev/message-id": "0b1c",
        "app.kubernetes.io/managed-by": "barbeque",
        "barbeque.dev/execution": "0b1c",
    }
    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "0b1c",
            "namespace": "blog",
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "barbeque.dev/v1alpha1",
                    "kind": "JobExecution",
                    "name": "0b1c",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "activeDeadlineSeconds": 600,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "job",
                            "image": "registry.example.com/blog:1.0",
                            "command": ["bundle", "exec", "rake", "notify"],
                            "env": [
                                {"name": "BARBEQUE_JOB", "value": "notify-author"},
                                {"name": "BARBEQUE_MESSAGE", "value": '{"user_id": 7}'},
                                {"name": "BARBEQUE_MESSAGE_ID", "value": "0b1c"},
                                {"name": "BARBEQUE_QUEUE_NAME", "value": "default"},
                                {"name": "BARBEQUE_RETRY_COUNT", "value": "0"},
                                {"name": "BARBEQUE_SENT_TIMESTAMP", "value": "1700000000000"},
                                {"name": "BARBEQUE_APPLICATION", "value": "blog"},
                                {"name": "BARBEQUE_EXECUTION", "value": "0b1c"},
                            ],
                            "securityContext": {
                                "runAsNonRoot": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            },
        },
    }


def test_retry_sees_the_first_message_id_and_its_retry_count() -> None:
    retry = execution(messageId="0b1c-retry-2", originalMessageId="0b1c", attempt=2)
    env = {e["name"]: e["value"] for e in builders.job_environment(retry, definition())}
    assert env["BARBEQUE_MESSAGE_ID"] == "0b1c"
    assert env["BARBEQUE_RETRY_COUNT"] == "2"


def test_definition_options_reach_the_pod() -> None:
    job = builders.build_job(
        execution(),
        definition(
            args=["--dry-run"],
            env=[{"name": "RAILS_ENV", "value": "production"}],
            envFrom=[{"secretRef": {"name": "blog-secrets"}}],
            resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1}},
            serviceAccountName="blog-jobs",
            nodeSelector={"pool": "batch"},
            tolerations=[{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
            podAnnotations={"prometheus.io/scrape": "true"},
            podLabels={"team": "blog"},
            securityContext={"runAsUser": 1000, "readOnlyRootFilesystem": True},
            ttlSecondsAfterFinished=60,
        ),
    )
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["--dry-run"]
    assert container["env"][-1] == {"name": "RAILS_ENV", "value": "production"}
    assert container["envFrom"] == [{"secretRef": {"name": "blog-secrets"}}]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": 1},
    }
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["serviceAccountName"] == "blog-jobs"
    assert pod["spec"]["nodeSelector"] == {"pool": "batch"}
    assert pod["spec"]["tolerations"] == [
        {"key": "batch", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["metadata"]["annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
        "prometheus.io/scrape": "true",
    }
    assert pod["metadata"]["labels"]["team"] == "blog"
    assert job["spec"]["ttlSecondsAfterFinished"] == 60


def test_a_definition_can_let_the_autoscaler_evict_its_pods() -> None:
    allowed = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}
    job = builders.build_job(execution(), definition(podAnnotations=allowed))
    assert job["spec"]["template"]["metadata"]["annotations"] == allowed


def test_pod_labels_cannot_override_the_operators_own() -> None:
    job = builders.build_job(execution(), definition(podLabels={"barbeque.dev/execution": "x"}))
    assert job["spec"]["template"]["metadata"]["labels"]["barbeque.dev/execution"] == "0b1c"


def test_execution_manifest_omits_unset_fields_and_links_its_parent() -> None:
    parent = execution()
    body = builders.build_execution(
        name="0b1c-retry-1",
        namespace="blog",
        application="blog",
        job="notify-author",
        queue="default",
        message_id="0b1c-retry-1",
        message={"user_id": 7},
        attempt=1,
        retry_of="0b1c",
        original_message_id="0b1c",
        owner=parent,
    )
    assert body["spec"] == {
        "application": "blog",
        "job": "notify-author",
        "queue": "default",
        "messageId": "0b1c-retry-1",
        "message": {"user_id": 7},
        "attempt": 1,
        "originalMessageId": "0b1c",
        "retryOf": "0b1c",
    }
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    JobExecution.model_validate(body)


FULL_TEMPLATE = {
    "metadata": {
        "labels": {"kueue.x-k8s.io/queue-name": "batch", "team": "blog"},
        "annotations": {"owner": "blog-team"},
    },
    "spec": {
        "template": {
            "metadata": {
                "labels": {"tier": "batch"},
                "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
            },
            "spec": {
                "priorityClassName": "batch-low",
                "runtimeClassName": "gvisor",
                "affinity": {
                    "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}
                },
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "nodeSelector": {"pool": "batch"},
                "initContainers": [
                    {"name": "fetch", "image": "busybox:1.36", "command": ["true"]},
                    {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"},
                ],
                "containers": [
                    {"name": "log-shipper", "image": "fluent-bit:3"},
                    {
                        "name": "job",
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                        "workingDir": "/scratch",
                    },
                ],
            },
        }
    },
}


def test_a_full_job_template_passes_through_and_the_operator_keeps_what_it_owns() -> None:
    short_form = builders.build_job(execution(), definition(nodeSelector={"zone": "a"}))
    job = builders.build_job(
        execution(), definition(nodeSelector={"zone": "a"}, jobTemplate=FULL_TEMPLATE)
    )

    assert job["metadata"]["labels"] == {
        "kueue.x-k8s.io/queue-name": "batch",
        "team": "blog",
        **short_form["metadata"]["labels"],
    }
    assert job["metadata"]["annotations"] == {"owner": "blog-team"}
    assert job["metadata"]["ownerReferences"] == short_form["metadata"]["ownerReferences"]
    assert job["spec"]["backoffLimit"] == 0
    template = job["spec"]["template"]
    assert template["metadata"]["labels"] == {
        "tier": "batch",
        **short_form["spec"]["template"]["metadata"]["labels"],
    }
    assert template["metadata"]["annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true"
    }
    pod = template["spec"]
    written = FULL_TEMPLATE["spec"]["template"]["spec"]  # type: ignore[index]
    for field in ("priorityClassName", "runtimeClassName", "affinity", "volumes"):
        assert pod[field] == written[field], field
    assert pod["initContainers"] == written["initContainers"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"pool": "batch", "zone": "a"}
    job_container, sidecar = pod["containers"]
    assert sidecar == {"name": "log-shipper", "image": "fluent-bit:3"}
    # The short form's container, with the template's volumeMounts and workingDir.
    assert job_container == {
        **short_form["spec"]["template"]["spec"]["containers"][0],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "workingDir": "/scratch",
    }
    assert next(iter(job_container)) == "name"


def test_a_template_with_only_job_labels_changes_nothing_else() -> None:
    plain = builders.build_job(execution(), definition())
    labelled = builders.build_job(
        execution(),
        definition(jobTemplate={"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "q"}}}),
    )
    assert labelled["metadata"]["labels"].pop("kueue.x-k8s.io/queue-name") == "q"
    assert labelled == plain


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("busybox", "busybox:abc123"),
        ("busybox:1.36", "busybox:abc123"),
        ("registry.example:5000/blog", "registry.example:5000/blog:abc123"),
        ("registry.example:5000/blog:latest", "registry.example:5000/blog:abc123"),
        ("blog@sha256:" + "f" * 64, "blog:abc123"),
        ("r.example/blog:1.0@sha256:" + "f" * 64, "r.example/blog:abc123"),
    ],
)
def test_a_revision_replaces_the_tag_but_never_a_registry_port(image: str, pinned: str) -> None:
    assert revision.pinned_image(image, "abc123") == pinned


def test_a_locked_definition_runs_its_image_at_the_locked_revision() -> None:
    locked = definition()
    locked.metadata.annotations[revision.REVISION_LOCK] = "798926d"
    job = builders.build_job(execution(), locked)
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/blog:798926d"
    # A value that is no Docker tag is ignored rather than turned into a broken image.
    locked.metadata.annotations[revision.REVISION_LOCK] = "not a tag"
    job = builders.build_job(execution(), locked)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/blog:1.0"
    )
