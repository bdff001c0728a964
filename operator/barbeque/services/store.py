"""The operator's watch-backed view of the cluster, indexed the ways a job queue asks.

Watch events and the objects returned by the operator's own writes both land here, so
decisions read memory instead of listing the API server. The version rule is the
controller's (``controller.store``); what is indexed and counted (executions by message
id, slots by queue, definitions by ``jobName``) is the job queue's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from barbeque.api.models import (
    ANNOTATION_APPLICATION,
    LABEL_EXECUTION,
    JobDefinition,
    JobExecution,
    JobQueue,
    Phase,
    image_reference_problem,
)
from barbeque.api.subscriptions import SNSSubscription
from barbeque.controller.store import Key, key_of, newer, parse_time
from barbeque.services.naming import is_namespace_name

__all__ = ["JobState", "Key", "PodState", "Store", "occupies_slot", "parse_time", "settled"]


@dataclass(frozen=True)
class JobState:
    """What the reconciler needs to know of a batch/v1 Job."""

    namespace: str
    name: str
    execution: str
    resource_version: str | None
    active: int
    ready: int
    succeeded: int
    failed: int
    finished: str | None  # "Complete" or "Failed" once the Job controller has decided
    reason: str | None
    message: str | None
    start_time: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> JobState:
        meta = body.get("metadata", {})
        status = body.get("status") or {}
        finished = reason = message = None
        finished_at = parse_time(status.get("completionTime"))
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") in ("Complete", "Failed")
                and condition.get("status") == "True"
            ):
                finished = condition["type"]
                reason = condition.get("reason")
                message = condition.get("message")
                finished_at = finished_at or parse_time(condition.get("lastTransitionTime"))
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            execution=(meta.get("labels") or {}).get(LABEL_EXECUTION, meta.get("name", "")),
            resource_version=meta.get("resourceVersion"),
            active=status.get("active") or 0,
            ready=status.get("ready") or 0,
            succeeded=status.get("succeeded") or 0,
            failed=status.get("failed") or 0,
            finished=finished,
            reason=reason,
            message=message,
            start_time=parse_time(status.get("startTime")),
            finished_at=finished_at,
        )


@dataclass(frozen=True)
class PodState:
    """What the reconciler needs to know of a job's pod."""

    namespace: str
    name: str
    execution: str
    resource_version: str | None
    phase: str
    exit_code: int | None
    terminated_reason: str | None
    waiting_reason: str | None
    waiting_message: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def terminated(self) -> bool:
        return self.exit_code is not None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> PodState:
        meta = body.get("metadata", {})
        status = body.get("status") or {}
        exit_code = terminated_reason = waiting_reason = waiting_message = None
        started_at = finished_at = None
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            if "terminated" in state and state["terminated"] is not None:
                terminated = state["terminated"]
                exit_code = terminated.get("exitCode")
                terminated_reason = terminated.get("reason")
                started_at = parse_time(terminated.get("startedAt"))
                finished_at = parse_time(terminated.get("finishedAt"))
            elif "running" in state and state["running"] is not None:
                started_at = parse_time(state["running"].get("startedAt"))
            elif "waiting" in state and state["waiting"] is not None:
                waiting_reason = state["waiting"].get("reason")
                waiting_message = state["waiting"].get("message")
        for condition in status.get("conditions") or []:
            # No node fits (yet): the scheduler's message says why; an autoscaler may add one.
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                waiting_reason = waiting_reason or condition.get("reason") or "Unschedulable"
                waiting_message = waiting_message or condition.get("message")
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            execution=(meta.get("labels") or {}).get(LABEL_EXECUTION, ""),
            resource_version=meta.get("resourceVersion"),
            phase=status.get("phase") or "Pending",
            exit_code=exit_code,
            terminated_reason=terminated_reason,
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            started_at=started_at or parse_time(status.get("startTime")),
            finished_at=finished_at,
        )


def settled(execution: JobExecution) -> bool:
    """Finished, and its record is in S3 (or it never had one to upload)."""
    phase = execution.phase
    logs = execution.status.logs
    return phase is not None and phase.finished and (logs is None or logs.uploaded)


def occupies_slot(execution: JobExecution) -> bool:
    """Whether an execution counts against its queue's maxConcurrentExecutions."""
    phase = execution.status.phase
    return phase not in (Phase.SCHEDULED.value, *[p.value for p in Phase if p.finished]) and (
        execution.spec.invalid_reason is None
    )


class Store:
    """In-memory objects, indexed the ways the operator looks them up."""

    def __init__(
        self,
        *,
        keep_finished: bool = True,
        on_slot_freed: Callable[[str], None] | None = None,
    ) -> None:
        # The operator forgets an execution once it is settled (finished, record in S3):
        # with thousands of them retained by history, memory would grow with history.
        # The console's cache keeps them all.
        self.keep_finished = keep_finished
        self.executions: dict[Key, JobExecution] = {}
        # Settled executions forgotten, with their resourceVersion, until the watch says
        # they left (DELETED): a late event of an older version must not bring them back.
        self.settled: dict[Key, str | None] = {}
        self._settled_at: dict[Key, float] = {}
        self.definitions: dict[Key, JobDefinition] = {}
        self.queues: dict[str, JobQueue] = {}
        self.subscriptions: dict[Key, SNSSubscription] = {}
        # namespace -> the application name its annotation gives it
        self.named_namespaces: dict[str, str] = {}
        self.jobs: dict[Key, JobState] = {}
        self.pods: dict[Key, PodState] = {}  # keyed by (namespace, execution name)
        self.by_message_id: dict[str, Key] = {}
        self.active_by_queue: dict[str, int] = defaultdict(int)
        self.bad_definitions: dict[Key, str] = {}
        # (namespace, spec.jobName) -> (namespace, metadata.name)
        self.definition_aliases: dict[Key, Key] = {}
        # Called with the queue name whenever a slot frees up, to wake that queue's poller.
        self.on_slot_freed = on_slot_freed

    # -- executions ---------------------------------------------------------------------------

    def put_execution(self, body: dict[str, Any]) -> JobExecution | None:
        """Store an execution; returns it, or None when the body was older than what is kept.

        Without ``keep_finished``, a settled execution is returned but not kept.
        """
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        version = meta.get("resourceVersion")
        old = self.executions.get(key)
        # Compared before validating. The echo of the operator's own write (same version)
        # is still returned: a writer that did not enqueue the object (a retry created by
        # the reconciler) counts on its watch event to be reconciled.
        known = old.metadata.resource_version if old is not None else self.settled.get(key)
        if (old is not None or key in self.settled) and not newer(known, version):
            return None
        execution = JobExecution.model_validate(body)
        self._account(old, -1)
        if not self.keep_finished and settled(execution):
            if self.executions.pop(key, None) is not None or key in self.settled:
                self._forget_message_id(execution, key)
                self.settled[key] = version
                self._settled_at[key] = time.monotonic()
            return execution
        self.settled.pop(key, None)
        self._settled_at.pop(key, None)
        self.executions[key] = execution
        self.by_message_id[execution.spec.message_id] = key
        self._account(execution, +1)
        return execution

    def _forget_message_id(self, execution: JobExecution, key: Key) -> None:
        if self.by_message_id.get(execution.spec.message_id) == key:
            del self.by_message_id[execution.spec.message_id]

    def prune_settled(self, older_than_seconds: float) -> None:
        """Forget tombstones the watch will not clear (objects it never showed)."""
        horizon = time.monotonic() - older_than_seconds
        for key in [k for k, at in self._settled_at.items() if at < horizon]:
            del self.settled[key]
            del self._settled_at[key]

    def delete_execution(self, namespace: str, name: str) -> None:
        self.settled.pop((namespace, name), None)
        self._settled_at.pop((namespace, name), None)
        old = self.executions.pop((namespace, name), None)
        if old is not None:
            self._account(old, -1)
            self._forget_message_id(old, (namespace, name))

    def _account(self, execution: JobExecution | None, delta: int) -> None:
        if execution is None or not occupies_slot(execution):
            return
        queue = execution.spec.queue
        self.active_by_queue[queue] += delta
        if delta < 0 and self.on_slot_freed is not None:
            self.on_slot_freed(queue)

    def execution(self, key: Key) -> JobExecution | None:
        return self.executions.get(key)

    def execution_by_message_id(self, message_id: str) -> JobExecution | None:
        key = self.by_message_id.get(message_id)
        return self.executions.get(key) if key else None

    def iter_executions(self) -> Iterator[JobExecution]:
        return iter(list(self.executions.values()))

    # -- definitions and queues ---------------------------------------------------------------

    def put_definition(self, body: dict[str, Any]) -> None:
        key = key_of(body)
        self._drop_alias(key)
        try:
            definition = JobDefinition.model_validate(body)
        except ValidationError as exc:
            # The CRD schema should prevent this; if it happens, executions say why.
            self._bad(key, str(exc).replace("\n", " ")[:500])
            return
        # The schema lets any string without spaces through; a runtime would not pull it.
        problem = image_reference_problem(definition.spec.image)
        if problem is not None:
            self._bad(key, problem)
            return
        self.definitions[key] = definition
        self.bad_definitions.pop(key, None)
        if definition.spec.job_name:
            self.definition_aliases[(key[0], definition.spec.job_name)] = key

    def _bad(self, key: Key, problem: str) -> None:
        self.definitions.pop(key, None)
        self.bad_definitions[key] = problem

    def _drop_alias(self, key: Key) -> None:
        old = self.definitions.get(key)
        if old is not None and old.spec.job_name:
            self.definition_aliases.pop((key[0], old.spec.job_name), None)

    def delete_definition(self, namespace: str, name: str) -> None:
        self._drop_alias((namespace, name))
        self.definitions.pop((namespace, name), None)
        self.bad_definitions.pop((namespace, name), None)

    def definition(self, namespace: str, job: str) -> JobDefinition | None:
        """The definition a message's job name means: by resource name, else by spec.jobName."""
        found = self.definitions.get((namespace, job))
        if found is not None:
            return found
        alias = self.definition_aliases.get((namespace, job))
        return self.definitions.get(alias) if alias is not None else None

    def put_queue(self, body: dict[str, Any]) -> JobQueue:
        queue = JobQueue.model_validate(body)
        self.queues[queue.metadata.name] = queue
        return queue

    def delete_queue(self, name: str) -> None:
        self.queues.pop(name, None)

    # -- applications -------------------------------------------------------------------------

    def put_namespace(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        application = (meta.get("annotations") or {}).get(ANNOTATION_APPLICATION)
        if application:
            self.named_namespaces[name] = application
        else:
            self.named_namespaces.pop(name, None)

    def delete_namespace(self, name: str) -> None:
        self.named_namespaces.pop(name, None)

    def claims(self, application: str) -> list[str]:
        """The namespaces whose annotation names ``application``."""
        return sorted(ns for ns, app in self.named_namespaces.items() if app == application)

    def namespace_for(self, application: str) -> str | None:
        """The namespace of an application: the one annotated with its name, else the
        namespace of that name. None when it has neither, or two namespaces claim it."""
        claims = self.claims(application)
        if len(claims) == 1:
            return claims[0]
        if not claims and is_namespace_name(application):
            return application
        return None

    def application_for(self, namespace: str) -> str:
        """The application name of a namespace: its annotation's, else its own."""
        return self.named_namespaces.get(namespace, namespace)

    # -- SNS subscriptions --------------------------------------------------------------------

    def put_subscription(self, body: dict[str, Any]) -> SNSSubscription:
        """Store a subscription; returns the newest copy (an older event keeps what is kept)."""
        key = key_of(body)
        subscription = SNSSubscription.model_validate(body)
        kept = self.subscriptions.get(key)
        if kept is not None and not newer(
            kept.metadata.resource_version, subscription.metadata.resource_version
        ):
            return kept
        self.subscriptions[key] = subscription
        return subscription

    def delete_subscription(self, namespace: str, name: str) -> None:
        self.subscriptions.pop((namespace, name), None)

    def subscribed(self, topic_arn: str, queue: str) -> list[SNSSubscription]:
        """The subscriptions a notification of ``topic_arn`` on ``queue`` runs, in a stable
        order; those being deleted no longer count."""
        found = [
            s
            for s in self.subscriptions.values()
            if s.spec.topic_arn == topic_arn
            and s.spec.queue == queue
            and s.metadata.deletion_timestamp is None
        ]
        return sorted(found, key=lambda s: (s.metadata.namespace or "", s.metadata.name))

    # -- jobs and pods ------------------------------------------------------------------------

    def put_job(self, body: dict[str, Any]) -> JobState | None:
        job = JobState.from_body(body)
        key = (job.namespace, job.name)
        old = self.jobs.get(key)
        if old is not None and not newer(old.resource_version, job.resource_version):
            return None
        self.jobs[key] = job
        return job

    def delete_job(self, namespace: str, name: str) -> None:
        self.jobs.pop((namespace, name), None)

    def put_pod(self, body: dict[str, Any]) -> PodState | None:
        pod = PodState.from_body(body)
        if not pod.execution:
            return None
        key = (pod.namespace, pod.execution)
        old = self.pods.get(key)
        if (
            old is not None
            and old.name == pod.name
            and not newer(old.resource_version, pod.resource_version)
        ):
            return None
        self.pods[key] = pod
        return pod

    def delete_pod(self, namespace: str, execution: str, name: str) -> None:
        old = self.pods.get((namespace, execution))
        if old is not None and old.name == name:
            del self.pods[(namespace, execution)]
