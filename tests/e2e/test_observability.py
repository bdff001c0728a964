"""The observability pack against the real thing: a real Prometheus scrapes the operator
process and the console process, loads the alert rules as the chart renders them into its
PrometheusRule, and answers every query of the dashboard the chart ships. Faults are real:
S3 and SQS sit behind fault proxies that refuse connections on demand.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from barbeque.services.naming import execution_name
from tests.cluster.harness import EXIT_CODE_ANNOTATION, Cluster
from tests.support import webapi_servers
from tests.support.aws import Aws
from tests.support.faults import PASS, REFUSE, FaultProxy
from tests.support.operator import (
    OPERATOR_NAMESPACE,
    App,
    OperatorProcess,
    application,
    operator_env,
)
from tests.support.prometheus import Prometheus
from tests.support.slack import SlackRecorder
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

service = webapi_servers.service

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "barbeque"
SLACK_TOKEN = "xoxb-observability-e2e-secret"
AWS_SECRET = "observability-e2e-aws-secret-key"
RUNBOOKS = "https://example.invalid/docs/operations.md"
# Grafana's $__rate_interval is four scrape intervals at least; Prometheus here scrapes
# every second and a test lasts minutes.
RATE_WINDOW = "1m"


@dataclass
class Stack:
    cluster: Cluster
    aws: Aws
    operator: OperatorProcess
    sqs_proxy: FaultProxy
    s3_proxy: FaultProxy
    prometheus: Prometheus
    dashboard: dict[str, Any]
    console: webapi_servers.Service


def rendered(cluster: Cluster, kind: str) -> dict[str, Any]:
    """The chart's object of ``kind``, with the observability pieces switched on."""
    output = cluster.helm(
        "template", "bbq", str(CHART), "--namespace", "monitoring",
        "--set", "metrics.prometheusRule.enabled=true",
        "--set", f"metrics.prometheusRule.runbookBaseUrl={RUNBOOKS}",
        "--set", "metrics.prometheusRule.additionalLabels.team=platform",
        "--set", "metrics.grafanaDashboard.enabled=true",
    ).stdout  # fmt: skip
    [found] = [d for d in yaml.safe_load_all(output) if d and d["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def stack(
    cluster: Cluster,
    crds: None,
    aws: Aws,
    slack: SlackRecorder,
    service: webapi_servers.Service,
    workdir: Path,
) -> Iterator[Stack]:
    moto_port = urllib.parse.urlparse(aws.endpoint_url).port
    assert moto_port is not None
    rule = rendered(cluster, "PrometheusRule")
    rules_file = workdir / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    config_map = rendered(cluster, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["barbeque.json"])
    with contextlib.ExitStack() as stack:
        sqs_proxy = stack.enter_context(FaultProxy("127.0.0.1", moto_port))
        s3_proxy = stack.enter_context(FaultProxy("127.0.0.1", moto_port))
        env = operator_env(
            cluster.kubeconfig,
            OPERATOR_NAMESPACE,
            sqs_proxy.url,
            s3_proxy.url,
            slack_url=slack.url,
            slack_token=SLACK_TOKEN,
            AWS_SECRET_ACCESS_KEY=AWS_SECRET,
            BARBEQUE_LOG_FORMAT="json",
            BARBEQUE_SQS_ERROR_BACKOFF_MAX_SECONDS="2",
        )
        operator = OperatorProcess(env, workdir / "operator.log")
        stack.callback(operator.stop)
        operator.start()
        prometheus = stack.enter_context(
            Prometheus(
                workdir,
                {
                    "barbeque-operator": operator.metrics_url,
                    "barbeque-console": f"{service.url}/metrics",
                },
                rule_files=[rules_file],
            )
        )
        yield Stack(cluster, aws, operator, sqs_proxy, s3_proxy, prometheus, dashboard, service)


@pytest.fixture
def app(stack: Stack) -> Iterator[App]:
    with application(stack.cluster, stack.aws) as made:
        yield made


def evidence(name: str, found: dict[str, Any]) -> None:
    """Keep what Prometheus said about an alert in artifacts/ (CI keeps that folder)."""
    folder = ROOT / "artifacts" / "alerts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


def alert(prometheus: Prometheus, name: str, state: str) -> dict[str, Any] | None:
    for found in prometheus.alerts():
        if found["labels"]["alertname"] == name and found["state"] == state:
            return found
    return None


def test_the_chart_renders_every_alert_with_its_runbook_and_labels(stack: Stack) -> None:
    spec = yaml.safe_load((stack.prometheus.workdir / "rules.yaml").read_text())
    rules = [rule for group in spec["groups"] for rule in group["rules"]]
    assert len(rules) == 9
    for rule in rules:
        assert rule["labels"]["team"] == "platform"
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOKS}#{rule['alert'].lower()}"
    # Prometheus loaded them: every rule is known to it, healthy.
    loaded = [r for g in stack.prometheus.api("rules")["groups"] for r in g["rules"]]
    assert sorted(r["name"] for r in loaded) == sorted(r["alert"] for r in rules)
    assert {r["health"] for r in loaded} <= {"ok", "unknown"}


def test_every_dashboard_query_returns_data_from_a_real_run(stack: Stack, app: App) -> None:
    app.define("hello")
    app.define(
        "flaky",
        podAnnotations={EXIT_CODE_ANNOTATION: "3"},
        retry={"limit": 1, "baseDelaySeconds": 1, "jitter": False},
    )
    # A queue's counters start at 0 (so increase() sees their first step): wait until
    # Prometheus has the zero before the invalid message comes.
    zero = f'barbeque_messages_invalid_total{{queue="{app.queue}",reason="InvalidMessage"}}'
    wait_until("the queue's counters at 0", lambda: stack.prometheus.query(zero), 60)
    ids = [app.enqueue("hello", {"i": i}) for i in range(3)]
    flaky = app.enqueue("flaky", {})
    app.send("not json at all")
    for message_id in ids:
        app.wait_phase(execution_name(message_id), ("Succeeded",))
    app.wait_phase(f"{execution_name(flaky)}-retry-1", ("Failed",), timeout=90)
    # The console answers API calls (counted by route) while Prometheus scrapes it.
    client = stack.console.client()  # the session's shared client: not to be closed here
    for message_id in ids:
        assert client.get(f"/v1/job_executions/{message_id}").status_code == 200
    client.get("/v1/job_queues")
    # SQS refuses for a few seconds: receive errors.
    stack.sqs_proxy.set_mode(REFUSE)
    wait_until(
        "an SQS error counted",
        lambda: stack.operator.metric("barbeque_sqs_errors_total", queue=app.queue) >= 1,
        60,
    )
    stack.sqs_proxy.set_mode(PASS)

    panels = [p for p in stack.dashboard["panels"] if p["type"] != "row"]
    queries = [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_WINDOW))
        for panel in panels
        for target in panel["targets"]
    ]
    assert len(queries) >= 20
    missing: dict[str, str] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        missing = {expr: title for title, expr in queries if not stack.prometheus.query(expr)}
        if not missing:
            break
        time.sleep(2)
    assert missing == {}, (
        f"panels without data: {missing}; targets: {stack.prometheus.targets_up()}"
    )

    # Invalid messages fire at once (no `for`): the real Prometheus says so.
    firing = wait_until(
        "BarbequeInvalidMessages to fire",
        lambda: alert(stack.prometheus, "BarbequeInvalidMessages", "firing"),
        60,
    )
    assert firing["labels"]["queue"] == app.queue
    assert firing["labels"]["reason"] == "InvalidMessage"
    evidence("BarbequeInvalidMessages-firing", firing)
    assert wait_until(
        "BarbequeSQSErrors to be pending",
        lambda: alert(stack.prometheus, "BarbequeSQSErrors", "pending"),
        60,
    )


def test_stopping_s3_makes_the_s3_alert_pending(stack: Stack, app: App) -> None:
    app.define("hello")
    assert alert(stack.prometheus, "BarbequeS3Failing", "pending") is None
    stack.s3_proxy.set_mode(REFUSE)
    try:
        message_id = app.enqueue("hello", {"s3": "down"})
        execution = app.wait_phase(execution_name(message_id), ("Succeeded",), timeout=90)
        assert execution["status"]["logs"]["uploaded"] is False
        pending = wait_until(
            "BarbequeS3Failing to be pending",
            lambda: alert(stack.prometheus, "BarbequeS3Failing", "pending"),
            60,
        )
        evidence("BarbequeS3Failing-pending", pending)
        assert pending["annotations"]["runbook_url"].endswith("#barbeques3failing")
        failures = stack.prometheus.query("sum(increase(barbeque_s3_failures_total[5m]))")
        assert float(failures[0]["value"][1]) > 0
    finally:
        stack.s3_proxy.set_mode(PASS)
    # S3 back: the logs are uploaded (the operator kept retrying).
    wait_until(
        "the logs to reach S3",
        lambda: (
            (app.execution(execution_name(message_id)) or {})
            .get("status", {})
            .get("logs", {})
            .get("uploaded")
        ),
        90,
    )


def test_json_logs_name_executions_and_hold_no_secret(stack: Stack, app: App) -> None:
    app.define(
        "flaky",
        podAnnotations={EXIT_CODE_ANNOTATION: "3"},
        retry={"limit": 1, "baseDelaySeconds": 1, "jitter": False},
    )
    message_id = app.enqueue("flaky", {})
    app.wait_phase(f"{execution_name(message_id)}-retry-1", ("Failed",), timeout=90)
    text = stack.operator.log_text()
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("===== life"):
            continue
        entry = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)
    about = [
        e
        for e in entries
        if e.get("namespace") == app.namespace
        and e.get("name") == execution_name(message_id)
        and e.get("message_id") == message_id
    ]
    assert about, "no log line names the execution"
    assert SLACK_TOKEN not in text
    assert AWS_SECRET not in text
