"""Builders and fakes for the Web API and console tests.

Objects are plain dicts shaped like what the API server returns, so the same builders feed
the in-memory cache of unit tests and ``kubectl apply`` in integration tests.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from barbeque.adapters.sqs import QueueStats
from barbeque.api.models import API_VERSION, LABEL_MESSAGE_ID
from barbeque.services import naming
from barbeque_dashboard.adapters import Review

TOKEN = "test-token-0123456789"
_rv = itertools.count(1)


def queue_body(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "JobQueue",
        "metadata": {"name": name, "resourceVersion": str(next(_rv))},
        "spec": spec,
    }


def definition_body(
    application: str, job: str, queue: str = "default", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "JobDefinition",
        "metadata": {"name": job, "namespace": application, "resourceVersion": str(next(_rv))},
        "spec": {"queue": queue, "image": "busybox:1.36", "command": ["echo", "hi"], **spec},
    }


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


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(**kwargs)


class FakeSqs:
    """Records what would be sent; queue URLs are made up from names."""

    def __init__(self, missing: set[str] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.missing = missing or set()

    async def queue_url(self, name: str) -> str:
        from barbeque.adapters.sqs import QueueMissing

        if name in self.missing:
            raise QueueMissing(f"no queue {name}")
        return f"https://sqs.test/000000000000/{name}"

    async def send(self, url: str, body: str, delay_seconds: int = 0) -> str:
        message_id = str(uuid.uuid4())
        self.sent.append(
            {"url": url, "body": json.loads(body), "delay": delay_seconds, "id": message_id}
        )
        return message_id

    async def stats(self, url: str) -> QueueStats:
        return QueueStats(visible=len(self.sent), in_flight=0, delayed=0)

    async def attributes(self, url: str, names: list[str]) -> dict[str, str]:
        return {}

    async def url_for_arn(self, arn: str) -> str:
        return await self.queue_url(arn.split(":")[-1])


class FakeS3:
    bucket = "barbeque"

    def __init__(self) -> None:
        self.objects: dict[str, str] = {}

    async def get_text(self, key: str) -> str | None:
        return self.objects.get(key)


class FakeKube:
    def __init__(self) -> None:
        self.cancelled: list[tuple[str, str]] = []
        self.reviews: dict[str, Review] = {}
        self.review_calls = 0

    async def cancel_execution(self, namespace: str, name: str) -> dict[str, Any]:
        self.cancelled.append((namespace, name))
        return {}

    async def review(
        self, token: str, *, verb: str, resource: str, namespace: str | None, group: str = ""
    ) -> Review:
        self.review_calls += 1
        review = self.reviews.get(token)
        if review is None:
            return Review(authenticated=False, reason="unknown token")
        if review.authenticated and namespace not in (None, "allowed"):
            return Review(True, review.user, False, "RBAC: no rule")
        return review
