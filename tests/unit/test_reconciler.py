"""The execution state machine, step by step, with in-memory stand-ins for the APIs.

These read like the story of one execution; the integration tier runs the same code
against the real API server, SQS, S3 and Slack.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from barbeque.services.notifications import Notifier
from barbeque.services.reconciler import Reconciler, Requeue
from barbeque.services.recorder import Recorder
from barbeque.services.store import Store
from tests.support.fakes import FakeKube, FakeS3, FakeSlack

pytestmark = pytest.mark.unit

NS = "blog"
_rv = itertools.count(2)  # "1" is what World.receive stores


class World:
    def __init__(self) -> None:
        self.store = Store()
        self.kube = FakeKube(store=self.store, versions=_rv)
        self.s3 = FakeS3("logs")
        self.slack = FakeSlack()
        self.reconciler = Reconciler(
            store=self.store,
            kube=self.kube,
            s3=self.s3,
            notifier=Notifier(self.slack, attempts=1),
            recorder=Recorder(kube=self.kube, instance="operator-0"),
            console_url="http://console",
        )

    def define(self, name: str = "notify", **spec: Any) -> None:
        self.store.put_definition(
            {
                "metadata": {"name": name, "namespace": NS},
                "spec": {"image": "blog:1", "queue": "default", **spec},
            }
        )

    def receive(self, name: str = "m1", job: str = "notify", **spec: Any) -> None:
        self.store.put_execution(
            {
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "uid": f"uid-{name}",
                    "resourceVersion": "1",
                },
                "spec": {
                    "application": NS,
                    "job": job,
                    "queue": "default",
                    "messageId": name,
                    "message": {"id": 1},
                    **spec,
                },
            }
        )

    async def step(self, name: str = "m1") -> None:
        await self.reconciler.reconcile((NS, name))

    def phase(self, name: str = "m1") -> str | None:
        return self.store.executions[(NS, name)].status.phase

    def status(self, name: str = "m1") -> Any:
        return self.store.executions[(NS, name)].status

    def job_event(self, name: str = "m1", **status: Any) -> None:
        self.store.put_job(
            {
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "labels": {"barbeque.dev/execution": name},
                    "resourceVersion": str(next(_rv)),
                },
                "status": status,
            }
        )

    def pod_event(self, name: str = "m1", **state: Any) -> None:
        self.store.put_pod(
            {
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": NS,
                    "labels": {"barbeque.dev/execution": name},
                    "resourceVersion": str(next(_rv)),
                },
                "status": {
                    "phase": "Running" if "running" in state else "Failed",
                    "containerStatuses": [{"name": "job", "state": state}],
                },
            }
        )


T0 = "2030-01-01T00:00:00Z"
T1 = "2030-01-01T00:01:05Z"


async def created(**definition: Any) -> World:
    """A world where message m1 for definition ``notify`` (with ``definition``) has had its
    first reconcile: the Job is created."""
    world = World()
    world.define(**definition)
    world.receive()
    await world.step()
    return world


def finished(world: World, name: str = "m1", exit_code: int = 0) -> None:
    world.pod_event(
        name,
        terminated={
            "exitCode": exit_code,
            "reason": "Error" if exit_code else "Completed",
            "startedAt": T0,
            "finishedAt": T1,
        },
    )
    kind = "Complete" if exit_code == 0 else "Failed"
    world.job_event(
        name,
        startTime=T0,
        conditions=[
            {
                "type": kind,
                "status": "True",
                "reason": None if exit_code == 0 else "BackoffLimitExceeded",
                "lastTransitionTime": T1,
            }
        ],
        **({"completionTime": T1} if exit_code == 0 else {}),
    )


async def test_the_happy_path_takes_three_writes_after_the_execution() -> None:
    world = World()
    world.define(slack={"channel": "#c", "notifySuccess": True})
    world.receive()

    await world.step()
    assert "m1" in world.kube.jobs
    assert world.phase() is None  # read as Pending; its Job has its name
    await world.step()  # the same state again changes nothing
    world.job_event(active=1, ready=0)
    await world.step()  # nor does the Job's first event
    world.pod_event(running={"startedAt": T0})
    world.job_event(active=1, ready=1, startTime=T0)
    await world.step()
    assert world.phase() == "Running"
    assert world.status().job_name == "m1"
    finished(world)
    await world.step()

    status = world.status()
    assert (status.phase, status.exit_code, status.duration, status.reason) == (
        "Succeeded",
        0,
        "1m5s",
        "Completed",
    )
    assert status.logs.uploaded is True
    assert world.s3.objects["blog/notify/m1/stdout.txt"] == "log of m1-abcde\n"
    assert world.s3.objects["blog/notify/m1/message.json"] == '{"id": 1}'
    assert world.slack.posts == [
        (
            "#c",
            "*[SUCCESS]* Succeeded to execute <http://console/job_executions/m1|blog/notify #m1>",
            "good",
        )
    ]
    assert world.kube.writes == [
        "create job m1",
        "status m1 Running",
        "status m1 Succeeded",
    ]
    assert world.kube.events == []  # no Event on the happy path


async def test_a_pod_that_finished_before_anyone_looked_still_names_its_job() -> None:
    world = await created()
    finished(world)
    await world.step()
    assert (world.phase(), world.status().job_name) == ("Succeeded", "m1")
    assert world.kube.writes == ["create job m1", "status m1 Succeeded"]


async def test_a_fresh_execution_holds_its_queues_slot_without_a_status_write() -> None:
    world = World()
    world.define()
    world.receive()
    assert world.store.active_by_queue["default"] == 1
    await world.step()
    assert world.kube.writes == ["create job m1"]
    assert world.store.active_by_queue["default"] == 1


async def test_leaving_scheduled_is_written_pending_and_takes_a_slot() -> None:
    world = World()
    world.define()
    world.receive(notBefore=(datetime.now(UTC) + timedelta(seconds=30)).isoformat())
    with pytest.raises(Requeue):
        await world.step()
    assert world.phase() == "Scheduled"
    assert world.store.active_by_queue["default"] == 0
    execution = world.store.executions[(NS, "m1")]
    execution.spec.not_before = datetime.now(UTC) - timedelta(seconds=1)
    await world.step()
    assert (world.phase(), world.status().job_name) == ("Pending", "m1")
    assert world.store.active_by_queue["default"] == 1
    assert world.kube.writes == ["status m1 Scheduled", "create job m1", "status m1 Pending"]


async def test_a_lost_write_leaving_scheduled_is_made_once_the_job_is_seen() -> None:
    world = World()
    world.define()
    world.receive(notBefore=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    scheduled = world.store.executions[(NS, "m1")].model_dump(
        by_alias=True, mode="json", exclude_none=True
    )
    scheduled["metadata"]["resourceVersion"] = str(next(_rv))
    world.store.put_execution({**scheduled, "status": {"phase": "Scheduled"}})
    world.job_event()  # created before a crash, Pending never written
    await world.step()
    assert (world.phase(), world.status().job_name) == ("Pending", "m1")
    await world.step()
    assert world.kube.writes == ["status m1 Pending"]


async def test_a_failure_creates_one_retry_even_when_reconciled_twice() -> None:
    world = await created(retry={"limit": 1, "baseDelaySeconds": 30, "jitter": False})
    finished(world, exit_code=2)
    await world.step()
    assert world.status().retried_by == "m1-retry-1"
    assert world.status().exit_code == 2
    retry = world.store.executions[(NS, "m1-retry-1")]
    assert retry.spec.attempt == 1
    assert retry.spec.original_message_id == "m1"
    assert retry.spec.not_before is not None
    assert (
        timedelta(seconds=29) < retry.spec.not_before - datetime.now(UTC) <= timedelta(seconds=30)
    )

    with pytest.raises(Requeue) as requeue:
        await world.step("m1-retry-1")
    assert world.phase("m1-retry-1") == "Scheduled"
    assert 29 < requeue.value.delay <= 30
    await world.step()  # the finished parent: nothing more happens
    assert [w for w in world.kube.writes if w.startswith("create execution")] == [
        "create execution m1-retry-1"
    ]
    (event,) = world.kube.events  # once, though reconciled twice
    assert (event["type"], event["reason"], event["action"]) == ("Warning", "Error", "Run")
    assert event["regarding"] == {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "JobExecution",
        "name": "m1",
        "namespace": NS,
        "uid": "uid-m1",
    }
    assert event["metadata"]["namespace"] == NS
    assert "exited with code 2" in event["note"]
    assert event["reportingController"] == "barbeque.dev/operator"
    assert event["reportingInstance"] == "operator-0"


async def test_without_a_retry_config_a_failure_is_final() -> None:
    """barbeque retries only definitions with a retry config: a migrated job that is not
    idempotent must not run again on its own."""
    world = World()
    world.define()
    world.receive()
    await world.step()
    finished(world, exit_code=2)
    await world.step()
    assert (world.phase(), world.status().retried_by) == ("Failed", None)
    assert not [w for w in world.kube.writes if w.startswith("create execution")]


async def test_an_empty_retry_config_retries_three_times_like_barbeques_defaults() -> None:
    world = World()
    world.define(retry={"baseDelaySeconds": 0})
    world.receive()
    name = "m1"
    for attempt in range(1, 5):
        await world.step(name)
        finished(world, name, exit_code=1)
        await world.step(name)
        retried_by = world.status(name).retried_by
        if attempt == 4:
            assert retried_by is None
            break
        assert retried_by == f"m1-retry-{attempt}"
        name = retried_by
    assert [w for w in world.kube.writes if w.startswith("create execution")] == [
        "create execution m1-retry-1",
        "create execution m1-retry-2",
        "create execution m1-retry-3",
    ]


async def test_a_retry_asked_for_while_running_replaces_the_automatic_retry() -> None:
    """A job retrying itself (barbeque_client's Retryable) and then failing runs once more,
    not twice: the attempt's one retry is the one asked for."""
    world = World()
    world.define(retry={"limit": 3, "baseDelaySeconds": 0})
    world.receive()
    await world.step()
    world.receive("m2", retryOf="m1", attempt=1, originalMessageId="m1")
    finished(world, exit_code=1)
    await world.step()
    assert world.phase() == "Failed"
    assert not [w for w in world.kube.writes if w.startswith("create execution")]
    await world.step("m2")
    assert world.status().retried_by == "m2"
    await world.step()  # the finished parent, linked: still no automatic retry
    assert not [w for w in world.kube.writes if w.startswith("create execution")]


async def test_an_automatic_retry_has_its_own_sent_timestamp() -> None:
    """BARBEQUE_SENT_TIMESTAMP of a retry is when the retry was sent, as in barbeque
    (where it is the JobRetry message's SentTimestamp), not the first message's."""
    world = World()
    world.define(retry={"limit": 1, "baseDelaySeconds": 0})
    world.receive(sentTimestamp=1_000)
    await world.step()
    finished(world, exit_code=1)
    before = int(datetime.now(UTC).timestamp() * 1000)
    await world.step()
    after = int(datetime.now(UTC).timestamp() * 1000)
    retry = world.store.executions[(NS, "m1-retry-1")]
    assert retry.spec.sent_timestamp is not None
    assert before <= retry.spec.sent_timestamp <= after


async def test_the_last_retry_does_not_retry_and_slack_waits_for_it_when_asked() -> None:
    world = World()
    world.define(
        retry={"limit": 1, "baseDelaySeconds": 0},
        slack={
            "channel": "#c",
            "notifyFailureOnlyIfRetryLimitReached": True,
            "failureText": "@oncall",
        },
    )
    world.receive()
    await world.step()
    finished(world, exit_code=1)
    await world.step()
    assert world.slack.posts == []  # a retry is coming

    await world.step("m1-retry-1")
    finished(world, "m1-retry-1", exit_code=1)
    await world.step("m1-retry-1")
    assert world.status("m1-retry-1").retried_by is None
    assert world.slack.posts == [
        (
            "#c",
            "*[FAILURE]* Failed to retry "
            "<http://console/job_executions/m1-retry-1|blog/notify #m1-retry-1> @oncall",
            "danger",
        )
    ]


async def test_an_unknown_job_is_an_error_with_the_reason_in_words() -> None:
    world = World()
    world.receive(job="missing")
    await world.step()
    status = world.status()
    assert status.phase == "Error"
    assert status.reason == "UnknownJob"
    assert "no JobDefinition named 'missing'" in status.message
    assert world.kube.jobs == {}
    assert "blog/missing/m1/message.json" in world.s3.objects


async def test_a_job_the_api_server_rejects_is_an_error() -> None:
    world = World()
    world.define(slack={"channel": "#c"})
    world.kube.reject_jobs = True
    world.receive()
    await world.step()
    assert world.phase() == "Error"
    assert world.status().reason == "JobRejected"
    assert world.slack.posts[0][1].startswith("*[ERROR]* Failed to execute")


async def test_an_s3_outage_finishes_the_execution_and_uploads_later() -> None:
    world = await created()
    finished(world)
    world.s3.down = True
    with pytest.raises(Requeue):
        await world.step()
    assert world.phase() == "Succeeded"
    assert world.status().logs.uploaded is False
    with pytest.raises(Requeue):
        await world.step()
    world.s3.down = False
    await world.step()
    assert world.status().logs.uploaded is True
    assert "blog/notify/m1/stdout.txt" in world.s3.objects


async def test_one_failed_upload_of_three_means_the_logs_are_not_uploaded() -> None:
    world = await created()
    finished(world)
    world.s3.refused = {"stdout.txt"}
    with pytest.raises(Requeue):
        await world.step()
    assert world.status().logs.uploaded is False
    assert set(world.s3.objects) == {"blog/notify/m1/message.json", "blog/notify/m1/execution.json"}
    world.s3.refused = set()
    await world.step()
    assert world.status().logs.uploaded is True


async def test_a_job_that_already_exists_is_adopted_after_a_crash() -> None:
    world = World()
    world.define()
    world.receive()
    world.kube.jobs["m1"] = {}  # created before a crash
    await world.step()
    assert world.phase() is None
    assert world.kube.writes == []


async def test_a_failing_job_waits_briefly_for_its_pods_exit_code() -> None:
    world = await created(retry={"limit": 0})
    world.pod_event(running={"startedAt": T0})
    now = datetime.now(UTC).isoformat()
    world.job_event(conditions=[{"type": "Failed", "status": "True", "lastTransitionTime": now}])
    with pytest.raises(Requeue):
        await world.step()
    world.pod_event(
        terminated={"exitCode": 137, "reason": "OOMKilled", "startedAt": T0, "finishedAt": now}
    )
    await world.step()
    assert (world.phase(), world.status().exit_code, world.status().reason) == (
        "Failed",
        137,
        "Failed",
    )


async def test_a_deadline_is_reported_as_the_reason() -> None:
    world = await created(retry={"limit": 0})
    world.job_event(
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
                "lastTransitionTime": T1,
            }
        ]
    )
    await world.step()
    assert world.status().reason == "DeadlineExceeded"
    assert world.status().exit_code is None


async def test_cancel_deletes_the_job_and_does_not_retry() -> None:
    world = await created(retry={"limit": 3})
    world.store.executions[(NS, "m1")].spec.cancel = True
    await world.step()
    assert world.phase() == "Failed"
    assert world.status().reason == "Cancelled"
    assert "delete job m1" in world.kube.writes
    assert world.status().retried_by is None


async def test_a_running_execution_finishes_when_its_definition_is_deleted() -> None:
    world = await created(retry={"limit": 3}, slack={"channel": "#c"})
    world.store.delete_definition(NS, "notify")
    world.pod_event(running={"startedAt": T0})
    world.job_event(active=1, ready=1, startTime=T0)
    await world.step()
    assert world.phase() == "Running"
    finished(world, exit_code=1)
    await world.step()
    # It ends as it ran; without its definition there is no retry policy or Slack channel.
    assert (world.phase(), world.status().exit_code) == ("Failed", 1)
    assert world.status().retried_by is None
    assert world.slack.posts == []


async def test_a_manual_retry_links_its_parent() -> None:
    world = await created(retry={"limit": 0})
    finished(world, exit_code=1)
    await world.step()
    assert world.status().retried_by is None
    world.receive("manual", retryOf="m1", attempt=1, originalMessageId="m1")
    await world.step("manual")
    assert world.status().retried_by == "manual"


async def test_a_barbeque_style_job_name_finds_its_definition() -> None:
    world = World()
    world.define("notify-author", jobName="NotifyAuthor")
    world.receive(job="NotifyAuthor")
    await world.step()
    assert world.kube.writes == ["create job m1"]
    assert world.kube.jobs["m1"]["spec"]["template"]["spec"]["containers"][0]["image"] == "blog:1"
    world.store.delete_definition(NS, "notify-author")
    assert world.store.definition(NS, "NotifyAuthor") is None


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_an_image_pull_error_is_shown_then_ends_in_error_after_the_start_deadline() -> None:
    world = await created(startDeadlineSeconds=60, retry={"limit": 3})
    pull = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling "blog:1"'}}
    world.job_event(startTime=_ago(10))
    world.pod_event(**pull)
    with pytest.raises(Requeue) as requeue:
        await world.step()
    assert world.status().reason == "ImagePullBackOff"
    assert world.phase() is None
    assert 45 <= requeue.value.delay <= 51  # woken when the deadline is due
    world.job_event(startTime=_ago(61))
    await world.step()
    assert world.phase() == "Error"
    assert world.status().reason == "ImagePullBackOff"
    assert "did not start within 60 s" in world.status().message
    assert "delete job m1" in world.kube.writes
    assert world.status().retried_by is None


async def test_waiting_for_a_node_does_not_count_against_the_start_deadline() -> None:
    world = await created(startDeadlineSeconds=60)
    world.job_event(startTime=_ago(3600))  # an hour without capacity first
    world.store.put_pod(
        {
            "metadata": {
                "name": "m1-abcde",
                "namespace": NS,
                "labels": {"barbeque.dev/execution": "m1"},
                "resourceVersion": str(next(_rv)),
            },
            "status": {
                "phase": "Pending",
                "startTime": _ago(5),  # then its node took it
                "containerStatuses": [
                    {"name": "job", "state": {"waiting": {"reason": "ErrImagePull"}}}
                ],
            },
        }
    )
    with pytest.raises(Requeue):
        await world.step()
    assert world.phase() is None
