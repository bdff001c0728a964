"""The operator against the real local servers: in-process (kopf's runner, the
``operator`` fixture) or as its own process (``OperatorProcess``, as it ships: a test can
start, SIGKILL, SIGTERM and start it again, with one log across its lives and its
``/metrics`` read back).

Tests talk to the same things a user does: SQS (moto's server) to enqueue, the
Kubernetes API to read JobExecutions and Jobs, S3 for logs, the Slack recorder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kopf.testing import KopfRunner
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from barbeque.adapters.kube import load_api_client
from barbeque.config import get_settings
from tests.cluster.harness import Cluster
from tests.support import samples
from tests.support.aws import CREDENTIALS, REGION, Aws, free_port
from tests.support.slack import SlackRecorder
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "barbeque.dev", "v1alpha1"
OPERATOR_NAMESPACE = "barbeque-system"
BUCKET = "barbeque-logs"
T = TypeVar("T")

# Executions must stay countable for the whole test: keep history garbage collection (when
# the operator has it) from deleting any of them.
NO_HISTORY_GC = {"BARBEQUE_HISTORY_TTL_SECONDS": "604800", "BARBEQUE_HISTORY_KEEP": "1000000"}


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    cluster.apply_crds()
    cluster.create_namespace(OPERATOR_NAMESPACE)


def in_process_env(
    cluster: Cluster, aws: Aws, slack: SlackRecorder, **extra: str
) -> dict[str, str]:
    return {
        "KUBECONFIG": str(cluster.kubeconfig),
        "BARBEQUE_NAMESPACE": OPERATOR_NAMESPACE,
        "BARBEQUE_SQS_ENDPOINT_URL": aws.endpoint_url,
        "BARBEQUE_SNS_ENDPOINT_URL": aws.endpoint_url,
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


@contextlib.contextmanager
def in_process_operator(cluster: Cluster, aws: Aws, slack: SlackRecorder) -> Iterator[KopfRunner]:
    """The operator in this process, configured as it ships: by its environment.

    kopf's runner offers no other way in, so the variables are set for the block only and
    the cached settings dropped on both sides: nothing that runs later (another module's
    operator, a service started from ``os.environ``) sees this one's BARBEQUE_* values.
    """
    with pytest.MonkeyPatch.context() as patch:
        for key, value in in_process_env(cluster, aws, slack).items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        try:
            runner = KopfRunner(
                ["run", "--all-namespaces", "--standalone", "-m", "barbeque.handlers"], timeout=60
            )
            with runner:
                yield runner
        finally:
            get_settings.cache_clear()
    assert runner.exception is None, runner.exception


@pytest.fixture(scope="module")
def operator(cluster: Cluster, aws: Aws, slack: SlackRecorder, crds: None) -> Iterator[KopfRunner]:
    """The operator, in this process, for one test module (tests isolate by namespace).

    Module scope, so that it is gone before another module runs an operator of its own:
    two operators would both drain every queue.
    """
    with in_process_operator(cluster, aws, slack) as runner:
        yield runner


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
        body = samples.definition(self.namespace, name, self.queue, **spec)
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "jobdefinitions", body
        )
        return result

    def subscribe(self, name: str, topic_arn: str, job: str) -> dict[str, Any]:
        """An SNSSubscription of this application's queue to ``topic_arn`` for ``job``."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SNSSubscription",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"topicArn": topic_arn, "queue": self.queue, "job": job},
        }
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "snssubscriptions", body
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

    def wait_succeeded(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """The application's executions once exactly ``count`` of them have Succeeded."""

        def done() -> list[dict[str, Any]] | None:
            found = [
                e for e in self.executions() if (e.get("status") or {}).get("phase") == "Succeeded"
            ]
            return found if len(found) == count else None

        found: list[dict[str, Any]] = wait_until(f"{count} executions Succeeded", done, timeout)
        return found

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
    body = samples.queue(
        queue, **{"receiveWaitSeconds": 1, "visibilityTimeoutSeconds": 5, **queue_spec}
    )
    client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, "jobqueues", body)
    return App(cluster, aws, namespace, queue, queue_url, api)


@contextlib.contextmanager
def application(cluster: Cluster, aws: Aws, **queue_spec: Any) -> Iterator[App]:
    """``make_app`` for the block, then its JobQueue and namespace are deleted."""
    made = make_app(cluster, aws, **queue_spec)
    try:
        yield made
    finally:
        cleanup_app(made)


@pytest.fixture
def app(cluster: Cluster, aws: Aws, operator: KopfRunner) -> Iterator[App]:
    with application(cluster, aws) as made:
        yield made


def cleanup_app(made: App) -> None:
    with contextlib.suppress(client.ApiException):
        made.custom.delete_cluster_custom_object(GROUP, VERSION, "jobqueues", made.queue)
    made.cluster.delete_namespace(made.namespace)
    made.api.close()


# -- the operator as its own process ------------------------------------------------------


def operator_env(
    kubeconfig: Path,
    namespace: str,
    sqs_url: str,
    s3_url: str,
    slack_url: str = "",
    slack_token: str = "",
    **extra: str,
) -> dict[str, str]:
    env = {
        **os.environ,
        **CREDENTIALS,
        "KUBECONFIG": str(kubeconfig),
        "BARBEQUE_NAMESPACE": namespace,
        "BARBEQUE_AWS_REGION": REGION,
        "BARBEQUE_SQS_ENDPOINT_URL": sqs_url,
        "BARBEQUE_SNS_ENDPOINT_URL": sqs_url,
        "BARBEQUE_S3_ENDPOINT_URL": s3_url,
        "BARBEQUE_S3_BUCKET": BUCKET,
        "BARBEQUE_S3_CREATE_BUCKET": "true",
        **NO_HISTORY_GC,
        **extra,
    }
    for key in ("BARBEQUE_SLACK_TOKEN", "BARBEQUE_SLACK_API_URL", "BARBEQUE_LEADER_ELECTION"):
        if key not in extra:
            env.pop(key, None)
    if slack_token:
        env["BARBEQUE_SLACK_TOKEN"] = slack_token
        env["BARBEQUE_SLACK_API_URL"] = slack_url
    return env


@dataclass
class OperatorProcess:
    """One operator; ``start`` again after ``kill`` or ``terminate`` (new ports each life).

    ``module``: what ``python -m`` runs (the benchmarks' ``bench.traced_operator`` wraps
    the operator); ``cwd`` and ``preexec_fn`` go to ``subprocess.Popen``.
    """

    env: dict[str, str]
    log: Path
    verbose: bool = False
    module: str = "barbeque"
    cwd: Path | None = None
    preexec_fn: Callable[[], None] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() of the current life's start
    metrics_port: int = 0
    health_port: int = 0
    lives: int = 0
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, wait: bool = True, timeout: float = 90.0) -> OperatorProcess:
        assert not self.alive(), "already running"
        self.metrics_port, self.health_port = free_port(), free_port()
        env = {**self.env, "BARBEQUE_METRICS_PORT": str(self.metrics_port)}
        self.lives += 1
        args = [sys.executable, "-m", self.module, "operator"]
        args += ["--liveness", f"http://127.0.0.1:{self.health_port}/healthz"]
        if self.verbose:
            args.append("--verbose")
        with self.log.open("ab") as out:
            out.write(f"\n===== life {self.lives} at {time.time():.3f} =====\n".encode())
            out.flush()
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                args,
                env=env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=self.preexec_fn,
            )
        self.pids.append(self.process.pid)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"the operator exited: {self.tail()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
                ) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until("the operator's liveness endpoint", ready, timeout)
        # Liveness answers before the start-up handler has primed the store; /metrics
        # is served from inside that handler, so it answering means "started".
        wait_until("the operator's /metrics", lambda: self._metrics_text() is not None, timeout)

    def life_log(self) -> str:
        """The log of the current (or last) life only."""
        return self.log_text().rsplit("===== life", 1)[-1]

    def wait_log(self, text: str, timeout: float = 90.0) -> None:
        """Wait until the current life has logged ``text``."""

        def logged() -> bool:
            if not self.alive():
                raise AssertionError(f"the operator exited: {self.tail()}")
            return text in self.life_log()

        wait_until(f"the operator to log {text!r}", logged, timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as when a node dies or the OOM killer strikes."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """SIGTERM; returns (exit code or None if it outlived ``timeout``, seconds taken)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def stop(self) -> None:
        if not self.alive():
            return
        code, _ = self.terminate(30)
        if code is None:
            self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def _metrics_text(self) -> str | None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def metrics_text(self) -> str:
        text = self._metrics_text()
        assert text is not None, f"/metrics of the operator does not answer: {self.tail()}"
        return text

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


@contextlib.contextmanager
def running(operator: OperatorProcess, wait: bool = True) -> Iterator[OperatorProcess]:
    operator.start(wait=wait)
    try:
        yield operator
    finally:
        operator.stop()


def local_operator(cluster: Cluster, aws_url: str, log: Path, **extra: str) -> OperatorProcess:
    """An operator process, not started, as most tests run it: the cluster's admin
    kubeconfig, ``OPERATOR_NAMESPACE``, one endpoint (moto's server) for SQS and S3, no
    Slack; ``extra``: more of its environment."""
    env = operator_env(cluster.kubeconfig, OPERATOR_NAMESPACE, aws_url, aws_url, **extra)
    return OperatorProcess(env, log)
