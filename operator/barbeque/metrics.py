"""Every Prometheus metric of the operator, prefix ``barbeque_``, fixed label sets.

Labels are application, definition, queue and phase names only: bounded by what users
register, never message ids or message content. The JobDefinition label is ``definition``,
not ``job``: Prometheus owns ``job`` (the scrape job) and would rename ours ``exported_job``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES_RECEIVED = Counter(
    "barbeque_messages_received",
    "SQS messages received by the operator.",
    ["queue"],
    registry=REGISTRY,
)
MESSAGES_DUPLICATE = Counter(
    "barbeque_messages_duplicate",
    "SQS messages whose execution already existed (redelivery); deleted, nothing created.",
    ["queue"],
    registry=REGISTRY,
)
MESSAGES_INVALID = Counter(
    "barbeque_messages_invalid",
    "Messages that could not be used, by reason (InvalidJSON, UnknownJob, ...).",
    ["queue", "reason"],
    registry=REGISTRY,
)
MESSAGES_DEFERRED = Counter(
    "barbeque_messages_deferred",
    "Messages left in SQS (not deleted) for a later receive or dead-letter redrive, by reason.",
    ["queue", "reason"],
    registry=REGISTRY,
)
EXECUTIONS_CREATED = Counter(
    "barbeque_executions_created",
    "JobExecutions recorded.",
    ["application", "definition", "queue"],
    registry=REGISTRY,
)
EXECUTIONS_FINISHED = Counter(
    "barbeque_executions_finished",
    "JobExecutions that reached a final phase.",
    ["application", "definition", "phase"],
    registry=REGISTRY,
)
EXECUTIONS_RETRIED = Counter(
    "barbeque_executions_retried",
    "Automatic retries scheduled after a failure.",
    ["application", "definition"],
    registry=REGISTRY,
)
EXECUTIONS_COLLECTED = Counter(
    "barbeque_executions_collected",
    "Finished JobExecutions deleted by the history policy (their record stays in S3).",
    registry=REGISTRY,
)
EXECUTIONS_BY_PHASE = Gauge(
    "barbeque_executions",
    "JobExecutions present in the cluster, by phase.",
    ["application", "definition", "phase"],
    registry=REGISTRY,
)
RUNNING_EXECUTIONS = Gauge(
    "barbeque_running_executions",
    "Unfinished, unscheduled executions per queue (what maxConcurrentExecutions caps).",
    ["queue"],
    registry=REGISTRY,
)
EXECUTION_DURATION = Histogram(
    "barbeque_execution_duration_seconds",
    "Wall time of executions from pod start to finish.",
    ["application", "definition", "phase"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
    registry=REGISTRY,
)
START_LATENCY = Histogram(
    "barbeque_enqueue_to_start_seconds",
    "From the message's SQS SentTimestamp (or notBefore) to the Job being created.",
    ["queue"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
    registry=REGISTRY,
)
QUEUE_MESSAGES = Gauge(
    "barbeque_queue_messages",
    "Approximate SQS queue depth, by state (visible, in_flight, delayed).",
    ["queue", "state"],
    registry=REGISTRY,
)
SQS_ERRORS = Counter(
    "barbeque_sqs_errors",
    "Failed SQS calls.",
    ["queue", "operation"],
    registry=REGISTRY,
)
S3_FAILURES = Counter(
    "barbeque_s3_failures",
    "Failed uploads of messages and logs to S3 (retried until they succeed).",
    registry=REGISTRY,
)
SLACK_FAILURES = Counter(
    "barbeque_slack_failures",
    "Slack calls that failed, by whether the notification was then given up.",
    ["final"],
    registry=REGISTRY,
)
SLACK_NOTIFICATIONS = Counter(
    "barbeque_slack_notifications",
    "Slack notifications posted, by kind (success, failure, error).",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "barbeque_reconcile_errors",
    "Reconciliations that failed and were requeued with backoff, by error type.",
    ["error"],
    registry=REGISTRY,
)
KUBE_REQUESTS = Counter(
    "barbeque_kube_requests",
    'Kubernetes API requests of the operator, by call and HTTP status code ("error" when '
    "no answer came: refused, reset, timed out).",
    ["call", "code"],
    registry=REGISTRY,
)
KUBE_REQUEST_SECONDS = Histogram(
    "barbeque_kube_request_duration_seconds",
    "Time from sending a Kubernetes API request to reading its whole answer, by call.",
    ["call"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "barbeque_watch_restarts",
    "Times a watch of the operator listed again (expired: its resourceVersion was too old) "
    "or retried after an error, by resource.",
    ["resource", "reason"],
    registry=REGISTRY,
)
