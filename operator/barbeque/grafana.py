"""The Grafana dashboard of Barbeque, as code: ``python -m barbeque grafana --write|--check``.

Built with grafana-foundation-sdk (a dev dependency: the image never runs this) and
written to charts/barbeque/files/grafana-dashboard.json, which the chart ships in a
ConfigMap for Grafana's dashboard sidecar. Edit the panels here, never the JSON: a test
regenerates it and fails on drift, and the e2e tier runs every panel's query against a
real Prometheus scraping a real run (``queries()``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_JSON = Path("charts/barbeque/files/grafana-dashboard.json")
UID = "barbeque-overview"
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    kind: str = "timeseries"  # or "stat"
    width: int = 12


def _p99(metric: str, by: str) -> str:
    return f"histogram_quantile(0.99, sum by ({by}, le) (rate({metric}_bucket[{RATE}])))"


def _p50(metric: str, by: str) -> str:
    return f"histogram_quantile(0.5, sum by ({by}, le) (rate({metric}_bucket[{RATE}])))"


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Queues",
        (
            Panel(
                "Queue depth",
                "Approximate SQS messages per queue and state (visible, in_flight, delayed).",
                "short",
                (("sum by (queue, state) (barbeque_queue_messages)", "{{queue}} {{state}}"),),
            ),
            Panel(
                "Start latency (queue age)",
                "From the message's SentTimestamp (or notBefore) to its Job's creation: how "
                "long messages waited. SQS does not tell the oldest message's age; this does.",
                "s",
                (
                    (_p99("barbeque_enqueue_to_start_seconds", "queue"), "p99 {{queue}}"),
                    (_p50("barbeque_enqueue_to_start_seconds", "queue"), "p50 {{queue}}"),
                ),
            ),
            Panel(
                "Messages",
                "Messages received, duplicates (redeliveries) and invalid ones per second.",
                "reqps",
                (
                    (
                        f"sum by (queue) (rate(barbeque_messages_received_total[{RATE}]))",
                        "received {{queue}}",
                    ),
                    (
                        f"sum by (queue) (rate(barbeque_messages_duplicate_total[{RATE}]))",
                        "duplicate {{queue}}",
                    ),
                    (
                        f"sum by (queue, reason) (rate(barbeque_messages_invalid_total[{RATE}]))",
                        "invalid {{queue}} {{reason}}",
                    ),
                ),
            ),
            Panel(
                "Running executions",
                "Unfinished, unscheduled executions per queue (what maxConcurrentExecutions caps).",
                "short",
                (("sum by (queue) (barbeque_running_executions)", "{{queue}}"),),
            ),
        ),
    ),
    (
        "Executions",
        (
            Panel(
                "Executions by phase",
                "JobExecutions present in the cluster, by phase.",
                "short",
                (("sum by (phase) (barbeque_executions)", "{{phase}}"),),
            ),
            Panel(
                "Finished per second",
                "Executions reaching a final phase, by phase.",
                "ops",
                (
                    (
                        f"sum by (phase) (rate(barbeque_executions_finished_total[{RATE}]))",
                        "{{phase}}",
                    ),
                ),
            ),
            Panel(
                "Duration",
                "Pod start to finish, per job definition.",
                "s",
                (
                    (
                        _p99("barbeque_execution_duration_seconds", "application, definition"),
                        "p99 {{application}}/{{definition}}",
                    ),
                    (
                        _p50("barbeque_execution_duration_seconds", "application, definition"),
                        "p50 {{application}}/{{definition}}",
                    ),
                ),
            ),
            Panel(
                "Retries",
                "Automatic retries scheduled after failures, and reconciles requeued "
                "with backoff (controller-runtime's workqueue_retries_total).",
                "ops",
                (
                    (
                        "sum by (application, definition) "
                        f"(rate(barbeque_executions_retried_total[{RATE}]))",
                        "retry {{application}}/{{definition}}",
                    ),
                    (
                        f"sum by (name) (rate(workqueue_retries_total[{RATE}]))",
                        "requeued {{name}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Errors",
        (
            Panel(
                "Dependency errors",
                "Failed SQS calls by operation, failed S3 uploads, Slack failures.",
                "ops",
                (
                    (
                        f"sum by (operation) (rate(barbeque_sqs_errors_total[{RATE}]))",
                        "SQS {{operation}}",
                    ),
                    (f"sum(rate(barbeque_s3_failures_total[{RATE}]))", "S3 uploads"),
                    (
                        f"sum by (final) (rate(barbeque_slack_failures_total[{RATE}]))",
                        "Slack (given up: {{final}})",
                    ),
                ),
            ),
            Panel(
                "Kubernetes API requests",
                "The operator's Kubernetes API requests by status code.",
                "reqps",
                (
                    (
                        f"sum by (code) (rate(barbeque_kube_requests_total[{RATE}]))",
                        "{{code}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Operator and console",
        (
            Panel(
                "Leader",
                "Replicas that are the active operator: 1 is right, 0 is BarbequeNoLeader.",
                "short",
                (("sum(barbeque_leader)", "leaders"),),
                kind="stat",
                width=4,
            ),
            Panel(
                "Work queue",
                "controller-runtime's work-queue metrics: depth and p99 wait before a reconcile.",
                "short",
                (
                    ("sum by (name) (workqueue_depth)", "depth {{name}}"),
                    (_p99("workqueue_queue_duration_seconds", "name"), "p99 wait s {{name}}"),
                ),
                width=8,
            ),
            Panel(
                "Memory",
                "Resident memory of each process.",
                "bytes",
                (("sum by (instance) (process_resident_memory_bytes)", "{{instance}}"),),
                width=12,
            ),
            Panel(
                "Web API requests",
                "Requests to the console and Web API by route template and status code.",
                "reqps",
                (
                    (
                        f"sum by (route, code) (rate(barbeque_http_requests_total[{RATE}]))",
                        "{{code}} {{route}}",
                    ),
                ),
            ),
            Panel(
                "Web API latency",
                "p99 time to the first byte of the answer, by route template.",
                "s",
                ((_p99("barbeque_http_request_duration_seconds", "route"), "{{route}}"),),
            ),
        ),
    ),
)


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, for tests that run them."""
    return [
        (panel.title, expr) for _, panels in ROWS for panel in panels for expr, _ in panel.targets
    ]


def build() -> dict[str, Any]:
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    datasource = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        dashboard.Dashboard("Barbeque")
        .uid(UID)
        .description(
            "Barbeque on Kubernetes: queues, executions, errors, the operator and the console."
        )
        .tags(["barbeque", "kubernetes"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .editable()
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )
    for row_title, panels in ROWS:
        board = board.with_row(dashboard.Row(row_title))
        for panel in panels:
            builder: Any = stat.Panel() if panel.kind == "stat" else timeseries.Panel()
            builder = (
                builder.title(panel.title)
                .description(panel.description)
                .unit(panel.unit)
                .datasource(datasource)
                .span(panel.width)
                .height(8)
            )
            for index, (expr, legend) in enumerate(panel.targets):
                builder = builder.with_target(
                    prometheus.Dataquery()
                    .expr(expr)
                    .legend_format(legend)
                    .ref_id(chr(ord("A") + index))
                    .datasource(datasource)
                )
            board = board.with_panel(builder)
    built: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    # The SDK leaves ids unset (rows at 0) and options null; Grafana wants unique ids and
    # fills absent options with the panel's defaults.
    for number, panel in enumerate(built["panels"], start=1):
        panel["id"] = number
        if panel.get("options") is None:
            panel.pop("options", None)
    return built


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def write(path: Path = DASHBOARD_JSON) -> Path:
    path.write_text(render())
    return path


def drift(path: Path = DASHBOARD_JSON) -> list[str]:
    if not path.exists():
        return [f"{path} is missing"]
    if path.read_text() != render():
        return [f"{path} differs from operator/barbeque/grafana.py"]
    return []
