"""From an SQS message to a finished JobExecution, on the real local control plane.

The operator runs in-process (kopf's runner); SQS and S3 are moto's server over HTTP;
Slack is a local recorder; Kubernetes is a real kube-apiserver with the Job controller,
the scheduler and kwok's simulated nodes. Nothing is mocked.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from barbeque import metrics
from barbeque.services.naming import execution_name
from tests.support.aws import Aws
from tests.support.operator import BUCKET, GROUP, OPERATOR_NAMESPACE, VERSION, App
from tests.support.slack import SlackRecorder
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

FAIL = {"barbeque.dev/kwok-exit-code": "3"}


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_message_runs_to_succeeded_with_logs_and_message_in_s3(app: App, aws: Aws) -> None:
    app.define("hello", slack={"channel": "#ok", "notifySuccess": True})
    message_id = app.enqueue("hello", {"user_id": 42, "text": "héllo"})
    name = execution_name(message_id)

    execution = app.wait_phase(name, ("Succeeded", "Failed", "Error"))

    status = execution["status"]
    assert status["phase"] == "Succeeded", status
    assert status["exitCode"] == 0
    assert status["jobName"] == name
    assert status["podName"].startswith(name)
    assert status["startedAt"] <= status["finishedAt"]
    assert status["duration"].endswith("s")
    assert execution["spec"]["messageId"] == message_id
    assert execution["spec"]["message"] == {"user_id": 42, "text": "héllo"}
    assert execution["spec"]["sentTimestamp"] > 0
    prefix = f"{app.namespace}/hello/{message_id}/"
    assert status["logs"] == {
        "bucket": BUCKET,
        "prefix": prefix,
        "url": f"s3://{BUCKET}/{prefix}",
        "uploaded": True,
    }
    s3 = aws.s3()
    message = s3.get_object(Bucket=BUCKET, Key=prefix + "message.json")["Body"].read()
    assert json.loads(message) == {"user_id": 42, "text": "héllo"}
    logs = s3.get_object(Bucket=BUCKET, Key=prefix + "stdout.txt")["Body"].read().decode()
    pod_log = client.CoreV1Api(app.api).read_namespaced_pod_log(status["podName"], app.namespace)
    assert logs == pod_log
    assert logs.strip()
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "execution.json")["Body"].read())
    assert summary["phase"] == "Succeeded"

    jobs = app.jobs()
    assert [j.metadata.name for j in jobs] == [name]
    job = jobs[0]
    assert job.spec.backoff_limit == 0
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == (
        "JobExecution",
        name,
        execution["metadata"]["uid"],
    )
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["BARBEQUE_MESSAGE_ID"] == message_id
    assert json.loads(env["BARBEQUE_MESSAGE"]) == {"user_id": 42, "text": "héllo"}
    assert env["BARBEQUE_QUEUE_NAME"] == app.queue
    assert env["BARBEQUE_RETRY_COUNT"] == "0"

    assert wait_until("SQS to be empty", lambda: app.queue_depth() == 0 or None, 10) is True


def test_success_is_posted_to_slack_when_asked(app: App, slack: SlackRecorder) -> None:
    app.define("hello", slack={"channel": "#success-only", "notifySuccess": True})
    message_id = app.enqueue("hello", {})
    app.wait_phase(execution_name(message_id), ("Succeeded",))
    posted = slack.wait_for(lambda m: m.get("channel") == "#success-only")
    assert posted[0]["auth"] == "Bearer xoxb-test-token"
    assert posted[0]["text"].startswith("*[SUCCESS]* Succeeded to execute <http://console.test/")
    assert message_id in posted[0]["text"]
    assert posted[0]["attachments"][0]["color"] == "good"


def test_a_duplicate_delivery_creates_one_execution_and_one_job(app: App, aws: Aws) -> None:
    """A message received, recorded, not deleted (a crash) comes back: 409, delete, nothing new."""
    app.define("hello")
    app.set_queue(suspend=True)
    time.sleep(2)  # let the poller notice the suspension before the message arrives
    message_id = app.enqueue("hello", {"n": 1})
    name = execution_name(message_id)
    # What an earlier delivery left behind: the execution exists, the message was not deleted.
    app.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        app.namespace,
        "jobexecutions",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "JobExecution",
            "metadata": {"name": name, "namespace": app.namespace},
            "spec": {
                "application": app.namespace,
                "job": "hello",
                "queue": app.queue,
                "messageId": message_id,
                "message": {"n": 1},
            },
        },
    )
    duplicates_before = sample("barbeque_messages_duplicate_total", queue=app.queue)
    app.set_queue(suspend=False)

    app.wait_phase(name, ("Succeeded",))
    wait_until("the redelivered message to be deleted", lambda: app.queue_depth() == 0 or None, 30)
    assert sample("barbeque_messages_duplicate_total", queue=app.queue) == duplicates_before + 1
    assert [e["metadata"]["name"] for e in app.executions()] == [name]
    assert [j.metadata.name for j in app.jobs()] == [name]


def test_the_message_is_deleted_only_after_its_execution_exists(app: App) -> None:
    """While the API server refuses the execution (quota), the message stays in SQS."""
    app.define("hello")
    core = client.CoreV1Api(app.api)
    core.create_namespaced_resource_quota(
        app.namespace,
        {
            "metadata": {"name": "no-executions"},
            "spec": {"hard": {f"count/jobexecutions.{GROUP}": "0"}},
        },
    )
    wait_until(
        "the quota to be active",
        lambda: (
            core.read_namespaced_resource_quota("no-executions", app.namespace).status.hard or None
        ),
        30,
    )
    message_id = app.enqueue("hello", {"kept": True})
    name = execution_name(message_id)
    # Several receive/refuse rounds (visibility timeout 5 s) while nothing can be recorded.
    time.sleep(8)
    assert app.execution(name) is None
    assert app.queue_depth() == 1

    core.delete_namespaced_resource_quota("no-executions", app.namespace)
    app.wait_phase(name, ("Succeeded",), timeout=60)
    wait_until("the message to be deleted", lambda: app.queue_depth() == 0 or None, 30)


def test_a_failing_pod_ends_failed_notifies_slack_and_retries_with_backoff(
    app: App, slack: SlackRecorder
) -> None:
    app.define(
        "flaky",
        podAnnotations=FAIL,
        retry={"limit": 2, "baseDelaySeconds": 2, "jitter": False},
        slack={"channel": "#failures", "failureText": "<!here>"},
    )
    message_id = app.enqueue("flaky", {"try": "me"})
    root = execution_name(message_id)

    first = app.wait_phase(root, ("Failed", "Succeeded", "Error"))
    assert first["status"]["phase"] == "Failed"
    assert first["status"]["exitCode"] == 3
    assert "exited with code 3" in first["status"]["message"]
    assert first["status"]["retriedBy"] == f"{root}-retry-1"

    retry1 = app.wait_phase(f"{root}-retry-1", ("Failed",), timeout=60)
    assert retry1["spec"]["attempt"] == 1
    assert retry1["spec"]["retryOf"] == root
    assert retry1["spec"]["originalMessageId"] == message_id
    assert retry1["spec"]["message"] == {"try": "me"}
    # Backoff: the retry was held until base delay after the failure.
    not_before = datetime.fromisoformat(retry1["spec"]["notBefore"])
    failed_at = datetime.fromisoformat(first["status"]["finishedAt"])
    assert timedelta(seconds=1.5) <= not_before - failed_at <= timedelta(seconds=5)
    job = client.BatchV1Api(app.api).read_namespaced_job(f"{root}-retry-1", app.namespace)
    assert job.metadata.creation_timestamp >= not_before - timedelta(seconds=1)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["BARBEQUE_RETRY_COUNT"] == "1"
    assert env["BARBEQUE_MESSAGE_ID"] == message_id

    retry2 = app.wait_phase(f"{root}-retry-2", ("Failed",), timeout=60)
    # Second retry: 2^1 * base.
    assert datetime.fromisoformat(retry2["spec"]["notBefore"]) - datetime.fromisoformat(
        retry1["status"]["finishedAt"]
    ) >= timedelta(seconds=3.5)
    assert retry2["status"].get("retriedBy") is None  # the limit (2) is reached
    time.sleep(1)
    assert app.execution(f"{root}-retry-3") is None

    texts = [m["text"] for m in slack.wait_for(lambda m: m.get("channel") == "#failures")]
    wait_until(
        "three failure posts",
        lambda: len([m for m in slack.messages("#failures")]) >= 3 or None,
        10,
    )
    texts = [m["text"] for m in slack.messages("#failures")]
    assert texts[0].startswith("*[FAILURE]* Failed to execute")
    assert texts[0].endswith(" <!here>")
    assert all(t.startswith("*[FAILURE]* Failed to retry") for t in texts[1:3])
    assert slack.messages("#failures")[0]["attachments"][0]["color"] == "danger"


def test_a_delay_beyond_sqs_limit_is_scheduled_then_started_on_time(app: App) -> None:
    app.define("later")
    far = datetime.now(UTC) + timedelta(seconds=3600)
    soon = datetime.now(UTC) + timedelta(seconds=6)
    far_id = app.enqueue("later", {"when": "far"}, NotBefore=far.isoformat())
    soon_id = app.enqueue("later", {"when": "soon"}, NotBefore=soon.isoformat())

    scheduled = app.wait_phase(execution_name(soon_id), ("Scheduled",), timeout=20)
    assert scheduled["status"]["message"].startswith("starts at")
    assert app.jobs() == [] or all(j.metadata.name != execution_name(soon_id) for j in app.jobs())

    done = app.wait_phase(execution_name(soon_id), ("Succeeded",), timeout=60)
    job = client.BatchV1Api(app.api).read_namespaced_job(execution_name(soon_id), app.namespace)
    assert job.metadata.creation_timestamp >= soon - timedelta(seconds=1)
    assert done["spec"]["notBefore"]

    far_execution = app.wait_phase(execution_name(far_id), ("Scheduled",), timeout=10)
    assert far_execution["spec"]["notBefore"]
    assert all(j.metadata.name != execution_name(far_id) for j in app.jobs())


def test_the_concurrency_cap_leaves_messages_in_sqs(app: App) -> None:
    app.set_queue(maxConcurrentExecutions=2)
    app.define("slow", podAnnotations={"barbeque.dev/kwok-duration-ms": "8000"})
    time.sleep(1)
    ids = [app.enqueue("slow", {"i": i}) for i in range(6)]

    def unfinished() -> list[dict[str, Any]]:
        return [
            e
            for e in app.executions()
            if (e.get("status") or {}).get("phase") not in ("Succeeded", "Failed", "Error")
        ]

    # While the first two run, the other four stay in SQS.
    wait_until("two executions", lambda: len(app.executions()) == 2 or None, 30)
    for _ in range(3):  # checked over a few receive rounds, well within the pods' 8 s
        assert len(app.executions()) == 2
        assert len(unfinished()) <= 2
        assert app.queue_depth() == 4
        time.sleep(0.5)

    peak = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        peak = max(peak, len(unfinished()))
        done = [e for e in app.executions() if (e.get("status") or {}).get("phase") == "Succeeded"]
        if len(done) == 6:
            break
        time.sleep(0.3)
    assert sorted(e["spec"]["messageId"] for e in app.executions()) == sorted(ids)
    assert all((e.get("status") or {}).get("phase") == "Succeeded" for e in app.executions())
    assert peak <= 2


def test_a_poison_message_becomes_an_error_record_and_the_operator_goes_on(app: App) -> None:
    app.define("hello")
    invalid_before = sample(
        "barbeque_messages_invalid_total", queue=app.queue, reason="InvalidMessage"
    )
    not_json = app.send("{this is not json")
    unknown_job = app.enqueue("no-such-job", {"x": 1})
    unknown_app = app.send(
        json.dumps({"Type": "JobExecution", "Application": "ghost-app", "Job": "j", "Message": 1})
    )
    good = app.enqueue("hello", {"after": "poison"})

    bad = app.wait_phase(execution_name(not_json), ("Error",), namespace=OPERATOR_NAMESPACE)
    assert bad["status"]["reason"] == "InvalidMessage"
    assert "not JSON" in bad["status"]["message"]
    assert bad["spec"]["rawMessage"] == "{this is not json"

    unknown = app.wait_phase(execution_name(unknown_job), ("Error",))
    assert unknown["status"]["reason"] == "UnknownJob"
    assert "no JobDefinition named 'no-such-job'" in unknown["status"]["message"]

    ghost = app.wait_phase(execution_name(unknown_app), ("Error",), namespace=OPERATOR_NAMESPACE)
    assert "ghost-app" in ghost["status"]["message"]

    app.wait_phase(execution_name(good), ("Succeeded",))
    assert wait_until("all messages deleted", lambda: app.queue_depth() == 0 or None, 20)
    assert (
        sample("barbeque_messages_invalid_total", queue=app.queue, reason="InvalidMessage")
        >= invalid_before + 2
    )


def test_a_jobretry_message_retries_an_execution_by_hand(app: App) -> None:
    app.define("flaky", podAnnotations=FAIL, retry={"limit": 0})
    message_id = app.enqueue("flaky", {"n": 1})
    app.wait_phase(execution_name(message_id), ("Failed",))
    retry_id = app.send(json.dumps({"Type": "JobRetry", "RetryMessageId": message_id}))

    retry = app.wait_phase(execution_name(retry_id), ("Failed",))
    parent = app.execution(execution_name(message_id))
    assert parent is not None
    assert parent["status"]["retriedBy"] == execution_name(retry_id)
    assert retry["spec"]["attempt"] == 1
    assert retry["spec"]["retryOf"] == execution_name(message_id)
    assert retry["spec"]["originalMessageId"] == message_id
    assert retry["metadata"]["ownerReferences"][0]["name"] == execution_name(message_id)


def test_a_cancelled_execution_stops_its_job(app: App) -> None:
    app.define("slow", podAnnotations={"barbeque.dev/kwok-duration-ms": "60000"})
    message_id = app.enqueue("slow", {})
    name = execution_name(message_id)
    app.wait_phase(name, ("Running",))
    app.custom.patch_namespaced_custom_object(
        GROUP, VERSION, app.namespace, "jobexecutions", name, {"spec": {"cancel": True}}
    )
    cancelled = app.wait_phase(name, ("Failed",))
    assert cancelled["status"]["reason"] == "Cancelled"
    wait_until("the Job to be deleted", lambda: not app.jobs() or None, 30)


def test_history_beyond_the_definitions_policy_is_deleted_and_kept_in_s3(
    app: App, aws: Aws
) -> None:
    app.define("hello", history={"keep": 1})
    ids = [app.enqueue("hello", {"i": i}) for i in range(3)]
    for message_id in ids:
        wait_until(
            f"{message_id} to finish",
            lambda m=message_id: (
                app.execution(execution_name(m)) is None
                or (app.execution(execution_name(m)) or {}).get("status", {}).get("phase")
                == "Succeeded"
            ),
            60,
        )
    remaining = wait_until(
        "history collection to keep one execution",
        lambda: (
            [e["metadata"]["name"] for e in app.executions()]
            if len(app.executions()) == 1
            else None
        ),
        30,
    )
    assert remaining[0] in {execution_name(m) for m in ids}
    for message_id in ids:
        record = aws.s3().get_object(
            Bucket=BUCKET, Key=f"{app.namespace}/hello/{message_id}/execution.json"
        )
        assert json.loads(record["Body"].read())["phase"] == "Succeeded"
    assert sample("barbeque_executions_collected_total") >= 2
