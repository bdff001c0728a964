"""Pure builders of the objects the operator creates: tested by dict equality."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from barbeque.api import revision
from barbeque.api.models import (
    API_VERSION,
    LABEL_APPLICATION,
    LABEL_EXECUTION,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    LABEL_MESSAGE_ID,
    LABEL_QUEUE,
    MANAGED_BY,
    JobDefinition,
    JobExecution,
    JobTemplate,
    TemplateMetadata,
)
from barbeque.services.naming import label_value

CONTAINER_NAME = "job"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"


def execution_labels(application: str, job: str, queue: str, message_id: str) -> dict[str, str]:
    return {
        LABEL_APPLICATION: label_value(application),
        LABEL_JOB: label_value(job),
        LABEL_QUEUE: label_value(queue),
        LABEL_MESSAGE_ID: label_value(message_id),
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def build_execution(
    *,
    name: str,
    namespace: str,
    application: str,
    job: str,
    queue: str,
    message_id: str,
    message: Any = None,
    sent_timestamp: int | None = None,
    not_before: datetime | None = None,
    attempt: int = 0,
    retry_of: str | None = None,
    original_message_id: str | None = None,
    invalid_reason: str | None = None,
    raw_message: str | None = None,
    owner: JobExecution | None = None,
) -> dict[str, Any]:
    """A JobExecution manifest, ready to create."""
    spec: dict[str, Any] = {
        "application": application,
        "job": job,
        "queue": queue,
        "messageId": message_id,
        "message": message,
        "attempt": attempt,
    }
    optional: dict[str, Any] = {
        "originalMessageId": original_message_id,
        "sentTimestamp": sent_timestamp,
        "notBefore": not_before.isoformat() if not_before else None,
        "retryOf": retry_of,
        "invalidReason": invalid_reason,
        "rawMessage": raw_message,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": execution_labels(application, job, queue, message_id),
    }
    if owner is not None and owner.metadata.uid:
        # A retry lives and dies with the execution it retries, like barbeque's retry rows.
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": "JobExecution",
                "name": owner.metadata.name,
                "uid": owner.metadata.uid,
                "blockOwnerDeletion": False,
            }
        ]
    return {"apiVersion": API_VERSION, "kind": "JobExecution", "metadata": metadata, "spec": spec}


def build_retry(
    parent: JobExecution,
    name: str,
    message_id: str,
    sent_timestamp: int | None,
    not_before: datetime | None = None,
) -> dict[str, Any]:
    """A retry of ``parent``: the same message, the next attempt, owned by the parent.

    ``sent_timestamp`` is the retry's own (its JobRetry message's SentTimestamp, or when
    the operator decided an automatic retry): BARBEQUE_SENT_TIMESTAMP of a retry is the
    retry message's in cookpad/barbeque too.
    """
    return build_execution(
        name=name,
        namespace=parent.metadata.namespace or "",
        application=parent.spec.application,
        job=parent.spec.job,
        queue=parent.spec.queue,
        message_id=message_id,
        message=parent.spec.message,
        sent_timestamp=sent_timestamp,
        not_before=not_before,
        attempt=parent.spec.attempt + 1,
        retry_of=parent.metadata.name,
        original_message_id=parent.spec.original_message_id or parent.spec.message_id,
        owner=parent,
    )


RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _container_security(definition: JobDefinition) -> dict[str, Any]:
    context: dict[str, Any] = json.loads(json.dumps(RESTRICTED_SECURITY_CONTEXT))
    if definition.spec.security_context is not None:
        overrides = definition.spec.security_context.model_dump(by_alias=True, exclude_none=True)
        context.update(overrides)
    return context


def job_environment(execution: JobExecution, definition: JobDefinition) -> list[dict[str, Any]]:
    """The BARBEQUE_* variables cookpad/barbeque passed, then the definition's own env."""
    spec = execution.spec
    barbeque = {
        "BARBEQUE_JOB": spec.job,
        "BARBEQUE_MESSAGE": json.dumps(spec.message, ensure_ascii=False),
        # On a retry the job still sees the first message's id, as in barbeque.
        "BARBEQUE_MESSAGE_ID": spec.original_message_id or spec.message_id,
        "BARBEQUE_QUEUE_NAME": spec.queue,
        "BARBEQUE_RETRY_COUNT": str(spec.attempt),
        "BARBEQUE_SENT_TIMESTAMP": str(spec.sent_timestamp or ""),
        "BARBEQUE_APPLICATION": spec.application,
        "BARBEQUE_EXECUTION": execution.metadata.name,
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in barbeque.items()]
    env.extend(e.model_dump(by_alias=True, exclude_none=True) for e in definition.spec.env)
    return env


def build_job(execution: JobExecution, definition: JobDefinition) -> dict[str, Any]:
    """The batch/v1 Job that runs one execution.

    ``backoffLimit: 0`` because retries are the operator's, with barbeque's backoff and a
    new JobExecution each; the owner reference lets Kubernetes delete the Job (and pod)
    together with its execution.
    """
    spec = definition.spec
    meta = execution.metadata
    labels = execution_labels(
        execution.spec.application,
        execution.spec.job,
        execution.spec.queue,
        execution.spec.message_id,
    )
    labels[LABEL_EXECUTION] = meta.name
    template = spec.job_template or JobTemplate()
    pod = template.spec.template
    # The template's pod spec as written; what the operator owns is laid over it below.
    pod_spec: dict[str, Any] = (
        pod.spec.model_dump(by_alias=True, exclude_none=True) if pod.spec is not None else {}
    )
    written = pod_spec.pop("containers", [])
    container: dict[str, Any] = {
        # The template's `job` container gives what the short form has no field for
        # (volumeMounts, ports, probes, ...); admission refused the fields both could set.
        **next((c for c in written if c["name"] == CONTAINER_NAME), {}),
        "name": CONTAINER_NAME,
        "image": revision.effective_image(definition),
        "env": job_environment(execution, definition),
        "securityContext": _container_security(definition),
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.env_from:
        container["envFrom"] = [
            e.model_dump(by_alias=True, exclude_none=True) for e in spec.env_from
        ]
    if spec.resources is not None:
        container["resources"] = spec.resources.model_dump(by_alias=True, exclude_defaults=True)
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy

    if not pod_spec.get("initContainers"):
        pod_spec.pop("initContainers", None)
    pod_spec["restartPolicy"] = "Never"
    pod_spec["containers"] = [container, *(c for c in written if c["name"] != CONTAINER_NAME)]
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    if spec.node_selector:
        pod_spec["nodeSelector"] = {**pod_spec.get("nodeSelector", {}), **spec.node_selector}
    if spec.tolerations:
        pod_spec["tolerations"] = [
            *pod_spec.get("tolerations", []),
            *(t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations),
        ]

    pod_written = pod.metadata or TemplateMetadata()
    pod_labels = {**pod_written.labels, **spec.pod_labels, **labels}
    # A running execution is not something to move: cluster-autoscaler's scale-down would
    # evict it (a Job's pod counts as replicated), so it must leave the node alone unless
    # the definition's podAnnotations (or its template's) say otherwise.
    pod_metadata: dict[str, Any] = {
        "labels": pod_labels,
        "annotations": {
            SAFE_TO_EVICT: "false",
            **pod_written.annotations,
            **spec.pod_annotations,
        },
    }
    job_written = template.metadata or TemplateMetadata()

    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "template": {"metadata": pod_metadata, "spec": pod_spec},
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            # Kueue's queue-name label and the like go on the Job; ours win.
            "labels": {**job_written.labels, **labels},
            **({"annotations": dict(job_written.annotations)} if job_written.annotations else {}),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "JobExecution",
                    "name": meta.name,
                    "uid": meta.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


# Who writes the operator's Events (``kubectl describe`` shows it as "From").
EVENT_CONTROLLER = "barbeque.dev/operator"
EVENT_NOTE_LIMIT = 1024  # bytes: the API server refuses a longer note


def object_reference(
    kind: str, name: str, namespace: str | None, uid: str | None
) -> dict[str, Any]:
    reference = {"apiVersion": API_VERSION, "kind": kind, "name": name}
    if namespace:
        reference["namespace"] = namespace
    if uid:
        reference["uid"] = uid
    return reference


def build_event(
    regarding: dict[str, Any],
    *,
    reason: str,
    note: str,
    action: str,
    instance: str,
    at: datetime,
    warning: bool = True,
) -> dict[str, Any]:
    """An events.k8s.io/v1 Event about one of our objects.

    Events of a cluster-scoped object (a JobQueue) live in ``default``, as client-go puts
    them; ``kubectl describe`` finds them by the object they regard, in any namespace.
    """
    encoded = note.encode()
    if len(encoded) > EVENT_NOTE_LIMIT:
        note = encoded[: EVENT_NOTE_LIMIT - 3].decode("utf-8", "ignore") + "..."
    stamp = at.strftime("%Y%m%d%H%M%S%f")
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {
            # Unique per occurrence, readable in `kubectl get events`.
            "name": f"{regarding['name']}.{stamp}"[:253],
            "namespace": regarding.get("namespace") or "default",
        },
        "eventTime": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": EVENT_CONTROLLER,
        "reportingInstance": instance[:128],
        "action": action,
        "reason": reason or "Unknown",
        "note": note,
        "type": "Warning" if warning else "Normal",
        "regarding": regarding,
    }
