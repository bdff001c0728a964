"""The one place that wires settings and adapters into services."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from barbeque.adapters.kube import Connection, Kube, load_api_client
from barbeque.adapters.s3 import S3
from barbeque.adapters.slack import Slack
from barbeque.adapters.sqs import Sqs
from barbeque.adapters.watch import ListWatch
from barbeque.api.models import GROUP, LABEL_EXECUTION, UNFINISHED_SELECTOR, VERSION
from barbeque.config import Settings
from barbeque.services.intake import Intake
from barbeque.services.leader import LeaderElector
from barbeque.services.notifications import Notifier
from barbeque.services.reconciler import Reconciler
from barbeque.services.runtime import Runtime
from barbeque.services.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Operator:
    settings: Settings
    kube: Kube
    sqs: Sqs
    s3: S3
    store: Store
    runtime: Runtime


def build_operator(settings: Settings, kubeconfig: str | None = None) -> Operator:
    connection = Connection.from_api_client(load_api_client(kubeconfig))
    kube = Kube(connection, pool_size=settings.kube_qps_threads)
    sqs = Sqs(settings.aws_region, settings.sqs_endpoint_url, max_pool=settings.kube_qps_threads)
    s3 = S3(
        settings.aws_region,
        settings.s3_endpoint_url,
        settings.s3_bucket,
        max_pool=settings.kube_qps_threads,
    )
    slack = (
        Slack(settings.slack_token, settings.slack_api_url, settings.slack_timeout_seconds)
        if settings.slack_token
        else None
    )
    if slack is None:
        logger.info("BARBEQUE_SLACK_TOKEN is not set: Slack notifications are logged, not sent")
    store = Store(keep_finished=False)
    reconciler = Reconciler(
        store,
        kube,
        s3,
        Notifier(slack, settings.slack_attempts),
        console_url=settings.console_url,
        log_limit_bytes=settings.log_tail_bytes,
    )
    intake = Intake(store, kube, settings.namespace, on_created=lambda key: None)
    elector = (
        LeaderElector(
            kube,
            settings.namespace,
            settings.lease_name,
            settings.identity,
            lease_seconds=settings.lease_seconds,
            renew_seconds=max(1.0, settings.lease_seconds / 3),
        )
        if settings.leader_election
        else None
    )
    # Ours only, by label: other workloads' Jobs and pods never reach the operator.
    job_watch, pod_watch = (
        ListWatch(
            connection,
            path,
            on_event=lambda type_, body: None,
            label_selector=LABEL_EXECUTION,
            remembered_label=LABEL_EXECUTION,
        )
        for path in ("/apis/batch/v1/jobs", "/api/v1/pods")
    )
    execution_watch = ListWatch(
        connection,
        f"/apis/{GROUP}/{VERSION}/jobexecutions",
        on_event=lambda type_, body: None,
        field_selector=UNFINISHED_SELECTOR,
    )
    runtime = Runtime(
        store,
        kube,
        sqs,
        reconciler,
        intake,
        job_watch,
        pod_watch,
        execution_watch,
        workers=settings.workers,
        resync_seconds=settings.resync_seconds,
        sqs_error_backoff_max=settings.sqs_error_backoff_max_seconds,
        elector=elector,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        history_ttl_seconds=settings.history_ttl_seconds,
        history_keep=settings.history_keep,
        history_interval_seconds=settings.history_interval_seconds,
    )
    job_watch.on_event = runtime.on_job_event
    pod_watch.on_event = runtime.on_pod_event
    execution_watch.on_event = runtime.on_execution_event
    return Operator(settings, kube, sqs, s3, store, runtime)
