"""``barbeque import`` from a real MariaDB loaded with barbeque's schema and sample rows:
the manifests apply on the local control plane, a message enqueued the barbeque way
(Web API ``POST /v2/job_executions``) runs the imported definition under the operator, and
the imported SNS subscription subscribes the queue, so a publish to the topic (moto's SNS)
runs the definition it names.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from barbeque.adapters.mysql import TABLES
from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster
from tests.support import webapi_servers
from tests.support.aws import Aws
from tests.support.mariadb import MariaDB, mariadb
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_until
from tests.support.webapi_servers import Service

pytestmark = pytest.mark.integration

service = webapi_servers.service
operator_process = webapi_servers.operator_process
__all__ = ["mariadb"]

ROOT = Path(__file__).resolve().parents[2]


def barbeque_import(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "barbeque", "import", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture
def imported(mariadb: MariaDB, aws: Aws, tmp_path: Path) -> tuple[str, Path]:
    """The sample rows under a fresh suffix, their SQS queues, and the import's output."""
    suffix = uuid.uuid4().hex[:8]
    sqs = aws.sqs()
    urls = {
        f"{key}_QUEUE_URL": sqs.create_queue(QueueName=f"Barbeque-{name}-{suffix}")["QueueUrl"]
        for key, name in (("DEFAULT", "default"), ("MAIL", "Mail"))
    }
    mariadb.run_sql(";\n".join(f"DELETE FROM barbeque_{table}" for table in TABLES))
    mariadb.load("sample.sql", SUFFIX=suffix, **urls)
    output = tmp_path / "barbeque.yaml"
    result = barbeque_import("--database", mariadb.url, "-o", str(output))
    assert result.returncode == 0, result.stderr
    assert "2 Namespace, 2 JobQueue, 3 JobDefinition, 1 SNSSubscription; 0 skipped" in result.stderr
    return suffix, output


def documents(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for body in yaml.safe_load_all(path.read_text()):
        if body:
            found[(body["kind"], body["metadata"]["name"])] = body
    return found


def test_import_maps_barbeque_rows_to_manifests(imported: tuple[str, Path]) -> None:
    suffix, output = imported
    objects = documents(output)
    notify = objects[("JobDefinition", "notify-author")]
    assert notify["metadata"]["namespace"] == f"blog-{suffix}"
    assert notify["spec"] == {
        "jobName": "NotifyAuthor",
        "description": "Tell the author about a comment",
        "queue": f"default-{suffix}",
        "image": "busybox:1.36",
        "args": ["echo", "notify"],
        "retry": {"limit": 5, "baseDelaySeconds": 2.5, "jitter": False, "maxDelaySeconds": 60.0},
        "slack": {
            "channel": "#blog",
            "notifySuccess": True,
            "notifyFailureOnlyIfRetryLimitReached": True,
            "failureText": "@author",
        },
    }
    index = objects[("JobDefinition", "index-post")]["spec"]
    # barbeque retried only with a retry_config; the SNS subscription names its queue.
    assert index["retry"] == {"limit": 0}
    assert index["queue"] == f"mail-{suffix}"
    assert index["args"] == ["sh", "-c", "echo indexing $BARBEQUE_MESSAGE"]
    shop = objects[("Namespace", f"my-shop-{suffix}")]
    assert shop["metadata"]["annotations"]["barbeque.dev/application"] == f"My_Shop_{suffix}"
    checkout = objects[("JobDefinition", "checkout")]["spec"]
    assert "args" not in checkout
    assert checkout["image"] == "registry.example:5000/shop:latest"
    mail = objects[("JobQueue", f"mail-{suffix}")]
    assert mail["spec"]["queueUrl"].endswith(f"/Barbeque-Mail-{suffix}")
    topic = f"arn:aws:sns:us-east-1:123456789012:blog-comments-{suffix}"
    subscription = objects[("SNSSubscription", f"blog-comments-{suffix}-index-post")]
    assert subscription["metadata"]["namespace"] == f"blog-{suffix}"
    assert subscription["spec"] == {
        "topicArn": topic,
        "queue": f"mail-{suffix}",
        "job": "index-post",
    }
    assert "TODO" not in output.read_text()


def test_imported_manifests_apply_and_an_enqueued_message_runs(
    imported: tuple[str, Path],
    cluster: Cluster,
    aws: Aws,
    service: Service,
    operator_process: OperatorProcess,
) -> None:
    suffix, output = imported
    namespaces = [f"blog-{suffix}", f"my-shop-{suffix}"]
    queues = [f"default-{suffix}", f"mail-{suffix}"]
    try:
        applied = cluster.kubectl("apply", "-f", str(output), check=False)
        assert applied.returncode == 0, applied.stderr
        assert "jobdefinition.barbeque.dev/notify-author created" in applied.stdout

        def enqueue() -> Any:
            response = service.client().post(
                "/v2/job_executions",
                json={
                    "application": f"blog-{suffix}",
                    "job": "NotifyAuthor",
                    "queue": f"default-{suffix}",
                    "message": {"comment": 1},
                },
            )
            return response.status_code == 201 and response.json()["message_id"]

        message_id = wait_until("the imported definition in the Web API's cache", enqueue)
        wait_until(
            "the imported job to succeed",
            lambda: (
                service.client().get(f"/v1/job_executions/{message_id}").json()["status"]
                == "success"
            ),
            timeout=90,
        )
        job = cluster.api(
            "GET",
            f"/apis/barbeque.dev/v1alpha1/namespaces/blog-{suffix}/jobexecutions/"
            f"{execution_name(message_id)}",
        )
        pod = cluster.api(
            "GET",
            f"/apis/batch/v1/namespaces/blog-{suffix}/jobs/{job['status']['jobName']}",
        )["spec"]["template"]["spec"]["containers"][0]
        assert pod["image"] == "busybox:1.36"
        assert pod["args"] == ["echo", "notify"]
        assert "command" not in pod

        # The topic barbeque had subscribed: the imported SNSSubscription takes it over.
        topic = aws.sns().create_topic(Name=f"blog-comments-{suffix}")["TopicArn"]
        subscription = f"blog-comments-{suffix}-index-post"
        wait_until(
            "the imported subscription to be Subscribed",
            lambda: (
                cluster.api(
                    "GET",
                    f"/apis/barbeque.dev/v1alpha1/namespaces/blog-{suffix}/snssubscriptions/"
                    f"{subscription}",
                )
                .get("status", {})
                .get("phase")
                == "Subscribed"
            ),
            timeout=30,
        )
        aws.sns().publish(TopicArn=topic, Message=json.dumps({"post": 42}))

        def indexed() -> dict[str, Any] | None:
            items = cluster.api(
                "GET", f"/apis/barbeque.dev/v1alpha1/namespaces/blog-{suffix}/jobexecutions"
            )["items"]
            return next(
                (
                    e
                    for e in items
                    if e["spec"]["job"] == "index-post"
                    and (e.get("status") or {}).get("phase") == "Succeeded"
                ),
                None,
            )

        execution = wait_until("the published message to run index-post", indexed, timeout=90)
        assert execution["spec"]["message"] == {"post": 42}
    finally:
        for queue in queues:
            cluster.kubectl("delete", "jobqueue", queue, "--ignore-not-found", check=False)
        # Subscriptions first: their finalizer needs the operator (still running) and the queue.
        cluster.kubectl(
            "delete", "snssubscriptions", "--all", "-n", f"blog-{suffix}", "--wait", check=False
        )
        for namespace in namespaces:
            cluster.delete_namespace(namespace)


def test_an_unreachable_database_is_a_clear_error(mariadb: MariaDB, tmp_path: Path) -> None:
    output = tmp_path / "none.yaml"
    wrong = mariadb.url.replace("s3cret%2Fpw", "wrong")
    result = barbeque_import("--database", wrong, "-o", str(output))
    assert result.returncode == 2
    assert "cannot connect to barbeque@127.0.0.1" in result.stderr
    assert "Access denied" in result.stderr
    assert not output.exists()
    missing = barbeque_import()
    assert missing.returncode == 2
    assert "--database" in missing.stderr
