"""The console in Debian's Chromium (Playwright, no browser download): log in, list →
definition → execution → logs → retry, live refresh, and every page without a CDN.

Screenshots land in artifacts/screenshots/ as test artefacts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import webapi_servers
from tests.support.browser import page, shot
from tests.support.waiting import wait_until
from tests.support.webapi import TOKEN, ago, execution_body
from tests.support.webapi_servers import BUCKET, App, Service

pytestmark = pytest.mark.integration

service = webapi_servers.service
webapp = webapi_servers.webapp
__all__ = ["page"]


def test_list_detail_logs_retry_in_chromium(service: Service, webapp: App, page: Any) -> None:
    prefix = f"{webapp.name}/{webapp.job}/browser-failed/"
    service.s3().put_object(
        Bucket=BUCKET, Key=prefix + "stdout.txt", Body=b"connecting...\nError: SMTP timeout\n"
    )
    for i in range(20):
        service.apply(
            execution_body(
                webapp.name,
                webapp.job,
                f"browser-ok-{i:02d}",
                queue=webapp.queue,
                phase="Succeeded",
                started=ago(minutes=30 - i),
                finished=ago(minutes=29 - i),
            )
        )
    service.apply(
        execution_body(
            webapp.name,
            webapp.job,
            "browser-failed",
            queue=webapp.queue,
            phase="Failed",
            message={"to": "someone@example.com"},
            logs_prefix=prefix,
            bucket=BUCKET,
            job_name="browser-failed",
            started=ago(minutes=2),
            finished=ago(minutes=1),
        )
    )
    running = service.apply(
        execution_body(
            webapp.name, webapp.job, "browser-running", queue=webapp.queue, phase="Running"
        )
    )
    wait_until(
        "the executions in the cache",
        lambda: (
            service.client()
            .get("/v1/job_executions", params={"application": webapp.name})
            .json()["total"]
            == 22
        ),
    )

    # Not logged in: the console asks for a token first.
    page.goto(f"{service.url}/job_executions?application={webapp.name}")
    assert "/login" in page.url
    shot(page, "01-login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/job_executions?application=*")
    assert page.locator("a.execution-link").count() == 15
    assert page.locator("text=Page 1 of 2").count() == 1
    shot(page, "02-executions")

    # List → job definition, filtered by status.
    page.locator(
        f"a[href='/applications/{webapp.name}/job_definitions/{webapp.job}']"
    ).first.click()
    page.wait_for_url(f"**/job_definitions/{webapp.job}")
    page.click("nav.filters >> text=failed")
    page.wait_for_url("**?status=failed")
    links = page.locator("a.execution-link")
    assert links.count() == 1
    shot(page, "03-definition-failed")

    # → execution detail with the message and the logs from S3.
    links.first.click()
    page.wait_for_url("**/job_executions/browser-failed")
    assert page.locator("pre.log-stdout").inner_text().strip().endswith("Error: SMTP timeout")
    assert "someone@example.com" in page.locator("pre.message").inner_text()
    assert page.locator("code.job-name").inner_text() == "browser-failed"
    page.locator("#logs").scroll_into_view_if_needed()
    shot(page, "04-execution-logs")

    # → retry: the console sends a JobRetry to the execution's queue.
    page.click("#retry")
    notice = page.locator("p.notice")
    notice.wait_for()
    assert "Retry enqueued as message" in notice.inner_text()
    new_id = notice.inner_text().rsplit(" ", 1)[-1]
    [message] = service.receive(webapp.queue_url)
    assert message["MessageId"] == new_id
    assert json.loads(message["Body"]) == {"Type": "JobRetry", "RetryMessageId": "browser-failed"}
    shot(page, "05-retried")

    # Live refresh: a running execution turns success on screen without a reload.
    page.goto(f"{service.url}/job_executions/browser-running")
    assert page.locator("h1 .badge").inner_text() == "running"
    service.patch_status(running, {"phase": "Succeeded"})
    page.wait_for_function(
        "document.querySelector('h1 .badge').textContent === 'success'", timeout=15_000
    )
    shot(page, "06-live-refresh")


def test_every_console_page_renders_without_a_cdn(service: Service, webapp: App, page: Any) -> None:
    service.apply(
        execution_body(
            webapp.name,
            webapp.job,
            "pages-1",
            queue=webapp.queue,
            phase="Succeeded",
            started=ago(minutes=5),
            finished=ago(minutes=4),
        )
    )
    topic = "arn:aws:sns:us-east-1:123456789012:orders"
    service.apply(
        {
            "apiVersion": "barbeque.dev/v1alpha1",
            "kind": "SNSSubscription",
            "metadata": {"name": "orders", "namespace": webapp.name},
            "spec": {"topicArn": topic, "queue": webapp.queue, "job": webapp.job},
        }
    )
    wait_until(
        "the subscription in the service's cache",
        lambda: (
            service.client()
            .get("/v1/sns_subscriptions", params={"application": webapp.name})
            .json()
        ),
    )
    service.sqs().send_message(QueueUrl=webapp.queue_url, MessageBody="{}")
    wait_until(
        "two SQS samples of the queue",
        lambda: "<polyline" in service.client().get(f"/job_queues/{webapp.queue}").text,
    )
    page.goto(f"{service.url}/login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/applications")
    for name, path in [
        ("10-applications", "/applications"),
        ("11-application", f"/applications/{webapp.name}"),
        ("12-definitions", "/job_definitions"),
        ("13-statistics", f"/applications/{webapp.name}/job_definitions/{webapp.job}/statistics"),
        ("14-queues", "/job_queues"),
        ("15-queue", f"/job_queues/{webapp.queue}"),
        ("16-monitor", "/monitors"),
        ("17-failures", "/failures"),
        ("18-sns-subscriptions", "/sns_subscriptions"),
    ]:
        response = page.goto(service.url + path)
        assert response is not None
        assert response.status == 200, path
        assert page.locator("header.top").count() == 1
        shot(page, name)
    page.goto(f"{service.url}/applications/{webapp.name}/job_definitions/{webapp.job}/statistics")
    assert page.locator("svg.chart").count() == 2
    assert page.locator("svg.chart rect.bar").count() > 0
    page.goto(f"{service.url}/job_queues/{webapp.queue}")
    assert page.locator("svg.chart polyline").count() == 4
    page.goto(f"{service.url}/sns_subscriptions")
    row = page.locator("tr.subscription", has_text=topic)
    assert row.count() == 1
    assert webapp.job in row.inner_text()
