"""The JSON envelope of messages on SQS, compatible with cookpad/barbeque.

``{"Type": "JobExecution", "Application": ..., "Job": ..., "Message": <any JSON>}`` is what
the Web API and barbeque_client send; ``{"Type": "JobRetry", "RetryMessageId": ...}`` asks
to retry an execution; ``{"Type": "Notification", "TopicArn": ..., "Message": "<string>"}``
is what SNS delivers to a subscribed queue. ``NotBefore`` (ISO 8601) is ours: it holds a
message past SQS's 900 s delay limit as a Scheduled execution.

Parsing never raises for bad input: it returns an ``InvalidMessage`` that says why in
words, because a bad message must become a visible record, not a crash or a silent drop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_NAME = 253
RAW_KEEP = 4096
# Deeper messages cannot be stored and read back: pydantic serializes at most 255 levels,
# the Kubernetes client recurses per level. 64 is far beyond any real job message.
MAX_DEPTH = 64


@dataclass(frozen=True)
class ExecutionRequest:
    application: str
    job: str
    message: Any
    not_before: datetime | None = None


@dataclass(frozen=True)
class RetryRequest:
    retry_message_id: str
    not_before: datetime | None = None


@dataclass(frozen=True)
class NotificationRequest:
    """An SNS notification: runs every definition subscribed to the topic on this queue."""

    topic_arn: str
    message: Any


@dataclass(frozen=True)
class InvalidMessage:
    reason: str
    detail: str
    application: str | None = None
    job: str | None = None
    raw: str = ""


Envelope = ExecutionRequest | RetryRequest | NotificationRequest | InvalidMessage


def encode_execution(
    application: str, job: str, message: Any, not_before: datetime | None = None
) -> str:
    body: dict[str, Any] = {
        "Type": "JobExecution",
        "Application": application,
        "Job": job,
        "Message": message,
    }
    if not_before is not None:
        body["NotBefore"] = not_before.isoformat()
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def encode_retry(retry_message_id: str, not_before: datetime | None = None) -> str:
    body: dict[str, Any] = {"Type": "JobRetry", "RetryMessageId": retry_message_id}
    if not_before is not None:
        body["NotBefore"] = not_before.isoformat()
    return json.dumps(body, separators=(",", ":"))


def _name(value: Any, field: str) -> str | None:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        return None
    return value


def _not_before(body: dict[str, Any]) -> datetime | str | None:
    value = body.get("NotBefore")
    if value is None:
        return None
    if not isinstance(value, str):
        return "NotBefore must be an ISO 8601 string"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"NotBefore is not an ISO 8601 time: {value[:64]!r}"
    if parsed.tzinfo is None:
        return "NotBefore must carry a time zone"
    return parsed


def depth(value: Any) -> int:
    """How deep a JSON value nests, without recursion (it may be deeper than the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
    return deepest


INT64 = range(-(2**63), 2**63)


def unfaithful(value: Any) -> str | None:
    """A number Kubernetes cannot store as sent, described; None when there is none.

    The API server refuses NaN and Infinity, and silently rounds integers beyond int64 to
    a float: a job would run with a different number than the one enqueued.
    """
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, float) and not math.isfinite(node):
            return f"Message holds {node}, which JSON (and Kubernetes) cannot store"
        elif isinstance(node, int) and not isinstance(node, bool) and node not in INT64:
            digits = str(node) if len(str(node)) <= 40 else f"a {len(str(node))}-digit integer"
            return (
                f"Message holds {digits}, beyond the 64-bit integers Kubernetes stores "
                "exactly (it would be rounded); send it as a string"
            )
    return None


def parse(raw: str) -> Envelope:
    """Turn an SQS message body into what it asks for, or why it cannot be used."""
    kept = raw[:RAW_KEEP]
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return InvalidMessage("InvalidJSON", f"the message body is not JSON: {exc}", raw=kept)
    if not isinstance(body, dict):
        shape = type(body).__name__
        return InvalidMessage(
            "InvalidEnvelope", f"the message body is a JSON {shape}, not an object", raw=kept
        )

    kind = body.get("Type")
    not_before = _not_before(body)
    # A JobRetry runs where the execution it retries lives, so an Application field on it
    # decides nothing, not even where its error is recorded. (A body of an unknown Type that
    # names an application is still that application's to see.)
    names = kind != "JobRetry"
    application = _name(body.get("Application"), "Application") if names else None
    job = _name(body.get("Job"), "Job") if names else None
    if isinstance(not_before, str):
        return InvalidMessage("InvalidEnvelope", not_before, application, job, kept)

    if kind == "JobExecution":
        if application is None:
            return InvalidMessage(
                "InvalidEnvelope",
                "Application is missing or not a non-empty string",
                None,
                job,
                kept,
            )
        if job is None:
            return InvalidMessage(
                "InvalidEnvelope",
                "Job is missing or not a non-empty string",
                application,
                None,
                kept,
            )
        if "Message" not in body:
            return InvalidMessage("InvalidEnvelope", "Message is missing", application, job, kept)
        levels = depth(body["Message"])
        if levels > MAX_DEPTH:
            return InvalidMessage(
                "InvalidEnvelope",
                f"Message nests {levels} levels deep; at most {MAX_DEPTH} are accepted",
                application,
                job,
                kept,
            )
        problem = unfaithful(body["Message"])
        if problem is not None:
            return InvalidMessage("InvalidEnvelope", problem, application, job, kept)
        return ExecutionRequest(application, job, body["Message"], not_before)
    if kind == "JobRetry":
        retry_id = _name(body.get("RetryMessageId"), "RetryMessageId")
        if retry_id is None:
            return InvalidMessage(
                "InvalidEnvelope", "RetryMessageId is missing or not a non-empty string", raw=kept
            )
        return RetryRequest(retry_id, not_before)
    if kind == "Notification":
        return _notification(body, kept)
    shown: str = json.dumps(kind)[:64] if kind is not None else "missing"
    return InvalidMessage(
        "UnknownType",
        f"Type is {shown}; expected JobExecution, JobRetry or Notification",
        application,
        job,
        kept,
    )


def _notification(body: dict[str, Any], kept: str) -> Envelope:
    """SNS's envelope. barbeque parsed ``Message`` as JSON; a plain-text message (SNS takes
    any string) is handed to the job as that string instead of being refused."""
    topic_arn = _name(body.get("TopicArn"), "TopicArn")
    if topic_arn is None:
        return InvalidMessage(
            "InvalidEnvelope", "TopicArn is missing or not a non-empty string", raw=kept
        )
    text = body.get("Message")
    if not isinstance(text, str):
        return InvalidMessage(
            "InvalidEnvelope", "the SNS Message is missing or not a string", raw=kept
        )
    try:
        message: Any = json.loads(text)
    except (ValueError, RecursionError):
        message = text
    levels = depth(message)
    if levels > MAX_DEPTH:
        return InvalidMessage(
            "InvalidEnvelope",
            f"Message nests {levels} levels deep; at most {MAX_DEPTH} are accepted",
            raw=kept,
        )
    problem = unfaithful(message)
    if problem is not None:
        return InvalidMessage("InvalidEnvelope", problem, raw=kept)
    return NotificationRequest(topic_arn, message)
