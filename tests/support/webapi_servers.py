"""The running web service for integration tests: real HTTP, real apiserver, moto.

``python -m barbeque_dashboard`` runs as its own process (exactly as it ships), pointed
at the session's Kubernetes control plane (``cluster`` fixture) and moto's server
(``aws`` fixture). Tests create custom resources through the API server and SQS queues
and S3 objects through boto3, then talk to the service over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.fixture import Shared
from tests.cluster.harness import ApiError, Cluster, free_port
from tests.cluster.processes import terminate
from tests.support.aws import CREDENTIALS, REGION, Aws
from tests.support.operator import OPERATOR_NAMESPACE, OperatorProcess, operator_env
from tests.support.waiting import wait_until
from tests.support.webapi import TOKEN

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "barbeque-webapi"
GROUP_PATH = "/apis/barbeque.dev/v1alpha1"


@dataclass
class Service:
    """The dashboard process and the handles tests need around it."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    cluster: Cluster
    aws: Aws
    clients: dict[str | None, httpx.Client] = field(default_factory=dict)
    boto: dict[str, Any] = field(default_factory=dict)

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        """An HTTP client of the service sending ``token`` (kept open until the session ends)."""
        if token not in self.clients:
            headers = {"Accept": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self.clients[token] = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        return self.clients[token]

    def sqs(self) -> Any:
        if "sqs" not in self.boto:
            self.boto["sqs"] = self.aws.sqs()
        return self.boto["sqs"]

    def s3(self) -> Any:
        if "s3" not in self.boto:
            self.boto["s3"] = self.aws.s3()
        return self.boto["s3"]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        for boto_client in self.boto.values():
            boto_client.close()
        terminate(self.process)

    # -- Kubernetes objects -------------------------------------------------------------------

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object (and set its status through the status subresource)."""
        body = json.loads(json.dumps(body))
        status = body.pop("status", None)
        body["metadata"].pop("resourceVersion", None)
        path = self.path(body)
        created: dict[str, Any] = self.cluster.api("POST", path, body)
        if status:
            created = self.patch_status(body, status)
        return created

    def patch_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        result: dict[str, Any] = self.cluster.api(
            "PATCH",
            f"{self.path(body)}/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
        return result

    def get(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.cluster.api(
            "GET", f"{self.path(body)}/{body['metadata']['name']}"
        )
        return result

    def delete(self, body: dict[str, Any]) -> None:
        with contextlib.suppress(ApiError):
            self.cluster.api("DELETE", f"{self.path(body)}/{body['metadata']['name']}")

    @staticmethod
    def path(body: dict[str, Any]) -> str:
        plural = body["kind"].lower() + "s"
        namespace = body["metadata"].get("namespace")
        if namespace:
            return f"{GROUP_PATH}/namespaces/{namespace}/{plural}"
        return f"{GROUP_PATH}/{plural}"

    # -- SQS ----------------------------------------------------------------------------------

    def sqs_queue(self, name: str, attributes: dict[str, str] | None = None) -> str:
        url: str = self.sqs().create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]
        return url

    def receive(self, url: str, wait: int = 1) -> list[dict[str, Any]]:
        result = self.sqs().receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        )
        messages: list[dict[str, Any]] = result.get("Messages", [])
        return messages

    def counts(self, url: str) -> dict[str, int]:
        attributes = self.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
            "Attributes"
        ]
        return {
            "visible": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"]),
        }

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


_shared_service: Shared[Service] = Shared()


def start_service(cluster: Cluster, aws: Aws, workdir: Path) -> Service:
    """A dashboard process of its own (the session's is the ``service`` fixture)."""
    s3 = aws.s3()
    s3.create_bucket(Bucket=BUCKET)
    s3.close()
    port = free_port()
    # Settings only from here: while a module's in-process operator runs, its BARBEQUE_*
    # (a console URL among them) are in os.environ, and this session-wide service may
    # start then.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BARBEQUE_")}
    env = {
        **inherited,
        **CREDENTIALS,
        "KUBECONFIG": str(cluster.kubeconfig),
        "BARBEQUE_AWS_REGION": REGION,
        "BARBEQUE_SQS_ENDPOINT_URL": aws.endpoint_url,
        "BARBEQUE_S3_ENDPOINT_URL": aws.endpoint_url,
        "BARBEQUE_S3_BUCKET": BUCKET,
        "BARBEQUE_DASHBOARD_HOST": "127.0.0.1",
        "BARBEQUE_DASHBOARD_PORT": str(port),
        "BARBEQUE_API_TOKENS": TOKEN,
        "BARBEQUE_PUBLIC_READS": "false",
        "BARBEQUE_DASHBOARD_REFRESH_SECONDS": "2",
        "BARBEQUE_TOKEN_CACHE_SECONDS": "0",
        "BARBEQUE_DASHBOARD_QUEUE_SAMPLE_SECONDS": "1",
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    log = workdir / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "barbeque_dashboard"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    service = Service(f"http://127.0.0.1:{port}", process, log, cluster, aws)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the dashboard exited {process.returncode}:\n{service.tail()}")
        try:
            return httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until("the dashboard to be ready", ready, timeout=60)
    return service


@pytest.fixture(scope="session")
def service(
    cluster: Cluster, aws: Aws, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One dashboard process for the session, shared by every module that uses it.

    Needs the root conftest's ``cluster``, ``aws`` and ``crds`` (the CRDs applied).
    """

    def start() -> Service:
        return start_service(cluster, aws, tmp_path_factory.mktemp("dashboard"))

    with _shared_service.use(start, Service.close) as instance:
        yield instance


@dataclass
class App:
    """A fresh application (namespace) with one JobQueue and SQS queue of its own."""

    name: str
    queue: str
    queue_url: str
    job: str = "send-mail"


@pytest.fixture
def webapp(service: Service) -> Iterator[App]:
    from tests.support.webapi import definition_body, queue_body

    suffix = uuid.uuid4().hex[:8]
    name = f"app-{suffix}"
    queue = f"q-{suffix}"
    service.cluster.create_namespace(name)
    url = service.sqs_queue(f"Barbeque-{queue}")
    queue_obj = service.apply(queue_body(queue))
    service.apply(definition_body(name, "send-mail", queue=queue, retry={"limit": 2}))
    wait_until(
        "the JobQueue and JobDefinition in the cache",
        lambda: service.client().get("/v1/job_definitions", params={"application": name}).json(),
    )
    try:
        yield App(name, queue, url)
    finally:
        service.delete(queue_obj)
        service.cluster.delete_namespace(name)


@pytest.fixture(scope="module")
def operator_process(
    cluster: Cluster, aws: Aws, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator as its own process, for one test module (one operator at a time):
    enqueued messages become executions that run, fail, retry and cancel for real."""
    log: Path = tmp_path_factory.mktemp("operator") / "operator.log"
    env = operator_env(cluster.kubeconfig, OPERATOR_NAMESPACE, aws.endpoint_url, aws.endpoint_url)
    process = OperatorProcess(env, log).start()
    try:
        yield process
    finally:
        process.stop()
