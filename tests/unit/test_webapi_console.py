"""Console pages render from the cache (and fake SQS/S3) and their forms act."""

from __future__ import annotations

from collections import deque

import pytest
from fastapi.testclient import TestClient

from barbeque.services.naming import execution_name
from barbeque.services.statistics import HourlyStatistics, configmap_name
from tests.support.fakes import FakeKube
from tests.support.webapi import (
    TOKEN,
    WebWorld,
    ago,
    definition_body,
    execution_body,
    finished_history,
    queue_body,
)

pytestmark = pytest.mark.unit


class Console(WebWorld):
    def __init__(self) -> None:
        definition = definition_body(
            "shop",
            "SendMail",
            description="Sends the mail",
            slack={"channel": "#mail", "notifySuccess": True},
            retry={"limit": 5},
        )
        executions = finished_history(40, failed_every=4, prefix="msg-")
        executions.append(
            execution_body(
                "shop",
                "SendMail",
                "with-logs",
                phase="Failed",
                created=ago(seconds=5),
                logs_prefix="shop/SendMail/with-logs/",
                job_name="with-logs",
                message={"to": "a@example.com"},
            )
        )
        executions.append(execution_body("shop", "SendMail", "later", phase="Scheduled"))
        executions[-1]["spec"]["notBefore"] = "2099-01-01T00:00:00Z"
        super().__init__(
            queues=[queue_body("default", maxConcurrentExecutions=4)],
            definitions=[definition],
            executions=executions,
        )
        self.s3.objects["shop/SendMail/with-logs/stdout.txt"] = "line one\nboom: it failed\n"


@pytest.fixture
def world() -> Console:
    return Console()


def test_every_page_renders(client: TestClient) -> None:
    for path in (
        "/applications",
        "/applications/shop",
        "/job_definitions",
        "/applications/shop/job_definitions/SendMail",
        "/applications/shop/job_definitions/SendMail/statistics?days=1",
        "/job_executions",
        "/job_executions/with-logs",
        "/failures",
        "/job_queues",
        "/job_queues/default",
        "/sns_subscriptions",
        "/monitors",
        "/login",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "text/html" in response.headers["content-type"]
        assert "cdn" not in response.text.lower()


# What a page shows of the world above, beyond rendering.
SHOWN = {
    # its definition's Slack channel and description; retry buttons
    "/applications/shop/job_definitions/SendMail": ("#mail", "Sends the mail", 'class="retry"'),
    # the message, the log kept in S3, the Job's name and a retry button
    "/job_executions/with-logs": (
        "a@example.com",
        "boom: it failed",
        'class="job-name">with-logs',
        'id="retry"',
    ),
    "/monitors": ("<svg", "SendMail"),
    "/job_queues/default": ("later", "Scheduled executions <small>(1)</small>"),
}


@pytest.mark.parametrize("path", SHOWN)
def test_a_page_shows_what_it_is_for(client: TestClient, path: str) -> None:
    page = client.get(path).text
    assert [text for text in SHOWN[path] if text not in page] == []


def test_definition_page_filters_by_status_and_shows_15_per_page(client: TestClient) -> None:
    failed = client.get("/applications/shop/job_definitions/SendMail?status=failed").text
    assert failed.count('class="execution-link"') == 11  # 10 failed + with-logs
    everything = client.get("/applications/shop/job_definitions/SendMail").text
    assert everything.count('class="execution-link"') == 15
    assert "Page 1 of 3" in everything


def test_statistics_draw_two_svg_charts(client: TestClient) -> None:
    stats = client.get("/applications/shop/job_definitions/SendMail/statistics?days=1").text
    assert stats.count("<svg") == 2
    assert "42 executions" not in stats  # the Scheduled one has no timestamp


def test_statistics_add_the_kept_hours_of_collected_executions(world: Console) -> None:
    """Executions collected from the cluster still count, from the ConfigMap the operator
    keeps: 20 days ago is inside 30 days, not inside 14; a kept name still in the cluster
    (counted, about to be deleted) is not counted twice."""
    kept = HourlyStatistics()
    for i in range(7):
        kept.add(f"old-{i}", ago(days=20), 10.0)
    kept.add(execution_name("msg-00"), ago(minutes=40), 60.0)
    kube = world.app.state.backend.kube
    kube.configmaps[("shop", configmap_name("SendMail"))] = kept.configmap("shop", "SendMail", None)
    with TestClient(world.app) as client:
        month = client.get("/applications/shop/job_definitions/SendMail/statistics?days=30").text
        fortnight = client.get("/applications/shop/job_definitions/SendMail/statistics?days=14")
    # 41 executions with a creation time in the cluster, plus 7 kept; msg-00 once.
    assert "48 executions in the last 30 days" in month
    assert "41 executions in the last 14 days" in fortnight.text
    assert "Only the executions still in the cluster" not in month


def test_retry_button_needs_login_then_enqueues(client: TestClient, world: Console) -> None:
    refused = client.post("/job_executions/with-logs/retry", follow_redirects=False)
    assert refused.status_code == 401
    client.cookies.set("barbeque_token", TOKEN)
    response = client.post(
        "/job_executions/with-logs/retry",
        data={"delay_seconds": "0"},
        headers={"Referer": "http://testserver/job_executions/with-logs"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "Retry+enqueued" in response.headers["location"]
    assert world.sqs.sent[-1]["body"] == {"Type": "JobRetry", "RetryMessageId": "with-logs"}


def test_unknown_execution_page_is_a_404_page(client: TestClient) -> None:
    response = client.get("/job_executions/nope")
    assert response.status_code == 404
    assert "record_not_found" in response.text


def test_cancel_button_patches_the_running_execution(world: Console) -> None:
    kube = FakeKube()
    world.app.state.backend.kube = kube
    world.cache.apply(
        "jobexecutions", "ADDED", execution_body("shop", "SendMail", "busy", phase="Running")
    )
    with TestClient(world.app) as client:
        page = client.get("/job_executions/busy").text
        assert 'id="cancel"' in page
        client.cookies.set("barbeque_token", TOKEN)
        response = client.post("/job_executions/busy/cancel", follow_redirects=False)
    assert response.status_code == 303
    assert kube.cancelled == [("shop", "busy")]


def test_messages_are_escaped(client: TestClient, world: Console) -> None:
    world.cache.apply(
        "jobexecutions",
        "ADDED",
        execution_body("shop", "SendMail", "xss", message={"html": "<script>alert(1)</script>"}),
    )
    page = client.get("/job_executions/xss").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_the_job_name_links_to_the_cluster_ui_when_configured(world: Console) -> None:
    world.app.state.settings.dashboard_job_url = "https://k8s.example/#/job/{namespace}/{name}"
    with TestClient(world.app) as client:
        page = client.get("/job_executions/with-logs").text
    assert 'href="https://k8s.example/#/job/shop/with-logs"' in page


async def test_the_sampler_records_each_queues_counters(world: Console) -> None:
    from barbeque_dashboard.sampler import QueueSampler

    sampler = QueueSampler(world.app.state.backend, interval=60)
    await sampler.sample_once()
    await sampler.sample_once()
    assert [
        (s.stats.visible, s.stats.in_flight, s.running) for s in sampler.samples("default")
    ] == [
        (0, 0, 0),
        (0, 0, 0),
    ]
    assert sampler.samples("unknown") == []


def test_queue_page_charts_the_sampled_counters(client: TestClient, world: Console) -> None:
    from datetime import UTC, datetime, timedelta

    from barbeque.adapters.sqs import QueueStats
    from barbeque_dashboard.sampler import QueueSampler, Sample

    assert "Not enough samples yet" in client.get("/job_queues/default").text
    sampler = QueueSampler(world.app.state.backend, interval=60)
    start = datetime.now(UTC) - timedelta(minutes=10)
    sampler.history["default"] = deque(
        Sample(start + timedelta(minutes=i), QueueStats(i, 1, 0), 2) for i in range(10)
    )
    world.app.state.sampler = sampler
    page = client.get("/job_queues/default").text
    assert page.count("<polyline") == 4
    assert "10 samples" in page


def test_an_execution_with_no_phase_yet_names_and_links_its_job(world: Console) -> None:
    """The operator writes no status when it creates a fresh execution's Job, which is
    named after the execution."""
    world.cache.apply(
        "jobexecutions", "ADDED", execution_body("shop", "SendMail", "fresh", with_status=False)
    )
    world.app.state.settings.dashboard_job_url = "https://k8s.example/#/job/{namespace}/{name}"
    with TestClient(world.app) as client:
        page = client.get("/job_executions/fresh").text
    assert 'href="https://k8s.example/#/job/shop/fresh"' in page
    assert 'class="job-name">fresh<' in page


def test_sns_subscriptions_page_lists_topic_queue_job_and_why_not_subscribed(
    client: TestClient, world: Console
) -> None:
    world.cache.replace("snssubscriptions", [SUBSCRIPTION])
    page = client.get("/sns_subscriptions").text
    assert "arn:aws:sns:us-east-1:123456789012:orders" in page
    assert 'href="/applications/shop/job_definitions/SendMail"' in page
    assert "Error" in page
    assert "topic not found" in page


SUBSCRIPTION = {
    "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": "7"},
    "spec": {
        "topicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "queue": "default",
        "job": "SendMail",
    },
    "status": {"phase": "Error", "message": "topic not found"},
}
