"""The operator running in-process (kopf's runner) against the real local servers.

Tests talk to the same things a user does: SQS (moto's server) to enqueue, the
Kubernetes API to read JobExecutions and Jobs, S3 for logs, the Slack recorder.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from barbeque.adapters.kube import load_api_client
from barbeque.config import get_settings
from tests.cluster.harness import Cluster
from tests.support.aws import Aws
from tests.support.slack import SlackRecorder
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "barbeque.dev", "v1alpha1"
OPERATOR_NAMESPACE = "barbeque-system"
BUCKET = "barbeque-logs"
T = TypeVar("T")


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=barbeque",
    )
    cluster.create_namespace(OPERATOR_NAMESPACE)


def operator_env(cluster: Cluster, aws: Aws, slack: SlackRecorder, **extra: str) -> dict[str, str]:
    return {
        "KUBECONFIG": str(cluster.kubeconfig),
        "BARBEQUE_NAMESPACE": OPERATOR_NAMESPACE,
        "BARBEQUE_SQS_ENDPOINT_URL": aws.endpoint_url,
        "BARBEQUE_S3_ENDPOINT_URL": aws.endpoint_url,
        "BARBEQUE_S3_BUCKET": BUCKET,
        "BARBEQUE_S3_CREATE_BUCKET": "true",
        "BARBEQUE_SLACK_TOKEN": "xoxb-test-token",
        "BARBEQUE_SLACK_API_URL": slack.url,
        "BARBEQUE_CONSOLE_URL": "http://console.test",
        "BARBEQUE_METRICS_PORT": "0",
        "BARBEQUE_RESYNC_SECONDS": "30",
        "BARBEQUE_HISTORY_INTERVAL_SECONDS": "2",
        **extra,
    }


@pytest.fixture(scope="module")
def operator(cluster: Cluster, aws: Aws, slack: SlackRecorder, crds: None) -> Iterator[KopfRunner]:
    """The operator, in this process, for one test module (tests isolate by namespace).

    Module scope, so that it is gone before another module runs an operator of its own:
    two operators would both drain every queue.
    """
    os.environ.update(operator_env(cluster, aws, slack))
    get_settings.cache_clear()
    runner = KopfRunner(
        ["run", "--all-namespaces", "--standalone", "-m", "barbeque.handlers"], timeout=60
    )
    with runner:
        yield runner
    assert runner.exception is None, runner.exception


@dataclass
class App:
    """One application (namespace) with its own JobQueue, for one test."""

    cluster: Cluster
    aws: Aws
    namespace: str
    queue: str
    queue_url: str
    api: client.ApiClient

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def define(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "JobDefinition",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "image": "busybox:1.36",
                "queue": self.queue,
                "command": ["echo", "hi"],
                **spec,
            },
        }
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "jobdefinitions", body
        )
        return result

    def enqueue(self, job: str, message: Any, **envelope: Any) -> str:
        body = {
            "Type": "JobExecution",
            "Application": self.namespace,
            "Job": job,
            "Message": message,
        }
        body.update(envelope)
        return self.send(json.dumps(body))

    def send(self, body: str) -> str:
        result = self.aws.sqs().send_message(QueueUrl=self.queue_url, MessageBody=body)
        return str(result["MessageId"])

    def execution(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace or self.namespace, "jobexecutions", name
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def executions(self, namespace: str | None = None) -> list[dict[str, Any]]:
        result = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, "jobexecutions"
        )
        items: list[dict[str, Any]] = result["items"]
        return items

    def jobs(self) -> list[Any]:
        items: list[Any] = client.BatchV1Api(self.api).list_namespaced_job(self.namespace).items
        return items

    def wait_phase(
        self,
        name: str,
        phases: tuple[str, ...],
        timeout: float = 60.0,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            execution = self.execution(name, namespace)
            if execution and (execution.get("status") or {}).get("phase") in phases:
                return execution
            return None

        return wait_until(f"execution {name} to reach {phases}", reached, timeout)

    def queue_depth(self) -> int:
        attributes = self.aws.sqs().get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def set_queue(self, **spec: Any) -> None:
        """Change the JobQueue's spec and wait until the operator's poller runs with it."""
        changed = self.custom.patch_cluster_custom_object(
            GROUP, VERSION, "jobqueues", self.queue, {"spec": spec}
        )
        generation = changed["metadata"]["generation"]

        def observed() -> bool | None:
            queue = self.custom.get_cluster_custom_object(GROUP, VERSION, "jobqueues", self.queue)
            return (queue.get("status") or {}).get("observedGeneration") == generation or None

        wait_until(f"JobQueue {self.queue} generation {generation} observed", observed, 30)


def make_app(cluster: Cluster, aws: Aws, **queue_spec: Any) -> App:
    suffix = uuid.uuid4().hex[:8]
    namespace = f"app-{suffix}"
    queue = f"q-{suffix}"
    cluster.create_namespace(namespace)
    api = load_api_client(str(cluster.kubeconfig))
    sqs = aws.sqs()
    queue_url = sqs.create_queue(QueueName=f"Barbeque-{queue}")["QueueUrl"]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobQueue",
        "metadata": {"name": queue},
        "spec": {"receiveWaitSeconds": 1, "visibilityTimeoutSeconds": 5, **queue_spec},
    }
    client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, "jobqueues", body)
    return App(cluster, aws, namespace, queue, queue_url, api)


@pytest.fixture
def app(cluster: Cluster, aws: Aws, operator: KopfRunner) -> Iterator[App]:
    made = make_app(cluster, aws)
    yield made
    cleanup_app(made)


def cleanup_app(made: App) -> None:
    with contextlib.suppress(client.ApiException):
        made.custom.delete_cluster_custom_object(GROUP, VERSION, "jobqueues", made.queue)
    made.cluster.delete_namespace(made.namespace)
    made.api.close()
