"""Builders for the Web API and console tests: sample objects and the app over a backend.

Objects are plain dicts shaped like what the API server returns, so the same builders feed
the in-memory cache of unit tests and ``kubectl apply`` in integration tests.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from barbeque.api.models import API_VERSION, LABEL_MESSAGE_ID
from barbeque.services import naming
from barbeque_dashboard.app import create_app
from barbeque_dashboard.auth import Authenticator
from barbeque_dashboard.cache import Cache
from barbeque_dashboard.services import Backend
from barbeque_dashboard.settings import DashboardSettings
from tests.support import samples
from tests.support.fakes import FakeKube, FakeS3, FakeSqs

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
_rv = itertools.count(1)


def queue_body(name: str = "default", **spec: Any) -> dict[str, Any]:
    body = samples.queue(name, **spec)
    body["metadata"]["resourceVersion"] = str(next(_rv))
    return body


def definition_body(
    application: str, job: str, queue: str = "default", **spec: Any
) -> dict[str, Any]:
    body = samples.definition(application, job, queue, **spec)
    body["metadata"]["resourceVersion"] = str(next(_rv))
    return body


def execution_body(
    application: str,
    job: str,
    message_id: str | None = None,
    *,
    queue: str = "default",
    phase: str | None = None,
    message: Any = None,
    created: datetime | None = None,
    started: datetime | None = None,
    finished: datetime | None = None,
    retried_by: str | None = None,
    retry_of: str | None = None,
    attempt: int = 0,
    logs_prefix: str | None = None,
    bucket: str = "barbeque",
    job_name: str | None = None,
    with_status: bool = True,
) -> dict[str, Any]:
    message_id = message_id or str(uuid.uuid4())
    name = naming.execution_name(message_id)
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "JobExecution",
        "metadata": {
            "name": name,
            "namespace": application,
            "labels": {LABEL_MESSAGE_ID: naming.label_value(message_id)},
            "resourceVersion": str(next(_rv)),
        },
        "spec": {
            "application": application,
            "job": job,
            "queue": queue,
            "messageId": message_id,
            "message": message if message is not None else {"n": 1},
            "attempt": attempt,
        },
    }
    if created is not None:
        body["metadata"]["creationTimestamp"] = _iso(created)
    if retry_of:
        body["spec"]["retryOf"] = retry_of
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if started:
        status["startedAt"] = _iso(started)
    if finished:
        status["finishedAt"] = _iso(finished)
    if retried_by:
        status["retriedBy"] = retried_by
    if job_name:
        status["jobName"] = job_name
    if logs_prefix:
        status["logs"] = {
            "bucket": bucket,
            "prefix": logs_prefix,
            "url": f"s3://{bucket}/{logs_prefix}",
            "uploaded": True,
        }
    if status and with_status:
        body["status"] = status
    return body


def finished_history(count: int, failed_every: int, prefix: str) -> list[dict[str, Any]]:
    """``count`` finished executions of shop/SendMail a minute apart, oldest first, named
    ``<prefix>00``, ``<prefix>01``…; every ``failed_every``-th from the first failed."""
    return [
        execution_body(
            "shop",
            "SendMail",
            f"{prefix}{i:02d}",
            phase="Failed" if i % failed_every == 0 else "Succeeded",
            created=ago(minutes=count - i),
            started=ago(minutes=count - i),
            finished=ago(minutes=count - i - 1),
        )
        for i in range(count)
    ]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(**kwargs)


def web_app(backend: Backend, *, reviewer: Any = None, **settings: Any) -> FastAPI:
    """The Web API and console over ``backend``: ``settings`` are DashboardSettings fields,
    whose static tokens (``api_tokens``) are the ones accepted besides ``reviewer``'s."""
    config = DashboardSettings(**settings)
    return create_app(
        backend=backend,
        authenticator=Authenticator(config.static_tokens(), reviewer=reviewer),
        settings=config,
    )


class WebWorld:
    """The Web API and console over an in-memory cache and fake SQS, S3 and Kubernetes.

    The cache holds queue ``default`` and definition ``shop/SendMail`` unless given others;
    ``api_tokens`` (``TOKEN``) and ``reviewer``'s are the accepted tokens; reads need one
    unless ``public_reads``.
    """

    def __init__(
        self,
        *,
        public_reads: bool = True,
        api_tokens: str = TOKEN,
        reviewer: Any = None,
        kube: FakeKube | None = None,
        queues: Iterable[dict[str, Any]] = (),
        definitions: Iterable[dict[str, Any]] = (),
        executions: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.cache = Cache()
        self.sqs = FakeSqs()
        self.s3 = FakeS3()
        self.kube = kube or FakeKube()
        self.cache.replace("jobqueues", list(queues) or [queue_body("default")])
        self.cache.replace(
            "jobdefinitions", list(definitions) or [definition_body("shop", "SendMail")]
        )
        self.cache.replace("jobexecutions", list(executions))
        backend = Backend(self.cache, self.sqs, self.s3, self.kube)
        self.app = web_app(
            backend, reviewer=reviewer, public_reads=public_reads, api_tokens=api_tokens
        )

    def add(self, body: dict[str, Any]) -> dict[str, Any]:
        self.cache.apply("jobexecutions", "ADDED", body)
        return body
