"""The operator as users run it: its own process, under the chart's ServiceAccount and RBAC.

The chart is installed with helm into the real API server; the operator process logs in
with a TokenRequest token of the chart's ServiceAccount, so every call it makes is
authorized by the chart's ClusterRole. SQS and S3 are moto's server, Slack a recorder,
and a real Prometheus scrapes the operator's /metrics.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from barbeque.api.models import GROUP, VERSION
from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster
from tests.support.aws import Aws, free_port
from tests.support.operator import BUCKET, App, OperatorProcess, application, operator_env
from tests.support.reliability import install_chart
from tests.support.slack import SlackRecorder
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "barbeque-e2e"
RELEASE = "e2e"


@pytest.fixture(scope="module")
def chart(
    cluster: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The chart installed without its pods: its operator ServiceAccount and a kubeconfig
    that logs in as it."""
    path = tmp_path_factory.mktemp("chart") / "kubeconfig"
    try:
        yield install_chart(cluster, RELEASE, NAMESPACE, path)
    finally:
        cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, check=False)


@pytest.fixture(scope="module")
def deployed(
    chart: tuple[str, Path],
    aws: Aws,
    slack: SlackRecorder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    env = operator_env(
        chart[1],
        NAMESPACE,
        aws.endpoint_url,
        aws.endpoint_url,
        slack_url=slack.url,
        slack_token="xoxb-e2e",
    )
    operator = OperatorProcess(env, tmp_path_factory.mktemp("operator") / "operator.log")
    operator.start(timeout=60)
    try:
        yield operator
    finally:
        code, _ = operator.terminate(30)
        if code is None:
            operator.kill()
    # A clean shutdown on SIGTERM, within the time Kubernetes gives a pod by default.
    assert code == 0, operator.tail(3000)


@pytest.fixture
def e2e_app(cluster: Cluster, aws: Aws, deployed: OperatorProcess) -> Iterator[App]:
    with application(cluster, aws) as made:
        yield made


def test_the_operator_runs_under_the_charts_service_account(
    cluster: Cluster, chart: tuple[str, Path], deployed: OperatorProcess
) -> None:
    who = json.loads(
        cluster.kubectl(
            "auth", "whoami", "-o", "json", f"--token={_token(cluster, chart[0])}"
        ).stdout
    )
    assert who["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{NAMESPACE}:{chart[0]}"
    )


def _token(cluster: Cluster, service_account: str) -> str:
    return cluster.kubectl("create", "token", service_account, "-n", NAMESPACE).stdout.strip()


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


def test_a_publish_to_a_topic_runs_each_subscribed_definition(e2e_app: App) -> None:
    # The operator process under the chart's RBAC subscribes the queue (SNS and the queue
    # policy, moto over HTTP) and fans the topic's message out to both definitions.
    app = e2e_app
    topic = app.aws.sns().create_topic(Name=f"orders-{app.queue}")["TopicArn"]
    for job in ("notify", "archive"):
        app.define(job)
        app.subscribe(f"orders-{job}", topic, job)

    def subscribed() -> bool:
        items = app.custom.list_namespaced_custom_object(
            GROUP, VERSION, app.namespace, "snssubscriptions"
        )["items"]
        return [(i.get("status") or {}).get("phase") for i in items] == ["Subscribed"] * 2

    wait_until("both subscriptions Subscribed", subscribed, 60)
    app.aws.sns().publish(TopicArn=topic, Message=json.dumps({"order": 7}))

    executions = app.wait_succeeded(2, 90)
    assert sorted(e["spec"]["job"] for e in executions) == ["archive", "notify"]
    assert all(e["spec"]["message"] == {"order": 7} for e in executions)


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
    wait_until("the duplicate to be deleted", lambda: e2e_app.queue_depth() == 0 or None, 30)
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
            scraped = wait_until("Prometheus to scrape the operator", value, 60)
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
        jobs_created = wait_until("Prometheus to have the Job creates", value, 30)
        assert jobs_created >= 3
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()
