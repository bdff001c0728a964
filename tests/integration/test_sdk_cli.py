"""The SDK and the ``barbeque`` CLI against the running service (real HTTP, apiserver, moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from barbeque.sdk import AsyncClient, Client, NotFound, Unauthorized
from tests.support import webapi_servers
from tests.support.faults import HTTP, PASS, FaultProxy
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
    rows = json.loads(listed.stdout)
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
    assert refused.returncode == 4  # the Web API refused; 2 is a usage error
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


def test_cli_listings_speak_json_yaml_name_and_wide(service: Service, webapp: App) -> None:
    record(service, webapp, "cli-out", phase="Failed")
    base = ("executions", "--application", webapp.name)
    name = cli(service, *base, "-o", "name")
    assert (name.returncode, name.stdout.split()) == (0, ["cli-out"])
    as_yaml = yaml.safe_load(cli(service, *base, "-o", "yaml").stdout)
    assert [row["message_id"] for row in as_yaml] == ["cli-out"]
    wide = cli(service, *base, "-o", "wide").stdout
    assert "QUEUE" in wide
    assert webapp.queue in wide
    shown = cli(service, "status", "cli-out", "-o", "json")
    assert json.loads(shown.stdout)["status"] == "failed"


def test_cli_logs_prints_the_log_kept_in_s3(service: Service, webapp: App) -> None:
    prefix = f"{webapp.name}/{webapp.job}/cli-logs/"
    s3 = service.s3()
    s3.put_object(Bucket=webapi_servers.BUCKET, Key=prefix + "stdout.txt", Body=b"hello\nworld\n")
    record(
        service,
        webapp,
        "cli-logs",
        phase="Succeeded",
        logs_prefix=prefix,
        bucket=webapi_servers.BUCKET,
    )
    printed = cli(service, "logs", "cli-logs")
    assert (printed.returncode, printed.stdout) == (0, "hello\nworld\n")
    followed = cli(service, "logs", "cli-logs", "-f")
    assert (followed.returncode, followed.stdout) == (0, "hello\nworld\n")
    missing = cli(service, "logs", "no-such-execution")
    assert missing.returncode == 4


def test_sdk_retries_a_429_after_its_retry_after(service: Service) -> None:
    port = int(service.url.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port) as proxy:
        proxy.set_mode(HTTP, status=429)  # answers with Retry-After: 1
        threading.Timer(0.5, proxy.set_mode, (PASS,)).start()
        started = time.monotonic()
        with Client(proxy.url, TOKEN) as sdk:
            execution = sdk.status("never-enqueued")
        elapsed = time.monotonic() - started
    assert execution.status == "pending"
    assert proxy.stats.answered[429] >= 1
    assert elapsed >= 1.0  # it waited as long as the server asked


async def test_the_async_client_talks_to_the_real_web_api(service: Service, webapp: App) -> None:
    record(service, webapp, "async-seen", phase="Running")
    async with AsyncClient(service.url, TOKEN) as sdk:
        status = await sdk.status("async-seen")
        rows = await sdk.executions(application=webapp.name)
    assert status.status == "running"
    assert [row.message_id for row in rows] == ["async-seen"]


def test_kubectl_barbeque_enqueues_into_the_current_contexts_namespace(
    service: Service, webapp: App, tmp_path: Path
) -> None:
    # kubectl finds the plugin on PATH as kubectl-barbeque; the context's namespace is
    # the application.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(service.cluster.kubeconfig.read_text())
    kubectl = str(service.cluster.bin("kubectl"))
    subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", "config", "set-context", "--current",
         f"--namespace={webapp.name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(kubeconfig),
        "BARBEQUE_URL": service.url,
        "BARBEQUE_TOKEN": TOKEN,
    }
    env.pop("BARBEQUE_APPLICATION", None)
    version = subprocess.run(
        [kubectl, "barbeque", "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert version.stdout.startswith("kubectl barbeque "), version.stderr
    enqueued = subprocess.run(
        [kubectl, "barbeque", "enqueue", webapp.job, '{"via": "kubectl"}', "-Q", webapp.queue],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert enqueued.returncode == 0, enqueued.stderr
    [message] = service.receive(webapp.queue_url)
    assert message["MessageId"] == enqueued.stdout.strip()
    assert json.loads(message["Body"])["Application"] == webapp.name
    # The other commands go through the same plugin: a status, and a listing of the
    # context's application.
    record(service, webapp, "via-kubectl", phase="Failed")
    status = subprocess.run(
        [kubectl, "barbeque", "status", "via-kubectl"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (status.returncode, status.stdout.strip()) == (0, "failed"), status.stderr
    listed = subprocess.run(
        [kubectl, "barbeque", "executions", "-o", "json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "via-kubectl" in [row["message_id"] for row in json.loads(listed.stdout)]


def test_the_client_installs_alone_and_enqueues_without_the_server_packages(
    service: Service, webapp: App, tmp_path: Path
) -> None:
    # `pip install ./client` into an empty virtualenv: httpx and pyyaml come from PyPI
    # (or pip's cache), kopf, kubernetes and boto3 must not come at all.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    root = Path(__file__).resolve().parents[2]
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         str(root / "client")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    probe = "import importlib.util as u; print([m for m in MODULES if u.find_spec(m)])"
    found = subprocess.run(
        [str(python), "-c", f"MODULES = ['kopf', 'kubernetes', 'boto3', 'barbeque']; {probe}"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert found.stdout.strip() == "[]", found.stdout
    env = {**os.environ, "BARBEQUE_URL": service.url, "BARBEQUE_TOKEN": TOKEN}
    enqueued = subprocess.run(
        [str(venv / "bin" / "barbeque-client"), "enqueue", webapp.job, '{"from": "light"}',
         "--application", webapp.name, "--queue", webapp.queue],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert enqueued.returncode == 0, enqueued.stderr
    [message] = service.receive(webapp.queue_url)
    assert message["MessageId"] == enqueued.stdout.strip()
    assert json.loads(message["Body"])["Message"] == {"from": "light"}
