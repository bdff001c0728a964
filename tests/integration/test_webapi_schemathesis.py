"""Schemathesis over the published OpenAPI document: no input makes the service answer 5xx.

Runs schemathesis's own CLI against the running service (real HTTP, real apiserver, moto),
authenticated with a static token so write endpoints are exercised past the auth check:
once stateless (examples, coverage, fuzzing), once stateful (scenarios that follow the
document's OpenAPI links, with the operator running so that the message ids they carry
become executions that fail, succeed, are retried and cancelled).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import DURATION_ANNOTATION, EXIT_CODE_ANNOTATION, Cluster
from tests.support import webapi_servers
from tests.support.aws import Aws
from tests.support.operator import App as OperatorApp
from tests.support.operator import OperatorProcess, cleanup_app, make_app
from tests.support.reliability import record_figures
from tests.support.waiting import wait_until
from tests.support.webapi import TOKEN
from tests.support.webapi_servers import ROOT, App, Service

pytestmark = pytest.mark.integration

service = webapi_servers.service
operator_process = webapi_servers.operator_process
webapp = webapi_servers.webapp


def schemathesis_cli() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    return found


@pytest.mark.timeout(900)
def test_no_generated_request_gets_a_server_error(
    service: Service, webapp: App, tmp_path: Path
) -> None:
    cli = schemathesis_cli()
    report = ROOT / "artifacts" / "schemathesis"
    report.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            cli,
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            os.environ.get("BARBEQUE_SCHEMATHESIS_EXAMPLES", "25"),
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "20240601",
            "--workers",
            "1",
            "--report",
            "junit",
            "--report-dir",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output = result.stdout + result.stderr
    (report / "output.txt").write_text(output)
    assert result.returncode == 0, output[-6000:] + "\n--- service log ---\n" + service.tail()


@pytest.fixture
def live_app(
    cluster: Cluster, aws: Aws, service: Service, operator_process: OperatorProcess
) -> Iterator[OperatorApp]:
    """An application with a job that succeeds and one that fails, each run a few times."""
    made = make_app(cluster, aws)
    try:
        made.define("quick", podAnnotations={DURATION_ANNOTATION: "300"}, retry={"limit": 0})
        made.define(
            "fails",
            podAnnotations={DURATION_ANNOTATION: "300", EXIT_CODE_ANNOTATION: "3"},
            retry={"limit": 0},
        )
        client = service.client()
        wait_until(
            "the job definitions in the dashboard's cache",
            lambda: (
                len(
                    client.get("/v1/job_definitions", params={"application": made.namespace}).json()
                )
                == 2
            ),
        )
        for job in ("quick", "fails", "fails"):
            response = client.post(
                "/v2/job_executions",
                json={"application": made.namespace, "job": job, "queue": made.queue, "message": 1},
            )
            assert response.status_code == 201, response.text
        wait_until(
            "a failed and a successful execution",
            lambda: (
                {"failed", "success"}
                <= {
                    e["status"]
                    for e in client.get(
                        "/v1/job_executions", params={"application": made.namespace}
                    ).json()["job_executions"]
                }
            ),
            timeout=120,
        )
        yield made
    finally:
        cleanup_app(made)


# The document's path templates, to count answers per operation.
TEMPLATES = (
    (r"^/v1/job_executions/[^/]+", "/v1/job_executions/{message_id}"),
    (
        r"^/v1/applications/[^/]+/job_definitions/[^/]+$",
        "/v1/applications/{app}/job_definitions/{job}",
    ),
    (r"^/v1/job_queues/[^/]+$", "/v1/job_queues/{name}"),
)


def har_entries(report: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for har in report.glob("har-*.json"):
        entries += json.loads(har.read_text())["log"]["entries"]
    return entries


@pytest.mark.timeout(1200)
def test_no_stateful_scenario_gets_a_server_error(
    service: Service, live_app: OperatorApp, tmp_path: Path
) -> None:
    """Scenarios that follow the OpenAPI links (enqueue or list -> status, retry, cancel of
    that very message), with the operator running, so the ids exist and change state."""
    cli = schemathesis_cli()
    report = ROOT / "artifacts" / "schemathesis-stateful"
    shutil.rmtree(report, ignore_errors=True)
    report.mkdir(parents=True)
    started = time.monotonic()
    result = subprocess.run(
        [
            cli,
            "run",
            f"{service.url}/openapi.json",
            "--phases",
            "stateful",
            # Valid requests, so that scenarios get past their first step (the stateless
            # run above sends the invalid ones).
            "--mode",
            "positive",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            os.environ.get("BARBEQUE_SCHEMATHESIS_SCENARIOS", "100"),
            "--seed",
            "20240601",
            "--workers",
            "1",
            "--report",
            "junit,har",
            "--report-dir",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=1140,
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": str(ROOT / "tests" / "support" / "schemathesis_hooks.py"),
            "BARBEQUE_ST_APPLICATION": live_app.namespace,
            "BARBEQUE_ST_JOBS": "quick,fails",
            "BARBEQUE_ST_QUEUE": live_app.queue,
        },
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    (report / "output.txt").write_text(output)
    assert result.returncode == 0, output[-6000:] + "\n--- service log ---\n" + service.tail()

    entries = har_entries(report)
    answers: Counter[tuple[str, str, int]] = Counter()
    for entry in entries:
        request, status = entry["request"], entry["response"]["status"]
        path = urllib.parse.urlsplit(request["url"]).path
        for pattern, template in TEMPLATES:
            path = re.sub(pattern, template, path)
        answers[(request["method"], path, status)] += 1
    server_errors = {k: n for k, n in answers.items() if k[2] >= 500}
    figures: dict[str, Any] = {
        "requests": len(entries),
        "server_errors": sum(server_errors.values()),
        "seconds": round(seconds, 1),
        "answers": {f"{m} {p} {s}": n for (m, p, s), n in sorted(answers.items())},
    }
    for name, pattern in (
        ("scenarios", r"Scenarios:\s+(\d+)"),
        ("test_cases", r"(\d+) generated"),
        ("api_links", r"API Links:\s+(.+)"),
    ):
        found = re.search(pattern, output)
        figures[name] = found.group(1).strip() if found else None
    record_figures("schemathesis-stateful", figures)
    assert entries, output[-3000:]
    assert not server_errors, server_errors
    # The links were followed into real executions: messages enqueued for real, and
    # retries and cancels that found their execution (201/202 done, 409 not in a state
    # that allows it), not only 404s for generated ids.
    assert answers[("POST", "/v2/job_executions", 201)] > 0, figures
    reached = sum(
        n
        for (method, path, status), n in answers.items()
        if method == "POST"
        and path.endswith(("/retries", "/cancel"))
        and status != 404
        and status < 500
    )
    assert reached > 0, figures
