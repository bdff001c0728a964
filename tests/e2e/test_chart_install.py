"""The Helm chart as helm and the real apiserver judge it.

helm lints and renders the chart (and refuses wrong values, naming the field); the
rendered objects are what the image and the settings expect; ``helm install`` into a
fresh namespace creates them on the local control plane (kwok plays the nodes, so no
image is pulled and only the objects are checked); and the apiserver's authorizer, asked
as each ServiceAccount, grants exactly the access docs/deploy.md promises.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from barbeque.api import crdgen
from barbeque.api.models import GROUP
from barbeque.services.builders import build_execution
from tests.cluster import chartdocs
from tests.cluster.harness import Cluster, free_port
from tests.support.kube import service_account_kubeconfig
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "barbeque"
# The console's VmRSS once it caches 10,000 executions (docs/performance.md, scenario 5).
DASHBOARD_MB_AT_10000 = 295
USER_ROLES = ("view", "edit", "admin", "webapi-reader", "webapi-submitter")
CRD_NAMES = {
    "jobqueues.barbeque.dev",
    "jobdefinitions.barbeque.dev",
    "jobexecutions.barbeque.dev",
    "snssubscriptions.barbeque.dev",
}


def render(
    cluster: Cluster, *args: str, namespace: str = "barbeque-system"
) -> list[dict[str, Any]]:
    result = cluster.helm("template", "bbq", str(CHART), "--namespace", namespace, *args)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [first] = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = first
    return result


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


# -- helm lint and helm template ---------------------------------------------------------


def test_helm_lint_passes_in_strict_mode(cluster: Cluster) -> None:
    result = cluster.helm("lint", str(CHART), "--strict", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", ["lint", "template"])
@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("operator.replicas=two", "/operator/replicas"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("opertor.replicas=1", "opertor"),
    ],
)
def test_a_wrong_value_fails_and_the_message_names_the_field(
    cluster: Cluster, command: str, setting: str, named: str
) -> None:
    result = cluster.helm(command, str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert named in output, output
    assert "schema" in output, output


def test_helm_refuses_a_cluster_older_than_kubernetes_1_31(cluster: Cluster) -> None:
    """The chart's kubeVersion is the operator's floor (CRD selectable fields, on since 1.31)."""
    refused = cluster.helm("template", str(CHART), "--kube-version", "1.30.9", check=False)
    assert refused.returncode != 0
    assert "chart requires kubeVersion: >=1.31.0-0" in refused.stderr, refused.stderr
    assert "incompatible with Kubernetes v1.30.9" in refused.stderr
    cluster.helm("template", str(CHART), "--kube-version", "1.31.0")


def test_the_chart_readme_is_what_helm_docs_makes_of_values_yaml(cluster: Cluster) -> None:
    """scripts/test runs the same check; `python -m tests.cluster chart-readme --write` fixes it."""
    assert chartdocs.drift() == []


def test_the_default_render_has_both_deployments_their_identities_and_the_services(
    cluster: Cluster,
) -> None:
    docs = render(cluster)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert kinds == {
        ("ServiceAccount", "bbq-barbeque-operator"),
        ("ServiceAccount", "bbq-barbeque-dashboard"),
        ("ClusterRole", "bbq-barbeque-operator"),
        ("ClusterRoleBinding", "bbq-barbeque-operator"),
        ("Role", "bbq-barbeque-operator"),
        ("RoleBinding", "bbq-barbeque-operator"),
        ("ClusterRole", "bbq-barbeque-dashboard"),
        ("ClusterRoleBinding", "bbq-barbeque-dashboard"),
        ("Role", "bbq-barbeque-dashboard"),
        ("RoleBinding", "bbq-barbeque-dashboard"),
        ("Secret", "bbq-barbeque-auth-token"),
        ("Deployment", "bbq-barbeque-operator"),
        ("Deployment", "bbq-barbeque-dashboard"),
        ("Service", "bbq-barbeque-metrics"),
        ("Service", "bbq-barbeque-dashboard"),
        *(("ClusterRole", f"bbq-barbeque-{role}") for role in USER_ROLES),
    }, "no ServiceMonitor, Ingress or Slack Secret unless asked for"


def test_no_pod_gets_the_service_link_variables_that_would_pass_for_settings(
    cluster: Cluster,
) -> None:
    # Released as "barbeque", the metrics Service would be BARBEQUE_METRICS_* in every pod.
    docs = render(cluster)
    for name in ("bbq-barbeque-operator", "bbq-barbeque-dashboard"):
        pod = only(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False, name
        assert "hostNetwork" not in pod, "the pod network unless asked otherwise"


def test_host_network_and_the_api_servers_address_are_values_for_clusters_without_a_pod_network(
    cluster: Cluster,
) -> None:
    docs = render(
        cluster,
        "--set", "hostNetwork=true", "--set", "listenAddress=127.0.0.1",
        "--set", "kubernetesApi.host=127.0.0.1", "--set", "kubernetesApi.port=6443",
    )  # fmt: skip
    for name in ("bbq-barbeque-operator", "bbq-barbeque-dashboard"):
        deployment = only(docs, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
        env = env_of(deployment)
        assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
        assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    operator = only(docs, "Deployment", "bbq-barbeque-operator")
    assert env_of(operator)["BARBEQUE_METRICS_ADDRESS"] == "127.0.0.1"
    assert container(operator)["args"][-1].startswith("http://127.0.0.1:")
    assert (
        env_of(only(docs, "Deployment", "bbq-barbeque-dashboard"))["BARBEQUE_DASHBOARD_HOST"]
        == "127.0.0.1"
    )


def test_the_operator_runs_the_image_entry_point_with_kopf_liveness_and_metrics(
    cluster: Cluster,
) -> None:
    docs = render(cluster)
    operator = only(docs, "Deployment", "bbq-barbeque-operator")
    main = container(operator)
    assert "command" not in main, "the image's ENTRYPOINT (barbeque) runs"
    assert main["args"] == ["operator", "--liveness", "http://0.0.0.0:8081/healthz"]
    assert main["image"] == "barbeque:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http-metrics": 8080, "http-health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert operator["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    env = {e["name"]: e for e in main["env"]}
    assert env["BARBEQUE_LEADER_ELECTION"]["value"] == "true"
    assert env["BARBEQUE_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    annotations = operator["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"

    metrics = only(docs, "Service", "bbq-barbeque-metrics")
    assert metrics["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert metrics["spec"]["selector"] == operator["spec"]["selector"]["matchLabels"]


def test_the_dashboard_runs_from_the_same_image_on_its_port(cluster: Cluster) -> None:
    docs = render(cluster)
    dashboard = only(docs, "Deployment", "bbq-barbeque-dashboard")
    operator = only(docs, "Deployment", "bbq-barbeque-operator")
    main = container(dashboard)
    assert main["image"] == container(operator)["image"]
    assert main["command"] == ["python", "-m", "barbeque_dashboard"]
    env = env_of(dashboard)
    assert env["BARBEQUE_DASHBOARD_PORT"] == "8000"
    assert env["BARBEQUE_DASHBOARD_HOST"] == "0.0.0.0"
    assert env["BARBEQUE_API_TOKEN_SECRET"] == "bbq-barbeque-auth-token"
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = only(docs, "Service", "bbq-barbeque-dashboard")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in main["ports"]


@pytest.mark.parametrize("component", ["operator", "dashboard"])
def test_every_pod_is_non_root_read_only_and_drops_all_capabilities(
    cluster: Cluster, component: str
) -> None:
    deployment = only(render(cluster), "Deployment", f"bbq-barbeque-{component}")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["serviceAccountName"] == f"bbq-barbeque-{component}"
    assert container(deployment)["resources"]["requests"]


def test_settings_reach_both_processes_as_barbeque_environment(cluster: Cluster) -> None:
    role_arn = "arn:aws:iam::123456789012:role/barbeque"
    docs = render(
        cluster,
        "--set", "aws.region=eu-west-1",
        "--set", "aws.sqsEndpointUrl=http://moto:5000",
        "--set", "aws.s3EndpointUrl=http://moto:5000",
        "--set", "aws.credentialsSecret=aws-credentials",
        "--set", "s3.bucket=logs.example",
        "--set", "slack.token.existingSecret=slack",
        "--set", "slack.token.existingSecretKey=bot-token",
        "--set", "consoleUrl=https://barbeque.example.com",
        "--set", "operator.workers=4",
        "--set", f"operator.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role_arn}",
        "--set-json", 'operator.extraEnv=[{"name":"BARBEQUE_RESYNC_SECONDS","value":"60"}]',
        "--set-json", 'operator.envFrom=[{"configMapRef":{"name":"more"}}]',
    )  # fmt: skip
    operator = only(docs, "Deployment", "bbq-barbeque-operator")
    env = env_of(operator)
    assert env["BARBEQUE_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["BARBEQUE_AWS_REGION"] == "eu-west-1"
    assert env["BARBEQUE_SQS_ENDPOINT_URL"] == "http://moto:5000"
    assert env["BARBEQUE_S3_ENDPOINT_URL"] == "http://moto:5000"
    assert env["BARBEQUE_S3_BUCKET"] == "logs.example"
    assert env["BARBEQUE_CONSOLE_URL"] == "https://barbeque.example.com"
    assert env["BARBEQUE_WORKERS"] == "4"
    assert env["BARBEQUE_SLACK_TOKEN"] == {"secretKeyRef": {"name": "slack", "key": "bot-token"}}
    assert env["BARBEQUE_RESYNC_SECONDS"] == "60"
    assert container(operator)["envFrom"] == [
        {"secretRef": {"name": "aws-credentials"}},
        {"configMapRef": {"name": "more"}},
    ]
    account = only(docs, "ServiceAccount", "bbq-barbeque-operator")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role_arn}
    assert not [d for d in docs if d["kind"] == "Secret" and "slack" in d["metadata"]["name"]]

    dashboard = env_of(only(docs, "Deployment", "bbq-barbeque-dashboard"))
    for shared in ("BARBEQUE_AWS_REGION", "BARBEQUE_SQS_ENDPOINT_URL", "BARBEQUE_S3_BUCKET"):
        assert dashboard[shared] == env[shared]
    assert "BARBEQUE_SLACK_TOKEN" not in dashboard


def test_a_slack_token_value_becomes_a_secret_the_operator_reads_as_environment(
    cluster: Cluster,
) -> None:
    docs = render(cluster, "--set", "slack.token.value=xoxb-demo")
    secret = only(docs, "Secret", "bbq-barbeque-slack")
    assert base64.b64decode(secret["data"]["token"]) == b"xoxb-demo"
    operator = only(docs, "Deployment", "bbq-barbeque-operator")
    assert env_of(operator)["BARBEQUE_SLACK_TOKEN"] == {
        "secretKeyRef": {"name": "bbq-barbeque-slack", "key": "token"}
    }
    assert "checksum/slack-secret" in operator["spec"]["template"]["metadata"]["annotations"]


def test_a_slack_webhook_secret_reaches_the_operator_as_barbeques_webhook_url(
    cluster: Cluster,
) -> None:
    docs = render(cluster, "--set", "slack.webhook.existingSecret=slack-hook")
    env = env_of(only(docs, "Deployment", "bbq-barbeque-operator"))
    assert env["BARBEQUE_SLACK_WEBHOOK_URL"] == {
        "secretKeyRef": {"name": "slack-hook", "key": "url"}
    }
    assert "BARBEQUE_SLACK_TOKEN" not in env
    assert "BARBEQUE_SLACK_WEBHOOK_URL" not in env_of(
        only(render(cluster), "Deployment", "bbq-barbeque-operator")
    )


def test_service_monitor_and_ingress_render_only_when_enabled(cluster: Cluster) -> None:
    docs = render(
        cluster,
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.serviceMonitor.labels.release=prometheus",
        "--set", "dashboard.ingress.enabled=true",
        "--set", "dashboard.ingress.className=nginx",
    )  # fmt: skip
    monitor = only(docs, "ServiceMonitor", "bbq-barbeque-operator")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    metrics = only(docs, "Service", "bbq-barbeque-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    )
    console = only(docs, "ServiceMonitor", "bbq-barbeque-dashboard")
    assert (
        console["spec"]["endpoints"][0] | {"port": "http", "path": "/metrics"}
        == (console["spec"]["endpoints"][0])
    )
    dashboard = only(docs, "Service", "bbq-barbeque-dashboard")
    assert (
        console["spec"]["selector"]["matchLabels"].items()
        <= dashboard["metadata"]["labels"].items()
    )
    ingress = only(docs, "Ingress", "bbq-barbeque-dashboard")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "bbq-barbeque-dashboard", "port": {"name": "http"}}}


def test_a_service_monitor_without_the_metrics_service_is_refused(cluster: Cluster) -> None:
    result = cluster.helm(
        "template", str(CHART),
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.service.enabled=false",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "metrics.service.enabled" in result.stderr


def test_crds_install_renders_the_generated_crds_with_the_keep_policy(cluster: Cluster) -> None:
    """The templated CRDs are crdgen's, field for field, plus only the keep annotation;
    without crds.install there are none (helm installs crds/ alone)."""
    assert not [d for d in render(cluster) if d["kind"] == "CustomResourceDefinition"]
    docs = render(cluster, "--set", "crds.install=true")
    rendered = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    expected = {f"{model.plural}.{GROUP}": crdgen.build_crd(model) for model in crdgen.RESOURCES}
    assert rendered.keys() == expected.keys()
    for name, crd in rendered.items():
        annotations = crd["metadata"].pop("annotations")
        assert annotations == {"helm.sh/resource-policy": "keep"}, name
        assert crd == expected[name], f"{name} differs from what crdgen generates"


# -- against the apiserver ----------------------------------------------------------------


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[tuple[str, str, str]]:
    """(release, namespace, helm install output) of one install into a fresh namespace."""
    suffix = uuid.uuid4().hex[:6]
    name, namespace = f"bbq-{suffix}", f"barbeque-e2e-{suffix}"
    cluster.create_namespace(namespace)
    result = cluster.helm(
        "install", name, str(CHART), "--namespace", namespace, "--wait=false",
        "--set", "slack.token.value=xoxb-e2e",
    )  # fmt: skip
    try:
        yield name, namespace, result.stdout
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait=false", check=False)
        cluster.delete_namespace(namespace)


def get(cluster: Cluster, *args: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return loaded


def test_helm_install_creates_every_object_on_the_apiserver(
    cluster: Cluster, release: tuple[str, str, str]
) -> None:
    name, namespace, _ = release
    prefix = f"{name}-barbeque"
    for kind, object_name in [
        ("deployment", f"{prefix}-operator"),
        ("deployment", f"{prefix}-dashboard"),
        ("serviceaccount", f"{prefix}-operator"),
        ("serviceaccount", f"{prefix}-dashboard"),
        ("service", f"{prefix}-metrics"),
        ("service", f"{prefix}-dashboard"),
        ("secret", f"{prefix}-slack"),
        ("secret", f"{prefix}-auth-token"),
        ("role", f"{prefix}-operator"),
        ("rolebinding", f"{prefix}-operator"),
    ]:
        found = get(cluster, kind, object_name, "-n", namespace)
        assert found["metadata"]["labels"]["app.kubernetes.io/instance"] == name

    stored = get(cluster, "clusterrole", f"{prefix}-operator")
    rendered = only(render(cluster, namespace=namespace), "ClusterRole", "bbq-barbeque-operator")
    assert stored["rules"] == [
        {k: v for k, v in rule.items() if v} for rule in rendered["rules"]
    ], "the apiserver kept every rule as rendered"
    binding = get(cluster, "clusterrolebinding", f"{prefix}-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{prefix}-operator", "namespace": namespace}
    ]
    deployment = get(cluster, "deployment", f"{prefix}-operator", "-n", namespace)
    assert deployment["spec"]["replicas"] == 1


def test_the_crds_are_present_and_established_after_install(
    cluster: Cluster, release: tuple[str, str, str]
) -> None:
    for crd in CRD_NAMES:
        conditions = {
            c["type"]: c["status"] for c in get(cluster, "crd", crd)["status"]["conditions"]
        }
        assert conditions["Established"] == "True", crd
    # The short names the install notes use resolve.
    for short in ("executions", "definitions", "jobq"):
        cluster.kubectl("get", short, "--all-namespaces")


def test_the_install_notes_say_how_to_follow_executions_and_open_the_console(
    release: tuple[str, str, str],
) -> None:
    name, _, output = release
    assert "kubectl get executions -A" in output
    assert f"port-forward service/{name}-barbeque-dashboard 8000:80" in output
    assert "/metrics" in output
    assert "kubectl apply --server-side -f charts/barbeque/crds/" in output


def test_an_upgrade_keeps_the_generated_dashboard_token(
    cluster: Cluster, release: tuple[str, str, str]
) -> None:
    name, namespace, _ = release
    secret = f"{name}-barbeque-auth-token"
    before = get(cluster, "secret", secret, "-n", namespace)["data"]["admin"]
    cluster.helm(
        "upgrade", name, str(CHART), "--namespace", namespace, "--wait=false", "--reuse-values"
    )
    assert get(cluster, "secret", secret, "-n", namespace)["data"]["admin"] == before


def can_i(cluster: Cluster, account: str, namespace: str, *question: str) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", *question, f"--as=system:serviceaccount:{namespace}:{account}", check=False
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


OPERATOR_MAY = [
    ("create", "jobs.batch", "-n", "app-a"),
    ("delete", "jobs.batch", "-n", "app-b"),
    ("watch", "jobs.batch", "--all-namespaces"),
    ("list", "pods", "--all-namespaces"),
    ("get", "pods", "--subresource=log", "-n", "app-a"),
    ("create", "jobexecutions.barbeque.dev", "-n", "app-a"),
    ("get", "jobexecutions.barbeque.dev", "-n", "app-a"),
    ("delete", "jobexecutions.barbeque.dev", "-n", "app-a"),
    ("patch", "jobexecutions.barbeque.dev", "--subresource=status", "-n", "app-a"),
    ("patch", "jobqueues.barbeque.dev", "--subresource=status"),
    ("patch", "jobdefinitions.barbeque.dev", "--subresource=status", "-n", "app-a"),
    ("update", "jobexecutions.barbeque.dev", "--subresource=finalizers", "-n", "app-a"),
    ("watch", "jobdefinitions.barbeque.dev", "--all-namespaces"),
    ("list", "jobqueues.barbeque.dev"),
    ("watch", "snssubscriptions.barbeque.dev", "--all-namespaces"),
    ("watch", "namespaces"),
    ("patch", "snssubscriptions.barbeque.dev", "-n", "app-a"),
    ("patch", "snssubscriptions.barbeque.dev", "--subresource=status", "-n", "app-a"),
    ("create", "events", "-n", "app-a"),
    ("create", "events.events.k8s.io", "-n", "app-a"),
    ("create", "events.events.k8s.io", "-n", "default"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "leases.coordination.k8s.io", "-n", "{release_namespace}"),
    ("get", "configmaps", "-n", "app-a"),
    ("create", "configmaps", "-n", "app-a"),
    ("update", "configmaps", "-n", "app-a"),
]
OPERATOR_MAY_NOT = [
    ("delete", "configmaps", "-n", "app-a"),
    ("get", "secrets", "-n", "{release_namespace}"),
    ("list", "secrets", "--all-namespaces"),
    ("get", "secrets", "-n", "app-a"),
    ("patch", "jobexecutions.barbeque.dev", "-n", "app-a"),
    ("update", "jobdefinitions.barbeque.dev", "-n", "app-a"),
    ("patch", "jobdefinitions.barbeque.dev", "-n", "app-a"),
    ("delete", "jobqueues.barbeque.dev"),
    ("create", "snssubscriptions.barbeque.dev", "-n", "app-a"),
    ("delete", "snssubscriptions.barbeque.dev", "-n", "app-a"),
    ("create", "pods", "-n", "app-a"),
    ("patch", "jobs.batch", "-n", "app-a"),
    ("patch", "namespaces/app-a"),
    ("update", "leases.coordination.k8s.io", "-n", "kube-system"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
]


@pytest.mark.parametrize(("allowed", "question"), [
    *[(True, q) for q in OPERATOR_MAY],
    *[(False, q) for q in OPERATOR_MAY_NOT],
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else ("may" if v else "may-not"))  # fmt: skip
def test_the_operator_service_account_has_exactly_the_access_it_needs(
    cluster: Cluster, release: tuple[str, str, str], allowed: bool, question: tuple[str, ...]
) -> None:
    name, namespace, _ = release
    words = [w.replace("{release_namespace}", namespace) for w in question]
    assert can_i(cluster, f"{name}-barbeque-operator", namespace, *words) is allowed


def test_the_dashboard_service_account_reads_only_its_own_token_secret(
    cluster: Cluster, release: tuple[str, str, str]
) -> None:
    name, namespace, _ = release
    account = f"{name}-barbeque-dashboard"
    token_secret = f"secret/{name}-barbeque-auth-token"
    assert can_i(cluster, account, namespace, "get", token_secret, "-n", namespace)
    assert not can_i(
        cluster, account, namespace, "get", f"secret/{name}-barbeque-slack", "-n", namespace
    )
    assert not can_i(cluster, account, namespace, "list", "secrets", "-n", namespace)
    assert not can_i(cluster, account, namespace, "get", token_secret, "-n", "default")
    assert can_i(cluster, account, namespace, "create", "tokenreviews.authentication.k8s.io")
    assert can_i(cluster, account, namespace, "create", "subjectaccessreviews.authorization.k8s.io")
    assert can_i(cluster, account, namespace, "watch", "jobexecutions.barbeque.dev", "-A")
    assert can_i(cluster, account, namespace, "patch", "jobexecutions.barbeque.dev", "-n", "a")
    assert not can_i(cluster, account, namespace, "create", "jobs.batch", "-n", "a")
    # The console's forms (after the user's own SubjectAccessReview) and statistics page.
    assert can_i(cluster, account, namespace, "create", "jobdefinitions.barbeque.dev", "-n", "a")
    assert can_i(cluster, account, namespace, "patch", "jobdefinitions.barbeque.dev", "-n", "a")
    assert can_i(cluster, account, namespace, "delete", "jobqueues.barbeque.dev")
    assert can_i(cluster, account, namespace, "create", "snssubscriptions.barbeque.dev", "-n", "a")
    assert can_i(cluster, account, namespace, "delete", "snssubscriptions.barbeque.dev", "-n", "a")
    assert can_i(cluster, account, namespace, "create", "namespaces")
    assert can_i(cluster, account, namespace, "get", "configmaps", "-n", "a")
    assert not can_i(cluster, account, namespace, "update", "configmaps", "-n", "a")
    assert not can_i(cluster, account, namespace, "update", "namespaces")
    assert not can_i(
        cluster, account, namespace, "patch", "jobexecutions.barbeque.dev",
        "--subresource=status", "-n", "a",
    )  # fmt: skip


# -- roles for users --------------------------------------------------------------------


def aggregated(cluster: Cluster, role: str, resource: str, verb: str) -> bool:
    """Whether Kubernetes' own ClusterRole ``role`` has taken in a rule of ours."""
    rules = get(cluster, "clusterrole", role).get("rules") or []
    return any(
        GROUP in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        for rule in rules
    )


def as_user(cluster: Cluster, user: str, *args: str, body: str | None = None) -> tuple[bool, str]:
    """``kubectl --as user ...``: (succeeded, output)."""
    result = cluster.kubectl(*args, f"--as={user}", input=body, check=False)
    return result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def application_namespace(cluster: Cluster, release: tuple[str, str, str]) -> Iterator[str]:
    """A namespace with alice bound to Kubernetes' view, bob to edit, and one execution."""
    wait_until(
        "view, edit and admin to aggregate the chart's roles",
        lambda: (
            aggregated(cluster, "view", "jobexecutions", "get")
            and aggregated(cluster, "edit", "jobdefinitions", "create")
            and aggregated(cluster, "admin", "jobqueues", "create")
        ),
        30,
    )
    with cluster.temporary_namespace("roles") as namespace:
        cluster.kubectl("create", "rolebinding", "alice-view", "--clusterrole=view",
                        "--user=alice", "-n", namespace)  # fmt: skip
        cluster.kubectl("create", "rolebinding", "bob-edit", "--clusterrole=edit",
                        "--user=bob", "-n", namespace)  # fmt: skip
        execution = build_execution(
            name="m-1", namespace=namespace, application=namespace, job="hello",
            queue="default", message_id="m-1", message={"n": 1},
        )  # fmt: skip
        cluster.kubectl("create", "-f", "-", input=json.dumps(execution))
        yield namespace


def definition_manifest(namespace: str, name: str) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "JobDefinition",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "busybox:1.36", "command": ["true"], "queue": "default"},
        }
    )


def test_a_user_with_view_reads_executions_and_may_not_create_definitions(
    cluster: Cluster, application_namespace: str
) -> None:
    namespace = application_namespace
    read, output = as_user(cluster, "alice", "get", "jobexecutions", "m-1", "-n", namespace)
    assert read, output
    listed, output = as_user(
        cluster, "alice", "get", "jobexecutions,jobdefinitions", "-n", namespace
    )
    assert listed, output
    created, output = as_user(
        cluster, "alice", "create", "-f", "-", body=definition_manifest(namespace, "by-alice")
    )
    assert not created
    assert "forbidden" in output, output
    cancelled, output = as_user(
        cluster, "alice", "patch", "jobexecutions", "m-1", "-n", namespace,
        "--type=merge", "-p", '{"spec":{"cancel":true}}',
    )  # fmt: skip
    assert not cancelled
    assert "forbidden" in output, output


def test_a_user_with_edit_creates_definitions_and_cancels_executions_but_not_queues(
    cluster: Cluster, application_namespace: str
) -> None:
    namespace = application_namespace
    created, output = as_user(
        cluster, "bob", "create", "-f", "-", body=definition_manifest(namespace, "by-bob")
    )
    assert created, output
    read, output = as_user(cluster, "bob", "get", "jobexecutions", "m-1", "-n", namespace)
    assert read, output
    cancelled, output = as_user(
        cluster, "bob", "patch", "jobexecutions", "m-1", "-n", namespace,
        "--type=merge", "-p", '{"spec":{"cancel":true}}',
    )  # fmt: skip
    assert cancelled, output
    status, output = as_user(
        cluster, "bob", "patch", "jobexecutions", "m-1", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", '{"status":{"phase":"Succeeded"}}',
    )  # fmt: skip
    assert not status, "the status is the operator's"
    queue, output = as_user(
        cluster, "bob", "create", "-f", "-",
        body=json.dumps({"apiVersion": f"{GROUP}/v1alpha1", "kind": "JobQueue",
                         "metadata": {"name": f"by-bob-{namespace}"}, "spec": {}}),
    )  # fmt: skip
    assert not queue, "JobQueues are cluster-scoped: admin bound cluster-wide, not edit"
    assert not can_i_user(cluster, "bob", "get", "jobexecutions.barbeque.dev", "-n", "default")


def test_admin_bound_cluster_wide_manages_job_queues(
    cluster: Cluster, application_namespace: str
) -> None:
    binding = f"carol-admin-{application_namespace}"
    question = ("create", "jobqueues.barbeque.dev")
    assert not can_i_user(cluster, "carol", *question)
    cluster.kubectl("create", "clusterrolebinding", binding, "--clusterrole=admin", "--user=carol")
    try:
        assert can_i_user(cluster, "carol", *question)
    finally:
        cluster.kubectl("delete", "clusterrolebinding", binding)


def can_i_user(cluster: Cluster, user: str, *question: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *question, f"--as={user}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def test_the_web_api_roles_grant_what_its_subject_access_review_asks(
    cluster: Cluster, release: tuple[str, str, str], dashboard: Dashboard
) -> None:
    """A reader (ClusterRoleBinding) reads through the Web API; a submitter (RoleBinding)
    may create and patch executions in its application's namespace only."""
    prefix = f"{release[0]}-barbeque"
    with cluster.temporary_namespace("ci") as ci:
        cluster.kubectl("create", "serviceaccount", "reader", "-n", ci)
        cluster.kubectl("create", "clusterrolebinding", f"{ci}-reader",
                        f"--clusterrole={prefix}-webapi-reader",
                        f"--serviceaccount={ci}:reader")  # fmt: skip
        try:
            token = service_account_token(cluster, "reader", ci)
            status, body = http_get(dashboard.url + "/v1/job_executions", token)
            assert status == 200, body
        finally:
            cluster.kubectl("delete", "clusterrolebinding", f"{ci}-reader", check=False)
        cluster.kubectl("create", "rolebinding", "submitter",
                        f"--clusterrole={prefix}-webapi-submitter",
                        "--user=ci-bot", "-n", ci)  # fmt: skip
        for verb in ("create", "patch"):
            assert can_i_user(cluster, "ci-bot", verb, "jobexecutions.barbeque.dev", "-n", ci)
            assert not can_i_user(
                cluster, "ci-bot", verb, "jobexecutions.barbeque.dev", "-n", "default"
            )
        assert not can_i_user(cluster, "ci-bot", "list", "jobexecutions.barbeque.dev", "-A")


def test_every_optional_object_is_accepted_by_the_apiserver(
    cluster: Cluster, release: tuple[str, str, str]
) -> None:
    """A render with the options on passes the apiserver's validation (server dry run)."""
    _, namespace, _ = release
    docs = render(
        cluster,
        "--set", "dashboard.ingress.enabled=true",
        "--set-json", 'dashboard.ingress.tls=[{"secretName":"tls","hosts":["a.example"]}]',
        "--set", "slack.token.existingSecret=slack",
        "--set", "aws.credentialsSecret=aws",
        "--set", "operator.replicas=0",
        "--set", "fullnameOverride=dry-run",
        "--set-json", 'operator.tolerations=[{"key":"batch","operator":"Exists"}]',
        "--set-json", 'operator.nodeSelector={"kubernetes.io/os":"linux"}',
        *SWITCHES,
        namespace=namespace,
    )  # fmt: skip
    manifest = "\n---\n".join(json.dumps(d) for d in docs)
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False
    )
    assert result.returncode == 0, result.stderr


# -- the dashboard process under the chart's ServiceAccount --------------------------------


@dataclass
class Dashboard:
    url: str
    admin_token: str
    log: Path


def service_account_token(cluster: Cluster, account: str, namespace: str) -> str:
    return cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


@pytest.fixture(scope="module")
def dashboard(
    cluster: Cluster, release: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    """``python -m barbeque_dashboard`` with the installed Deployment's environment,
    logged in as the chart's dashboard ServiceAccount (so the chart's RBAC authorizes it)."""
    name, namespace, _ = release
    deployment = get(cluster, "deployment", f"{name}-barbeque-dashboard", "-n", namespace)
    main = container(deployment)
    workdir = tmp_path_factory.mktemp("dashboard")
    token = service_account_token(cluster, f"{name}-barbeque-dashboard", namespace)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BARBEQUE_")}
    env.update({e["name"]: e["value"] for e in main["env"] if "value" in e})
    env.update(
        {
            "KUBECONFIG": str(service_account_kubeconfig(cluster, token, workdir / "kubeconfig")),
            "BARBEQUE_NAMESPACE": namespace,  # the Deployment's fieldRef
            "BARBEQUE_DASHBOARD_HOST": "127.0.0.1",
            "BARBEQUE_DASHBOARD_PORT": str(port),
            # Never used by the reads below; keeps boto3 off any real endpoint.
            "BARBEQUE_SQS_ENDPOINT_URL": "http://127.0.0.1:9",
            "BARBEQUE_S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    secret = get(cluster, "secret", env["BARBEQUE_API_TOKEN_SECRET"], "-n", namespace)
    admin = base64.b64decode(secret["data"]["admin"]).decode()
    log = workdir / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *main["command"][1:]], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    running = Dashboard(f"http://127.0.0.1:{port}", admin, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                if http_get(running.url + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.3)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_dashboard_gets_ready_under_the_charts_service_account(
    dashboard: Dashboard,
) -> None:
    """/readyz answers 200 only after the cache listed all three kinds: list/watch works."""
    assert http_get(dashboard.url + "/readyz")[0] == 200
    assert http_get(dashboard.url + "/healthz")[0] == 200


def test_the_dashboard_accepts_the_admin_token_of_the_charts_secret(
    dashboard: Dashboard,
) -> None:
    status, body = http_get(dashboard.url + "/v1/job_executions", dashboard.admin_token)
    assert status == 200, body
    assert json.loads(body)["total"] >= 0
    assert http_get(dashboard.url + "/v1/job_executions", "not-a-token")[0] == 401


def test_the_dashboard_asks_the_apiserver_about_kubernetes_tokens(
    cluster: Cluster, release: tuple[str, str, str], dashboard: Dashboard
) -> None:
    """TokenReview and SubjectAccessReview work with the dashboard's ClusterRole."""
    name, namespace, _ = release
    # The operator's ServiceAccount may list jobexecutions; the namespace's default may not.
    allowed = service_account_token(cluster, f"{name}-barbeque-operator", namespace)
    denied = service_account_token(cluster, "default", namespace)
    status, body = http_get(dashboard.url + "/v1/job_executions", allowed)
    assert status == 200, body
    status, body = http_get(dashboard.url + "/v1/job_executions", denied)
    assert status == 403, body
    # No call of the dashboard itself was refused (the apiserver says "... is forbidden").
    assert "is forbidden" not in dashboard.log.read_text(errors="replace")


def test_the_operator_gets_a_disruption_budget_when_asked_for_beside_an_autoscaler(
    cluster: Cluster,
) -> None:
    assert not [d for d in render(cluster) if d["kind"] == "PodDisruptionBudget"]
    docs = render(cluster, "--set", "operator.podDisruptionBudget.enabled=true")
    budget = only(docs, "PodDisruptionBudget", "bbq-barbeque-operator")
    deployment = only(docs, "Deployment", "bbq-barbeque-operator")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


# -- production switches -------------------------------------------------------------------

SWITCHES = (
    "--set", "operator.podDisruptionBudget.enabled=true",
    "--set", "dashboard.podDisruptionBudget.enabled=true",
    "--set", "dashboard.replicas=2",
    "--set", "networkPolicy.enabled=true",
    "--set-json",
    'networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"team":"obs"}}}]',
    "--set", "operator.priorityClassName=barbeque-critical",
    "--set", "dashboard.priorityClassName=barbeque-console",
    "--set-json", 'operator.extraEnv=[{"name":"BARBEQUE_RESYNC_SECONDS","value":"120"}]',
    "--set-json", 'dashboard.extraEnv=[{"name":"BARBEQUE_PUBLIC_READS","value":"true"}]',
    "--set-json", 'operator.extraVolumes=[{"name":"ca","configMap":{"name":"corp-ca"}}]',
    "--set-json",
    'operator.extraVolumeMounts=[{"name":"ca","mountPath":"/etc/ssl/corp","readOnly":true}]',
    "--set-json", 'dashboard.extraVolumes=[{"name":"ca","configMap":{"name":"corp-ca"}}]',
    "--set-json", 'dashboard.extraVolumeMounts=[{"name":"ca","mountPath":"/etc/ssl/corp"}]',
    "--set-json",
    'operator.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone",'
    '"whenUnsatisfiable":"ScheduleAnyway"}]',
    "--set-json",
    'dashboard.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname",'
    '"whenUnsatisfiable":"DoNotSchedule"}]',
)  # fmt: skip


def test_no_production_switch_is_on_by_default(cluster: Cluster) -> None:
    docs = render(cluster)
    assert not [d for d in docs if d["kind"] in ("PodDisruptionBudget", "NetworkPolicy")]
    for component in ("operator", "dashboard"):
        pod = only(docs, "Deployment", f"bbq-barbeque-{component}")["spec"]["template"]["spec"]
        assert "topologySpreadConstraints" not in pod
        assert "priorityClassName" not in pod
        assert [v["name"] for v in pod["volumes"]] == ["tmp"]


@pytest.mark.parametrize("component", ["operator", "dashboard"])
def test_each_production_switch_renders_on_both_deployments(
    cluster: Cluster, component: str
) -> None:
    docs = render(cluster, *SWITCHES)
    name = f"bbq-barbeque-{component}"
    deployment = only(docs, "Deployment", name)
    pods = deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]

    budget = only(docs, "PodDisruptionBudget", name)
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": pods}}

    policy = only(docs, "NetworkPolicy", name)
    assert policy["spec"]["podSelector"] == {"matchLabels": pods}
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress stays open"
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    named = {p["name"] for p in container(deployment)["ports"]}
    assert ports == named, "exactly the container's own ports"

    [spread] = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": pods}, "its own pods, filled in"
    assert (
        pod["priorityClassName"]
        == {
            "operator": "barbeque-critical",
            "dashboard": "barbeque-console",
        }[component]
    )
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in pod["volumes"]
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    assert mounts == {"tmp": "/tmp", "ca": "/etc/ssl/corp"}
    extra = {"operator": "BARBEQUE_RESYNC_SECONDS", "dashboard": "BARBEQUE_PUBLIC_READS"}
    assert extra[component] in env_of(deployment)


def test_the_network_policies_admit_metrics_only_from_the_given_peers(cluster: Cluster) -> None:
    docs = render(cluster, *SWITCHES)
    operator = only(docs, "NetworkPolicy", "bbq-barbeque-operator")["spec"]["ingress"]
    by_port = {rule["ports"][0]["port"]: rule.get("from") for rule in operator}
    assert by_port == {
        "http-metrics": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}],
        "http-health": None,  # the kubelet's probes
    }
    [dashboard] = only(docs, "NetworkPolicy", "bbq-barbeque-dashboard")["spec"]["ingress"]
    assert "from" not in dashboard, "dashboardFrom empty: anyone may reach the console"


def test_a_topology_spread_constraint_keeps_its_own_label_selector(cluster: Cluster) -> None:
    own = {"matchLabels": {"tier": "control"}}
    constraint = {
        "maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": own,
    }  # fmt: skip
    docs = render(
        cluster, "--set-json", f"operator.topologySpreadConstraints={json.dumps([constraint])}"
    )
    pod = only(docs, "Deployment", "bbq-barbeque-operator")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == [constraint]


def test_the_dashboard_memory_limit_fits_its_measured_use_at_10000_executions(
    cluster: Cluster,
) -> None:
    """docs/performance.md: the console holding 10,000 executions, DASHBOARD_MB_AT_10000."""
    resources = container(only(render(cluster), "Deployment", "bbq-barbeque-dashboard"))[
        "resources"
    ]
    limit = mebibytes(resources["limits"]["memory"])
    request = mebibytes(resources["requests"]["memory"])
    measured = DASHBOARD_MB_AT_10000 * 1e6 / 2**20
    assert request >= measured, "scheduled where its steady use fits"
    assert limit >= 1.5 * measured, "headroom for the start-up LIST and a burst of pages"


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * factor
    raise AssertionError(f"unexpected memory quantity {quantity!r}")
