"""In-memory stand-ins for the API server, SQS, S3 and Slack, shared by the unit tier and
the console benchmark.

Each fake has only the calls the services make, answers them the way the real adapter
does (404 → ``NotFound``, 409 → ``AlreadyExists``, …) and records what it was asked, so
a test reads as "what was written". Knobs a test can turn are plain attributes.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from barbeque.adapters.kube import AlreadyExists, Invalid, KubeError, NotFound, TransientError
from barbeque.adapters.sqs import Message, QueueMissing, QueueStats, SqsError
from barbeque.services.store import Store
from barbeque_dashboard.adapters import Review


class FakeKube:
    """The API server as the intake, the reconciler and the Web API call it.

    ``namespaces``: the namespaces that exist (None: every one does). ``store``: where
    the current executions are read from to answer status patches (None: status writes
    are not expected, and fail the test).
    """

    def __init__(
        self,
        namespaces: set[str] | None = None,
        *,
        store: Store | None = None,
        versions: Iterator[int] | None = None,
    ) -> None:
        self.namespaces = namespaces
        self.store = store
        self.versions = versions or itertools.count(1)
        self.created: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.writes: list[str] = []
        self.attempts: list[tuple[str, str]] = []
        self.cancelled: list[tuple[str, str]] = []
        self.reviews: dict[str, Review] = {}
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.review_calls = 0
        # Status patches of queues and definitions, and Events created, in order.
        self.queue_statuses: list[dict[str, Any]] = []
        self.definition_statuses: list[tuple[str, str, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []
        self.dry_runs: list[dict[str, Any]] = []
        # Failures to answer: the next ``fail_next`` creates raise ``failure``; bodies
        # ``refuses`` accepts are refused (400/422): like the real API server, it decodes
        # and validates a body before it looks for the namespace; Jobs are refused while
        # ``reject_jobs``.
        self.fail_next = 0
        self.failure: KubeError = TransientError("503 Service Unavailable", 503)
        self.refuses: Callable[[dict[str, Any]], bool] = lambda body: False
        self.reject_jobs = False
        # Creates wait here while it is clear: the API server is slow.
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0
        self.most_waiting = 0

    async def create_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        if self.fail_next:
            self.fail_next -= 1
            raise self.failure
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        self.attempts.append(key)
        if self.refuses(body):
            raise Invalid("400 BadRequest: the body could not be decoded", 400)
        if self.namespaces is not None and key[0] not in self.namespaces:
            raise NotFound("namespace not found", 404)
        if key in self.created:
            raise AlreadyExists("exists", 409)
        self.writes.append(f"create execution {key[1]}")
        created = copy.deepcopy(body)
        created["metadata"].update(uid=f"uid-{key[1]}", resourceVersion=str(next(self.versions)))
        self.created[key] = created
        return created

    async def patch_execution_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        assert self.store is not None, "this test expects no status write"
        self.writes.append(f"status {name} {status.get('phase', '-')}")
        current = self.store.executions[(namespace, name)].model_dump(
            by_alias=True, mode="json", exclude_none=True
        )
        current.setdefault("status", {}).update({k: v for k, v in status.items() if v is not None})
        current["metadata"]["resourceVersion"] = str(next(self.versions))
        return current

    async def patch_queue_status(self, name: str, status: dict[str, Any]) -> None:
        self.queue_statuses.append(status)

    async def patch_definition_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        self.definition_statuses.append((namespace, name, status))

    async def create_event(self, body: dict[str, Any]) -> None:
        self.events.append(body)

    async def create_job(self, body: dict[str, Any], *, dry_run: bool = False) -> None:
        if dry_run:
            self.dry_runs.append(body)
            if self.reject_jobs:
                raise Invalid("422 Invalid: spec.template.spec.containers[1].image: Required", 422)
            return
        if self.reject_jobs:
            raise Invalid("422 Invalid: spec.template.spec.containers[0].image: Required", 422)
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise AlreadyExists("exists", 409)
        self.writes.append(f"create job {name}")
        self.jobs[name] = body

    async def delete_job(self, namespace: str, name: str) -> None:
        self.writes.append(f"delete job {name}")
        self.jobs.pop(name, None)

    async def delete_execution(self, namespace: str, name: str) -> None:
        self.writes.append(f"delete execution {name}")
        self.created.pop((namespace, name), None)

    async def read_pod_log(self, namespace: str, pod: str, limit_bytes: int) -> str:
        return f"log of {pod}\n"

    async def cancel_execution(self, namespace: str, name: str) -> dict[str, Any]:
        self.cancelled.append((namespace, name))
        return {}

    async def annotate_definition(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        raise AssertionError("definitions are annotated against the real API server only")

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.configmaps.get((namespace, name))

    async def review(
        self, token: str, *, verb: str, resource: str, namespace: str | None, group: str = ""
    ) -> Review:
        """A TokenReview and SubjectAccessReview: ``reviews[token]``, allowed in the
        namespace "allowed" (and cluster-wide) only."""
        self.review_calls += 1
        review = self.reviews.get(token)
        if review is None:
            return Review(authenticated=False, reason="unknown token")
        if review.authenticated and namespace not in (None, "allowed"):
            return Review(True, review.user, False, "RBAC: no rule")
        return review


class FakeSqs:
    """One SQS for the poller (``queued`` messages to receive, ``deleted`` receipts) and
    for the Web API (``sent`` messages; queue URLs made up from names, ``missing`` ones
    answer ``QueueMissing``)."""

    def __init__(
        self, queued: list[Message] | None = None, *, missing: set[str] | None = None
    ) -> None:
        self.queued = list(queued or [])
        self.deleted: list[str] = []
        self.asked: list[int] = []  # max_messages of each receive that returned messages
        self.deleting = 0
        self.most_deleting = 0
        self.sent: list[dict[str, Any]] = []
        self.missing = missing or set()
        self.failing_receives = 0  # the next ones raise SqsError

    async def receive(
        self, url: str, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Message]:
        if self.failing_receives:
            self.failing_receives -= 1
            raise SqsError("AccessDenied: the queue's policy changed")
        if not self.queued:
            await asyncio.sleep(0.01)  # a (short) long poll that finds nothing
            return []
        batch, self.queued = self.queued[:max_messages], self.queued[max_messages:]
        self.asked.append(max_messages)
        return batch

    async def delete_batch(self, url: str, receipts: list[str]) -> list[str]:
        self.deleting += 1
        self.most_deleting = max(self.most_deleting, self.deleting)
        await asyncio.sleep(0.001)
        self.deleting -= 1
        self.deleted.extend(receipts)
        return []

    async def queue_url(self, name: str) -> str:
        if name in self.missing:
            raise QueueMissing(f"no queue {name}")
        return f"https://sqs.test/000000000000/{name}"

    async def url_for_arn(self, arn: str) -> str:
        return await self.queue_url(arn.split(":")[-1])

    async def send(self, url: str, body: str, delay_seconds: int = 0) -> str:
        message_id = str(uuid.uuid4())
        self.sent.append(
            {"url": url, "body": json.loads(body), "delay": delay_seconds, "id": message_id}
        )
        return message_id

    async def stats(self, url: str) -> QueueStats:
        return QueueStats(visible=len(self.queued) + len(self.sent), in_flight=0, delayed=0)

    async def attributes(self, url: str, names: list[str]) -> dict[str, str]:
        return {}


class FakeS3:
    """The log bucket: ``objects`` by key; PUTs fail while ``down`` or for keys ending in
    one of ``refused``."""

    def __init__(self, bucket: str = "barbeque") -> None:
        self.bucket = bucket
        self.objects: dict[str, str] = {}
        self.down = False
        self.refused: set[str] = set()

    async def put_text(self, key: str, text: str, content_type: str = "text/plain") -> None:
        if self.down or any(key.endswith(suffix) for suffix in self.refused):
            raise OSError("S3 is down")
        self.objects[key] = text

    async def get_text(self, key: str) -> str | None:
        return self.objects.get(key)


class FakeSlack:
    """What the notifier posted: (channel, text, color)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, str]] = []

    async def post(self, channel: str, text: str, color: str) -> None:
        self.posts.append((channel, text, color))
