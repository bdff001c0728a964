"""Every Prometheus metric of the operator and the console, fixed label sets.

Labels are application, definition, queue and phase names only: bounded by what users
register, never message ids or message content. A message naming a job or application
that is not registered is counted under ``_unknown`` (see ``definition_labels``), and the
series of a deleted JobDefinition are removed (``forget_definition``). The JobDefinition
label is ``definition``, not ``job``: Prometheus owns ``job`` (the scrape job) and would
rename ours ``exported_job``.

Two registries, one per process: ``REGISTRY`` (the operator: ``barbeque_*`` plus
controller-runtime's ``workqueue_*`` names, so dashboards made for controllers work) and
``CONSOLE_REGISTRY`` (the console and Web API: HTTP requests). Both carry the process
metrics and ``barbeque_build_info``.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.metrics import MetricWrapperBase

from barbeque import __version__

# A ``<name>_created`` series per counter and histogram doubles the series count and no
# query here reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]

UNKNOWN = "_unknown"

# The label sets several metrics share.
BY_QUEUE = ("queue",)
BY_DEFINITION = ("application", "definition")
BY_PHASE = (*BY_DEFINITION, "phase")
BY_WORKQUEUE = ("name",)

REGISTRY = CollectorRegistry(auto_describe=True)
CONSOLE_REGISTRY = CollectorRegistry(auto_describe=True)

for _registry in (REGISTRY, CONSOLE_REGISTRY):
    # process_* (CPU, memory, open fds, start time), python_info and python_gc_*.
    for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        _registry.register(_collector)


def _build_info(registry: CollectorRegistry, component: str) -> Gauge:
    info = Gauge(
        "barbeque_build_info",
        "Always 1: the version of Barbeque on Kubernetes and the Python running it.",
        ["version", "python_version", "component"],
        registry=registry,
    )
    info.labels(__version__, platform.python_version(), component).set(1)
    return info


# The operator's metrics, in REGISTRY unless they say otherwise.
_counter = functools.partial(Counter, registry=REGISTRY)
_gauge = functools.partial(Gauge, registry=REGISTRY)
_histogram = functools.partial(Histogram, registry=REGISTRY)


BUILD_INFO = _build_info(REGISTRY, "operator")
CONSOLE_BUILD_INFO = _build_info(CONSOLE_REGISTRY, "console")

LEADER = _gauge(
    "barbeque_leader",
    "1 while this replica is the active operator (holds the Lease, or runs without "
    "leader election), else 0.",
)

MESSAGES_RECEIVED = _counter(
    "barbeque_messages_received", "SQS messages received by the operator.", BY_QUEUE
)
MESSAGES_DUPLICATE = _counter(
    "barbeque_messages_duplicate",
    "SQS messages whose execution already existed (redelivery); deleted, nothing created.",
    BY_QUEUE,
)
MESSAGES_INVALID = _counter(
    "barbeque_messages_invalid",
    "Executions ended Error without running, by reason (InvalidMessage: the body, the "
    "envelope or the application; UnknownJob; InvalidDefinition; JobRejected; JobDeleted).",
    ["queue", "reason"],
)
MESSAGES_DEFERRED = _counter(
    "barbeque_messages_deferred",
    "Messages left in SQS (not deleted) for a later receive or dead-letter redrive, by reason.",
    ["queue", "reason"],
)
EXECUTIONS_CREATED = _counter(
    "barbeque_executions_created", "JobExecutions recorded.", (*BY_DEFINITION, "queue")
)
EXECUTIONS_FINISHED = _counter(
    "barbeque_executions_finished", "JobExecutions that reached a final phase.", BY_PHASE
)
EXECUTIONS_RETRIED = _counter(
    "barbeque_executions_retried", "Automatic retries scheduled after a failure.", BY_DEFINITION
)
EXECUTIONS_COLLECTED = _counter(
    "barbeque_executions_collected",
    "Finished JobExecutions deleted by the history policy (their record stays in S3).",
)
EXECUTIONS_BY_PHASE = _gauge(
    "barbeque_executions", "JobExecutions present in the cluster, by phase.", BY_PHASE
)

# What a queue holds and runs now.
RUNNING_EXECUTIONS = _gauge(
    "barbeque_running_executions",
    "Unfinished, unscheduled executions per queue (what maxConcurrentExecutions caps).",
    BY_QUEUE,
)
WAITING_FOR_CAPACITY = _gauge(
    "barbeque_executions_waiting_for_capacity",
    "Unfinished executions per queue whose pod no node can take yet (reason Unschedulable).",
    BY_QUEUE,
)
QUEUE_MESSAGES = _gauge(
    "barbeque_queue_messages",
    "Approximate SQS queue depth, by state (visible, in_flight, delayed).",
    ["queue", "state"],
)

# How long the steps of an execution take.
START_LATENCY = _histogram(
    "barbeque_enqueue_to_start_seconds",
    "From the message's SQS SentTimestamp (or notBefore) to the Job being created.",
    BY_QUEUE,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
JOB_TO_RUNNING = _histogram(
    "barbeque_job_to_pod_running_seconds",
    "From the Job's start (the Job controller taking it) to its pod running: waiting for a "
    "node (capacity) and starting the container.",
    BY_QUEUE,
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
EXECUTION_DURATION = _histogram(
    "barbeque_execution_duration_seconds",
    "Wall time of executions from pod start to finish.",
    BY_PHASE,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)

SQS_ERRORS = _counter("barbeque_sqs_errors", "Failed SQS calls.", ["queue", "operation"])
EVENTS_RECORDED = _counter(
    "barbeque_events_recorded",
    "Warning Events the operator wrote on its objects, by kind and reason.",
    ["kind", "reason"],
)
EVENT_FAILURES = _counter(
    "barbeque_event_failures", "Events the operator could not write (best effort: not retried)."
)
S3_FAILURES = _counter(
    "barbeque_s3_failures",
    "Failed uploads of messages and logs to S3 (retried until they succeed).",
)
SLACK_FAILURES = _counter(
    "barbeque_slack_failures",
    "Slack calls that failed, by whether the notification was then given up.",
    ["final"],
)
SLACK_NOTIFICATIONS = _counter(
    "barbeque_slack_notifications",
    "Slack notifications posted, by kind (success, failure, error).",
    ["kind"],
)
RECONCILE_ERRORS = _counter(
    "barbeque_reconcile_errors",
    "Reconciliations that failed and were requeued with backoff, by error type.",
    ["error"],
)
KUBE_REQUESTS = _counter(
    "barbeque_kube_requests",
    'Kubernetes API requests of the operator, by call and HTTP status code ("error" when '
    "no answer came: refused, reset, timed out).",
    ["call", "code"],
)
KUBE_REQUEST_SECONDS = _histogram(
    "barbeque_kube_request_duration_seconds",
    "Time from sending a Kubernetes API request to reading its whole answer, by call.",
    ["call"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
WATCH_RESTARTS = _counter(
    "barbeque_watch_restarts",
    "Times a watch of the operator listed again (expired: its resourceVersion was too old) "
    "or retried after an error, by resource.",
    ["resource", "reason"],
)

# controller-runtime's work-queue metrics, same names, labels and meaning (``name`` is the
# queue: ``jobexecutions``).
WORKQUEUE_DEPTH = _gauge("workqueue_depth", "Current depth of workqueue.", BY_WORKQUEUE)
WORKQUEUE_ADDS = _counter(
    "workqueue_adds", "Total number of adds handled by workqueue.", BY_WORKQUEUE
)
WORKQUEUE_RETRIES = _counter(
    "workqueue_retries", "Total number of retries handled by workqueue.", BY_WORKQUEUE
)
_WORKQUEUE_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000)
WORKQUEUE_QUEUE_DURATION = _histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested.",
    BY_WORKQUEUE,
    buckets=_WORKQUEUE_BUCKETS,
)
WORKQUEUE_WORK_DURATION = _histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes.",
    BY_WORKQUEUE,
    buckets=_WORKQUEUE_BUCKETS,
)
WORKQUEUE_UNFINISHED_WORK = _gauge(
    "workqueue_unfinished_work_seconds",
    "How many seconds of work has been done that is in progress and hasn't been observed "
    "by work_duration. Large values indicate stuck threads.",
    BY_WORKQUEUE,
)
WORKQUEUE_LONGEST_RUNNING = _gauge(
    "workqueue_longest_running_processor_seconds",
    "How many seconds has the longest running processor for workqueue been running.",
    BY_WORKQUEUE,
)

# The console and Web API. ``route`` is the route's template (``/v1/job_executions/{message_id}``),
# never the requested path; requests no route matched are ``route="other"``.
HTTP_REQUESTS = _counter(
    "barbeque_http_requests",
    "HTTP requests answered by the console and Web API, by route template, method and status.",
    ["route", "method", "code"],
    registry=CONSOLE_REGISTRY,
)
HTTP_REQUEST_SECONDS = _histogram(
    "barbeque_http_request_duration_seconds",
    "Time to answer an HTTP request of the console and Web API (until the response starts "
    "streaming for log follows), by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=CONSOLE_REGISTRY,
)

# Metrics labelled by application and definition: what forget_definition cleans.
_PER_DEFINITION: tuple[MetricWrapperBase, ...] = (
    EXECUTIONS_CREATED,
    EXECUTIONS_FINISHED,
    EXECUTIONS_RETRIED,
    EXECUTIONS_BY_PHASE,
    EXECUTION_DURATION,
)


def definition_labels(
    application: str | None, definition: str | None, *, known: bool
) -> tuple[str, str]:
    """The (application, definition) labels of an execution: its own names when its
    JobDefinition is registered, else ``_unknown`` for both (a message's text would make
    one series per typo)."""
    if known and application and definition:
        return application, definition
    return UNKNOWN, UNKNOWN


# Metrics labelled by queue: what forget_queue cleans.
_PER_QUEUE: tuple[MetricWrapperBase, ...] = (
    MESSAGES_RECEIVED,
    MESSAGES_DUPLICATE,
    MESSAGES_INVALID,
    MESSAGES_DEFERRED,
    EXECUTIONS_CREATED,
    RUNNING_EXECUTIONS,
    START_LATENCY,
    WAITING_FOR_CAPACITY,
    JOB_TO_RUNNING,
    QUEUE_MESSAGES,
    SQS_ERRORS,
)
SQS_OPERATIONS = ("resolve", "receive", "delete", "stats")
# The reasons a message cannot run for what it says (the reconciler's Error reasons; the
# envelope's own, InvalidJSON and the like, are in the execution's spec.invalidReason).
INVALID_REASONS = ("InvalidMessage", "UnknownJob", "InvalidDefinition")


def queue_series(queue: str) -> None:
    """Export a queue's counters at 0 from the start: ``increase()`` cannot see a counter's
    first step when the series is born at 1, so an alert would miss the first SQS error
    or invalid message, and a dashboard would say "No data" instead of 0."""
    MESSAGES_RECEIVED.labels(queue)
    MESSAGES_DUPLICATE.labels(queue)
    for operation in SQS_OPERATIONS:
        SQS_ERRORS.labels(queue, operation)
    for reason in INVALID_REASONS:
        MESSAGES_INVALID.labels(queue, reason)


for _final in ("true", "false"):
    SLACK_FAILURES.labels(_final)


def _label_sets(metric: MetricWrapperBase) -> Iterable[dict[str, str]]:
    for family in metric.collect():
        for sample in family.samples:
            yield sample.labels


def _forget(metrics: Iterable[MetricWrapperBase], **match: str) -> int:
    removed = 0
    for metric in metrics:
        names: tuple[str, ...] = metric._labelnames  # no public accessor
        seen: set[tuple[str, ...]] = set()
        for labels in _label_sets(metric):
            if all(labels.get(key) == value for key, value in match.items()):
                seen.add(tuple(labels[name] for name in names))
        for values in seen:
            metric.remove(*values)
            removed += 1
    return removed


def forget_definition(application: str, definition: str) -> int:
    """Remove every series of a deleted JobDefinition; returns how many went."""
    return _forget(_PER_DEFINITION, application=application, definition=definition)


def forget_queue(queue: str) -> int:
    """Remove every series of a deleted JobQueue; returns how many went."""
    return _forget(_PER_QUEUE, queue=queue)
