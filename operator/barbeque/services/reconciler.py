"""The life of a JobExecution: from recorded to a finished, logged, notified outcome.

``Reconciler.reconcile`` looks at one execution, its definition, Job and pod (all from
the watch-backed store) and takes the next step. Every step is idempotent, so a crash
or a repeated event only repeats a step that changes nothing:

- Scheduled until ``notBefore`` (a timer brings it back; restarts re-arm it);
- the Job is created under the execution's own name (409 means it exists). A fresh
  execution is not written: with no phase it reads as Pending and holds its queue's slot
  already, and its Job's name is its own. One leaving Scheduled is written Pending (with
  ``jobName``), since a Scheduled execution holds no slot;
- the pod runs -> Running, with ``jobName``;
- the Job finishes -> logs and message to S3, the retry created, Slack told, and one
  status write that makes the outcome final (with ``jobName`` too, for a pod that finished
  before Running was written).

Writes per execution on the happy path: create Job, Running, final status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from barbeque import metrics
from barbeque.adapters.kube import AlreadyExists, Invalid, NotFound
from barbeque.api.models import (
    JobDefinition,
    JobDefinitionSpec,
    JobExecution,
    JobExecutionStatus,
    LogLocation,
    Phase,
    RetryPolicy,
)
from barbeque.services import backoff, builders
from barbeque.services.conditions import condition, merge_conditions
from barbeque.services.notifications import Notifier, compose
from barbeque.services.recorder import Recorder
from barbeque.services.store import JobState, Key, PodState, Store

logger = logging.getLogger(__name__)

_RETRY_SUFFIX = re.compile(r"^(?P<root>.+)-retry-(?P<n>\d+)$")
# How long to wait for the pod's final state after its Job finished before giving up on
# the exit code (a Job killed by its deadline may leave none).
POD_STATE_GRACE = timedelta(seconds=15)
# A container waiting for one of these will not start until something outside changes
# (an image is pushed, a Secret created): after the definition's startDeadlineSeconds the
# execution ends as Error instead of waiting forever. Kubernetes itself retries them
# without end, which suits a Deployment, not a job someone is waiting for.
START_FAILURES = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


class KubeApi(Protocol):
    async def create_execution(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def patch_execution_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]: ...
    async def create_job(self, body: dict[str, Any]) -> None: ...
    async def delete_job(self, namespace: str, name: str) -> None: ...
    async def get_execution(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def read_pod_log(self, namespace: str, pod: str, limit_bytes: int) -> str: ...


class ObjectStore(Protocol):
    bucket: str

    async def put_text(self, key: str, text: str, content_type: str = "text/plain") -> None: ...


class Requeue(Exception):
    """Come back to this execution after ``delay`` seconds; not an error."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"requeue after {delay:.1f}s")
        self.delay = delay


def now() -> datetime:
    return datetime.now(UTC)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def log_prefix(execution: JobExecution) -> str:
    spec = execution.spec
    application = spec.application or "_unknown"
    job = spec.job or "_unknown"
    return f"{application}/{job}/{spec.message_id}/"


def child_retry_name(parent: JobExecution) -> str:
    """Automatic retries of ``x`` are ``x-retry-1``, ``x-retry-2``...: stable across crashes."""
    attempt = parent.spec.attempt + 1
    match = _RETRY_SUFFIX.match(parent.metadata.name)
    root = match.group("root") if match else parent.metadata.name
    return f"{root}-retry-{attempt}"


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    reason: str
    message: str
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime


@dataclass(eq=False, repr=False)
class Reconciler:
    _: KW_ONLY
    store: Store
    kube: KubeApi
    s3: ObjectStore
    notifier: Notifier
    recorder: Recorder | None = None
    console_url: str | None = None
    log_limit_bytes: int = 10 * 1024 * 1024

    async def reconcile(self, key: Key) -> None:
        execution = self.store.execution(key)
        if execution is None:
            return
        phase = execution.phase
        if phase is not None and phase.finished:
            await self._follow_up(execution)
            return

        namespace, name = key
        if execution.spec.retry_of and execution.phase is None:
            await self._link_parent(execution)
        if execution.spec.invalid_reason is not None:
            await self._finish_without_job(
                execution, "InvalidMessage", execution.spec.invalid_reason
            )
            return
        definition = self.store.definition(namespace, execution.spec.job)
        job = self.store.jobs.get((namespace, name))
        pod = self.store.pods.get((namespace, name))
        if definition is None and job is None and execution.status.job_name is None:
            # Only an execution that has not started needs its definition; one already
            # running finishes even if its definition is deleted meanwhile.
            bad = self.store.bad_definitions.get((namespace, execution.spec.job))
            if bad is not None:
                await self._finish_without_job(
                    execution,
                    "InvalidDefinition",
                    f"JobDefinition {execution.spec.job!r} is invalid: {bad}",
                )
            else:
                await self._finish_without_job(
                    execution,
                    "UnknownJob",
                    f"no JobDefinition named {execution.spec.job!r} in application "
                    f"(namespace) {namespace!r}",
                )
            return

        if execution.spec.cancel:
            await self._cancel(execution, definition, job, pod)
            return
        if job is None:
            if definition is None:
                # Started before, its Job gone (deleted by hand) and its definition too.
                await self._finish_without_job(
                    execution, "JobDeleted", "the Job and the JobDefinition were deleted"
                )
                return
            await self._start(execution, definition)
            return
        if job.finished is None:
            await self._observe_running(execution, definition, job, pod)
            return
        outcome = self._outcome(job, pod)
        if outcome is None:
            raise Requeue(1.0)
        await self._finish(execution, definition, outcome, pod)

    async def _link_parent(self, execution: JobExecution) -> None:
        """Point the retried execution at this retry (manual retries arrive as messages)."""
        namespace = execution.metadata.namespace or ""
        parent = await self._get(namespace, execution.spec.retry_of or "")
        if parent is None or parent.status.retried_by == execution.metadata.name:
            return
        current = parent.status.retried_by
        if current is not None:
            linked = await self._get(namespace, current)
            if linked is not None and not (linked.phase and linked.phase.finished):
                return  # an earlier retry is still running; it stays the one shown
        await self._patch(parent, JobExecutionStatus(retried_by=execution.metadata.name))

    async def _get(self, namespace: str, name: str) -> JobExecution | None:
        """An execution from memory, or from the API server when settled (not kept)."""
        found = self.store.execution((namespace, name))
        if found is not None:
            return found
        try:
            return JobExecution.model_validate(await self.kube.get_execution(namespace, name))
        except NotFound:
            return None

    # -- starting -----------------------------------------------------------------------------

    async def _start(self, execution: JobExecution, definition: JobDefinition) -> None:
        not_before = execution.spec.not_before
        current = now()
        if not_before is not None and not_before > current:
            if execution.phase is not Phase.SCHEDULED:
                await self._patch(
                    execution,
                    JobExecutionStatus(
                        phase=Phase.SCHEDULED,
                        reason="NotBefore",
                        message=f"starts at {not_before.isoformat()}",
                    ),
                )
            raise Requeue((not_before - current).total_seconds())

        job = builders.build_job(execution, definition)
        try:
            await self.kube.create_job(job)
        except AlreadyExists:
            pass
        except Invalid as exc:
            await self._finish_without_job(
                execution, "JobRejected", f"the API server rejected the Job: {exc}", definition
            )
            return
        else:
            self.store.put_job(job)
            started_from = not_before or (
                datetime.fromtimestamp(execution.spec.sent_timestamp / 1000, UTC)
                if execution.spec.sent_timestamp
                else None
            )
            if started_from is not None:
                latency = max(0.0, (current - started_from).total_seconds())
                metrics.START_LATENCY.labels(queue=execution.spec.queue).observe(latency)
        if execution.phase is not None and execution.status.job_name != execution.metadata.name:
            # Leaving Scheduled: from now on it holds a slot of its queue. (A fresh execution,
            # phase None, holds one already; the Running or final write names its Job.)
            await self._patch(execution, self._pending(execution.metadata.name))

    @staticmethod
    def _pending(job_name: str) -> JobExecutionStatus:
        return JobExecutionStatus(
            phase=Phase.PENDING,
            reason="JobCreated",
            message="waiting for the pod to start",
            job_name=job_name,
        )

    async def _observe_running(
        self,
        execution: JobExecution,
        definition: JobDefinition | None,
        job: JobState,
        pod: PodState | None,
    ) -> None:
        running = (pod is not None and pod.phase == "Running") or job.ready > 0
        if running and execution.phase is not Phase.RUNNING:
            started = (pod.started_at if pod else None) or job.start_time or now()
            status = JobExecutionStatus(
                phase=Phase.RUNNING,
                reason="PodRunning",
                message="",
                started_at=started,
                job_name=job.name,
            )
            if pod is not None:
                status.pod_name = pod.name
            await self._patch(execution, status)
            if job.start_time is not None:
                waited = max(0.0, (started - job.start_time).total_seconds())
                metrics.JOB_TO_RUNNING.labels(queue=execution.spec.queue).observe(waited)
        elif execution.phase is Phase.SCHEDULED:
            # The Job exists but the write leaving Scheduled was lost (a crash between the two).
            await self._patch(execution, self._pending(job.name))
        elif pod is not None and pod.waiting_reason:
            if execution.status.reason != pod.waiting_reason:
                # Image pull errors and the like: say why it is not starting.
                message = (pod.waiting_message or "")[:1000]
                await self._patch(
                    execution,
                    JobExecutionStatus(
                        reason=pod.waiting_reason,
                        message=message,
                        pod_name=pod.name,
                        job_name=job.name,
                    ),
                )
                if pod.waiting_reason == "Unschedulable":
                    await self._warn(execution, "Unschedulable", message, "Schedule")
            if pod.waiting_reason in START_FAILURES:
                await self._enforce_start_deadline(execution, definition, job, pod)

    async def _enforce_start_deadline(
        self,
        execution: JobExecution,
        definition: JobDefinition | None,
        job: JobState,
        pod: PodState,
    ) -> None:
        deadline = (
            definition.spec.start_deadline_seconds
            if definition is not None
            else JobDefinitionSpec.model_fields["start_deadline_seconds"].default
        )
        # The pod's startTime: when its node took it, so time spent waiting for a node
        # (capacity) is not counted.
        since = pod.started_at or job.start_time or now()
        waited = (now() - since).total_seconds()
        if waited < deadline:
            raise Requeue(deadline - waited)
        with contextlib.suppress(NotFound):
            await self.kube.delete_job(job.namespace, job.name)
        detail = (pod.waiting_message or "")[:1000]
        await self._finish_without_job(
            execution,
            pod.waiting_reason or "StartFailed",
            f"the container did not start within {deadline} s: {detail}",
            definition,
            invalid_message=False,
        )

    async def _cancel(
        self,
        execution: JobExecution,
        definition: JobDefinition | None,
        job: JobState | None,
        pod: PodState | None,
    ) -> None:
        if job is not None:
            with contextlib.suppress(NotFound):
                await self.kube.delete_job(job.namespace, job.name)
        outcome = Outcome(
            Phase.FAILED,
            "Cancelled",
            "cancelled by request",
            pod.exit_code if pod is not None else None,
            (pod.started_at if pod else None) or execution.status.started_at,
            now(),
        )
        status = JobExecutionStatus(
            phase=outcome.phase,
            reason=outcome.reason,
            message=outcome.message,
            finished_at=outcome.finished_at,
            logs=await self._ship(execution, pod, outcome),
        )
        if job is not None:
            status.job_name = job.name
        await self._notify_and_commit(execution, definition, Phase.FAILED, False, status)

    # -- finishing ----------------------------------------------------------------------------

    def _outcome(self, job: JobState, pod: PodState | None) -> Outcome | None:
        finished_at = job.finished_at or now()
        terminated = pod is not None and pod.terminated
        exit_code = pod.exit_code if pod is not None and terminated else None
        started_at = (pod.started_at if pod else None) or job.start_time
        if job.finished == "Complete":
            code = exit_code if exit_code is not None else 0
            return Outcome(Phase.SUCCEEDED, "Completed", "", code, started_at, finished_at)
        pod_settling = (
            pod is not None and not terminated and pod.phase not in ("Failed", "Succeeded")
        )
        if pod_settling and now() - finished_at < POD_STATE_GRACE:
            # The pod's last update may trail the Job's condition; give it a moment.
            return None
        reason = job.reason or "Failed"
        if reason == "BackoffLimitExceeded":
            reason = (pod.terminated_reason if pod else None) or "Failed"
        message = job.message or ""
        if exit_code is not None:
            message = f"the container exited with code {exit_code}" + (
                f"; {message}" if message else ""
            )
        return Outcome(Phase.FAILED, reason, message, exit_code, started_at, finished_at)

    async def _finish(
        self,
        execution: JobExecution,
        definition: JobDefinition | None,
        outcome: Outcome,
        pod: PodState | None,
    ) -> None:
        status = JobExecutionStatus(
            phase=outcome.phase,
            reason=outcome.reason,
            message=outcome.message,
            exit_code=outcome.exit_code,
            finished_at=outcome.finished_at,
            logs=await self._ship(execution, pod, outcome),
            # Its Job has its name; Running (which says so too) may have been skipped.
            job_name=execution.metadata.name,
        )
        if pod is not None:
            status.pod_name = pod.name
        if outcome.started_at is not None:
            status.started_at = outcome.started_at
            seconds = (outcome.finished_at - outcome.started_at).total_seconds()
            status.duration = format_duration(seconds)
            metrics.EXECUTION_DURATION.labels(
                *self._labels(execution, definition), outcome.phase.value
            ).observe(max(0.0, seconds))

        policy = definition.spec.retry if definition is not None else None
        will_retry = (
            policy is not None
            and outcome.phase is Phase.FAILED
            and execution.spec.attempt < policy.limit
        )
        if will_retry and policy is not None and self._retried_by(execution) is None:
            status.retried_by = await self._create_retry(execution, definition, policy)
        await self._notify_and_commit(execution, definition, outcome.phase, will_retry, status)

    async def _finish_without_job(
        self,
        execution: JobExecution,
        reason: str,
        message: str,
        definition: JobDefinition | None = None,
        *,
        invalid_message: bool = True,
    ) -> None:
        """Error: the execution could not run at all (bad message, unknown job, rejected Job,
        a container that never started)."""
        definition = definition or self.store.definition(
            execution.metadata.namespace or "", execution.spec.job
        )
        outcome = Outcome(Phase.ERROR, reason, message, None, None, now())
        status = JobExecutionStatus(
            phase=Phase.ERROR,
            reason=reason,
            message=message[:2000],
            finished_at=outcome.finished_at,
            logs=await self._ship(execution, None, outcome),
        )
        if invalid_message:
            metrics.MESSAGES_INVALID.labels(queue=execution.spec.queue, reason=reason).inc()
        await self._notify_and_commit(execution, definition, Phase.ERROR, False, status)

    async def _notify_and_commit(
        self,
        execution: JobExecution,
        definition: JobDefinition | None,
        phase: Phase,
        will_retry: bool,
        status: JobExecutionStatus,
    ) -> None:
        """Tell Slack (once), then the final write: the outcome and its conditions."""
        notification = compose(execution, definition, phase, will_retry, self.console_url)
        if notification is not None and not execution.status.notified:
            status.notified = await self.notifier.send(notification)
        logs = status.logs
        assert logs is not None, "a final status says where its logs are"
        generation = execution.metadata.generation
        status.conditions = merge_conditions(
            execution.status.conditions,
            [
                condition("Finished", True, status.reason or "", status.message or "", generation),
                condition(
                    "LogsUploaded",
                    logs.uploaded,
                    "Uploaded" if logs.uploaded else "UploadFailed",
                    logs.url,
                    generation,
                ),
            ],
        )
        await self._patch(execution, status)
        metrics.EXECUTIONS_FINISHED.labels(*self._labels(execution, definition), phase.value).inc()
        if phase is not Phase.SUCCEEDED:
            await self._warn(execution, status.reason or phase.value, status.message or "", "Run")
        if not logs.uploaded:
            raise Requeue(5.0)

    async def _warn(self, execution: JobExecution, reason: str, note: str, action: str) -> None:
        """A Warning Event on the execution: only trouble is recorded, never the happy path."""
        if self.recorder is None:
            return
        meta = execution.metadata
        phase = execution.phase.value if execution.phase else "Pending"
        await self.recorder.warning(
            "JobExecution",
            meta.name,
            meta.namespace,
            meta.uid,
            reason=reason,
            note=note or f"{reason} ({phase})",
            action=action,
        )

    @staticmethod
    def _labels(execution: JobExecution, definition: JobDefinition | None) -> tuple[str, str]:
        return metrics.definition_labels(
            execution.spec.application, execution.spec.job, known=definition is not None
        )

    def _retried_by(self, execution: JobExecution) -> str | None:
        """A retry of this attempt already recorded: linked, or a manual retry sent while
        the attempt ran (a job retrying itself) whose first step has not linked it yet.
        One attempt gets one retry, so such an attempt gets no automatic retry."""
        if execution.status.retried_by is not None:
            return execution.status.retried_by
        namespace, name = execution.metadata.namespace, execution.metadata.name
        for other in self.store.iter_executions():
            if other.spec.retry_of == name and other.metadata.namespace == namespace:
                return other.metadata.name
        return None

    async def _create_retry(
        self, execution: JobExecution, definition: JobDefinition | None, policy: RetryPolicy
    ) -> str:
        delay = backoff.retry_delay(policy, execution.spec.attempt)
        name = child_retry_name(execution)
        not_before = now() + timedelta(seconds=delay) if delay >= 1 else None
        sent = int(now().timestamp() * 1000)
        body = builders.build_retry(execution, name, name, sent, not_before)
        try:
            created = await self.kube.create_execution(body)
        except AlreadyExists:
            return name
        self.store.put_execution(created)
        metrics.EXECUTIONS_RETRIED.labels(*self._labels(execution, definition)).inc()
        logger.info("Retry %s of %s scheduled in %.1fs", name, execution.metadata.name, delay)
        return name

    # -- logs ---------------------------------------------------------------------------------

    async def _ship(
        self, execution: JobExecution, pod: PodState | None, outcome: Outcome
    ) -> LogLocation:
        """Upload message, logs and a summary; on failure say so, the caller retries later."""
        prefix = log_prefix(execution)
        location = LogLocation(
            bucket=self.s3.bucket,
            prefix=prefix,
            url=f"s3://{self.s3.bucket}/{prefix}",
            uploaded=False,
        )
        logs = await self._read_logs(execution, pod)
        summary = {
            "name": execution.metadata.name,
            "namespace": execution.metadata.namespace,
            "spec": execution.spec.model_dump(by_alias=True, mode="json", exclude_none=True),
            "phase": outcome.phase.value,
            "reason": outcome.reason,
            "message": outcome.message,
            "exitCode": outcome.exit_code,
            "startedAt": outcome.started_at.isoformat() if outcome.started_at else None,
            "finishedAt": outcome.finished_at.isoformat(),
        }
        uploads = [
            self.s3.put_text(
                prefix + "message.json",
                json.dumps(execution.spec.message, ensure_ascii=False),
                "application/json",
            ),
            self.s3.put_text(
                prefix + "execution.json",
                json.dumps(summary, ensure_ascii=False),
                "application/json",
            ),
        ]
        if logs is not None:
            uploads.append(self.s3.put_text(prefix + "stdout.txt", logs))
        # In parallel; all of them or the upload failed (each PUT is idempotent).
        results = await asyncio.gather(*uploads, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            metrics.S3_FAILURES.inc()
            logger.warning(
                "Could not upload logs of %s to S3: %s", execution.metadata.name, failures[0]
            )
            return location
        return location.model_copy(update={"uploaded": True})

    async def _read_logs(self, execution: JobExecution, pod: PodState | None) -> str | None:
        if pod is None:
            return None
        try:
            return await self.kube.read_pod_log(pod.namespace, pod.name, self.log_limit_bytes)
        except Exception as exc:
            logger.warning("Could not read logs of pod %s: %s", pod.name, exc)
            return f"(the operator could not read this pod's logs: {exc})\n"

    async def _follow_up(self, execution: JobExecution) -> None:
        """After the final write: finish an upload that failed (S3 was down)."""
        logs = execution.status.logs
        if logs is None or logs.uploaded:
            return
        namespace, name = execution.metadata.namespace or "", execution.metadata.name
        pod = self.store.pods.get((namespace, name))
        outcome = Outcome(
            Phase(execution.status.phase or Phase.ERROR),
            execution.status.reason or "",
            execution.status.message or "",
            execution.status.exit_code,
            execution.status.started_at,
            execution.status.finished_at or now(),
        )
        location = await self._ship(execution, pod, outcome)
        if not location.uploaded:
            raise Requeue(10.0)
        uploaded = condition(
            "LogsUploaded", True, "Uploaded", location.url, execution.metadata.generation
        )
        await self._patch(
            execution,
            JobExecutionStatus(
                logs=location,
                conditions=merge_conditions(execution.status.conditions, [uploaded]),
            ),
        )

    # -- writing ------------------------------------------------------------------------------

    async def _patch(self, execution: JobExecution, status: JobExecutionStatus) -> None:
        """Merge-patch the fields ``status`` was given (a None given clears its field)."""
        namespace, name = execution.metadata.namespace or "", execution.metadata.name
        body = status.model_dump(by_alias=True, mode="json", exclude_unset=True)
        try:
            updated = await self.kube.patch_execution_status(namespace, name, body)
        except NotFound:
            # Deleted meanwhile (by hand, or with the execution it retries): nothing to do.
            self.store.delete_execution(namespace, name)
            raise
        self.store.put_execution(updated)
