"""The one place that wires settings and adapters into services, in dependency order.

Each part is built once, with keyword arguments, from parts already built: nothing is
handed a placeholder to be replaced later, and no constructor rewires its collaborators.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from barbeque.adapters.kube import Connection, Kube, NotFound, load_api_client
from barbeque.adapters.s3 import S3
from barbeque.adapters.slack import Slack, SlackWebhook
from barbeque.adapters.sns import Sns
from barbeque.adapters.sqs import Sqs
from barbeque.adapters.watch import WatchClient
from barbeque.api.models import GROUP, LABEL_EXECUTION, UNFINISHED_SELECTOR, VERSION
from barbeque.config import Settings
from barbeque.controller.leader import LeaderElector
from barbeque.controller.listwatch import ListWatch
from barbeque.controller.manager import Manager
from barbeque.controller.workqueue import WorkQueue
from barbeque.services import compat
from barbeque.services.definitions import DefinitionChecker
from barbeque.services.events import EventRouter
from barbeque.services.history import HistoryCollector
from barbeque.services.intake import Intake
from barbeque.services.notifications import Notifier
from barbeque.services.poller import Capacity
from barbeque.services.pollers import Pollers
from barbeque.services.reconciler import Reconciler
from barbeque.services.reconciling import Reconciling
from barbeque.services.recorder import Recorder
from barbeque.services.store import Key, Store
from barbeque.services.subscriptions import Subscriber

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Operator:
    settings: Settings
    kube: Kube
    sqs: Sqs
    s3: S3
    store: Store
    queue: WorkQueue[Key]
    events: EventRouter
    history: HistoryCollector
    subscriber: Subscriber
    manager: Manager

    async def start(self) -> None:
        """Load definitions, Jobs, pods and executions before any decision is taken, then
        run (or stand by for the Lease).

        Without the priming, an execution seen before its definition would be marked
        UnknownJob, and a queue's concurrency cap would start counting from zero.
        An API server older than the operator supports is refused first
        (``compat.UnsupportedServer``).
        """
        compat.require_supported(await self.kube.server_version())
        for body in await self.kube.list_objects("jobdefinitions"):
            self.events.on_definition(None, body)
        # Before any poller runs: a notification must find its subscriptions. Helm does
        # not upgrade CRDs: without this one (applied by hand), SNS fan-out is off.
        try:
            for body in await self.kube.list_objects("snssubscriptions"):
                self.store.put_subscription(body)
        except NotFound:
            logger.warning(
                "The SNSSubscription CRD is not installed (kubectl apply --server-side -f "
                "charts/barbeque/crds/): SNS notifications find no subscription"
            )
        # Each watch's first LIST fills the store, and its WATCH goes on from that LIST's
        # resourceVersion. Unfinished executions only; finished ones needing a follow-up
        # come with the first sweep.
        await self.manager.prime()
        logger.info(
            "Primed the store: %d definitions, %d jobs, %d pods, %d executions",
            len(self.store.definitions),
            len(self.store.jobs),
            len(self.store.pods),
            len(self.store.executions),
        )
        await self.manager.start()

    async def stop(self) -> None:
        await self.manager.stop()
        self.queue.shutdown()


def build_slack(settings: Settings) -> Slack | SlackWebhook | None:
    """The bot token when there is one (it can post to any channel), else the webhook."""
    if settings.slack_token:
        return Slack(settings.slack_token, settings.slack_api_url, settings.slack_timeout_seconds)
    if settings.slack_webhook_url:
        return SlackWebhook(settings.slack_webhook_url, settings.slack_timeout_seconds)
    logger.info(
        "Neither BARBEQUE_SLACK_TOKEN nor BARBEQUE_SLACK_WEBHOOK_URL is set: "
        "Slack notifications are logged, not sent"
    )
    return None


def build_elector(settings: Settings, kube: Kube) -> LeaderElector | None:
    if not settings.leader_election:
        return None
    return LeaderElector(
        kube,
        settings.namespace,
        settings.lease_name,
        settings.identity,
        lease_seconds=settings.lease_seconds,
        renew_seconds=max(1.0, settings.lease_seconds / 3),
    )


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
    queue: WorkQueue[Key] = WorkQueue()
    capacity = Capacity()
    store = Store(keep_finished=False, on_slot_freed=capacity.freed)
    recorder = Recorder(kube=kube, instance=settings.identity)
    reconciler = Reconciler(
        store=store,
        kube=kube,
        s3=s3,
        recorder=recorder,
        notifier=Notifier(build_slack(settings), settings.slack_attempts),
        console_url=settings.console_url,
        log_limit_bytes=settings.log_tail_bytes,
    )
    intake = Intake(
        store=store, kube=kube, operator_namespace=settings.namespace, on_created=queue.add
    )
    pollers = Pollers(
        store=store,
        sqs=sqs,
        kube=kube,
        intake=intake,
        capacity=capacity,
        recorder=recorder,
        error_backoff_max=settings.sqs_error_backoff_max_seconds,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
    )
    reconciling = Reconciling(
        store=store,
        queue=queue,
        reconciler=reconciler,
        workers=settings.workers,
        resync_seconds=settings.resync_seconds,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
    )
    history = HistoryCollector(
        store=store,
        kube=kube,
        reconcile_later=queue.add,
        ttl_seconds=settings.history_ttl_seconds,
        keep=settings.history_keep,
        interval_seconds=settings.history_interval_seconds,
    )
    subscriber = Subscriber(
        store=store, kube=kube, sqs=sqs, sns=Sns(settings.aws_region, settings.sns_endpoint_url)
    )
    definitions = DefinitionChecker(store=store, kube=kube, recorder=recorder)
    events = EventRouter(
        store=store, queue=queue, pollers=pollers, history=history, definitions=definitions
    )
    # Ours only, by label: other workloads' Jobs and pods never reach the operator.
    job_watch = ListWatch(
        WatchClient(connection, "/apis/batch/v1/jobs"),
        on_event=events.on_job,
        label_selector=LABEL_EXECUTION,
        remembered_label=LABEL_EXECUTION,
    )
    pod_watch = ListWatch(
        WatchClient(connection, "/api/v1/pods"),
        on_event=events.on_pod,
        label_selector=LABEL_EXECUTION,
        remembered_label=LABEL_EXECUTION,
    )
    execution_watch = ListWatch(
        WatchClient(connection, f"/apis/{GROUP}/{VERSION}/jobexecutions"),
        on_event=events.on_execution,
        field_selector=UNFINISHED_SELECTOR,
    )
    # Applications named otherwise than their namespace (my_app): primed before any
    # poller runs, like every watch.
    namespace_watch = ListWatch(
        WatchClient(connection, "/api/v1/namespaces"), on_event=events.on_namespace
    )
    manager = Manager(
        watches=[namespace_watch, job_watch, pod_watch, execution_watch],
        # Started in this order, stopped in reverse: pollers stop feeding work first.
        components=[reconciling, history, definitions, subscriber, pollers],
        elector=build_elector(settings, kube),
    )
    return Operator(
        settings=settings,
        kube=kube,
        sqs=sqs,
        s3=s3,
        store=store,
        queue=queue,
        events=events,
        history=history,
        subscriber=subscriber,
        manager=manager,
    )
