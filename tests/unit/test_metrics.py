"""Metric hygiene: bounded labels, no leftovers of deleted definitions, what promtool accepts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from barbeque import metrics
from barbeque.controller.workqueue import WorkQueue
from barbeque_dashboard.cache import Cache
from barbeque_dashboard.services import Backend
from tests.support.fakes import FakeKube, FakeS3, FakeSqs
from tests.support.webapi import TOKEN, definition_body, queue_body, web_app

pytestmark = pytest.mark.unit

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus)")


def promtool_check(exposition: bytes) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=exposition.decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def exercise_operator_metrics() -> None:
    """One sample of every labelled operator metric, as a busy operator would have."""
    metrics.MESSAGES_RECEIVED.labels("q").inc()
    metrics.MESSAGES_DUPLICATE.labels("q").inc()
    metrics.MESSAGES_INVALID.labels("q", "InvalidJSON").inc()
    metrics.MESSAGES_DEFERRED.labels("q", "Unrecordable").inc()
    metrics.EXECUTIONS_CREATED.labels("shop", "SendMail", "q").inc()
    metrics.EXECUTIONS_FINISHED.labels("shop", "SendMail", "Succeeded").inc()
    metrics.EXECUTIONS_RETRIED.labels("shop", "SendMail").inc()
    metrics.EXECUTIONS_BY_PHASE.labels("shop", "SendMail", "Running").set(1)
    metrics.EXECUTION_DURATION.labels("shop", "SendMail", "Succeeded").observe(3)
    metrics.RUNNING_EXECUTIONS.labels("q").set(1)
    metrics.START_LATENCY.labels("q").observe(0.4)
    metrics.QUEUE_MESSAGES.labels("q", "visible").set(2)
    metrics.SQS_ERRORS.labels("q", "receive").inc()
    metrics.SLACK_FAILURES.labels("false").inc()
    metrics.SLACK_NOTIFICATIONS.labels("failure").inc()
    metrics.RECONCILE_ERRORS.labels("KubeError").inc()
    metrics.KUBE_REQUESTS.labels("create_job", "201").inc()
    metrics.KUBE_REQUEST_SECONDS.labels("create_job").observe(0.01)
    metrics.WATCH_RESTARTS.labels("pods", "expired").inc()


@needs_promtool
def test_promtool_finds_no_problem_in_the_operators_metrics() -> None:
    exercise_operator_metrics()
    exposition = generate_latest(metrics.REGISTRY)
    checked = promtool_check(exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""


@needs_promtool
def test_promtool_check_is_live_it_flags_a_counter_without_total() -> None:
    # What the check above relies on: promtool does complain about a lint problem.
    bad = b"# HELP things Things.\n# TYPE things counter\nthings 1\n"
    checked = promtool_check(bad)
    assert checked.returncode != 0
    assert "_total" in checked.stdout + checked.stderr


def test_counters_export_no_created_series() -> None:
    exercise_operator_metrics()
    text = generate_latest(metrics.REGISTRY).decode()
    assert "barbeque_messages_received_total" in text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert [name for name in names if name.endswith("_created")] == []


def test_process_build_info_and_leader_are_exported() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    for name in (
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "python_info",
        "barbeque_leader",
    ):
        assert f"\n{name}" in text, name
    assert 'barbeque_build_info{component="operator",python_version="' in text


def test_an_unregistered_job_is_labelled_unknown_never_by_its_text() -> None:
    assert metrics.definition_labels("shop", "SendMail", known=True) == ("shop", "SendMail")
    assert metrics.definition_labels("shop", "rm -rf /; DROP", known=False) == (
        metrics.UNKNOWN,
        metrics.UNKNOWN,
    )
    assert metrics.definition_labels(None, None, known=True) == (metrics.UNKNOWN, metrics.UNKNOWN)


def test_a_deleted_definition_leaves_no_series_behind() -> None:
    metrics.EXECUTIONS_FINISHED.labels("gone", "Old", "Failed").inc()
    metrics.EXECUTION_DURATION.labels("gone", "Old", "Failed").observe(2)
    metrics.EXECUTIONS_BY_PHASE.labels("gone", "Old", "Pending").set(1)
    metrics.EXECUTIONS_FINISHED.labels("gone", "Kept", "Failed").inc()

    removed = metrics.forget_definition("gone", "Old")

    assert removed == 3
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'definition="Old"' not in text
    assert 'application="gone",definition="Kept"' in text


async def test_the_work_queue_exports_controller_runtime_metrics() -> None:
    now = [1000.0]
    queue: WorkQueue[str] = WorkQueue(name="unit-test", clock=lambda: now[0])

    def value(name: str) -> float:
        sample = metrics.REGISTRY.get_sample_value(name, {"name": "unit-test"})
        return sample or 0.0

    queue.add("a")
    queue.add("a")  # queued once
    queue.add("b")
    assert value("workqueue_depth") == 2
    assert value("workqueue_adds_total") == 2
    now[0] += 1.0
    key = await queue.get()
    now[0] += 2.5
    queue.export_unfinished()
    assert value("workqueue_longest_running_processor_seconds") == 2.5
    queue.retry(key)
    queue.done(key)
    assert value("workqueue_depth") == 1
    assert value("workqueue_retries_total") == 1
    assert value("workqueue_queue_duration_seconds_count") == 1
    assert value("workqueue_work_duration_seconds_count") == 1
    assert value("workqueue_work_duration_seconds_sum") == 2.5
    assert value("workqueue_queue_duration_seconds_sum") == 1.0
    queue.shutdown()


def console_client() -> TestClient:
    cache = Cache()
    cache.replace("jobqueues", [queue_body("default")])
    cache.replace("jobdefinitions", [definition_body("shop", "SendMail")])
    cache.replace("jobexecutions", [])
    backend = Backend(cache, FakeSqs(), FakeS3(), FakeKube(), console_url=None)
    return TestClient(web_app(backend, public_reads=True, api_tokens=TOKEN))


def test_the_console_counts_requests_by_route_template() -> None:
    with console_client() as client:
        for message_id in ("msg-aaa", "msg-bbb", "msg-ccc"):
            client.get(f"/v1/job_executions/{message_id}", headers={"Accept": "application/json"})
        client.get("/no/such/page")
        page = client.get("/metrics")
    assert page.status_code == 200
    text = page.text
    template = 'route="/v1/job_executions/{message_id}"'
    assert template in text
    assert "msg-" not in text
    assert 'code="200",method="GET",route="/v1/job_executions/{message_id}"} 3.0' in text
    assert 'barbeque_http_requests_total{code="404",method="GET",route="other"}' in text
    assert "barbeque_http_request_duration_seconds_bucket" in text
    assert 'barbeque_build_info{component="console"' in text
    # The operator's metrics are not the console's.
    assert "barbeque_messages_received_total" not in text


@needs_promtool
def test_promtool_finds_no_problem_in_the_consoles_metrics() -> None:
    with console_client() as client:
        client.get("/healthz")
        exposition = client.get("/metrics").content
    checked = promtool_check(exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""


def test_a_queues_error_counters_start_at_zero_and_go_with_the_queue() -> None:
    metrics.queue_series("orders")
    get = metrics.REGISTRY.get_sample_value
    assert get("barbeque_sqs_errors_total", {"queue": "orders", "operation": "receive"}) == 0
    invalid = {"queue": "orders", "reason": "InvalidMessage"}
    assert get("barbeque_messages_invalid_total", invalid) == 0
    assert get("barbeque_messages_received_total", {"queue": "orders"}) == 0
    metrics.QUEUE_MESSAGES.labels("orders", "visible").set(3)

    assert metrics.forget_queue("orders") >= 10

    text = generate_latest(metrics.REGISTRY).decode()
    assert 'queue="orders"' not in text


def test_slack_failures_are_exported_at_zero_before_any_failure() -> None:
    get = metrics.REGISTRY.get_sample_value
    assert get("barbeque_slack_failures_total", {"final": "true"}) is not None
