"""The operator as users run it: its own process, under the chart's ServiceAccount and RBAC.

The chart is installed with helm into the real API server; the operator process logs in
with a TokenRequest token of the chart's ServiceAccount, so every call it makes is
authorized by the chart's ClusterRole. SQS and S3 are moto's server, Slack a recorder,
and a real Prometheus scrapes the operator's /metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster
from tests.support.aws import Aws, free_port
from tests.support.operator import BUCKET, App, cleanup_app, make_app, wait_until
from tests.support.slack import SlackRecorder

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "barbeque-e2e"
RELEASE = "e2e"


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    metrics_url: str
    log: Path
    service_account: str

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_http(url: str, timeout: float) -> None:
    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(answers, timeout, url)


def service_account_kubeconfig(cluster: Cluster, service_account: str, path: Path) -> Path:
    token = cluster.kubectl(
        "create", "token", service_account, "-n", NAMESPACE, "--duration=2h"
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.ca_file),
                },
            }
        ],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": service_account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def deployed(
    cluster: Cluster,
    crds: None,
    aws: Aws,
    slack: SlackRecorder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    cluster.helm(
        "install", RELEASE, str(ROOT / "charts" / "barbeque"),
        "--namespace", NAMESPACE, "--create-namespace",
        "--set", "operator.replicas=0",
        "--set", "dashboard.enabled=false",
    )  # fmt: skip
    deployment = json.loads(
        cluster.kubectl(
            "get", "deployments", "-n", NAMESPACE,
            "-l", "app.kubernetes.io/component=operator", "-o", "json",
        ).stdout
    )["items"][0]  # fmt: skip
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = service_account_kubeconfig(cluster, service_account, workdir / "kubeconfig")
    metrics_port, health_port = free_port(), free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "BARBEQUE_NAMESPACE": NAMESPACE,
        "BARBEQUE_SQS_ENDPOINT_URL": aws.endpoint_url,
        "BARBEQUE_S3_ENDPOINT_URL": aws.endpoint_url,
        "BARBEQUE_S3_BUCKET": BUCKET,
        "BARBEQUE_S3_CREATE_BUCKET": "true",
        "BARBEQUE_SLACK_TOKEN": "xoxb-e2e",
        "BARBEQUE_SLACK_API_URL": slack.url,
        "BARBEQUE_METRICS_PORT": str(metrics_port),
    }
    log = workdir / "operator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "barbeque", "operator",
                "--liveness", f"http://127.0.0.1:{health_port}/healthz",
            ],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    running = OperatorProcess(
        process, f"http://127.0.0.1:{metrics_port}/metrics", log, service_account
    )
    try:
        wait_http(f"http://127.0.0.1:{health_port}/healthz", 60)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, check=False)
    # A clean shutdown on SIGTERM, within the time Kubernetes gives a pod by default.
    assert process.returncode == 0, running.log_text()[-3000:]


@pytest.fixture
def e2e_app(cluster: Cluster, aws: Aws, deployed: OperatorProcess) -> Iterator[App]:
    made = make_app(cluster, aws)
    yield made
    cleanup_app(made)


def test_the_operator_runs_under_the_charts_service_account(
    cluster: Cluster, deployed: OperatorProcess
) -> None:
    who = json.loads(
        cluster.kubectl(
            "auth", "whoami", "-o", "json", f"--token={_token(cluster, deployed)}"
        ).stdout
    )
    assert who["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{NAMESPACE}:{deployed.service_account}"
    )


def _token(cluster: Cluster, deployed: OperatorProcess) -> str:
    return cluster.kubectl(
        "create", "token", deployed.service_account, "-n", NAMESPACE
    ).stdout.strip()


def test_a_message_ends_succeeded_with_logs_in_s3(
    e2e_app: App, aws: Aws, deployed: OperatorProcess
) -> None:
    e2e_app.define("hello")
    message_id = e2e_app.enqueue("hello", {"e2e": True})
    execution = e2e_app.wait_phase(execution_name(message_id), ("Succeeded", "Failed", "Error"))
    assert execution["status"]["phase"] == "Succeeded", execution["status"]
    prefix = execution["status"]["logs"]["prefix"]
    logs = aws.s3().get_object(Bucket=BUCKET, Key=prefix + "stdout.txt")["Body"].read()
    assert logs.strip()
    assert "Forbidden" not in deployed.log_text()


def test_a_failing_pod_ends_failed_and_is_retried(e2e_app: App, slack: SlackRecorder) -> None:
    e2e_app.define(
        "flaky",
        podAnnotations={"barbeque.dev/kwok-exit-code": "7"},
        retry={"limit": 1, "baseDelaySeconds": 1, "jitter": False},
        slack={"channel": "#e2e-failures"},
    )
    message_id = e2e_app.enqueue("flaky", {})
    root = execution_name(message_id)
    failed = e2e_app.wait_phase(root, ("Failed",))
    assert failed["status"]["exitCode"] == 7
    retry = e2e_app.wait_phase(f"{root}-retry-1", ("Failed",))
    assert retry["spec"]["attempt"] == 1
    slack.wait_for(lambda m: m.get("channel") == "#e2e-failures")


def test_a_duplicate_delivery_makes_one_job(e2e_app: App) -> None:
    e2e_app.define("hello")
    e2e_app.set_queue(suspend=True)
    time.sleep(2)
    message_id = e2e_app.enqueue("hello", {"once": True})
    sqs = e2e_app.aws.sqs()
    # Receive it as a crashed operator would have, record it, and never delete it.
    received = sqs.receive_message(QueueUrl=e2e_app.queue_url, VisibilityTimeout=1)["Messages"]
    assert received[0]["MessageId"] == message_id
    e2e_app.custom.create_namespaced_custom_object(
        "barbeque.dev",
        "v1alpha1",
        e2e_app.namespace,
        "jobexecutions",
        {
            "apiVersion": "barbeque.dev/v1alpha1",
            "kind": "JobExecution",
            "metadata": {"name": execution_name(message_id), "namespace": e2e_app.namespace},
            "spec": {
                "application": e2e_app.namespace,
                "job": "hello",
                "queue": e2e_app.queue,
                "messageId": message_id,
                "message": {"once": True},
            },
        },
    )
    e2e_app.set_queue(suspend=False)
    e2e_app.wait_phase(execution_name(message_id), ("Succeeded",))
    wait_until(lambda: e2e_app.queue_depth() == 0 or None, 30, "the duplicate to be deleted")
    assert len(e2e_app.executions()) == 1
    assert len(client.BatchV1Api(e2e_app.api).list_namespaced_job(e2e_app.namespace).items) == 1


def test_prometheus_scrapes_the_operator(
    e2e_app: App, deployed: OperatorProcess, tmp_path: Path
) -> None:
    e2e_app.define("hello")
    ids = [e2e_app.enqueue("hello", {"i": i}) for i in range(3)]
    for message_id in ids:
        e2e_app.wait_phase(execution_name(message_id), ("Succeeded",))

    target = urllib.parse.urlparse(deployed.metrics_url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "barbeque", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        selector = f'application="{e2e_app.namespace}",definition="hello",phase="Succeeded"'
        query = "sum(barbeque_executions_finished_total{" + selector + "})"

        def value() -> float | None:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
                {"query": query}
            )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    result: Any = json.loads(response.read())["data"]["result"]
            except OSError:
                return None
            return float(result[0]["value"][1]) if result else None

        try:
            scraped = wait_until(value, 60, "Prometheus to scrape the operator")
        except AssertionError:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets") as response:
                targets = json.loads(response.read())["data"]["activeTargets"]
            with urllib.request.urlopen(deployed.metrics_url) as response:
                exposed = [
                    line for line in response.read().decode().splitlines() if "finished" in line
                ]
            names_url = f"http://127.0.0.1:{port}/api/v1/label/__name__/values"
            with urllib.request.urlopen(names_url, timeout=5) as response:
                names = json.loads(response.read())["data"]
            raise AssertionError(
                f"targets: {targets}; exposed: {exposed}; names: {names}; query: {query}"
            ) from None
        assert scraped == 3.0
        names_url = f"http://127.0.0.1:{port}/api/v1/label/__name__/values"
        with urllib.request.urlopen(names_url, timeout=5) as response:
            names = set(json.loads(response.read())["data"])
        for expected in (
            "barbeque_messages_received_total",
            "barbeque_executions_created_total",
            "barbeque_execution_duration_seconds_bucket",
            "barbeque_enqueue_to_start_seconds_bucket",
            "barbeque_job_to_pod_running_seconds_bucket",
            "barbeque_kube_request_duration_seconds_bucket",
        ):
            assert expected in names
        # The operator's own Job creates, as Prometheus stored them (other tests of this
        # module share the operator, so at least this test's three).
        query = 'sum(barbeque_kube_requests_total{call="create_job",code="201"})'
        jobs_created = wait_until(value, 30, "Prometheus to have the Job creates")
        assert jobs_created >= 3
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()
