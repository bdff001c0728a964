"""Outages of everything the operator talks to: S3, Slack, the API server, SQS.

One operator process serves the module. Each of its servers can fail on command:

- S3 is a moto server process of its own, stopped and started again;
- SQS is another moto server, reached through a ``FaultProxy`` that answers 503 or refuses
  connections (a proxy rather than a stopped process, because moto would forget the queue
  and its messages, and losing messages would then be the test's doing);
- the kube-apiserver is reached through a TLS-terminating ``FaultProxy`` presenting the
  apiserver's own certificate, which answers 503 or 429 or resets connections, or answers
  409 Conflict to chosen writes only (creates of executions, of Jobs, status patches);
- Slack is a stub answering 5xx/429 or stalling past the client's timeout.

The test's own calls (sending messages, reading objects) go straight to the servers.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from barbeque.services.naming import execution_name
from tests.cluster.harness import DURATION_ANNOTATION, Cluster
from tests.support.aws import MotoProcess
from tests.support.faults import HTTP, REFUSE, RESET, FaultProxy, client_tls, only, server_tls
from tests.support.kube import kubeconfig_for
from tests.support.operator import (
    BUCKET,
    OPERATOR_NAMESPACE,
    App,
    OperatorProcess,
    application,
    operator_env,
)
from tests.support.reliability import executions_path, list_all, phase_of, record_figures
from tests.support.slack import SlackRecorder, slack_recorder
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

SLACK_TIMEOUT = 1.0
SQS_BACKOFF_MAX = 8.0
# Outage lengths scale with BARBEQUE_OUTAGE_SCALE (default 1: S3 down 30 s, API server
# failing 28 s in three modes, SQS 24 s).
SCALE = float(os.environ.get("BARBEQUE_OUTAGE_SCALE") or 1)


@dataclass
class Stack:
    cluster: Cluster
    sqs: MotoProcess
    s3: MotoProcess
    sqs_proxy: FaultProxy
    api_proxy: FaultProxy
    slack: SlackRecorder
    operator: OperatorProcess


@pytest.fixture(scope="module")
def stack(cluster: Cluster, crds: None, workdir: Path) -> Iterator[Stack]:
    api_port = urllib.parse.urlparse(cluster.server).port
    assert api_port is not None
    with contextlib.ExitStack() as stack:
        sqs = stack.enter_context(MotoProcess(workdir / "moto-sqs.log"))
        s3 = stack.enter_context(MotoProcess(workdir / "moto-s3.log"))
        sqs_proxy = stack.enter_context(FaultProxy("127.0.0.1", sqs.port))
        pki = cluster.pki_dir
        api_proxy = stack.enter_context(
            FaultProxy(
                "127.0.0.1",
                api_port,
                tls_server=server_tls(pki / "apiserver.crt", pki / "apiserver.key"),
                tls_client=client_tls(cluster.ca_file),
            )
        )
        slack = stack.enter_context(slack_recorder())
        operator = OperatorProcess(
            operator_env(
                kubeconfig_for(cluster, workdir / "kubeconfig", server=api_proxy.url),
                OPERATOR_NAMESPACE,
                sqs_proxy.url,
                s3.url,
                slack_url=slack.url,
                slack_token="xoxb-outages",
                BARBEQUE_SLACK_TIMEOUT_SECONDS=str(SLACK_TIMEOUT),
                BARBEQUE_SQS_ERROR_BACKOFF_MAX_SECONDS=str(SQS_BACKOFF_MAX),
                BARBEQUE_RESYNC_SECONDS="30",
            ),
            workdir / "operator.log",
        )
        stack.callback(operator.stop)
        operator.start()
        yield Stack(cluster, sqs, s3, sqs_proxy, api_proxy, slack, operator)
        assert operator.alive(), operator.tail()
        pid = operator.pid
        assert operator.pids == [pid], "the operator was never restarted"


@pytest.fixture
def app(stack: Stack) -> Iterator[App]:
    with application(stack.cluster, stack.sqs.aws) as made:
        yield made


def all_in_phase(app: App, ids: list[str], phases: tuple[str, ...]) -> list[dict[str, Any]] | None:
    executions = {e["spec"]["messageId"]: e for e in app.executions()}
    if all(phase_of(executions.get(i, {})) in phases for i in ids):
        return [executions[i] for i in ids]
    return None


def shortfall(app: App, ids: list[str]) -> str:
    """Which sent ids have no execution, and which executions are not Succeeded."""
    executions = {e["spec"]["messageId"]: e for e in app.executions()}
    lost = [i for i in ids if i not in executions]
    unfinished = {
        i: phase_of(executions[i])
        for i in ids
        if i in executions and phase_of(executions[i]) != "Succeeded"
    }
    return f"never recorded: {len(lost)} of {len(ids)} {lost}; unfinished: {unfinished}"


def assert_nothing_lost_or_doubled(
    stack: Stack, app: App, ids: list[str], converged: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Once converged: the queue drained, one execution and one Job per message, no Error
    record of the app's queue in the operator's namespace, the operator alive."""
    wait_until("the queue to drain", lambda: app.queue_depth() == 0 or None, 30)
    executions = app.executions()
    assert len(converged) == len(executions) == len(ids), "lost or doubled executions"
    jobs = app.jobs()
    assert sorted(j.metadata.name for j in jobs) == sorted(execution_name(i) for i in ids)
    assert stack.operator.alive(), stack.operator.tail()
    strays = [
        e
        for e in list_all(stack.cluster, executions_path(OPERATOR_NAMESPACE))
        if e["spec"].get("queue") == app.queue
    ]
    assert not strays, [s["status"] for s in strays]
    return executions, jobs


def test_s3_down_executions_finish_and_logs_follow_when_it_returns(stack: Stack, app: App) -> None:
    app.define("hello", podAnnotations={DURATION_ANNOTATION: "300"})
    warm = app.enqueue("hello", {"warm": True})
    app.wait_phase(execution_name(warm), ("Succeeded",), timeout=60)
    failures_before = stack.operator.metric("barbeque_s3_failures_total")

    stack.s3.stop()
    down = time.monotonic()
    ids = [app.enqueue("hello", {"i": i}) for i in range(8)]
    during = wait_until(
        "executions to finish without S3", lambda: all_in_phase(app, ids, ("Succeeded",)), 90
    )
    finished_while_down = time.monotonic() - down
    assert all(e["status"]["logs"]["uploaded"] is False for e in during), [
        e["status"]["logs"] for e in during
    ]
    for execution in during:
        conditions = {c["type"]: c for c in execution["status"]["conditions"]}
        assert conditions["LogsUploaded"]["status"] == "False"
        assert conditions["Finished"]["status"] == "True"
    # Down for at least 30 s in all.
    time.sleep(max(0.0, 30 * SCALE - (time.monotonic() - down)))
    outage = time.monotonic() - down

    stack.s3.start()
    back = time.monotonic()
    s3 = stack.s3.aws.s3()
    s3.create_bucket(Bucket=BUCKET)  # moto forgot it; real S3 keeps its buckets

    def all_uploaded() -> list[dict[str, Any]] | None:
        executions = all_in_phase(app, ids, ("Succeeded",))
        if executions and all(e["status"]["logs"]["uploaded"] for e in executions):
            return executions
        return None

    uploaded = wait_until("every upload to be retried after S3 came back", all_uploaded, 90)
    caught_up = time.monotonic() - back
    for execution in uploaded:
        prefix = execution["status"]["logs"]["prefix"]
        for name in ("message.json", "stdout.txt", "execution.json"):
            assert s3.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read()
        conditions = {c["type"]: c for c in execution["status"]["conditions"]}
        assert conditions["LogsUploaded"]["status"] == "True"
    failures = stack.operator.metric("barbeque_s3_failures_total") - failures_before
    assert failures >= len(ids)
    record_figures(
        "outage-s3",
        {
            "executions": len(ids),
            "outage_seconds": round(outage, 1),
            "all_finished_while_down_after_seconds": round(finished_while_down, 1),
            "all_uploaded_after_return_seconds": round(caught_up, 1),
            "s3_failures_counted": failures,
        },
    )


def test_slack_errors_and_stalls_never_hold_up_jobs(stack: Stack, app: App) -> None:
    slack, operator = stack.slack, stack.operator
    channel = f"#{app.namespace}"
    app.define("noisy", slack={"channel": channel, "notifySuccess": True})

    def failures(final: str) -> float:
        return operator.metric("barbeque_slack_failures_total", final=final)

    def run_one(label: str) -> dict[str, Any]:
        message_id = app.enqueue("noisy", {"case": label})
        return app.wait_phase(execution_name(message_id), ("Succeeded",), timeout=60)

    # 503 then 429: the third try gets through.
    before = (failures("false"), failures("true"))
    slack.failures[:] = [503, 429]
    first = run_one("5xx-then-429")
    assert first["status"]["notified"] is True
    assert [c["status"] for c in slack.posts(channel)] == [503, 429, 200]
    assert (failures("false"), failures("true")) == (before[0] + 2, before[1])

    # Three 500s: given up after three tries, counted as final.
    slack.failures[:] = [500, 500, 500]
    second = run_one("5xx-three-times")
    assert second["status"].get("notified") is False
    assert [c["status"] for c in slack.posts(channel)][3:] == [500, 500, 500]
    assert (failures("false"), failures("true")) == (before[0] + 4, before[1] + 1)

    # Slack hangs past the client's timeout on every call.
    slack.stall_seconds = 3 * SLACK_TIMEOUT
    try:
        third = run_one("stalled")
    finally:
        slack.stall_seconds = 0
    stalled_calls = len(slack.posts(channel)) - 6
    assert third["status"].get("notified") is False
    assert 3 <= stalled_calls <= 6, "three tries, each at most once more by slack_sdk"
    assert (failures("false"), failures("true")) == (before[0] + 6, before[1] + 2)

    # Bounded: the final status came within the retry budget of the Job's end.
    delays = []
    for execution in (first, second, third):
        conditions = {c["type"]: c for c in execution["status"]["conditions"]}
        written = datetime.fromisoformat(conditions["Finished"]["lastTransitionTime"])
        delays.append(written - datetime.fromisoformat(execution["status"]["finishedAt"]))
    seconds = [round(d.total_seconds(), 1) for d in delays]
    assert max(seconds) <= 30, seconds

    # Healthy again: the next post goes through at once.
    fourth = run_one("healthy")
    assert fourth["status"]["notified"] is True
    record_figures(
        "outage-slack",
        {
            "attempts_per_notification": 3,
            "calls_when_stalled": stalled_calls,
            "status_write_after_job_end_seconds": seconds,
            "slack_failures_total": {"false": failures("false"), "true": failures("true")},
        },
    )


def test_the_operator_converges_after_the_api_server_fails_for_a_while(
    stack: Stack, app: App
) -> None:
    proxy = stack.api_proxy
    app.define("steady", podAnnotations={DURATION_ANNOTATION: "1500"})
    ids = [app.enqueue("steady", {"before": i}) for i in range(10)]
    wait_until("work in progress", lambda: len(app.executions()) >= 3 or None, 60)
    answered_before = sum(proxy.stats.answered.values())
    started = time.monotonic()
    phases = []
    for mode, status, base in ((HTTP, 503, 12), (HTTP, 429, 8), (RESET, 0, 8)):
        seconds = base * SCALE
        with proxy.fault(mode, status or 503):
            ids += [app.enqueue("steady", {"during": mode, "status": status})]
            time.sleep(seconds)
        phases.append(f"{mode} {status or ''}".strip() + f" for {seconds:.0f}s")
    faults_end = time.monotonic()
    ids += [app.enqueue("steady", {"after": True})]
    answered = sum(proxy.stats.answered.values()) - answered_before
    assert answered > 0, "the faults never met a request"

    converged = wait_until(
        "every execution to finish", lambda: all_in_phase(app, ids, ("Succeeded",)), 180
    )
    converge_seconds = time.monotonic() - faults_end
    assert_nothing_lost_or_doubled(stack, app, ids, converged)
    record_figures(
        "outage-apiserver",
        {
            "executions": len(ids),
            "faults": phases,
            "fault_seconds": round(faults_end - started, 1),
            "requests_answered_by_the_proxy": answered,
            "connections_cut": proxy.stats.cut,
            "converged_after_faults_end_seconds": round(converge_seconds, 1),
        },
    )


def test_the_operator_converges_after_409_conflicts_on_its_writes(stack: Stack, app: App) -> None:
    """409 Conflict (a resourceVersion clash, in the Status shape) answered to one kind of
    write at a time, the others passing: creates of JobExecutions (intake's commit point:
    a Conflict taken for AlreadyExists would delete a message never recorded), creates of
    Jobs, then patches of JobExecutions (status writes). Nothing lost, nothing doubled."""
    proxy, operator = stack.api_proxy, stack.operator
    app.define("steady", podAnnotations={DURATION_ANNOTATION: "1500"})
    ids = [app.enqueue("steady", {"before": i}) for i in range(6)]
    wait_until("work in progress", lambda: len(app.executions()) >= 3 or None, 60)
    namespaced = rf"^/apis/[^?]*/namespaces/{app.namespace}/"
    writes = {
        "create JobExecution": only("POST", namespaced + r"jobexecutions(\?|$)"),
        "create Job": only("POST", rf"^/apis/batch/v1/namespaces/{app.namespace}/jobs(\?|$)"),
        "patch JobExecution": only("PATCH", namespaced + r"jobexecutions/"),
    }
    seconds = {"create JobExecution": 12, "create Job": 8, "patch JobExecution": 8}
    duplicates_before = operator.metric("barbeque_messages_duplicate_total", queue=app.queue)
    started = time.monotonic()
    met: dict[str, int] = {}
    for what, rule in writes.items():
        before = proxy.answered(rule, 409)
        with proxy.fault(HTTP, 409, only=rule):
            ids += [app.enqueue("steady", {"during": what, "n": n}) for n in range(3)]
            time.sleep(seconds[what] * SCALE)
        met[what] = proxy.answered(rule, 409) - before
    faults_end = time.monotonic()
    ids += [app.enqueue("steady", {"after": n}) for n in range(2)]
    assert all(met.values()), f"a fault never met its write: {met}"

    try:
        converged = wait_until(
            "every execution to finish", lambda: all_in_phase(app, ids, ("Succeeded",)), 180
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{shortfall(app, ids)}\n{operator.tail()}") from exc
    converge_seconds = time.monotonic() - faults_end
    executions, jobs = assert_nothing_lost_or_doubled(stack, app, ids, converged)
    assert sorted(e["spec"]["messageId"] for e in executions) == sorted(ids)
    record_figures(
        "outage-apiserver-conflict",
        {
            "executions": len(ids),
            "jobs": len(jobs),
            "faults": [f"409 to {what} for {seconds[what] * SCALE:.0f}s" for what in writes],
            "conflicts_answered": met,
            "requests_passed_during_faults": proxy.stats.passed,
            "fault_seconds": round(faults_end - started, 1),
            "duplicates_absorbed": operator.metric(
                "barbeque_messages_duplicate_total", queue=app.queue
            )
            - duplicates_before,
            "converged_after_faults_end_seconds": round(converge_seconds, 1),
        },
    )


def test_sqs_errors_back_off_without_a_busy_loop_and_recover(stack: Stack, app: App) -> None:
    proxy, operator = stack.sqs_proxy, stack.operator
    app.define("hello")
    first = app.enqueue("hello", {"first": True})
    app.wait_phase(execution_name(first), ("Succeeded",), timeout=60)
    errors_before = operator.metric(
        "barbeque_sqs_errors_total", queue=app.queue, operation="receive"
    )

    window = 16.0
    with proxy.fault(HTTP, 503):
        start = time.monotonic()
        queued = [app.enqueue("hello", {"during": "503"})]
        time.sleep(window)
        end = time.monotonic()
    receives = proxy.faults_between(start, end, target="ReceiveMessage")
    with proxy.fault(REFUSE):
        queued.append(app.enqueue("hello", {"during": "refused"}))
        time.sleep(8)
    back = time.monotonic()
    errors = (
        operator.metric("barbeque_sqs_errors_total", queue=app.queue, operation="receive")
        - errors_before
    )
    for message_id in queued:
        app.wait_phase(execution_name(message_id), ("Succeeded",), timeout=60)
    recovered = time.monotonic() - back

    first_half = [r for r in receives if r.at < start + window / 2]
    second_half = [r for r in receives if r.at >= start + window / 2]
    # A poller without backoff would send hundreds of receives in 16 s; with it, a handful
    # of rounds (1 s, 2 s, 4 s, 8 s apart) of up to 3 tries each (botocore's own retries).
    assert 2 <= len(receives) <= 30, [round(r.at - start, 1) for r in receives]
    assert len(second_half) <= len(first_half), [round(r.at - start, 1) for r in receives]
    assert 2 <= errors <= 12, errors
    assert recovered <= SQS_BACKOFF_MAX + 20, recovered
    record_figures(
        "outage-sqs",
        {
            "receive_requests_in_16s_of_503": len(receives),
            "receive_request_times": [round(r.at - start, 1) for r in receives],
            "sqs_errors_counted": errors,
            "recovered_after_seconds": round(recovered, 1),
            "backoff_max_seconds": SQS_BACKOFF_MAX,
        },
    )
