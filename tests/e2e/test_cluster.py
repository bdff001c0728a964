"""Smoke tests of the local control plane itself (tests/cluster/).

If these fail, every e2e test built on the ``cluster`` fixture is suspect, so
each checks one promise the harness makes: the real version, the real Job
controller with kwok's simulated pods, chosen exit codes, pod logs, RBAC on a
ServiceAccount token, and owner-reference garbage collection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import DURATION_ANNOTATION, EXIT_CODE_ANNOTATION, ApiError, Cluster
from tests.cluster.fixture import cluster  # noqa: F401  (the session fixture)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:  # noqa: F811
    with cluster.temporary_namespace("t", digits=10) as name:
        yield name


def job_manifest(
    name: str, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "example.invalid/job:1", "command": ["true"]}
                    ],
                },
            },
        },
    }


def job_condition(cluster: Cluster, ns: str, name: str, kind: str) -> dict[str, Any] | None:  # noqa: F811
    job = cluster.api("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")
    for cond in job.get("status", {}).get("conditions", []):
        if cond["type"] == kind and cond["status"] == "True":
            return dict(cond)
    return None


def job_pods(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:  # noqa: F811
    pods = cluster.api("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{name}")
    return list(pods["items"])


def gone(cluster: Cluster, path: str) -> bool:  # noqa: F811
    """Whether the API server answers 404 for ``path``."""
    try:
        cluster.api("GET", path)
    except ApiError as err:
        return err.status == 404
    return False


def test_apiserver_reports_the_pinned_kubernetes_version(cluster: Cluster) -> None:  # noqa: F811
    assert cluster.api("GET", "/version")["gitVersion"] == "v1.34.4"
    out = cluster.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.34.4"' in out


def test_fake_node_is_ready_through_kubectl(cluster: Cluster) -> None:  # noqa: F811
    out = cluster.kubectl("get", "nodes", "--no-headers").stdout
    assert "kwok-node-0" in out
    assert " Ready " in out


def run_job(
    cluster: Cluster,  # noqa: F811
    ns: str,
    name: str,
    annotations: dict[str, str] | None = None,
    until: str = "Complete",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create a Job and wait for its condition ``until``: that condition and its one pod."""
    cluster.api("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job_manifest(name, annotations))
    condition = wait_until(f"Job {until}", lambda: job_condition(cluster, ns, name, until))
    (pod,) = job_pods(cluster, ns, name)
    return condition, pod


def terminated(pod: dict[str, Any]) -> tuple[str, int, str]:
    """The pod's phase, and the exit code and reason of its one container."""
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return pod["status"]["phase"], state["exitCode"], state["reason"]


def test_plain_job_completes_with_exit_code_zero(cluster: Cluster, ns: str) -> None:  # noqa: F811
    _, pod = run_job(cluster, ns, "ok")
    assert terminated(pod) == ("Succeeded", 0, "Completed")


def test_annotated_pod_fails_with_the_chosen_exit_code(cluster: Cluster, ns: str) -> None:  # noqa: F811
    annotations = {EXIT_CODE_ANNOTATION: "3", DURATION_ANNOTATION: "200"}
    failed, pod = run_job(cluster, ns, "boom", annotations, until="Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert terminated(pod) == ("Failed", 3, "Error")


def test_duration_annotation_delays_completion(cluster: Cluster, ns: str) -> None:  # noqa: F811
    cluster.api(
        "POST",
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        job_manifest("slow", {DURATION_ANNOTATION: "4000"}),
    )
    pod = wait_until(
        "pod Running",
        lambda: next(
            (p for p in job_pods(cluster, ns, "slow") if p["status"].get("phase") == "Running"),
            None,
        ),
    )
    running_since = time.monotonic()
    time.sleep(1.5)
    assert job_condition(cluster, ns, "slow", "Complete") is None
    wait_until("Job Complete", lambda: job_condition(cluster, ns, "slow", "Complete"), timeout=20)
    assert time.monotonic() - running_since >= 3.0, pod["metadata"]["name"]


def test_pod_log_returns_the_kwok_log_text(cluster: Cluster, ns: str) -> None:  # noqa: F811
    _, pod = run_job(cluster, ns, "talk")
    name = pod["metadata"]["name"]
    assert (
        cluster.api("GET", f"/api/v1/namespaces/{ns}/pods/{name}/log", raw=True)
        == "hello from kwok\n"
    )
    assert cluster.kubectl("logs", "-n", ns, name).stdout == "hello from kwok\n"

    cluster.set_pod_log(name, ns, "line one\nline two\n")
    wait_until(
        "per-pod log text",
        lambda: (
            cluster.api("GET", f"/api/v1/namespaces/{ns}/pods/{name}/log", raw=True)
            == "line one\nline two\n"
        ),
        timeout=10,
    )


def test_service_account_token_is_held_to_rbac(cluster: Cluster, ns: str) -> None:  # noqa: F811
    cluster.api("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "robot"}})
    cluster.api(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    cluster.api(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "robot-reads-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}],
        },
    )
    request = cluster.api(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )
    token = request["status"]["token"]

    assert cluster.api("GET", f"/api/v1/namespaces/{ns}/pods", token=token)["items"] == []
    with pytest.raises(ApiError) as denied:
        cluster.api("GET", f"/api/v1/namespaces/{ns}/secrets", token=token)
    assert denied.value.status == 403


def test_deleting_the_owner_garbage_collects_the_child(cluster: Cluster, ns: str) -> None:  # noqa: F811
    base = f"/api/v1/namespaces/{ns}/configmaps"
    parent = cluster.api("POST", base, {"metadata": {"name": "parent"}, "data": {"k": "v"}})
    owner = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "parent",
        "uid": parent["metadata"]["uid"],
    }
    cluster.api("POST", base, {"metadata": {"name": "child", "ownerReferences": [owner]}})
    cluster.api("DELETE", f"{base}/parent")
    wait_until("child ConfigMap garbage-collected", lambda: gone(cluster, f"{base}/child"))


def test_finished_job_with_ttl_is_deleted_with_its_pods(cluster: Cluster, ns: str) -> None:  # noqa: F811
    cluster.api(
        "POST",
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        job_manifest("brief", ttlSecondsAfterFinished=0),
    )
    job = f"/apis/batch/v1/namespaces/{ns}/jobs/brief"
    wait_until("Job deleted by the TTL controller", lambda: gone(cluster, job))
    wait_until("pods deleted", lambda: not job_pods(cluster, ns, "brief"))
