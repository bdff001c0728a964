"""The SDK and the ``barbeque`` CLI against the running service (real HTTP, apiserver, moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from barbeque.sdk import Client, NotFound, Unauthorized
from tests.support import webapi_servers
from tests.support.waiting import wait_until
from tests.support.webapi import TOKEN, execution_body
from tests.support.webapi_servers import App, Service

pytestmark = pytest.mark.integration

service = webapi_servers.service
webapp = webapi_servers.webapp


def cli(service: Service, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BARBEQUE_URL": service.url, "BARBEQUE_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "barbeque", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def record(service: Service, webapp: App, message_id: str, **kwargs: Any) -> dict[str, Any]:
    created = service.apply(
        execution_body(webapp.name, webapp.job, message_id, queue=webapp.queue, **kwargs)
    )
    with Client(service.url, TOKEN) as sdk:
        wait_until(f"{message_id} in the cache", lambda: sdk.status(message_id).id is not None)
    return created


def test_sdk_enqueue_reaches_sqs_and_errors_are_typed(service: Service, webapp: App) -> None:
    with Client(service.url, TOKEN, application=webapp.name, queue=webapp.queue) as sdk:
        message_id = sdk.enqueue(webapp.job, {"hello": "sdk"})
        with pytest.raises(NotFound):
            sdk.enqueue(webapp.job, {}, queue="missing-queue")
    [message] = service.receive(webapp.queue_url)
    assert message["MessageId"] == message_id
    assert json.loads(message["Body"])["Message"] == {"hello": "sdk"}
    with Client(service.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.enqueue(webapp.job, {}, application=webapp.name, queue=webapp.queue)


def test_sdk_wait_follows_the_execution_to_success(service: Service, webapp: App) -> None:
    created = record(service, webapp, "sdk-wait", phase="Running")
    saw_running = threading.Event()

    def finish() -> None:
        # Finish only once the waiter has seen it running, however slow the machine.
        saw_running.wait(30)
        service.patch_status(created, {"phase": "Succeeded"})

    def progress(execution: Any, elapsed: float) -> None:
        seen.append(execution.status)
        if execution.status == "running":
            saw_running.set()

    seen: list[str] = []
    thread = threading.Thread(target=finish)
    thread.start()
    with Client(service.url, TOKEN) as sdk:
        result = sdk.wait("sdk-wait", timeout=60, interval=0.2, progress=progress)
    thread.join()
    assert result.succeeded
    assert seen[0] == "running"
    assert seen[-1] == "success"
    assert result.html_url == f"{service.url}/job_executions/sdk-wait"


def test_sdk_retry_returns_the_new_message_id(service: Service, webapp: App) -> None:
    record(service, webapp, "sdk-failed", phase="Failed")
    with Client(service.url, TOKEN) as sdk:
        new_id = sdk.retry("sdk-failed")
    [message] = service.receive(webapp.queue_url)
    assert message["MessageId"] == new_id


def test_cli_enqueue_status_and_executions(service: Service, webapp: App) -> None:
    enqueued = cli(
        service,
        "enqueue",
        webapp.job,
        '{"from": "cli"}',
        "--application",
        webapp.name,
        "--queue",
        webapp.queue,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    message_id = enqueued.stdout.strip()
    [message] = service.receive(webapp.queue_url)
    assert message["MessageId"] == message_id

    status = cli(service, "status", message_id)
    assert (status.returncode, status.stdout.strip()) == (0, "pending")

    record(service, webapp, "cli-failed", phase="Failed")
    listed = cli(service, "executions", "--application", webapp.name, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["message_id"] for r in rows] == ["cli-failed"]
    table = cli(service, "executions", "--application", webapp.name, "--status", "failed")
    assert "cli-failed" in table.stdout
    assert "MESSAGE ID" in table.stdout


def test_cli_wait_prints_progress_and_exits_1_on_failure(service: Service, webapp: App) -> None:
    created = record(service, webapp, "cli-wait", phase="Running")
    env = {**os.environ, "BARBEQUE_URL": service.url, "BARBEQUE_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "barbeque", "wait", "cli-wait", "--timeout=60", "--interval=0.2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = [process.stderr.readline()]
    assert lines[0].startswith("cli-wait: running")
    service.patch_status(created, {"phase": "Failed"})
    lines.extend(process.stderr)
    assert process.wait(timeout=60) == 1
    process.stderr.close()
    assert any(line.startswith("cli-wait: failed") for line in lines)


def test_cli_reports_refusals_in_one_line(service: Service) -> None:
    refused = cli(service, "retry", "no-such-execution")
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("barbeque: ")
    assert "404 record_not_found" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_cli_executions_watch_prints_status_changes(service: Service, webapp: App) -> None:
    env = {**os.environ, "BARBEQUE_URL": service.url, "BARBEQUE_TOKEN": TOKEN}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "barbeque",
            "executions",
            "--application",
            webapp.name,
            "--watch",
            "--interval",
            "0.3",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        created = record(service, webapp, "cli-watched", phase="Running")
        wait_until(
            "the running line",
            lambda: any("cli-watched" in line and "running" in line for line in lines),
        )
        service.patch_status(created, {"phase": "Succeeded"})
        wait_until(
            "the success line",
            lambda: any("cli-watched" in line and "success" in line for line in lines),
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(timeout=10)
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        process.stderr.close()
    assert [line.split()[-1] for line in lines if "cli-watched" in line] == ["running", "success"]
