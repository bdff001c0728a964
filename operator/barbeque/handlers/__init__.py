"""kopf handlers: receive watch events and lifecycle hooks, hand them to the operator.

Only event handlers are used (no on.create/on.update): they write nothing of kopf's
own (no annotations, no finalizers, no handler-named status keys) on our objects; the
reconciler owns every write.

JobExecutions, Jobs and pods are not watched through kopf but by the operator's own
watches (``controller.listwatch``): the API server sends unfinished executions only, so
retained history costs no memory, and the busiest streams skip kopf's per-event work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from prometheus_client import start_http_server

from barbeque import metrics
from barbeque.api.models import GROUP, VERSION
from barbeque.config import get_settings
from barbeque.factory import Operator, build_operator
from barbeque.services import compat

logger = logging.getLogger(__name__)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster token when in a pod, else the kubeconfig named by KUBECONFIG now.

    kopf's default goes through the kubernetes client, which reads KUBECONFIG only once,
    at import time. In a pod, kopf names the API server by DNS (kubernetes.default.svc);
    the address the kubelet gives every pod (KUBERNETES_SERVICE_HOST/PORT) is what
    client-go, the kubernetes client and our own adapter use, and it needs no cluster DNS.
    """
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    if info is None:
        return kopf.login_with_kubeconfig(**kwargs)
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port:
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        info = dataclasses.replace(info, server=server)
    return info


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: only on.create/on.update handlers use one, and there are none here.

    kopf's default deep-copies every event's body (pods included) to build it.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup(backoff=5)
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = get_settings()
    settings.peering.standalone = config.standalone
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # Once each: kopf retries this whole handler when something below fails.
    if memo.get("executor") is None:
        # SQS, S3 and Slack calls are blocking SDK calls run in this pool.
        memo.executor = ThreadPoolExecutor(
            max_workers=config.kube_qps_threads, thread_name_prefix="barbeque-io"
        )
        asyncio.get_running_loop().set_default_executor(memo.executor)
    if config.metrics_port and memo.get("metrics_server") is None:
        server, _thread = start_http_server(
            config.metrics_port, addr=config.metrics_address, registry=metrics.REGISTRY
        )
        memo.metrics_server = server
    operator = build_operator(config)
    try:
        if config.s3_create_bucket:
            await operator.s3.ensure_bucket()
        await operator.start()
    except compat.UnsupportedServer as exc:
        await operator.kube.close()
        # Permanent: kopf stops the operator (exit code 1) instead of retrying for ever.
        raise kopf.PermanentError(str(exc)) from exc
    except BaseException:
        # The retry builds a new operator: this one's API server connections go now.
        await operator.kube.close()
        raise
    memo.operator = operator
    logger.info("Barbeque operator started (namespace %s)", config.namespace)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    operator: Operator | None = memo.get("operator")
    if operator is not None:
        await operator.stop()
        await operator.kube.close()
    server = memo.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()


@kopf.on.event(GROUP, VERSION, "jobdefinitions", id="definitions")
async def definition_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.operator.events.on_definition(event.get("type"), event["object"])


@kopf.on.event(GROUP, VERSION, "jobqueues", id="queues")
async def queue_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.operator.events.on_queue(event.get("type"), event["object"])
    if event.get("type") != "DELETED":
        # Now in the store: subscriptions that waited for this queue can subscribe.
        memo.operator.subscriber.on_queue(event["object"]["metadata"]["name"])


@kopf.on.event(GROUP, VERSION, "snssubscriptions", id="sns-subscriptions")
async def subscription_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    await memo.operator.subscriber.on_event(event.get("type"), event["object"])
