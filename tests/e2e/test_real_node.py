"""Jobs that really run: the chart's pods and every execution on the real node.

The project's image, built from ``Dockerfile`` by buildah, is installed with helm as a
user installs it: the operator and the console run in pods on the real node (containerd,
runc, a real kubelet; tests/cluster/realnode.py), read-only, as uid 10001, logged in by
their ServiceAccount token alone. Applications' namespaces enforce Pod Security
``restricted``, so every Job pod the operator makes passes the real admission. The jobs
run the busybox job image: real output, exit codes, deadlines, OOM kills, cancellation,
a missing image, a kubelet restart and a large log, each checked end to end to S3.

All traffic stays on 127.0.0.1: the pods use hostNetwork and reach the API server, moto
and the Slack recorder on loopback (chart values ``hostNetwork``, ``listenAddress``,
``kubernetesApi``); Job pods have no route out at all.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster, free_port
from tests.cluster.realnode import (
    NODE_LABEL,
    NODE_NAME,
    NODE_TAINT,
    RealNode,
    chart_settings,
    placement,
)
from tests.support.aws import CREDENTIALS, Aws
from tests.support.operator import BUCKET, App, application
from tests.support.slack import SlackRecorder
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "barbeque-real"
RELEASE = "real"
FINISHED = ("Succeeded", "Failed", "Error")
# sh as the container's PID 1 ignores SIGTERM unless it traps it.
TERMINABLE = "trap 'exit 143' TERM; sleep {} & wait"


@dataclass
class Installed:
    """The chart installed from the real image, its pods Ready on the real node."""

    node: RealNode
    metrics_url: str
    console_url: str
    pods: dict[str, dict[str, Any]]


def _pods(cluster: Cluster, component: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", NAMESPACE,
            "-l", f"app.kubernetes.io/component={component}", "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    return items


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


@pytest.fixture(scope="module")
def installed(
    cluster: Cluster, real_node: RealNode, aws: Aws, slack: SlackRecorder
) -> Iterator[Installed]:
    assert real_node.built is not None
    ports = {"metrics": free_port(), "health": free_port(), "console": free_port()}
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "create", "secret", "generic", "aws", "-n", NAMESPACE,
        *(f"--from-literal={k}={v}" for k, v in CREDENTIALS.items()),
    )  # fmt: skip
    cluster.helm(
        "install", RELEASE, str(ROOT / "charts" / "barbeque"), "--namespace", NAMESPACE,
        *chart_settings(cluster, real_node.built.app, ports),
        "--set", f"aws.sqsEndpointUrl={aws.endpoint_url}",
        "--set", f"aws.s3EndpointUrl={aws.endpoint_url}",
        "--set", "aws.credentialsSecret=aws",
        "--set", f"s3.bucket={BUCKET}", "--set", "s3.createBucket=true",
        "--set", f"slack.apiUrl={slack.url}", "--set", "slack.token.value=xoxb-real-node",
        "--set", "operator.readinessProbe.initialDelaySeconds=1",
        "--set", "operator.readinessProbe.periodSeconds=2",
    )  # fmt: skip

    def both_ready() -> dict[str, dict[str, Any]] | None:
        found = {c: _pods(cluster, c) for c in ("operator", "dashboard")}
        if all(len(p) == 1 and _ready(p[0]) for p in found.values()):
            return {c: p[0] for c, p in found.items()}
        return None

    try:
        pods = wait_until("the operator and console pods Ready", both_ready, 120)
        yield Installed(
            real_node,
            f"http://127.0.0.1:{ports['metrics']}/metrics",
            f"http://127.0.0.1:{ports['console']}",
            pods,
        )
    finally:
        # The pods' logs, for a failure's report (pytest shows captured output on failure).
        for component in ("operator", "dashboard"):
            for pod in _pods(cluster, component):
                name = pod["metadata"]["name"]
                log = cluster.kubectl("logs", "-n", NAMESPACE, name, check=False).stdout
                sys.stdout.write(f"--- {component} pod {name} log ---\n{log[-3000:]}\n")
        cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.fixture
def real_app(cluster: Cluster, aws: Aws, installed: Installed) -> Iterator[App]:
    """An application whose namespace enforces Pod Security ``restricted``."""
    with application(cluster, aws) as made:
        cluster.kubectl(
            "label", "namespace", made.namespace,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        )  # fmt: skip
        yield made


def define(app: App, installed: Installed, name: str, script: str, **spec: Any) -> None:
    """A definition running ``sh -c script`` in the job image on the real node."""
    assert installed.node.built is not None
    where = placement()
    app.define(
        name,
        image=installed.node.built.job,
        imagePullPolicy="IfNotPresent",
        command=["sh", "-c", script],
        nodeSelector=where["nodeSelector"],
        tolerations=where["tolerations"],
        **spec,
    )


def stdout_of(app: App, execution: dict[str, Any]) -> bytes:
    prefix = execution["status"]["logs"]["prefix"]
    body: bytes = app.aws.s3().get_object(Bucket=BUCKET, Key=prefix + "stdout.txt")["Body"].read()
    return body


def processes_with(argv: list[str]) -> list[int]:
    """Host pids whose command line is exactly ``argv`` (a container's process included)."""
    wanted = "\0".join(argv).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().rstrip(b"\0")
            except OSError:
                continue
            if cmdline == wanted:
                found.append(int(entry.name))
    return found


def processes_matching(fragment: bytes) -> list[int]:
    """Host pids whose NUL-separated command line contains ``fragment``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if fragment in cmdline:
                found.append(int(entry.name))
    return found


def pod_of(cluster: Cluster, namespace: str, execution: str) -> dict[str, Any] | None:
    items = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", namespace, "-l", f"job-name={execution}", "-o", "json"
        ).stdout
    )["items"]
    return items[0] if items else None


# -- the chart on the real node -----------------------------------------------------------------


def test_the_operator_and_console_pods_run_the_image_non_root_read_only_and_ready(
    cluster: Cluster, installed: Installed
) -> None:
    for component, pod in installed.pods.items():
        assert pod["spec"]["nodeName"] == NODE_NAME, component
        [container] = pod["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["image"] == installed.node.built.app  # type: ignore[union-attr]
        # Credentials come from the ServiceAccount token alone: no kubeconfig, no token env.
        names = {e["name"] for e in container.get("env", [])}
        assert "KUBECONFIG" not in names
        assert "BARBEQUE_KUBECONFIG" not in names
        [status] = pod["status"]["containerStatuses"]
        assert status["ready"] is True, status
        assert status["restartCount"] == 0, status
    # The processes really run as uid 10001, as the image's USER says.
    in_containers = set(installed.node.container_pids())
    for marker in (b"\0operator\0--liveness\0", b"\0barbeque_dashboard"):
        pids = [pid for pid in processes_matching(marker) if pid in in_containers]
        assert pids, marker
        assert {_uid(pid) for pid in pids} == {10001}, marker
    with urllib.request.urlopen(installed.console_url + "/readyz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(installed.metrics_url, timeout=5) as response:
        metrics = response.read().decode()
    # Calls made under the chart's ServiceAccount: the operator has listed and watched.
    assert "barbeque_kube_requests_total" in metrics


def test_the_real_node_is_labelled_tainted_and_every_address_is_loopback(
    cluster: Cluster, installed: Installed
) -> None:
    node = json.loads(cluster.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
    assert node["metadata"]["labels"].get(NODE_LABEL[0]) == NODE_LABEL[1]
    # Only pods that ask land here: the taint keeps the fast tiers' pods on kwok nodes.
    assert NODE_TAINT in node["spec"]["taints"]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == NODE_NAME, addresses
    assert all(_loopback(address) for t, address in addresses.items() if t != "Hostname")
    others = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in others if NODE_LABEL[0] in n["metadata"]["labels"]] == [
        NODE_NAME
    ]
    # hostNetwork pods share the node's loopback address: nothing is reachable beyond it.
    for component, pod in installed.pods.items():
        assert pod["spec"]["hostNetwork"] is True, component
        ips = [pod["status"]["hostIP"], *(p["ip"] for p in pod["status"].get("podIPs", []))]
        assert all(_loopback(ip) for ip in ips), (component, ips)


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/8")


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


# -- executions on the real node ----------------------------------------------------------------


def test_a_container_prints_the_message_and_s3_holds_exactly_that_output(
    real_app: App, installed: Installed
) -> None:
    define(real_app, installed, "echo", 'printf "%s\\n" "$BARBEQUE_MESSAGE"')
    message = {"greeting": "hello from a real container", "n": 1}
    message_id = real_app.enqueue("echo", message)
    execution = real_app.wait_phase(execution_name(message_id), FINISHED, timeout=90)
    assert execution["status"]["phase"] == "Succeeded", execution["status"]
    assert execution["status"]["exitCode"] == 0
    assert json.loads(stdout_of(real_app, execution)) == message
    assert (
        stdout_of(real_app, execution) == (json.dumps(message, ensure_ascii=False) + "\n").encode()
    )


def test_exit_3_fails_with_exit_code_3_and_is_retried(real_app: App, installed: Installed) -> None:
    define(
        real_app, installed, "three", 'echo "attempt $BARBEQUE_RETRY_COUNT"; exit 3',
        retry={"limit": 1, "baseDelaySeconds": 1, "jitter": False},
    )  # fmt: skip
    root = execution_name(real_app.enqueue("three", {}))
    failed = real_app.wait_phase(root, FINISHED, timeout=90)
    assert failed["status"]["phase"] == "Failed"
    assert failed["status"]["exitCode"] == 3
    assert stdout_of(real_app, failed) == b"attempt 0\n"
    retry = real_app.wait_phase(f"{root}-retry-1", FINISHED, timeout=90)
    assert retry["status"]["exitCode"] == 3
    assert retry["spec"]["attempt"] == 1
    assert stdout_of(real_app, retry) == b"attempt 1\n"


def test_a_container_past_its_deadline_fails_and_its_process_is_gone(
    real_app: App, installed: Installed
) -> None:
    # A job that stops on SIGTERM, as a well-behaved one does (the kubelet's first signal).
    define(real_app, installed, "slow", TERMINABLE.format(3011), activeDeadlineSeconds=3)
    name = execution_name(real_app.enqueue("slow", {}))
    real_app.wait_phase(name, ("Running",), timeout=90)
    assert processes_with(["sleep", "3011"]), "the job's process runs on this machine"
    execution = real_app.wait_phase(name, FINISHED, timeout=60)
    assert execution["status"]["phase"] == "Failed"
    assert execution["status"]["reason"] == "DeadlineExceeded", execution["status"]
    wait_until("the process to end", lambda: not processes_with(["sleep", "3011"]) or None, 30)


def test_cancelling_a_running_execution_stops_the_real_process(
    real_app: App, installed: Installed
) -> None:
    define(real_app, installed, "long", TERMINABLE.format(3023))
    name = execution_name(real_app.enqueue("long", {}))
    real_app.wait_phase(name, ("Running",), timeout=90)
    wait_until("the process to start", lambda: processes_with(["sleep", "3023"]) or None, 30)
    real_app.custom.patch_namespaced_custom_object(
        "barbeque.dev", "v1alpha1", real_app.namespace, "jobexecutions", name,
        {"spec": {"cancel": True}},
    )  # fmt: skip
    execution = real_app.wait_phase(name, FINISHED, timeout=60)
    assert execution["status"]["reason"] == "Cancelled"
    wait_until("the process to end", lambda: not processes_with(["sleep", "3023"]) or None, 45)


def test_a_container_over_its_memory_limit_fails_oom_killed(
    real_app: App, installed: Installed
) -> None:
    # dd allocates its 200 MB block at once: far over the 32 Mi limit.
    define(
        real_app, installed, "hungry", "exec dd if=/dev/zero of=/dev/null bs=200M count=1",
        resources={"limits": {"memory": "32Mi"}, "requests": {"memory": "32Mi"}},
    )  # fmt: skip
    execution = real_app.wait_phase(
        execution_name(real_app.enqueue("hungry", {})), FINISHED, timeout=90
    )
    assert execution["status"]["phase"] == "Failed"
    assert execution["status"]["reason"] == "OOMKilled", execution["status"]
    assert execution["status"]["exitCode"] == 137


def test_an_image_that_does_not_exist_says_so_and_ends_in_error_within_its_start_deadline(
    cluster: Cluster, real_app: App, installed: Installed
) -> None:
    where = placement()
    real_app.define(
        "missing",
        image="localhost/barbeque-no-such-image:1",
        command=["true"],
        nodeSelector=where["nodeSelector"],
        tolerations=where["tolerations"],
        startDeadlineSeconds=15,
    )
    name = execution_name(real_app.enqueue("missing", {}))

    def pull_error() -> dict[str, Any] | None:
        found = real_app.execution(name)
        reason = ((found or {}).get("status") or {}).get("reason")
        return found if reason in ("ErrImagePull", "ImagePullBackOff") else None

    waiting = wait_until("the execution to show the image pull error", pull_error, 60)
    assert "no-such-image" in waiting["status"]["message"]
    started = time.monotonic()
    execution = real_app.wait_phase(name, FINISHED, timeout=60)
    assert execution["status"]["phase"] == "Error", execution["status"]
    assert execution["status"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert time.monotonic() - started < 45
    # Its Job is deleted, so the kubelet stops pulling.
    wait_until(
        "its pod gone", lambda: pod_of(cluster, real_app.namespace, name) is None or None, 60
    )


def test_a_kubelet_restart_during_a_run_neither_loses_nor_doubles_the_execution(
    cluster: Cluster, real_app: App, installed: Installed
) -> None:
    define(real_app, installed, "steady", "sleep 8; echo finished")
    name = execution_name(real_app.enqueue("steady", {}))
    real_app.wait_phase(name, ("Running",), timeout=90)
    installed.node.restart_kubelet()
    execution = real_app.wait_phase(name, FINISHED, timeout=120)
    assert execution["status"]["phase"] == "Succeeded", execution["status"]
    assert stdout_of(real_app, execution) == b"finished\n"
    assert len(real_app.jobs()) == 1
    assert len(real_app.executions()) == 1
    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", real_app.namespace, "-o", "json").stdout
    )["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]


def test_ten_megabytes_of_output_reach_s3_whole(real_app: App, installed: Installed) -> None:
    # 100,000 lines of 100 bytes: 10,000,000 bytes, under the 10 MiB log cap (docs/operator.md).
    define(
        real_app, installed, "chatty",
        "i=0; line=$(printf '%099d' 0); while [ $i -lt 100000 ]; do echo $line; i=$((i+1)); done",
    )  # fmt: skip
    execution = real_app.wait_phase(
        execution_name(real_app.enqueue("chatty", {})), FINISHED, timeout=180
    )
    assert execution["status"]["phase"] == "Succeeded", execution["status"]
    body = stdout_of(real_app, execution)
    assert len(body) == 10_000_000
    assert body == (b"0" * 99 + b"\n") * 100_000
