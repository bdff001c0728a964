"""What the Web API and the console do, as plain Python over small collaborators.

Reads come from the watch-backed ``Cache``; enqueue and retry send barbeque's envelope
to SQS (the operator records it); cancel patches the JobExecution; logs come from S3.
Every refusal is an ``ApiError`` carrying barbeque's error shape.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from barbeque.adapters.kube import KubeError, NotFound
from barbeque.adapters.s3 import S3Error
from barbeque.adapters.sqs import QueueMissing, QueueStats, SqsError
from barbeque.api import envelope, revision
from barbeque.api.models import FINISHED_PHASES, JobDefinition, JobExecution, JobQueue, Phase
from barbeque.api.subscriptions import SNSSubscription
from barbeque.services import statistics
from barbeque.services.statistics import HourlyStatistics
from barbeque_dashboard import status as words
from barbeque_dashboard.cache import Cache, created_at
from barbeque_dashboard.records import ExecutionRecord, ExecutionView

# SQS refuses bodies above 256 KiB (262,144 bytes).
SQS_MAX_BYTES = 256 * 1024
# SQS's own DelaySeconds limit; longer delays travel as the envelope's NotBefore.
SQS_MAX_DELAY = 900
# A year: anything later is surely a unit mistake (milliseconds for seconds).
MAX_DELAY = 365 * 24 * 3600
LOG_FILES = ("stdout.txt", "stderr.txt", "message.json", "execution.json")


Namespaced = TypeVar("Namespaced", JobDefinition, SNSSubscription)


class ApiError(Exception):
    """A refusal, in cookpad/barbeque's error shape."""

    def __init__(self, status_code: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "error_code": self.error_code,
            "message": self.message,
        }


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "record_not_found", message)


class SqsApi(Protocol):
    async def queue_url(self, name: str) -> str: ...
    async def send(self, url: str, body: str, delay_seconds: int = 0) -> str: ...
    async def stats(self, url: str) -> QueueStats: ...
    async def attributes(self, url: str, names: list[str]) -> dict[str, str]: ...
    async def url_for_arn(self, arn: str) -> str: ...


class S3Api(Protocol):
    bucket: str

    async def get_text(self, key: str) -> str | None: ...


class KubeApi(Protocol):
    async def cancel_execution(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def annotate_definition(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]: ...
    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_pod_log(self, namespace: str, pod: str, limit_bytes: int) -> str: ...


# The most of a live pod log read in one answer (the API server's limitBytes).
POD_LOG_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True)
class LogRead:
    """An execution's log from a byte offset: where it came from, and whether it is whole."""

    text: str
    offset: int
    next_offset: int
    source: str  # "pod" (live), "s3" (kept), "none" (no pod yet, nothing kept)
    finished: bool


def check_delay(value: Any, maximum: int = MAX_DELAY) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid("delay_seconds must be an integer")
    try:
        number = float(value)
    except ValueError:
        raise invalid("delay_seconds must be an integer") from None
    if not math.isfinite(number) or number != int(number):
        raise invalid("delay_seconds must be an integer")
    delay = int(number)
    if delay < 0 or delay > maximum:
        raise invalid(f"delay_seconds must be between 0 and {maximum}")
    return delay


def check_name(value: Any, field: str) -> str:
    if value is None or value == "":
        raise invalid(f"{field} is required")
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string")
    if len(value) > envelope.MAX_NAME:
        raise invalid(f"{field} is longer than {envelope.MAX_NAME} characters")
    return value


def check_message(message: Any) -> None:
    """Refuse a message the job could not receive exactly as sent (400), rather than let
    the operator record an Error for it later.

    Python's JSON reader takes ``NaN``, ``Infinity`` and numbers past a double (``1e400``
    reads as infinity), which are not JSON and which the API server refuses; it also takes
    integers of any size, which the API server silently turns into doubles past 64 bits
    (2**63 comes back as 9223372036854776000). Messages nested deeper than the envelope
    accepts would only become an Error record. The operator's envelope applies the same
    rules to messages sent straight to SQS.
    """
    levels = envelope.depth(message)
    if levels > envelope.MAX_DEPTH:
        raise invalid(
            f"message nests {levels} levels deep; at most {envelope.MAX_DEPTH} are accepted"
        )
    problem = envelope.unfaithful(message)
    if problem is not None:
        raise invalid(problem)


@dataclass(frozen=True)
class Sent:
    message_id: str
    not_before: datetime | None


@dataclass(frozen=True)
class ExecutionFilter:
    """Which executions a listing shows, as the console's and the Web API's query parameters
    name them: an execution is shown when it matches every criterion given (None: any)."""

    application: str | None = None
    job: str | None = None
    queue: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[ExecutionView]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


@dataclass(frozen=True)
class QueueView:
    queue: JobQueue
    url: str | None
    stats: QueueStats | None
    error: str | None
    dead_letter_url: str | None
    dead_letter_stats: QueueStats | None
    scheduled: list[ExecutionRecord]
    running: int
    oldest_pending: datetime | None


class Backend:
    def __init__(
        self,
        cache: Cache,
        sqs: SqsApi,
        s3: S3Api,
        kube: KubeApi | None,
        console_url: str | None = None,
        s3_for_bucket: Callable[[str], S3Api] | None = None,
    ) -> None:
        self.cache = cache
        self.sqs = sqs
        self.s3 = s3
        # Executions name the bucket their logs went to; it may differ from ours.
        self._s3_for_bucket = s3_for_bucket
        self._buckets: dict[str, S3Api] = {s3.bucket: s3}
        self.kube = kube
        self.console_url = console_url.rstrip("/") if console_url else None
        self._urls: dict[tuple[str, str | None, str | None, str], str] = {}

    # -- lookups ------------------------------------------------------------------------------

    def find(self, namespace: str, name: str) -> JobExecution | None:
        return self.cache.execution(namespace, name)

    def execution(self, message_id: str) -> JobExecution:
        execution = self.cache.execution_by_message_id(message_id)
        if execution is None:
            raise not_found(f"JobExecution with message_id {message_id!r} is not found")
        return execution

    def namespace_of(self, application: str) -> str:
        """Where an application lives: the namespace annotated with its name
        (barbeque.dev/application), else the namespace of that name."""
        return self.cache.namespace_for(application) or application

    def of_application(
        self, objects: list[Namespaced], application: str | None
    ) -> list[Namespaced]:
        """The objects (definitions, subscriptions) of ``application``; all without one."""
        if application is None:
            return objects
        return [
            o
            for o in objects
            if self.cache.application_for(o.metadata.namespace or "") == application
        ]

    def status_word(self, execution: ExecutionView) -> str:
        return words.barbeque_status(execution, self.cache.next_retry)

    def html_url(self, message_id: str, base_url: str) -> str:
        base = self.console_url or base_url.rstrip("/")
        return f"{base}/job_executions/{message_id}"

    def retry_chain(self, execution: ExecutionView) -> list[ExecutionView]:
        """The whole chain the execution belongs to, first attempt first."""
        first = execution
        seen = {first.metadata.name}
        while first.spec.retry_of:
            parent = self.find(first.metadata.namespace or "", first.spec.retry_of)
            if parent is None or parent.metadata.name in seen:
                break
            seen.add(parent.metadata.name)
            first = parent
        chain = [first]
        seen = {first.metadata.name}
        while len(chain) < words.MAX_CHAIN:
            following = self.cache.next_retry(chain[-1])
            if following is None or following.metadata.name in seen:
                break
            seen.add(following.metadata.name)
            chain.append(following)
        return chain

    def status_body(self, message_id: str, fields: set[str], base_url: str) -> dict[str, Any]:
        """``GET /v1/job_executions/:message_id`` as barbeque answers it."""
        execution = self.cache.execution_by_message_id(message_id)
        gone = None if execution else self.cache.tombstone(message_id)
        body: dict[str, Any] = {"message_id": message_id, "status": words.PENDING, "id": None}
        if execution is not None:
            body.update(status=self.status_word(execution), id=execution.metadata.name)
        elif gone is not None:
            # Deleted from the cluster by the history policy: its final word is kept.
            body.update(status=gone.status, id=gone.name)
        if "html_url" in fields:
            known = execution is not None or gone is not None
            body["html_url"] = self.html_url(message_id, base_url) if known else None
        if "message" in fields:
            body["message"] = execution.spec.message if execution else None
        return body

    async def archived(self, message_id: str) -> JobExecution | None:
        """A finished execution deleted from the cluster, rebuilt from its execution.json."""
        gone = self.cache.tombstone(message_id)
        if gone is None or not gone.bucket or not gone.prefix:
            return None
        prefix = gone.prefix if gone.prefix.endswith("/") else gone.prefix + "/"
        try:
            text = await self._bucket(gone.bucket).get_text(prefix + "execution.json")
        except S3Error:
            return None
        if not text:
            return None
        try:
            summary = json.loads(text)
            return JobExecution.model_validate(
                {
                    "metadata": {"name": gone.name, "namespace": gone.namespace},
                    "spec": summary["spec"],
                    "status": {
                        "phase": summary.get("phase"),
                        "reason": summary.get("reason"),
                        "message": summary.get("message"),
                        "exitCode": summary.get("exitCode"),
                        "startedAt": summary.get("startedAt"),
                        "finishedAt": summary.get("finishedAt"),
                        "logs": {
                            "bucket": gone.bucket,
                            "prefix": prefix,
                            "url": f"s3://{gone.bucket}/{prefix}",
                            "uploaded": True,
                        },
                    },
                }
            )
        except (ValueError, KeyError, TypeError):
            return None

    # -- SQS ----------------------------------------------------------------------------------

    async def queue_url(self, queue: JobQueue) -> str:
        name = queue.metadata.name
        if queue.spec.queue_url:
            return queue.spec.queue_url
        if queue.status.queue_url:
            return queue.status.queue_url
        sqs_name = queue.spec.sqs_queue_name(name)
        key = (name, queue.spec.queue_url, queue.status.queue_url, sqs_name)
        url = self._urls.get(key)
        if url is None:
            url = await self.sqs.queue_url(sqs_name)
            self._urls[key] = url
        return url

    async def _send(self, queue: JobQueue, body: str, delay: int) -> str:
        size = len(body.encode("utf-8"))
        if size > SQS_MAX_BYTES:
            raise ApiError(
                413,
                "payload_too_large",
                f"the message is {size} bytes as an SQS message; SQS accepts at most "
                f"{SQS_MAX_BYTES} bytes (256 KiB). Keep large data in S3 and send its key.",
            )
        try:
            url = await self.queue_url(queue)
            return await self.sqs.send(url, body, delay_seconds=delay)
        except QueueMissing as exc:
            raise ApiError(
                503,
                "queue_unavailable",
                f"the SQS queue of JobQueue {queue.metadata.name!r} does not exist: {exc}",
            ) from exc
        except SqsError as exc:
            raise ApiError(503, "queue_unavailable", f"SQS refused the message: {exc}") from exc

    @staticmethod
    def _timing(delay: int, now: datetime | None) -> tuple[int, datetime | None]:
        if delay <= SQS_MAX_DELAY:
            return delay, None
        moment = (now or datetime.now(UTC)) + timedelta(seconds=delay)
        return 0, moment.replace(microsecond=0)

    async def enqueue(
        self,
        application: Any,
        job: Any,
        queue: Any,
        message: Any,
        delay_seconds: Any = None,
        now: datetime | None = None,
    ) -> Sent:
        application = check_name(application, "application")
        job = check_name(job, "job")
        queue_name = check_name(queue, "queue")
        delay = check_delay(delay_seconds)
        check_message(message)
        job_queue = self.cache.queue(queue_name)
        if job_queue is None:
            raise not_found(f"JobQueue {queue_name!r} is not found")
        namespace = self.namespace_of(application)
        if self.cache.definition(application, job) is None:
            raise not_found(
                f"JobDefinition {job!r} of application {application!r} is not found "
                f"(no JobDefinition {job!r} in namespace {namespace!r})"
            )
        sqs_delay, not_before = self._timing(delay, now)
        body = envelope.encode_execution(application, job, message, not_before)
        return Sent(await self._send(job_queue, body, sqs_delay), not_before)

    async def retry(
        self, message_id: str, delay_seconds: Any = None, now: datetime | None = None
    ) -> Sent:
        """Retry in any state, as barbeque's API: a job may ask for its own retry while it
        runs (barbeque_client's Retryable). The retry follows the last attempt of the chain
        ``message_id`` starts; the operator then makes no automatic retry of that attempt."""
        delay = check_delay(delay_seconds)
        execution = self.execution(message_id)
        target = words.last_retry(execution, self.cache.next_retry) or execution
        queue_name = target.spec.queue
        job_queue = self.cache.queue(queue_name)
        if job_queue is None:
            raise not_found(f"JobQueue {queue_name!r} of the execution is not found")
        sqs_delay, not_before = self._timing(delay, now)
        body = envelope.encode_retry(target.spec.message_id, not_before)
        return Sent(await self._send(job_queue, body, sqs_delay), not_before)

    async def cancel(self, message_id: str) -> JobExecution:
        execution = self.execution(message_id)
        if words.is_finished(execution):
            raise ApiError(
                409, "already_finished", f"execution {message_id!r} has already finished"
            )
        if self.kube is None:
            raise ApiError(503, "unavailable", "no Kubernetes API to cancel with")
        try:
            patched = await self.kube.cancel_execution(
                execution.metadata.namespace or "", execution.metadata.name
            )
        except NotFound as exc:
            raise not_found(f"JobExecution {message_id!r} is gone") from exc
        except KubeError as exc:
            raise ApiError(503, "unavailable", f"Kubernetes refused the cancel: {exc}") from exc
        if patched.get("metadata"):
            self.cache.apply("jobexecutions", "MODIFIED", patched)
        return self.cache.execution_by_message_id(message_id) or execution

    async def lock_revision(self, application: str, revision_: str | None) -> list[str]:
        """Pin (or, with None, release) the image tag of every definition of ``application``.

        Returns the names of the definitions; each patch is idempotent, so a request that
        failed half-way is simply sent again.
        """
        definitions = [d for d in self.cache.definitions() if d.metadata.namespace == application]
        if not definitions:
            raise not_found(f"application {application!r} has no JobDefinition to lock")
        if self.kube is None:
            raise ApiError(503, "unavailable", "no Kubernetes API to lock the revision with")
        for definition in definitions:
            name = definition.metadata.name
            try:
                patched = await self.kube.annotate_definition(
                    application, name, {revision.REVISION_LOCK: revision_}
                )
            except NotFound:
                continue  # deleted meanwhile: nothing left to pin
            except KubeError as exc:
                raise ApiError(
                    503, "unavailable", f"Kubernetes refused to annotate {name!r}: {exc}"
                ) from exc
            self.cache.apply("jobdefinitions", "MODIFIED", patched)
        return [d.metadata.name for d in definitions]

    async def kept_statistics(self, definition: JobDefinition) -> tuple[HourlyStatistics, str]:
        """The hourly statistics of the definition's collected executions, and why they
        are missing ("" when read, or when there are none yet)."""
        if self.kube is None:
            return HourlyStatistics(), "no Kubernetes API to read kept statistics from"
        namespace, name = definition.metadata.namespace or "", definition.metadata.name
        try:
            found = await self.kube.get_configmap(namespace, statistics.configmap_name(name))
        except KubeError as exc:
            return HourlyStatistics(), f"kept statistics cannot be read: {exc}"[:300]
        return HourlyStatistics.from_configmap(found), ""

    # -- listing ------------------------------------------------------------------------------

    def filter_executions(
        self, where: ExecutionFilter, *, page: int = 1, per_page: int = 15
    ) -> Page:
        if where.application and where.job:
            source = self.cache.executions_of(where.application, where.job)
        else:
            source = self.cache.executions()
        status = where.status
        if status and status.lower() not in (*words.STATUSES, *(p.lower() for p in Phase)):
            raise invalid(f"unknown status {status!r}")
        selected: list[ExecutionView] = []
        for execution in source:
            if where.application and execution.spec.application != where.application:
                continue
            if where.job and execution.spec.job != where.job:
                continue
            if where.queue and execution.spec.queue != where.queue:
                continue
            if status and not words.matches(execution, status, self.status_word(execution)):
                continue
            selected.append(execution)
        page = max(1, page)
        start = (page - 1) * per_page
        return Page(selected[start : start + per_page], page, per_page, len(selected))

    def failures(self) -> list[ExecutionRecord]:
        """Final failures: failed or error and not retried (the end of their chain)."""
        following = self.cache.next_retry
        return [e for e in self.cache.executions() if words.is_retryable(e, following)]

    def summary(self, execution: ExecutionView, base_url: str) -> dict[str, Any]:
        status = execution.status
        return {
            "message_id": execution.spec.message_id,
            "id": execution.metadata.name,
            "status": self.status_word(execution),
            "phase": status.phase or "Pending",
            "application": execution.spec.application,
            "job": execution.spec.job,
            "queue": execution.spec.queue,
            "attempt": execution.spec.attempt,
            "retry_of": execution.spec.retry_of,
            "retried_by": status.retried_by,
            "reason": status.reason,
            "message": status.message,
            "exit_code": status.exit_code,
            "job_name": status.job_name,
            "created_at": _iso(execution.metadata.creation_timestamp),
            "started_at": _iso(status.started_at),
            "finished_at": _iso(status.finished_at),
            "not_before": _iso(execution.spec.not_before),
            "html_url": self.html_url(execution.spec.message_id, base_url),
        }

    def definition_body(self, definition: JobDefinition) -> dict[str, Any]:
        spec = definition.spec
        return {
            "application": self.cache.application_for(definition.metadata.namespace or ""),
            "job": definition.metadata.name,
            "queue": spec.queue,
            "image": spec.image,
            "revision_lock": revision.locked_revision(definition),
            "effective_image": revision.effective_image(definition),
            "command": spec.command,
            "args": spec.args,
            "description": spec.description,
            "retry": spec.retry.model_dump(mode="json") if spec.retry else None,
            "slack": spec.slack.model_dump(mode="json") if spec.slack else None,
            "executions": len(
                self.cache.executions_of(
                    self.cache.application_for(definition.metadata.namespace or ""),
                    definition.metadata.name,
                )
            ),
        }

    def subscription_body(self, subscription: SNSSubscription) -> dict[str, Any]:
        spec, status = subscription.spec, subscription.status
        return {
            "application": self.cache.application_for(subscription.metadata.namespace or ""),
            "name": subscription.metadata.name,
            "topic_arn": spec.topic_arn,
            "queue": spec.queue,
            "job": spec.job,
            "status": status.phase,
            "message": status.message,
            "subscription_arn": status.subscription_arn,
        }

    # -- S3 -----------------------------------------------------------------------------------

    async def logs(self, execution: JobExecution) -> dict[str, str | None]:
        """message.json, stdout.txt (stdout and stderr merged by Kubernetes), execution.json."""
        location = execution.status.logs
        if location is None:
            return {}
        prefix = location.prefix if location.prefix.endswith("/") else location.prefix + "/"
        found: dict[str, str | None] = {}
        s3 = self._bucket(location.bucket)
        for name in LOG_FILES:
            try:
                found[name] = await s3.get_text(prefix + name)
            except S3Error as exc:
                found[name] = f"(cannot read s3://{location.bucket}/{prefix}{name}: {exc})"
        return found

    async def log_from(self, execution: JobExecution, offset: int = 0) -> LogRead:
        """The log from byte ``offset``: S3's copy once uploaded, the pod's until then.

        Offsets count bytes of the UTF-8 text, so a follower asks for what it has not seen.
        ``finished`` means the execution is final and this is the whole log.
        """
        finished = execution.status.phase in FINISHED_PHASES
        location = execution.status.logs
        text: str | None = None
        source = "none"
        if location is not None and location.uploaded:
            prefix = location.prefix if location.prefix.endswith("/") else location.prefix + "/"
            try:
                text = await self._bucket(location.bucket).get_text(prefix + "stdout.txt")
                source = "s3"
            except S3Error as exc:
                raise ApiError(503, "service_unavailable", f"S3: {exc}") from exc
        elif execution.status.pod_name and self.kube is not None:
            try:
                text = await self.kube.read_pod_log(
                    execution.metadata.namespace or "", execution.status.pod_name, POD_LOG_LIMIT
                )
                source = "pod"
            except KubeError as exc:
                if not finished:
                    raise ApiError(503, "service_unavailable", f"pod log: {exc}") from exc
        data = (text or "").encode()
        start = min(max(0, offset), len(data))
        return LogRead(
            text=data[start:].decode("utf-8", "replace"),
            offset=start,
            next_offset=len(data),
            source=source,
            # A finished execution whose upload is still to come is not whole yet.
            finished=finished and (location is None or bool(location.uploaded)),
        )

    def _bucket(self, bucket: str) -> S3Api:
        if bucket not in self._buckets and self._s3_for_bucket is not None:
            self._buckets[bucket] = self._s3_for_bucket(bucket)
        return self._buckets.get(bucket, self.s3)

    # -- queues -------------------------------------------------------------------------------

    async def queue_views(self) -> list[QueueView]:
        """Every queue's view; their SQS calls run concurrently."""
        return list(await asyncio.gather(*(self.queue_view(q) for q in self.cache.queues())))

    async def queue_view(self, queue: JobQueue) -> QueueView:
        name = queue.metadata.name
        url = stats = error = dlq_url = dlq_stats = None
        try:
            url = await self.queue_url(queue)
            stats = await self.sqs.stats(url)
            attributes = await self.sqs.attributes(url, ["RedrivePolicy"])
            policy = attributes.get("RedrivePolicy")
            if policy:
                arn = json.loads(policy).get("deadLetterTargetArn")
                if arn:
                    dlq_url = await self.sqs.url_for_arn(arn)
                    dlq_stats = await self.sqs.stats(dlq_url)
        except (SqsError, ValueError) as exc:
            error = str(exc)[:500]
        executions = [e for e in self.cache.executions() if e.spec.queue == name]
        scheduled = [e for e in executions if e.status.phase == Phase.SCHEDULED.value]
        scheduled.sort(key=lambda e: e.spec.not_before or created_at(e))
        running = sum(1 for e in executions if words.own_status(e) == words.RUNNING)
        pending = [created_at(e) for e in executions if e.status.phase in (None, "Pending")]
        return QueueView(
            queue=queue,
            url=url,
            stats=stats,
            error=error,
            dead_letter_url=dlq_url,
            dead_letter_stats=dlq_stats,
            scheduled=scheduled,
            running=running,
            oldest_pending=min(pending) if pending else None,
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
