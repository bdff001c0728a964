"""The console's edit forms as plain Python: form fields ⇄ objects, and errors per field.

A form's values become the object the API server is sent, checked first by the pydantic
model the operator reads it with; what the model refuses, and what the API server refuses
later (its 422 names fields like ``spec.retry.limit``), is reported next to the form field
that holds it. Editing starts from the stored spec, so fields the form does not show
(env, resources, tolerations, ...) are kept as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from barbeque.api.models import (
    API_VERSION,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    JobDefinitionSpec,
    JobQueueSpec,
)
from barbeque.api.subscriptions import SNSSubscriptionSpec

DESCRIPTION = "barbeque.dev/description"

# Where a value of the object sits (its path in the body) → the form field showing it.
DEFINITION_FIELDS = {
    "metadata.name": "name",
    "spec.jobName": "job_name",
    "spec.description": "description",
    "spec.queue": "queue",
    "spec.image": "image",
    "spec.command": "command",
    "spec.args": "args",
    "spec.retry.limit": "retry_limit",
    "spec.retry.baseDelaySeconds": "retry_base_delay",
    "spec.retry.maxDelaySeconds": "retry_max_delay",
    "spec.slack.channel": "slack_channel",
    "spec.slack.failureText": "slack_failure_text",
}
QUEUE_FIELDS = {
    "metadata.name": "name",
    "spec.queueName": "queue_name",
    "spec.queueUrl": "queue_url",
    "spec.receiveWaitSeconds": "receive_wait_seconds",
    "spec.visibilityTimeoutSeconds": "visibility_timeout_seconds",
    "spec.maxConcurrentExecutions": "max_concurrent_executions",
}
SUBSCRIPTION_FIELDS = {
    "metadata.name": "name",
    "spec.topicArn": "topic_arn",
    "spec.queue": "queue",
    "spec.job": "job",
}
APPLICATION_FIELDS = {"metadata.name": "name"}


@dataclass
class Form:
    """What the user typed, and what is wrong with it (field → message; "" for the form)."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, message: str) -> None:
        self.errors[where] = f"{self.errors[where]}; {message}" if where in self.errors else message


def place(form: Form, path: str, message: str, fields: Mapping[str, str]) -> None:
    """Put an error about ``path`` (``spec.command[1]``, ``spec.retry.limit``) on its field,
    or on the whole form when no field shows that part of the object."""
    bare = path.split("[", 1)[0]
    while bare:
        if bare in fields:
            form.add(fields[bare], message)
            return
        bare = bare.rpartition(".")[0]
    form.add("", f"{path}: {message}" if path else message)


def _checked(
    model: type[BaseModel],
    metadata: dict[str, Any],
    spec: dict[str, Any],
    form: Form,
    fields: Mapping[str, str],
) -> BaseModel | None:
    """The spec as the operator will read it (numbers typed as text become numbers), or
    None with each refusal placed on the form."""
    if not metadata["name"]:
        form.add("name", "a name is required")
    try:
        parsed = model.model_validate(spec)
    except ValidationError as exc:
        for error in exc.errors():
            parts = [str(p) for p in error["loc"] if not isinstance(p, int)]
            place(form, ".".join(["spec", *parts]), error["msg"], fields)
        return None
    return None if form.errors else parsed


def _start(
    kind: str, form: Form, stored: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The object to send and its metadata: a copy of ``stored`` without its status (the
    name cannot change), or a new one named as typed."""
    body: dict[str, Any] = copy.deepcopy(stored) if stored else {}
    body.pop("status", None)
    body["apiVersion"] = API_VERSION
    body["kind"] = kind
    metadata: dict[str, Any] = body.setdefault("metadata", {})
    metadata.setdefault("name", form.values.get("name", "").strip())
    return body, metadata


def _lines(text: str) -> list[str]:
    """One argument per line; blank lines are dropped, spaces inside a line are kept."""
    return [line.strip("\r") for line in text.split("\n") if line.strip()]


def _number(value: str) -> str | None:
    """A number field: empty means unset; anything else goes to the model as typed."""
    value = value.strip()
    return value or None


# -- JobDefinition -----------------------------------------------------------------------


def definition_values(body: dict[str, Any] | None) -> dict[str, str]:
    """The form's values for a stored JobDefinition (None: a new one's defaults)."""
    spec = (body or {}).get("spec") or {}
    retry = spec.get("retry") or {}
    slack = spec.get("slack") or {}

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    return {
        "name": text(((body or {}).get("metadata") or {}).get("name")),
        "job_name": text(spec.get("jobName")),
        "description": text(spec.get("description")),
        "queue": text(spec.get("queue") or "default"),
        "image": text(spec.get("image")),
        "command": "\n".join(spec.get("command") or []),
        "args": "\n".join(spec.get("args") or []),
        # No retry config means no retries; `retry: {}` means barbeque's 3.
        "retry_limit": text(retry.get("limit", 3) if spec.get("retry") is not None else 0),
        "retry_base_delay": text(retry.get("baseDelaySeconds", 15.0)),
        "retry_max_delay": text(retry.get("maxDelaySeconds")),
        "retry_jitter": "on" if retry.get("jitter", True) else "",
        "slack_channel": text(slack.get("channel")),
        "slack_notify_success": "on" if slack.get("notifySuccess") else "",
        "slack_only_at_limit": "on" if slack.get("notifyFailureOnlyIfRetryLimitReached") else "",
        "slack_failure_text": text(slack.get("failureText")),
    }


def definition_body(
    form: Form, namespace: str, stored: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JobDefinition to send: ``stored`` (when editing) with the form's fields over it."""
    values = form.values
    body, metadata = _start("JobDefinition", form, stored)
    metadata["namespace"] = namespace
    spec: dict[str, Any] = body.setdefault("spec", {})
    spec["description"] = values.get("description", "").strip()
    job_name = values.get("job_name", "").strip()
    if job_name:
        spec["jobName"] = job_name
    else:
        spec.pop("jobName", None)
    spec["queue"] = values.get("queue", "").strip()
    spec["image"] = values.get("image", "").strip()
    for key in ("command", "args"):
        if argv := _lines(values.get(key, "")):
            spec[key] = argv
        else:
            spec.pop(key, None)
    limit = _number(values.get("retry_limit", ""))
    retry: dict[str, Any] = {
        "limit": limit,
        "baseDelaySeconds": _number(values.get("retry_base_delay", "")) or 15.0,
        "jitter": bool(values.get("retry_jitter")),
    }
    if (maximum := _number(values.get("retry_max_delay", ""))) is not None:
        retry["maxDelaySeconds"] = maximum
    # 0 retries is no retry config at all, as a definition applied without `retry:`.
    if limit not in (None, "0"):
        spec["retry"] = retry
    else:
        spec.pop("retry", None)
    channel = values.get("slack_channel", "").strip()
    if channel:
        spec["slack"] = {
            "channel": channel,
            "notifySuccess": bool(values.get("slack_notify_success")),
            "notifyFailureOnlyIfRetryLimitReached": bool(values.get("slack_only_at_limit")),
            "failureText": values.get("slack_failure_text", ""),
        }
    else:
        spec.pop("slack", None)
    parsed = _checked(JobDefinitionSpec, metadata, spec, form, DEFINITION_FIELDS)
    if isinstance(parsed, JobDefinitionSpec) and parsed.retry is not None:
        spec["retry"] = parsed.retry.model_dump(by_alias=True, exclude_none=True)
    return body


# -- JobQueue -----------------------------------------------------------------------------


def queue_values(body: dict[str, Any] | None) -> dict[str, str]:
    spec = (body or {}).get("spec") or {}
    metadata = (body or {}).get("metadata") or {}

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    return {
        "name": text(metadata.get("name")),
        "description": text((metadata.get("annotations") or {}).get(DESCRIPTION)),
        "queue_name": text(spec.get("queueName")),
        "queue_url": text(spec.get("queueUrl")),
        "create": "on" if spec.get("create", body is None) else "",
        "receive_wait_seconds": text(spec.get("receiveWaitSeconds", 20)),
        "visibility_timeout_seconds": text(spec.get("visibilityTimeoutSeconds", 60)),
        "max_concurrent_executions": text(spec.get("maxConcurrentExecutions")),
        "suspend": "on" if spec.get("suspend") else "",
    }


def queue_body(form: Form, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    values = form.values
    body, metadata = _start("JobQueue", form, stored)
    annotations = metadata.setdefault("annotations", {})
    if description := values.get("description", "").strip():
        annotations[DESCRIPTION] = description
    else:
        annotations.pop(DESCRIPTION, None)
    spec: dict[str, Any] = body.setdefault("spec", {})
    for key, name in (("queueName", "queue_name"), ("queueUrl", "queue_url")):
        if text := values.get(name, "").strip():
            spec[key] = text
        else:
            spec.pop(key, None)
    spec["create"] = bool(values.get("create"))
    spec["suspend"] = bool(values.get("suspend"))
    for key, name in (
        ("receiveWaitSeconds", "receive_wait_seconds"),
        ("visibilityTimeoutSeconds", "visibility_timeout_seconds"),
        ("maxConcurrentExecutions", "max_concurrent_executions"),
    ):
        if (number := _number(values.get(name, ""))) is not None:
            spec[key] = number
        else:
            spec.pop(key, None)
    parsed = _checked(JobQueueSpec, metadata, spec, form, QUEUE_FIELDS)
    if parsed is not None:
        body["spec"] = parsed.model_dump(by_alias=True, exclude_none=True)
    return body


# -- SNSSubscription ----------------------------------------------------------------------


def subscription_values(body: dict[str, Any] | None) -> dict[str, str]:
    spec = (body or {}).get("spec") or {}
    return {
        "name": str(((body or {}).get("metadata") or {}).get("name") or ""),
        "topic_arn": str(spec.get("topicArn") or ""),
        "queue": str(spec.get("queue") or "default"),
        "job": str(spec.get("job") or ""),
    }


def subscription_body(
    form: Form, namespace: str, jobs: set[str], stored: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The SNSSubscription to send. Editing changes only the job, as in barbeque: the
    topic and queue are what the operator subscribed, so another pair is a new
    subscription. ``jobs`` are the names (and jobNames) of the namespace's definitions."""
    values = form.values
    body, metadata = _start("SNSSubscription", form, stored)
    metadata["namespace"] = namespace
    spec: dict[str, Any] = body.setdefault("spec", {})
    if stored is None:
        spec["topicArn"] = values.get("topic_arn", "").strip()
        spec["queue"] = values.get("queue", "").strip()
    spec["job"] = values.get("job", "").strip()
    if spec["job"] and spec["job"] not in jobs:
        form.add("job", f"application {namespace!r} has no job definition {spec['job']!r}")
    _checked(SNSSubscriptionSpec, metadata, spec, form, SUBSCRIPTION_FIELDS)
    return body


# -- applications (namespaces) ----------------------------------------------------------------


def application_body(form: Form) -> dict[str, Any]:
    """A namespace the console creates: labelled, so only such a one may be deleted here."""
    name = form.values.get("name", "").strip()
    if not name:
        form.add("name", "a name is required")
    metadata: dict[str, Any] = {"name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY}}
    if description := form.values.get("description", "").strip():
        metadata["annotations"] = {DESCRIPTION: description}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
